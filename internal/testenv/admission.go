package testenv

import (
	"context"
	"fmt"
	"path/filepath"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/noderestriction"
)

// NodeRestrictionFile is the agent's node restriction policy as shipped.
func NodeRestrictionFile() string {
	return filepath.Join(RepoRoot(), "config", "admission", "node_restriction.yaml")
}

// installAdmissionPolicies puts the admission policies a cluster with
// Sluice has in force, so every envtest suite runs under them as a real
// cluster would.
func installAdmissionPolicies(cfg *rest.Config, scheme *k8sruntime.Scheme) error {
	p, err := noderestriction.Read(NodeRestrictionFile())
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("client for the admission policies: %w", err)
	}
	return noderestriction.Install(context.Background(), cfg, c, p)
}
