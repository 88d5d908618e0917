package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
)

// Event reasons of NodeNetwork.
const (
	// EventBlockAllocated: the node was given a block (Overlay) or a batch
	// (Subnet) of its pool.
	EventBlockAllocated = "BlockAllocated"
	// EventBlockReleased: a block the node gave back, or held of a pool it
	// left, went back to its pool.
	EventBlockReleased = "BlockReleased"
	// EventPoolExhausted: the node needs a block its pool doesn't have; it
	// waits until a block is released or a range is added.
	EventPoolExhausted = "PoolExhausted"
	// EventStillInUse: the NodeNetwork was deleted while its node's pods
	// still use its addresses, so they are kept.
	EventStillInUse = "AddressesStillInUse"
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

// nodeScope is one reconcile of one node: the objects it works on and what
// it learnt, for the status.
type nodeScope struct {
	node *corev1.Node
	nn   *v1.NodeNetwork
	// before is nn as last read from or written to the API, for the status
	// patch.
	before *v1.NodeNetwork
	obs    nodeObservation
}

// Reconcile allocates for, or releases the addresses of, one node.
func (r *NodeNetworkReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
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
		// Created with its finalizer; the create event brings it back here.
		return ctrl.Result{}, r.createNodeNetwork(ctx, node)
	}
	if nodeGone || !nn.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, nn, nodeGone)
	}
	if controllerutil.AddFinalizer(nn, v1.FinalizerReleaseAddresses) {
		if err := r.Client.Update(ctx, nn); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer to NodeNetwork %s: %w", nn.Name, err)
		}
		return ctrl.Result{}, nil
	}

	s := &nodeScope{node: node, nn: nn, before: nn.DeepCopy()}
	defer func() {
		setNodeNetworkStatus(s.nn, &s.obs)
		if reterr == nil {
			s.nn.Status.ObservedGeneration = s.nn.Generation
		}
		if err := r.patchStatus(ctx, s); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()
	return r.reconcileNormal(ctx, s)
}

// createNodeNetwork makes the node's NodeNetwork, owned by the node (so the
// garbage collector follows it) and holding the release finalizer.
func (r *NodeNetworkReconciler) createNodeNetwork(ctx context.Context, node *corev1.Node) error {
	nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{
		Name:            node.Name,
		Finalizers:      []string{v1.FinalizerReleaseAddresses},
		OwnerReferences: []metav1.OwnerReference{v1.NodeOwnerReference(node.Name, node.UID)},
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
		return nil // the delete event brings it back here, now with a deletion timestamp
	}
	claims, err := r.claimsOf(ctx, nn.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, claim := range claims {
		errs = append(errs, r.deleteClaim(ctx, &claim))
	}
	// The finalizer stays until every claim is gone: it is what brings the
	// release back here after a failure.
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if controllerutil.RemoveFinalizer(nn, v1.FinalizerReleaseAddresses) {
		if err := r.Client.Update(ctx, nn); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("remove finalizer of NodeNetwork %s: %w", nn.Name, err)
		}
	}
	ctrl.LoggerFrom(ctx).Info("Released the addresses of a removed node", "node", nn.Name, "blocks", len(claims))
	return nil
}

// reconcileNormal brings the node's holdings to what it needs. Every phase
// runs and their errors are joined; a phase that lacks what an earlier one
// should have found does nothing, so the status says how far it got.
func (r *NodeNetworkReconciler) reconcileNormal(ctx context.Context, s *nodeScope) (ctrl.Result, error) {
	phases := []func(context.Context, *nodeScope) error{
		r.selectPool,    // the one pool that selects the node
		r.labelWithPool, // for kubectl get nodenetworks -l sluice.dev/pool=NAME
		r.readHoldings,  // what the node holds, keeps and gives back
		r.claimMissing,  // claim blocks until the node has enough
		r.releaseClaims, // drop given-back blocks from status, then their claims
	}
	errs := make([]error, 0, len(phases))
	for _, phase := range phases {
		errs = append(errs, phase(ctx, s))
	}
	if err := errors.Join(errs...); err != nil {
		return ctrl.Result{}, err
	}
	if s.obs.exhausted {
		return ctrl.Result{RequeueAfter: exhaustedRetry}, nil
	}
	return ctrl.Result{}, nil
}

// selectPool finds the pools that select the node, among the pools the
// DataplaneConfig names (all pools when it names none).
func (r *NodeNetworkReconciler) selectPool(ctx context.Context, s *nodeScope) error {
	pools, err := r.poolsSelecting(ctx, s.node)
	if err != nil {
		return err
	}
	s.obs.pools, s.obs.poolsListed = pools, true
	return nil
}

