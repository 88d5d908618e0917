package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

// Event reasons of NodeNetwork.
const (
	EventBlockAllocated = "BlockAllocated"
	EventBlockReleased  = "BlockReleased"
	EventPoolExhausted  = "PoolExhausted"
	EventStillInUse     = "AddressesStillInUse"
)

// exhaustedRetry is how soon a node that found its pool exhausted looks
// again, should no event (a released block, a new range) wake it sooner.
const exhaustedRetry = time.Minute

// NodeNetworkReconciler gives every node the pod addresses it needs from
// the IPAMPool that selects it. The request key is the node's name; the
// NodeNetwork of the same name carries the allocation.
//
// Every decision is in the API before anyone uses it: a block is claimed by
// creating its IPAMBlock (unique by name), then listed in the NodeNetwork
// status the node reads; a released block leaves the status first and
// loses its claim after. A restarted operator rebuilds from those objects.
type NodeNetworkReconciler struct {
	Client client.Client
	// APIReader reads uncached where a stale cache would over-allocate.
	APIReader client.Reader
	Recorder  recorder.EventRecorder
	// MaxConcurrentReconciles bounds parallel allocations (default 16: a
	// reconcile mostly waits on the API server, and claims keep parallel
	// allocations apart).
	MaxConcurrentReconciles int

	spaces *poolSpaces
}

// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=nodenetworks,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=nodenetworks/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipamblocks,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipampools,verbs=get;list;watch
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=dataplaneconfigs,verbs=get;list;watch

// SetupWithManager watches nodes, their NodeNetworks, pools and claims.
func (r *NodeNetworkReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if r.spaces == nil {
		r.spaces = newPoolSpaces()
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 16
	}
	blocks, err := mgr.GetCache().GetInformer(ctx, &v1.IPAMBlock{})
	if err != nil {
		return fmt.Errorf("get IPAMBlock informer: %w", err)
	}
	if _, err := blocks.AddEventHandler(r.spaces.blockEvents()); err != nil {
		return fmt.Errorf("watch IPAMBlocks: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nodenetwork").
		For(&corev1.Node{}, builder.WithPredicates(predicate.Or(
			predicate.LabelChangedPredicate{}, predicate.GenerationChangedPredicate{},
			deletedOrCreated()))).
		Watches(&v1.NodeNetwork{}, &handler.EnqueueRequestForObject{}).
		// Spec changes only: pool status changes with every allocation, and
		// waking every node for each would cost O(nodes) per allocation.
		Watches(&v1.IPAMPool{}, handler.EnqueueRequestsFromMapFunc(r.nodesOfPool),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&v1.IPAMBlock{}, handler.EnqueueRequestsFromMapFunc(r.waitingNodesOfBlockPool),
			builder.WithPredicates(deletedOnly())).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// Reconcile allocates for, or releases the addresses of, one node.
func (r *NodeNetworkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	node := &corev1.Node{}
	nodeErr := r.Client.Get(ctx, req.NamespacedName, node)
	if nodeErr != nil && !apierrors.IsNotFound(nodeErr) {
		return ctrl.Result{}, fmt.Errorf("get node %s: %w", req.Name, nodeErr)
	}
	nodeGone := apierrors.IsNotFound(nodeErr) || !node.DeletionTimestamp.IsZero()

	nn := &v1.NodeNetwork{}
	if err := r.Client.Get(ctx, req.NamespacedName, nn); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("get NodeNetwork %s: %w", req.Name, err)
		}
		if nodeGone {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, r.createNodeNetwork(ctx, node)
	}

	if nodeGone || !nn.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, nn, nodeGone)
	}
	return r.reconcileNormal(ctx, node, nn)
}

// createNodeNetwork makes the node's NodeNetwork, owned by the node (so the
// garbage collector follows it) and holding the release finalizer.
func (r *NodeNetworkReconciler) createNodeNetwork(ctx context.Context, node *corev1.Node) error {
	nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{
		Name:       node.Name,
		Finalizers: []string{v1.FinalizerReleaseAddresses},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID,
		}},
	}}
	if err := r.Client.Create(ctx, nn); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create NodeNetwork %s: %w", node.Name, err)
	}
	return nil
}

