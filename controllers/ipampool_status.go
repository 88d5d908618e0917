package controllers

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

// setPoolStatus computes the pool's status from its claims and the nodes
// that wait for it. Pure: TestSetPoolStatus covers every reason.
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
