package controllers

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agentmanifest"
	"github.com/sluice-dev/sluice/internal/dataplane"
)

// Event reasons of DataplaneConfig.
const (
	// EventAgentCreated: an agent object (ConfigMap, DaemonSet) was created.
	EventAgentCreated = "AgentCreated"
	// EventAgentUpdated: an agent object was changed to match the config.
	EventAgentUpdated = "AgentUpdated"
	// EventApplyFailed: the operator could not write an agent object.
	EventApplyFailed = "ApplyFailed"
	// EventPolicyEngineReplaced: spec names an old policy engine that the
	// eBPF dataplane replaces.
	EventPolicyEngineReplaced = "PolicyEngineReplaced"
	// EventReady: the configuration is in force on every node.
	EventReady = "Ready"
)

// DataplaneConfigReconciler renders the node agent's ConfigMap and DaemonSet
// from the effective configuration and reports the rollout in status.
type DataplaneConfigReconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
	// Agent names the agent's namespace, objects and service account.
	Agent agentmanifest.Params
	// AgentImage is the agent image when spec.agent.image is unset.
	AgentImage string
}

// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=dataplaneconfigs,verbs=get;list;watch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=dataplaneconfigs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,namespace=sluice-system,resources=daemonsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=sluice-system,resources=configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipampools,verbs=get;list;watch

// SetupWithManager watches DataplaneConfigs and the agent objects they own.
func (r *DataplaneConfigReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1.DataplaneConfig{}).
		Owns(&appsv1.DaemonSet{}).
		Owns(&corev1.ConfigMap{}).
		// Pool health shows in the IPAMReady condition.
		Watches(&v1.IPAMPool{}, handler.EnqueueRequestsFromMapFunc(
			func(context.Context, client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: v1.DataplaneConfigName}}}
			})).
		Named("dataplaneconfig").
		Complete(r)
}