// reconcileDelete releases the node's blocks and lets the NodeNetwork go.
// The node's own object going away is the signal: a NodeNetwork deleted
// while its node still runs pods keeps its addresses (releasing them would
// let another node hand out addresses that are still in use).
func (r *NodeNetworkReconciler) reconcileDelete(ctx context.Context, nn *v1.NodeNetwork, nodeGone bool) error {
	if !nodeGone && nn.Spec.IPsInUse > 0 {
		r.Recorder.Eventf(nn, nil, corev1.EventTypeWarning, EventStillInUse, "Release",
			"Node %s still uses %d pod addresses; they are released when the node is deleted or reports none in use", nn.Name, nn.Spec.IPsInUse)
		return nil
	}
	if nn.DeletionTimestamp.IsZero() {
		if err := r.Client.Delete(ctx, nn); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete NodeNetwork %s: %w", nn.Name, err)
		}
		return nil
	}
	claims, err := r.claimsOf(ctx, nn.Name)
	if err != nil {
		return err
	}
	for _, claim := range claims {
		if err := r.deleteClaim(ctx, &claim); err != nil {
			return err
		}
	}
	if controllerutil.RemoveFinalizer(nn, v1.FinalizerReleaseAddresses) {
		if err := r.Client.Update(ctx, nn); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove finalizer of NodeNetwork %s: %w", nn.Name, err)
		}
	}
	ctrl.LoggerFrom(ctx).Info("Released the addresses of a removed node", "node", nn.Name, "blocks", len(claims))
	return nil
}

