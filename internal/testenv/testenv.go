// Package testenv starts the envtest control plane (the kube-apiserver and
// etcd that hack/setup-envtest.sh builds) with Sluice's CRDs installed, so
// every package's tests start it the same way. Only tests import it.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	sluicescheme "github.com/sluice-dev/sluice/internal/scheme"
)

// RepoRoot is the repository's top directory, found from this file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CRDDir holds the generated CRDs.
func CRDDir() string {
	return filepath.Join(RepoRoot(), "config", "crd", "bases")
}

// Environment is an envtest environment with Sluice's CRDs and scheme.
// Callers may add webhook options before starting it.
func Environment(scheme *k8sruntime.Scheme) *envtest.Environment {
	return &envtest.Environment{
		Scheme:                scheme,
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
	}
}

// Start starts env, saying how to get the binaries when they are missing,
// and installs the admission policies Sluice ships (the agent's node
// restriction), returning once they are enforced.
func Start(env *envtest.Environment) (*rest.Config, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" && env.BinaryAssetsDirectory == "" {
		return nil, errors.New("KUBEBUILDER_ASSETS is unset: run `make setup-envtest` and set it to bin/k8s/<version> (make test does both)")
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd from %s: %w", os.Getenv("KUBEBUILDER_ASSETS"), err)
	}
	if err := installAdmissionPolicies(cfg, sluicescheme.New()); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return cfg, nil
}

// StartFor starts an envtest control plane with Sluice's CRDs for one test
// or benchmark and stops it when tb ends; it fails tb if the control plane
// doesn't start.
func StartFor(tb testing.TB) (*rest.Config, *k8sruntime.Scheme) {
	tb.Helper()
	scheme := sluicescheme.New()
	env := Environment(scheme)
	cfg, err := Start(env)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Logf("stop envtest: %v", err)
		}
	})
	return cfg, scheme
}
