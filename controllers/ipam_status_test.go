package controllers

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// poolWith is a pool whose status carries the given conditions.
func poolWith(name string, conds ...metav1.Condition) v1.IPAMPool {
	return v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.IPAMPoolStatus{Conditions: conds}}
}

func cond(condType string, status metav1.ConditionStatus, message string) metav1.Condition {
	return metav1.Condition{Type: condType, Status: status, Reason: "Any", Message: message}
}

func TestIPAMCondition(t *testing.T) {
	healthy := poolWith("blue", cond(v1.ConditionReady, metav1.ConditionTrue, ""), cond(v1.ConditionExhausted, metav1.ConditionFalse, ""))
	other := poolWith("green", cond(v1.ConditionReady, metav1.ConditionTrue, ""))
	exhausted := poolWith("full", cond(v1.ConditionReady, metav1.ConditionTrue, ""),
		cond(v1.ConditionExhausted, metav1.ConditionTrue, "2 node(s) wait for addresses"))
	broken := poolWith("broken", cond(v1.ConditionReady, metav1.ConditionFalse, "cidrs overlap"))
	azure := &v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginAzure}

	tests := []struct {
		name          string
		eff           *v1.EffectiveConfig
		pools         []v1.IPAMPool
		wantStatus    metav1.ConditionStatus
		wantReason    string
		wantInMessage []string
	}{
		{
			name: "networkPlugin none: the CNI brought along manages addresses",
			eff:  &v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginNone}, pools: []v1.IPAMPool{broken},
			wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonExternalIPAM,
		},
		{
			name:       "a named pool doesn't exist",
			eff:        &v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginAzure, IPAMPools: []string{"blue", "missing"}},
			pools:      []v1.IPAMPool{healthy},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolMissing, wantInMessage: []string{"missing", "spec.ipamPools"},
		},
		{
			name: "no pool exists", eff: azure,
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonNoPools, wantInMessage: []string{"create an IPAMPool"},
		},
		{
			name: "a pool in use is exhausted", eff: azure, pools: []v1.IPAMPool{healthy, exhausted},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolExhausted, wantInMessage: []string{"full", "2 node(s) wait"},
		},
		{
			name: "a pool in use is not ready", eff: azure, pools: []v1.IPAMPool{broken, healthy},
			wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolNotReady, wantInMessage: []string{"broken", "cidrs overlap"},
		},
		{
			name:       "a broken pool the configuration doesn't name doesn't count",
			eff:        &v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginAzure, IPAMPools: []string{"blue"}},
			pools:      []v1.IPAMPool{broken, healthy},
			wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonPoolsReady, wantInMessage: []string{"blue"},
		},
		{
			name: "every pool is ready", eff: azure, pools: []v1.IPAMPool{healthy, other},
			wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonPoolsReady, wantInMessage: []string{"blue, green"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ipamCondition(tt.eff, tt.pools)
			if got.Type != v1.ConditionIPAMReady || got.Status != tt.wantStatus || got.Reason != tt.wantReason {
				t.Errorf("condition = %s/%s/%s (%s), want %s/%s/%s", got.Type, got.Status, got.Reason, got.Message,
					v1.ConditionIPAMReady, tt.wantStatus, tt.wantReason)
			}
			for _, word := range tt.wantInMessage {
				if !strings.Contains(got.Message, word) {
					t.Errorf("message %q lacks %q", got.Message, word)
				}
			}
		})
	}
}