// reconcileNormal brings the node's holdings to what it needs: releases
// what it gives back, recovers claims a crash left out of status, and
// claims new blocks.
func (r *NodeNetworkReconciler) reconcileNormal(ctx context.Context, node *corev1.Node, nn *v1.NodeNetwork) (ctrl.Result, error) {
	before := nn.DeepCopy()
	pool, reason, message, err := r.poolFor(ctx, node)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pool == nil {
		setAllocated(nn, metav1.ConditionFalse, reason, message)
		return ctrl.Result{}, r.patchNodeNetworkStatus(ctx, before, nn)
	}
	if err := r.labelWithPool(ctx, nn, pool.Name); err != nil {
		return ctrl.Result{}, err
	}
	before = nn.DeepCopy()
	params, err := r.spaces.get(ctx, r.Client, pool)
	if err != nil {
		setAllocated(nn, metav1.ConditionFalse, v1.ReasonInvalidRanges, err.Error())
		return ctrl.Result{}, errors.Join(err, r.patchNodeNetworkStatus(ctx, before, nn))
	}

	// Claims are read uncached: a claim this operator made a moment ago
	// may not be in the cache yet, and missing it would claim a second
	// block for the node.
	claims, err := r.claimsOf(ctx, nn.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	held, fromOtherPool := splitByPool(claims, pool.Name)
	if len(fromOtherPool) > 0 {
		if nn.Spec.IPsInUse > 0 {
			setAllocated(nn, metav1.ConditionFalse, v1.ReasonPoolChanged, fmt.Sprintf(
				"Node now matches IPAMPool %s but its pods still use %d addresses of IPAMPool %s; drain the node to move it",
				pool.Name, nn.Spec.IPsInUse, fromOtherPool[0].Spec.Pool))
			return ctrl.Result{}, r.patchNodeNetworkStatus(ctx, before, nn)
		}
	}

	release := releasedBy(nn, held)
	keep := slices.DeleteFunc(slices.Clone(held), func(c v1.IPAMBlock) bool { return slices.Contains(release, c.Spec.CIDR) })
	claimed, exhausted, err := r.claimMissing(ctx, nn, pool, params, keep)
	keep = append(keep, claimed...)

	nn.Status.Pool = pool.Name
	nn.Status.Mode = pool.Spec.Mode
	nn.Status.MaxPods = int32(params.MaxPods)
	nn.Status.CIDRs, nn.Status.ExcludeIPs = holdings(keep, params)
	nn.Status.ObservedGeneration = nn.Generation
	switch {
	case exhausted:
		setAllocated(nn, metav1.ConditionFalse, v1.ReasonPoolExhausted, fmt.Sprintf(
			"IPAMPool %s has no free block for this node; add a range to the pool or free addresses elsewhere", pool.Name))
	case err == nil:
		setAllocated(nn, metav1.ConditionTrue, v1.ReasonAllocated, fmt.Sprintf(
			"Node holds %d block(s) of IPAMPool %s", len(keep), pool.Name))
	}
	if statusErr := r.patchNodeNetworkStatus(ctx, before, nn); statusErr != nil {
		// Claims made above are recovered into status on the next pass.
		return ctrl.Result{}, errors.Join(err, statusErr)
	}

	// Only now that status no longer lists them may released blocks (and
	// blocks of a pool the node left) go back to the pool.
	for _, claim := range append(fromOtherPool, claimsFor(held, release)...) {
		if err := r.deleteClaim(ctx, &claim); err != nil {
			return ctrl.Result{}, err
		}
		r.Recorder.Eventf(nn, nil, corev1.EventTypeNormal, EventBlockReleased, "Release",
			"Released %s back to IPAMPool %s", claim.Spec.CIDR, claim.Spec.Pool)
	}
	if exhausted {
		return ctrl.Result{RequeueAfter: exhaustedRetry}, err
	}
	return ctrl.Result{}, err
}

// labelWithPool labels the NodeNetwork with its pool, so that
// `kubectl get nodenetworks -l sluice.dev/pool=NAME` lists a pool's nodes.
func (r *NodeNetworkReconciler) labelWithPool(ctx context.Context, nn *v1.NodeNetwork, pool string) error {
	if nn.Labels[v1.LabelPool] == pool {
		return nil
	}
	before := nn.DeepCopy()
	if nn.Labels == nil {
		nn.Labels = map[string]string{}
	}
	nn.Labels[v1.LabelPool] = pool
	if err := r.Client.Patch(ctx, nn, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("label NodeNetwork %s with pool %s: %w", nn.Name, pool, err)
	}
	return nil
}

// claimMissing claims blocks until the node holds what it needs of every
// family. It reports exhaustion separately from errors: running out is a
// state, not a failure.
func (r *NodeNetworkReconciler) claimMissing(ctx context.Context, nn *v1.NodeNetwork, pool *v1.IPAMPool, params ipampool.Params, held []v1.IPAMBlock) (claimed []v1.IPAMBlock, exhausted bool, err error) {
	for _, family := range params.Families() {
		blocks, usable := 0, 0
		for _, c := range held {
			if prefix, err := netip.ParsePrefix(string(c.Spec.CIDR)); err == nil && ipam.FamilyOf(prefix) == family {
				blocks++
				usable += params.Usable(prefix)
			}
		}
		for !params.Enough(blocks, usable, int(nn.Spec.IPsInUse)) {
			claim, err := r.claimOne(ctx, nn, pool, family)
			if errors.Is(err, ipam.ErrExhausted) {
				ipamAllocationFailures.WithLabelValues(pool.Name, "exhausted").Inc()
				r.Recorder.Eventf(nn, pool, corev1.EventTypeWarning, EventPoolExhausted, "Allocate",
					"IPAMPool %s has no free IPv%d block for node %s", pool.Name, family, nn.Name)
				return claimed, true, nil
			}
			if err != nil {
				return claimed, false, err
			}
			claimed = append(claimed, *claim)
			blocks++
			usable += params.Usable(netip.MustParsePrefix(string(claim.Spec.CIDR)))
			r.Recorder.Eventf(nn, nil, corev1.EventTypeNormal, EventBlockAllocated, "Allocate",
				"Allocated %s from IPAMPool %s", claim.Spec.CIDR, pool.Name)
		}
	}
	return claimed, false, nil
}

// claimOne takes the lowest free block and claims it in the API. A block
// someone else already claimed is recorded and the next one tried.
func (r *NodeNetworkReconciler) claimOne(ctx context.Context, nn *v1.NodeNetwork, pool *v1.IPAMPool, family ipam.Family) (*v1.IPAMBlock, error) {
	for {
		block, err := r.spaces.allocate(pool.Name, family)
		if err != nil {
			return nil, err
		}
		claim := &v1.IPAMBlock{
			ObjectMeta: metav1.ObjectMeta{
				Name:   ipam.BlockName(block),
				Labels: map[string]string{v1.LabelPool: pool.Name, v1.LabelNode: nn.Name},
			},
			Spec: v1.IPAMBlockSpec{Pool: pool.Name, CIDR: v1.CIDR(block.String()), Node: nn.Name},
		}
		// Owned by the pool: deleting a pool (which admission allows only
		// when no node holds its addresses) takes stray claims with it.
		if err := controllerutil.SetOwnerReference(pool, claim, r.Client.Scheme()); err != nil {
			r.spaces.release(pool.Name, block)
			return nil, fmt.Errorf("set owner of IPAMBlock %s: %w", claim.Name, err)
		}
		err = r.Client.Create(ctx, claim)
		switch {
		case err == nil:
			return claim, nil
		case apierrors.IsAlreadyExists(err):
			continue // claimed by someone the allocator hadn't heard of; it stays marked used
		default:
			// The create may or may not have happened; leaving the block
			// marked used is safe either way (the claim event or a rebuild
			// corrects it), releasing it is not.
			return nil, fmt.Errorf("claim %s for node %s: %w", block, nn.Name, err)
		}
	}
}

func (r *NodeNetworkReconciler) deleteClaim(ctx context.Context, claim *v1.IPAMBlock) error {
	if err := r.Client.Delete(ctx, claim); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("release %s of node %s: %w", claim.Spec.CIDR, claim.Spec.Node, err)
	}
	if prefix, err := netip.ParsePrefix(string(claim.Spec.CIDR)); err == nil {
		r.spaces.release(claim.Spec.Pool, prefix)
	}
	return nil
}