// Reconcile brings the agent objects in line with the DataplaneConfig and
// writes what it observed to status.
func (r *DataplaneConfigReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	dpc := &v1.DataplaneConfig{}
	if err := r.Client.Get(ctx, req.NamespacedName, dpc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !dpc.DeletionTimestamp.IsZero() {
		// Owner references let the garbage collector remove the agent
		// objects; there is nothing outside the API to clean up.
		return ctrl.Result{}, nil
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Reconciling DataplaneConfig", "dataplaneConfig", klog.KObj(dpc))

	before := dpc.DeepCopy()
	obs := &observation{}
	defer func() {
		setStatus(dpc, obs, reterr)
		if reterr == nil {
			dpc.Status.ObservedGeneration = dpc.Generation
		}
		r.recordTransitions(before, dpc)
		if err := r.patchStatus(ctx, before, dpc); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()

	return ctrl.Result{}, r.reconcileNormal(ctx, dpc, obs)
}

// observation is what one reconcile learnt, for the status.
type observation struct {
	effective *v1.EffectiveConfig
	daemonSet *appsv1.DaemonSet
	// pools are all IPAMPools, nil until listed.
	pools []v1.IPAMPool
}

func (r *DataplaneConfigReconciler) reconcileNormal(ctx context.Context, dpc *v1.DataplaneConfig, obs *observation) error {
	obs.effective = dataplane.Effective(&dpc.Spec, r.AgentImage)
	var pools v1.IPAMPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return fmt.Errorf("list IPAMPools: %w", err)
	}
	obs.pools = pools.Items
	if err := r.reconcileAgentConfigMap(ctx, dpc, obs.effective); err != nil {
		return err
	}
	ds, err := r.reconcileAgentDaemonSet(ctx, dpc, obs.effective)
	obs.daemonSet = ds
	return err
}

func (r *DataplaneConfigReconciler) reconcileAgentConfigMap(ctx context.Context, dpc *v1.DataplaneConfig, eff *v1.EffectiveConfig) error {
	desired, err := agentmanifest.ConfigMap(eff, r.Agent)
	if err != nil {
		return fmt.Errorf("render agent ConfigMap: %w", err)
	}
	live, result, err := applyOwned(ctx, r.Client, dpc, desired, &corev1.ConfigMap{},
		func(desired, live *corev1.ConfigMap) bool {
			if equality.Semantic.DeepEqual(desired.Data, live.Data) {
				return false
			}
			live.Data = desired.Data
			return true
		})
	r.recordApply(dpc, live, result, err)
	return err
}

func (r *DataplaneConfigReconciler) reconcileAgentDaemonSet(ctx context.Context, dpc *v1.DataplaneConfig, eff *v1.EffectiveConfig) (*appsv1.DaemonSet, error) {
	desired, err := agentmanifest.DaemonSet(eff, r.Agent)
	if err != nil {
		return nil, fmt.Errorf("render agent DaemonSet: %w", err)
	}
	var writtenGeneration int64
	if dpc.Status.Agent != nil {
		writtenGeneration = dpc.Status.Agent.DaemonSetGeneration
	}
	live, result, err := applyOwned(ctx, r.Client, dpc, desired, &appsv1.DaemonSet{},
		func(desired, live *appsv1.DaemonSet) bool {
			// The API server fills in defaults the renderer leaves unset, so
			// DeepDerivative compares only what the renderer sets. It can't
			// see a field someone else set that the renderer leaves unset (a
			// memory limit, hostPID), but that edit bumps the generation past
			// the one the operator last wrote, so the spec is put back then.
			if equality.Semantic.DeepDerivative(desired.Spec, live.Spec) && live.Generation == writtenGeneration {
				return false
			}
			live.Spec = desired.Spec
			return true
		})
	r.recordApply(dpc, live, result, err)
	if err != nil {
		return nil, err
	}
	return live, nil
}

func (r *DataplaneConfigReconciler) recordApply(dpc *v1.DataplaneConfig, obj client.Object, result applyResult, err error) {
	switch {
	case err != nil:
		r.Recorder.Eventf(dpc, nil, corev1.EventTypeWarning, EventApplyFailed, "Apply", "%v", err)
	case result == applyCreated:
		r.Recorder.Eventf(dpc, obj, corev1.EventTypeNormal, EventAgentCreated, "Create",
			"Created agent %s %s", kindOf(obj), klog.KObj(obj))
	case result == applyUpdated:
		r.Recorder.Eventf(dpc, obj, corev1.EventTypeNormal, EventAgentUpdated, "Update",
			"Updated agent %s %s to the current configuration", kindOf(obj), klog.KObj(obj))
	}
}

// recordTransitions tells users, once, about changes they must know of.
func (r *DataplaneConfigReconciler) recordTransitions(before, after *v1.DataplaneConfig) {
	if eff := after.Status.Effective; eff != nil && replacesPolicyEngine(&after.Spec, eff) &&
		(before.Status.Effective == nil || before.Status.Effective.NetworkPolicy != eff.NetworkPolicy) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventPolicyEngineReplaced, "Resolve",
			"networkPolicy %s is replaced by the eBPF dataplane: cilium enforces NetworkPolicy", after.Spec.NetworkPolicy)
	}
	wasReady := meta.IsStatusConditionTrue(before.Status.Conditions, v1.ConditionReady)
	if !wasReady && meta.IsStatusConditionTrue(after.Status.Conditions, v1.ConditionReady) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventReady, "Rollout",
			"%s", meta.FindStatusCondition(after.Status.Conditions, v1.ConditionReady).Message)
	}
}

func replacesPolicyEngine(spec *v1.DataplaneConfigSpec, eff *v1.EffectiveConfig) bool {
	old := spec.NetworkPolicy == v1.NetworkPolicyAzure || spec.NetworkPolicy == v1.NetworkPolicyCalico
	return old && eff.NetworkPolicy != spec.NetworkPolicy
}

// patchStatus writes status only when it changed, so a settled object
// costs no writes.
func (r *DataplaneConfigReconciler) patchStatus(ctx context.Context, before, after *v1.DataplaneConfig) error {
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, after, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("patch status of DataplaneConfig %s: %w", after.Name, err)
	}
	return nil
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.DaemonSet:
		return "DaemonSet"
	case *corev1.ConfigMap:
		return "ConfigMap"
	}
	return fmt.Sprintf("%T", obj)
}