func TestSetPoolStatus(t *testing.T) {
	type want struct {
		status metav1.ConditionStatus
		reason string
	}
	tests := []struct {
		name                       string
		spec                       v1.IPAMPoolSpec
		blocks                     []v1.IPAMBlock
		waiting                    []string
		ready, degraded, exhausted want
		capacity, allocated, nodes int64
		wantExhaustedCondition     bool
	}{
		{
			name:  "ranges that can't be carved",
			spec:  v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16", "10.0.1.0/24"}},
			ready: want{metav1.ConditionFalse, v1.ReasonInvalidRanges}, degraded: want{metav1.ConditionTrue, v1.ReasonInvalidRanges},
		},
		{
			name:   "blocks held, no node waits",
			spec:   v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/22", "fd00::/64"}},
			blocks: []v1.IPAMBlock{claim("p", "b", "10.0.1.0/24"), claim("p", "a", "10.0.0.0/24"), claim("p", "a", "fd00::/120")},
			ready:  want{metav1.ConditionTrue, v1.ReasonPoolReady}, degraded: want{metav1.ConditionFalse, v1.ReasonAsExpected},
			exhausted: want{metav1.ConditionFalse, v1.ReasonSpaceAvailable}, wantExhaustedCondition: true,
			capacity: 1024, allocated: 512, nodes: 2,
		},
		{
			name:    "nodes wait for addresses",
			spec:    v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.0.0.0/28"}},
			blocks:  []v1.IPAMBlock{claim("p", "a", "10.0.0.0/28")},
			waiting: []string{"b", "c"},
			ready:   want{metav1.ConditionTrue, v1.ReasonPoolReady}, degraded: want{metav1.ConditionFalse, v1.ReasonAsExpected},
			exhausted: want{metav1.ConditionTrue, v1.ReasonNodesWaiting}, wantExhaustedCondition: true,
			capacity: 16, allocated: 16, nodes: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 4}, Spec: tt.spec}
			setPoolStatus(pool, tt.blocks, tt.waiting)
			st := pool.Status
			if st.ObservedGeneration != 4 {
				t.Errorf("observedGeneration = %d, want 4", st.ObservedGeneration)
			}
			for condType, w := range map[string]want{v1.ConditionReady: tt.ready, v1.ConditionDegraded: tt.degraded} {
				c := meta.FindStatusCondition(st.Conditions, condType)
				if c == nil || c.Status != w.status || c.Reason != w.reason || c.ObservedGeneration != 4 {
					t.Errorf("%s = %+v, want %s/%s at generation 4", condType, c, w.status, w.reason)
				}
			}
			c := meta.FindStatusCondition(st.Conditions, v1.ConditionExhausted)
			switch {
			case !tt.wantExhaustedCondition && c != nil:
				t.Errorf("Exhausted = %+v, want none for a pool that can't be carved", c)
			case tt.wantExhaustedCondition && (c == nil || c.Status != tt.exhausted.status || c.Reason != tt.exhausted.reason):
				t.Errorf("Exhausted = %+v, want %s/%s", c, tt.exhausted.status, tt.exhausted.reason)
			case c != nil && len(tt.waiting) > 0 && !strings.Contains(c.Message, strings.Join(tt.waiting, ", ")):
				t.Errorf("Exhausted message %q doesn't name the waiting nodes %v", c.Message, tt.waiting)
			}
			if st.Capacity != tt.capacity || st.Allocated != tt.allocated || st.Free != tt.capacity-tt.allocated ||
				int64(st.AllocatedNodes) != tt.nodes {
				t.Errorf("capacity, allocated, free, nodes = %d, %d, %d, %d; want %d, %d, %d, %d",
					st.Capacity, st.Allocated, st.Free, st.AllocatedNodes, tt.capacity, tt.allocated, tt.capacity-tt.allocated, tt.nodes)
			}
			if len(st.Nodes) != int(tt.nodes) || (len(st.Nodes) == 2 && st.Nodes[0] != "a") {
				t.Errorf("nodes = %v, want %d sorted names", st.Nodes, tt.nodes)
			}
		})
	}
}

func TestSetPoolStatusBoundsNodeLists(t *testing.T) {
	pool := &v1.IPAMPool{Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.0.0.0/16"}, BatchSize: ptr.To[int32](1)}}
	var blocks []v1.IPAMBlock
	var waiting []string
	for i := range listedNodesMax + 5 {
		name := fmt.Sprintf("node-%03d", i)
		blocks = append(blocks, claim("p", name, v1.CIDR(fmt.Sprintf("10.0.%d.%d/32", i/256, i%256))))
		waiting = append(waiting, "w"+name)
	}
	setPoolStatus(pool, blocks, waiting)
	st := pool.Status
	if int(st.AllocatedNodes) != listedNodesMax+5 || len(st.Nodes) != listedNodesMax || len(st.WaitingNodes) != listedNodesMax {
		t.Errorf("allocatedNodes %d, listed %d, waiting listed %d; want %d, %d, %d",
			st.AllocatedNodes, len(st.Nodes), len(st.WaitingNodes), listedNodesMax+5, listedNodesMax, listedNodesMax)
	}
}