// poolFor is the one pool that selects node, among the pools the
// DataplaneConfig names (all pools when it names none). Without exactly
// one, it says why in reason and message.
func (r *NodeNetworkReconciler) poolFor(ctx context.Context, node *corev1.Node) (*v1.IPAMPool, string, string, error) {
	var pools v1.IPAMPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return nil, "", "", fmt.Errorf("list IPAMPools: %w", err)
	}
	named, err := r.namedPools(ctx)
	if err != nil {
		return nil, "", "", err
	}
	var matches []*v1.IPAMPool
	for i := range pools.Items {
		pool := &pools.Items[i]
		if !pool.DeletionTimestamp.IsZero() || (named != nil && !slices.Contains(named, pool.Name)) {
			continue
		}
		if selectsNode(pool, node) {
			matches = append(matches, pool)
		}
	}
	switch len(matches) {
	case 0:
		return nil, v1.ReasonNoPool, "No IPAMPool selects this node; create one whose nodeSelector matches its labels", nil
	case 1:
		return matches[0], "", "", nil
	}
	names := make([]string, 0, len(matches))
	for _, p := range matches {
		names = append(names, p.Name)
	}
	return nil, v1.ReasonPoolConflict, fmt.Sprintf(
		"IPAMPools %s all select this node; make their nodeSelectors exclusive", strings.Join(names, ", ")), nil
}

// namedPools are the pools the DataplaneConfig limits IPAM to, or nil.
func (r *NodeNetworkReconciler) namedPools(ctx context.Context) ([]string, error) {
	dpc := &v1.DataplaneConfig{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: v1.DataplaneConfigName}, dpc); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	if len(dpc.Spec.IPAMPools) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(dpc.Spec.IPAMPools))
	for _, ref := range dpc.Spec.IPAMPools {
		names = append(names, ref.Name)
	}
	return names, nil
}

func selectsNode(pool *v1.IPAMPool, node *corev1.Node) bool {
	if pool.Spec.NodeSelector == nil {
		return true
	}
	selector, err := metav1.LabelSelectorAsSelector(pool.Spec.NodeSelector)
	return err == nil && selector.Matches(labels.Set(node.Labels))
}

func (r *NodeNetworkReconciler) claimsOf(ctx context.Context, node string) ([]v1.IPAMBlock, error) {
	var claims v1.IPAMBlockList
	if err := r.APIReader.List(ctx, &claims, client.MatchingLabels{v1.LabelNode: node}); err != nil {
		return nil, fmt.Errorf("list IPAMBlocks of node %s: %w", node, err)
	}
	return claims.Items, nil
}

