package controllers

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

// nodeObservation is what one reconcile of a node learnt, phase by phase;
// the zero value is a reconcile that learnt nothing.
type nodeObservation struct {
	// pools select the node; poolsListed says the list was read.
	pools       []*v1.IPAMPool
	poolsListed bool
	// params are the pool's settings, nil until read; invalidRanges says
	// why they couldn't be.
	params        *ipampool.Params
	invalidRanges error
	// movingFrom is another pool whose addresses the node's pods still use.
	movingFrom string
	// keep are the claims of the pool the node keeps, new ones included,
	// and release those it gives back; holdingsRead says both are known.
	keep, release []v1.IPAMBlock
	holdingsRead  bool
	// exhausted: the pool had no block for the node. satisfied: the node
	// holds what it needs.
	exhausted, satisfied bool
}

// pool is the one pool that selects the node, or nil.
func (o *nodeObservation) pool() *v1.IPAMPool {
	if len(o.pools) != 1 {
		return nil
	}
	return o.pools[0]
}

func (o *nodeObservation) poolName() string {
	if p := o.pool(); p != nil {
		return p.Name
	}
	return ""
}

// setNodeNetworkStatus writes what one reconcile observed into nn's
// status. What it didn't observe stays as it was: a node whose pods still
// use addresses of its old pool keeps that pool's blocks in status.
func setNodeNetworkStatus(nn *v1.NodeNetwork, obs *nodeObservation) {
	if obs.holdingsRead {
		params := obs.params
		st := &nn.Status
		st.Pool = obs.pool().Name
		st.Mode = obs.pool().Spec.Mode
		st.MaxPods = int32(params.MaxPods)
		st.MinFreeIPs, st.MaxFreeIPs = watermarks(*params)
		st.CIDRs, st.ExcludeIPs = holdings(obs.keep, *params)
	}
	if c, ok := allocatedCondition(nn, obs); ok {
		c.ObservedGeneration = nn.Generation
		meta.SetStatusCondition(&nn.Status.Conditions, c)
	}
}

// allocatedCondition says whether the node holds the addresses it needs,
// and if not, why. A reconcile that failed before it learnt either leaves
// the condition as it was (ok is false): the error is retried and logged,
// and a transient API error doesn't make a node look unallocated.
func allocatedCondition(nn *v1.NodeNetwork, obs *nodeObservation) (c metav1.Condition, ok bool) {
	c = metav1.Condition{Type: v1.ConditionAllocated, Status: metav1.ConditionFalse}
	switch {
	case obs.poolsListed && len(obs.pools) == 0:
		c.Reason = v1.ReasonNoPool
		c.Message = "No IPAMPool selects this node; create one whose nodeSelector matches its labels"
	case len(obs.pools) > 1:
		names := make([]string, 0, len(obs.pools))
		for _, p := range obs.pools {
			names = append(names, p.Name)
		}
		c.Reason = v1.ReasonPoolConflict
		c.Message = fmt.Sprintf("IPAMPools %s all select this node; make their nodeSelectors exclusive", strings.Join(names, ", "))
	case obs.invalidRanges != nil:
		c.Reason, c.Message = v1.ReasonInvalidRanges, obs.invalidRanges.Error()
	case obs.movingFrom != "":
		c.Reason = v1.ReasonPoolChanged
		c.Message = fmt.Sprintf(
			"Node now matches IPAMPool %s but its pods still use %d addresses of IPAMPool %s; drain the node to move it",
			obs.poolName(), nn.Spec.IPsInUse, obs.movingFrom)
	case obs.exhausted:
		c.Reason = v1.ReasonPoolExhausted
		c.Message = fmt.Sprintf(
			"IPAMPool %s has no free block for this node; add a range to the pool or free addresses elsewhere", obs.poolName())
	case obs.satisfied:
		c.Status, c.Reason = metav1.ConditionTrue, v1.ReasonAllocated
		c.Message = fmt.Sprintf("Node holds %d block(s) of IPAMPool %s", len(obs.keep), obs.poolName())
	default:
		return metav1.Condition{}, false
	}
	return c, true
}

// waitsOnExhaustedPool reports whether nn's last allocation from pool found
// it exhausted.
func waitsOnExhaustedPool(nn *v1.NodeNetwork, pool string) bool {
	c := meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated)
	return nn.Status.Pool == pool && c != nil && c.Reason == v1.ReasonPoolExhausted
}

// watermarks are a Subnet pool's release thresholds in effect, published
// so the node side needn't resolve the pool's defaults itself; an Overlay
// pool has none.
func watermarks(params ipampool.Params) (minFree, maxFree *int32) {
	if params.Mode != ipam.Subnet {
		return nil, nil
	}
	lo, hi := int32(params.MinFree), int32(params.MaxFree)
	return &lo, &hi
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