// labelWithPool labels the NodeNetwork with its pool, so that
// `kubectl get nodenetworks -l sluice.dev/pool=NAME` lists a pool's nodes.
func (r *NodeNetworkReconciler) labelWithPool(ctx context.Context, s *nodeScope) error {
	nn, pool := s.nn, s.obs.poolName()
	if pool == "" || nn.Labels[v1.LabelPool] == pool {
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

// readHoldings reads the pool's settings and the node's claims, and sorts
// the claims into those the node keeps and those it gives back: blocks it
// released, and blocks of a pool it no longer draws from. A node whose
// pods still use addresses of its old pool stays where it is.
func (r *NodeNetworkReconciler) readHoldings(ctx context.Context, s *nodeScope) error {
	pool := s.obs.pool()
	if pool == nil {
		return nil
	}
	params, err := r.spaces.get(ctx, r.Client, pool)
	if err != nil {
		s.obs.invalidRanges = err
		return err
	}
	s.obs.params = &params

	// Claims are read uncached: a claim this operator made a moment ago
	// may not be in the cache yet, and missing it would claim a second
	// block for the node.
	claims, err := r.claimsOf(ctx, s.nn.Name)
	if err != nil {
		return err
	}
	held, fromOtherPool := splitByPool(claims, pool.Name)
	if len(fromOtherPool) > 0 && s.nn.Spec.IPsInUse > 0 {
		s.obs.movingFrom = fromOtherPool[0].Spec.Pool
		return nil
	}
	released := releasedBy(s.nn, held)
	s.obs.keep = slices.DeleteFunc(slices.Clone(held), func(c v1.IPAMBlock) bool { return slices.Contains(released, c.Spec.CIDR) })
	s.obs.release = append(fromOtherPool, claimsFor(held, released)...)
	s.obs.holdingsRead = true
	return nil
}

// claimMissing claims blocks until the node holds what it needs of every
// family. Exhaustion is recorded, not returned: running out is a state,
// not a failure.
func (r *NodeNetworkReconciler) claimMissing(ctx context.Context, s *nodeScope) error {
	if !s.obs.holdingsRead {
		return nil
	}
	nn, pool, params := s.nn, s.obs.pool(), *s.obs.params
	for _, family := range params.Families() {
		blocks, usable := 0, 0
		for _, c := range s.obs.keep {
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
				s.obs.exhausted = true
				return nil
			}
			if err != nil {
				return err
			}
			s.obs.keep = append(s.obs.keep, *claim)
			blocks++
			usable += params.Usable(netip.MustParsePrefix(string(claim.Spec.CIDR)))
			r.Recorder.Eventf(nn, nil, corev1.EventTypeNormal, EventBlockAllocated, "Allocate",
				"Allocated %s from IPAMPool %s", claim.Spec.CIDR, pool.Name)
		}
	}
	s.obs.satisfied = true
	return nil
}

// releaseClaims gives back the blocks readHoldings set aside. Status must
// stop listing a block before its claim goes: once the claim is gone the
// block may go to another node, and the node's side only stops using what
// status no longer lists. So this phase writes status itself, locked to
// the version this reconcile read, and deletes claims only once that write
// succeeded; the deferred patch then writes nothing or only what changed
// after (observedGeneration).
func (r *NodeNetworkReconciler) releaseClaims(ctx context.Context, s *nodeScope) error {
	if len(s.obs.release) == 0 {
		return nil
	}
	setNodeNetworkStatus(s.nn, &s.obs)
	if err := r.patchStatus(ctx, s); err != nil {
		return err // claims made above are recovered into status on the next pass
	}
	var errs []error
	for _, claim := range s.obs.release {
		if err := r.deleteClaim(ctx, &claim); err != nil {
			errs = append(errs, err)
			continue
		}
		r.Recorder.Eventf(s.nn, nil, corev1.EventTypeNormal, EventBlockReleased, "Release",
			"Released %s back to IPAMPool %s", claim.Spec.CIDR, claim.Spec.Pool)
	}
	return errors.Join(errs...)
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

// poolsSelecting are the pools that select node, among the pools the
// DataplaneConfig names (all pools when it names none). A pool being
// deleted selects nothing.
func (r *NodeNetworkReconciler) poolsSelecting(ctx context.Context, node *corev1.Node) ([]*v1.IPAMPool, error) {
	var pools v1.IPAMPoolList
	if err := r.Client.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("list IPAMPools: %w", err)
	}
	named, err := r.namedPools(ctx)
	if err != nil {
		return nil, err
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
	return matches, nil
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

// patchStatus writes the status when it changed. Optimistic concurrency:
// a status computed from a stale read fails with a conflict and the
// reconcile runs again on fresh data. The lock is the resourceVersion this
// reconcile last read or wrote (the pool label moves it on), and a
// successful write becomes the base of the next.
func (r *NodeNetworkReconciler) patchStatus(ctx context.Context, s *nodeScope) error {
	if equality.Semantic.DeepEqual(s.before.Status, s.nn.Status) {
		return nil
	}
	base := s.before.DeepCopy()
	base.ResourceVersion = s.nn.ResourceVersion
	if err := r.Client.Status().Patch(ctx, s.nn, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("patch status of NodeNetwork %s: %w", s.nn.Name, err)
	}
	s.before = s.nn.DeepCopy()
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
		if waitsOnExhaustedPool(&nn, block.Spec.Pool) {
			requests = append(requests, reconcile.Request{NamespacedName: client.ObjectKey{Name: nn.Name}})
		}
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Block released; waking waiting nodes", "block", klog.KObj(block), "nodes", len(requests))
	return requests
}