func splitByPool(claims []v1.IPAMBlock, pool string) (ours, others []v1.IPAMBlock) {
	for _, c := range claims {
		if c.Spec.Pool == pool {
			ours = append(ours, c)
		} else {
			others = append(others, c)
		}
	}
	return ours, others
}

// releasedBy are the CIDRs the node gives back that it actually holds.
func releasedBy(nn *v1.NodeNetwork, held []v1.IPAMBlock) []v1.CIDR {
	var out []v1.CIDR
	for _, c := range nn.Spec.ReleaseCIDRs {
		if slices.ContainsFunc(held, func(b v1.IPAMBlock) bool { return b.Spec.CIDR == c }) {
			out = append(out, c)
		}
	}
	return out
}

func claimsFor(held []v1.IPAMBlock, cidrs []v1.CIDR) []v1.IPAMBlock {
	var out []v1.IPAMBlock
	for _, c := range held {
		if slices.Contains(cidrs, c.Spec.CIDR) {
			out = append(out, c)
		}
	}
	return out
}

// holdings are the node's CIDRs, sorted, and the addresses in them it must
// not hand out.
func holdings(claims []v1.IPAMBlock, params ipampool.Params) ([]v1.CIDR, []string) {
	prefixes := make([]netip.Prefix, 0, len(claims))
	var excluded []string
	for _, c := range claims {
		prefix, err := netip.ParsePrefix(string(c.Spec.CIDR))
		if err != nil {
			continue
		}
		prefixes = append(prefixes, prefix)
		for _, addr := range ipam.ExcludedAddresses(params.Mode, prefix, params.CIDRs) {
			excluded = append(excluded, addr.String())
		}
	}
	cidrs := sortedCIDRs(prefixes)
	if len(cidrs) == 0 {
		cidrs = nil
	}
	slices.Sort(excluded)
	return cidrs, excluded
}

func setAllocated(nn *v1.NodeNetwork, status metav1.ConditionStatus, reason, message string) {
	meta.SetStatusCondition(&nn.Status.Conditions, metav1.Condition{
		Type: v1.ConditionAllocated, Status: status, Reason: reason, Message: message,
		ObservedGeneration: nn.Generation,
	})
}

func (r *NodeNetworkReconciler) patchNodeNetworkStatus(ctx context.Context, before, after *v1.NodeNetwork) error {
	if equality.Semantic.DeepEqual(before.Status, after.Status) {
		return nil
	}
	// Optimistic concurrency: a status written from a stale read fails
	// with a conflict and the reconcile runs again on fresh data.
	if err := r.Client.Status().Patch(ctx, after, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status of NodeNetwork %s: %w", after.Name, err)
	}
	return nil
}

// nodesOfPool wakes every node when a pool changes: a new range may serve
// nodes that waited, a new selector may move nodes between pools.
func (r *NodeNetworkReconciler) nodesOfPool(ctx context.Context, _ client.Object) []reconcile.Request {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List nodes to requeue after a pool change")
		return nil
	}
	requests := make([]reconcile.Request, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKey{Name: n.Name}})
	}
	return requests
}

// waitingNodesOfBlockPool wakes the nodes that wait on a pool when one of
// its blocks is released.
func (r *NodeNetworkReconciler) waitingNodesOfBlockPool(ctx context.Context, obj client.Object) []reconcile.Request {
	block, ok := obj.(*v1.IPAMBlock)
	if !ok {
		return nil
	}
	var nns v1.NodeNetworkList
	if err := r.Client.List(ctx, &nns); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "List NodeNetworks to requeue after a release")
		return nil
	}
	var requests []reconcile.Request
	for _, nn := range nns.Items {
		c := meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated)
		if nn.Status.Pool == block.Spec.Pool && c != nil && c.Reason == v1.ReasonPoolExhausted {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKey{Name: nn.Name}})
		}
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Block released; waking waiting nodes", "block", klog.KObj(block), "nodes", len(requests))
	return requests
}
