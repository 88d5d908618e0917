package controllers

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
	"github.com/sluice-dev/sluice/internal/ipampool"
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

// setPoolStatus computes the pool's status from its claims and the nodes
// that wait for it. Pure, so the table tests cover it.
func setPoolStatus(pool *v1.IPAMPool, blocks []v1.IPAMBlock, waiting []string) {
	st := &pool.Status
	st.ObservedGeneration = pool.Generation
	params, err := ipampool.FromSpec(&pool.Spec)
	var space *ipam.Space
	if err == nil {
		space, err = params.NewSpace()
	}
	if err != nil {
		setPoolCondition(pool, v1.ConditionReady, metav1.ConditionFalse, v1.ReasonInvalidRanges, err.Error())
		setPoolCondition(pool, v1.ConditionDegraded, metav1.ConditionTrue, v1.ReasonInvalidRanges, err.Error())
		return
	}

	holders := map[string]bool{}
	var allocatedV4 int64
	for _, b := range blocks {
		prefix, err := netip.ParsePrefix(string(b.Spec.CIDR))
		if err != nil {
			continue
		}
		if prefix.Addr().Is4() {
			allocatedV4 += int64(params.BlockAddresses(ipam.IPv4))
		}
		holders[b.Spec.Node] = true
	}
	nodes := slices.Sorted(maps.Keys(holders))
	st.Capacity = int64(space.Stats(ipam.IPv4).Addresses)
	st.Allocated = allocatedV4
	st.Free = st.Capacity - st.Allocated
	st.AllocatedNodes = int32(len(nodes))
	st.Nodes = nodes[:min(len(nodes), listedNodesMax)]
	st.WaitingNodes = waiting[:min(len(waiting), listedNodesMax)]
	if len(st.Nodes) == 0 {
		st.Nodes = nil
	}
	if len(st.WaitingNodes) == 0 {
		st.WaitingNodes = nil
	}

	setPoolCondition(pool, v1.ConditionReady, metav1.ConditionTrue, v1.ReasonPoolReady,
		fmt.Sprintf("%d of %d IPv4 addresses allocated to %d nodes", st.Allocated, st.Capacity, st.AllocatedNodes))
	setPoolCondition(pool, v1.ConditionDegraded, metav1.ConditionFalse, v1.ReasonAsExpected, "The pool's ranges are valid")
	if len(waiting) > 0 {
		setPoolCondition(pool, v1.ConditionExhausted, metav1.ConditionTrue, v1.ReasonNodesWaiting, fmt.Sprintf(
			"%d node(s) wait for addresses: %s; add a range to spec.cidrs", len(waiting), strings.Join(st.WaitingNodes, ", ")))
	} else {
		setPoolCondition(pool, v1.ConditionExhausted, metav1.ConditionFalse, v1.ReasonSpaceAvailable,
			fmt.Sprintf("No node waits; %d IPv4 addresses free", st.Free))
	}
}

func setPoolCondition(pool *v1.IPAMPool, condType string, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&pool.Status.Conditions, metav1.Condition{
		Type: condType, Status: status, Reason: reason, Message: message, ObservedGeneration: pool.Generation,
	})
}

// waitingNodes are the nodes whose last allocation from pool found it
// exhausted, sorted.
func waitingNodes(pool string, nns []v1.NodeNetwork) []string {
	var out []string
	for _, nn := range nns {
		if waitsOnExhaustedPool(&nn, pool) {
			out = append(out, nn.Name)
		}
	}
	slices.Sort(out)
	return out
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
