package controllers

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/agentmanifest"
	sluicewebhook "github.com/sluice-dev/sluice/internal/webhook"
)

// Options are what the reconcilers need beyond the manager.
type Options struct {
	// Agent names the agent's namespace, objects and service account.
	Agent agentmanifest.Params
	// AgentImage is the agent image when spec.agent.image is unset.
	AgentImage string
}

// SetupAll registers every reconciler and the admission and conversion
// webhooks with mgr: the operator as cmd/manager runs it, and as the
// envtest suites run it.
func SetupAll(ctx context.Context, mgr ctrl.Manager, opts Options) error {
	if err := (&DataplaneConfigReconciler{
		Client:     mgr.GetClient(),
		Recorder:   mgr.GetEventRecorder("sluice-operator"),
		Agent:      opts.Agent,
		AgentImage: opts.AgentImage,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up DataplaneConfig controller: %w", err)
	}
	if err := (&IPAMPoolReconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("sluice-ipam"),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up IPAMPool controller: %w", err)
	}
	if err := (&NodeNetworkReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("sluice-ipam"),
	}).SetupWithManager(ctx, mgr); err != nil {
		return fmt.Errorf("set up NodeNetwork controller: %w", err)
	}
	if err := sluicewebhook.SetupDataplaneConfigWebhook(mgr); err != nil {
		return fmt.Errorf("set up DataplaneConfig webhooks: %w", err)
	}
	if err := sluicewebhook.SetupIPAMPoolWebhook(mgr); err != nil {
		return fmt.Errorf("set up IPAMPool webhook: %w", err)
	}
	return nil
}

// CacheOptions is the manager cache the reconcilers expect. The operator
// only touches the agent's objects in the agent's namespace, so the cache
// (and RBAC) cover DaemonSets and ConfigMaps in that namespace alone.
func CacheOptions(agentNamespace string) cache.Options {
	inNamespace := cache.ByObject{Namespaces: map[string]cache.Config{agentNamespace: {}}}
	return cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.DaemonSet{}: inNamespace,
		&corev1.ConfigMap{}: inNamespace,
	}}
}
