package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Event reasons of IPAMPool.
const (
	EventPoolNodesWaiting = "NodesWaiting"
	EventPoolRecovered    = "SpaceAvailable"
)

// listedNodesMax bounds the node lists in an IPAMPool's status.
const listedNodesMax = 100

// IPAMPoolReconciler counts a pool's usage from the claims and node
// allocations in the API and reports it in status, conditions, events and
// metrics. It allocates nothing: NodeNetworkReconciler does.
type IPAMPoolReconciler struct {
	Client   client.Client
	Recorder recorder.EventRecorder
}

// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipampools,verbs=get;list;watch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipampools/status,verbs=get;update;patch

// SetupWithManager watches pools, their claims and node allocations.
func (r *IPAMPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	byPoolLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		if pool := obj.GetLabels()[v1.LabelPool]; pool != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: pool}}}
		}
		return nil
	})
	byStatusPool := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, obj client.Object) []reconcile.Request {
		if nn, ok := obj.(*v1.NodeNetwork); ok && nn.Status.Pool != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: nn.Status.Pool}}}
		}
		return nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("ipampool").
		For(&v1.IPAMPool{}).
		Watches(&v1.IPAMBlock{}, byPoolLabel).
		Watches(&v1.NodeNetwork{}, byStatusPool).
		Complete(r)
}

// Reconcile recounts one pool.
func (r *IPAMPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &v1.IPAMPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		if client.IgnoreNotFound(err) == nil {
			ipamPoolAddresses.DeletePartialMatch(map[string]string{metricLabelPool: req.Name})
			ipamPoolWaitingNodes.DeleteLabelValues(req.Name)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := pool.DeepCopy()

	var blocks v1.IPAMBlockList
	if err := r.Client.List(ctx, &blocks, client.MatchingLabels{v1.LabelPool: pool.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list IPAMBlocks of pool %s: %w", pool.Name, err)
	}
	var nns v1.NodeNetworkList
	if err := r.Client.List(ctx, &nns); err != nil {
		return ctrl.Result{}, fmt.Errorf("list NodeNetworks: %w", err)
	}
	setPoolStatus(pool, blocks.Items, waitingNodes(pool.Name, nns.Items))
	r.recordPoolTransitions(before, pool)
	r.exportMetrics(pool)

	if equality.Semantic.DeepEqual(before.Status, pool.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, pool, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patch status of IPAMPool %s: %w", pool.Name, err)
	}
	return ctrl.Result{}, nil
}

func (r *IPAMPoolReconciler) recordPoolTransitions(before, after *v1.IPAMPool) {
	was := meta.IsStatusConditionTrue(before.Status.Conditions, v1.ConditionExhausted)
	is := meta.IsStatusConditionTrue(after.Status.Conditions, v1.ConditionExhausted)
	switch {
	case is && !was:
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, EventPoolNodesWaiting, "Allocate",
			"%s", meta.FindStatusCondition(after.Status.Conditions, v1.ConditionExhausted).Message)
	case was && !is:
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, EventPoolRecovered, "Allocate",
			"Every node that waited has its addresses")
	}
}

func (r *IPAMPoolReconciler) exportMetrics(pool *v1.IPAMPool) {
	ipamPoolAddresses.WithLabelValues(pool.Name, "capacity").Set(float64(pool.Status.Capacity))
	ipamPoolAddresses.WithLabelValues(pool.Name, "allocated").Set(float64(pool.Status.Allocated))
	ipamPoolAddresses.WithLabelValues(pool.Name, "free").Set(float64(pool.Status.Free))
	ipamPoolWaitingNodes.WithLabelValues(pool.Name).Set(float64(len(pool.Status.WaitingNodes)))
}
