package controllers

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

func mustParams(t *testing.T, pool *v1.IPAMPool) *ipampool.Params {
	t.Helper()
	params, err := ipampool.FromSpec(&pool.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return &params
}

func claim(pool, node string, cidr v1.CIDR) v1.IPAMBlock {
	return v1.IPAMBlock{Spec: v1.IPAMBlockSpec{Pool: pool, Node: node, CIDR: cidr}}
}

func TestAllocatedCondition(t *testing.T) {
	overlay := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "blue"},
		Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.1.0.0/16"}}}
	other := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "green"},
		Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.2.0.0/16"}}}
	params := mustParams(t, overlay)
	held := []v1.IPAMBlock{claim("blue", "n1", "10.1.3.0/24")}

	tests := []struct {
		name string
		obs  nodeObservation
		// wantOK false: the condition is left as it was.
		wantOK     bool
		wantStatus metav1.ConditionStatus
		wantReason string
		// wantInMessage are words the user needs to act on.
		wantInMessage []string
	}{
		{
			name:   "nothing learnt: the pools couldn't be listed",
			obs:    nodeObservation{},
			wantOK: false,
		},
		{
			name:   "claiming failed on an API error",
			obs:    nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true, params: params, keep: held, holdingsRead: true},
			wantOK: false,
		},
		{
			name:   "no pool selects the node",
			obs:    nodeObservation{poolsListed: true},
			wantOK: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonNoPool,
			wantInMessage: []string{"nodeSelector"},
		},
		{
			name:   "two pools select the node",
			obs:    nodeObservation{pools: []*v1.IPAMPool{overlay, other}, poolsListed: true},
			wantOK: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolConflict,
			wantInMessage: []string{"blue, green", "exclusive"},
		},
		{
			name: "the pool's ranges can't be carved",
			obs: nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true,
				invalidRanges: errors.New("cidrs 10.1.0.0/16 and 10.1.0.0/20 overlap")},
			wantOK: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonInvalidRanges,
			wantInMessage: []string{"overlap"},
		},
		{
			name:   "pods still use the old pool's addresses",
			obs:    nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true, params: params, movingFrom: "green"},
			wantOK: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolChanged,
			wantInMessage: []string{"blue", "green", "7 addresses", "drain"},
		},
		{
			name: "the pool has no free block",
			obs: nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true, params: params,
				holdingsRead: true, exhausted: true},
			wantOK: true, wantStatus: metav1.ConditionFalse, wantReason: v1.ReasonPoolExhausted,
			wantInMessage: []string{"blue", "add a range"},
		},
		{
			name: "the node holds what it needs",
			obs: nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true, params: params,
				keep: held, holdingsRead: true, satisfied: true},
			wantOK: true, wantStatus: metav1.ConditionTrue, wantReason: v1.ReasonAllocated,
			wantInMessage: []string{"1 block(s)", "blue"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "n1", Generation: 3},
				Spec: v1.NodeNetworkSpec{IPsInUse: 7}}
			got, ok := allocatedCondition(nn, &tt.obs)
			if ok != tt.wantOK {
				t.Fatalf("ok = %v, want %v (condition %+v)", ok, tt.wantOK, got)
			}
			if !ok {
				return
			}
			if got.Type != v1.ConditionAllocated || got.Status != tt.wantStatus || got.Reason != tt.wantReason {
				t.Errorf("condition = %s/%s/%s, want %s/%s/%s",
					got.Type, got.Status, got.Reason, v1.ConditionAllocated, tt.wantStatus, tt.wantReason)
			}
			for _, word := range tt.wantInMessage {
				if !strings.Contains(got.Message, word) {
					t.Errorf("message %q lacks %q", got.Message, word)
				}
			}
		})
	}
}

func TestSetNodeNetworkStatus(t *testing.T) {
	subnet := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.9.0.0/24"},
			BatchSize: ptr.To[int32](8), MaxFreeIPs: ptr.To[int32](20)}}
	overlay := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "blocks"},
		Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.1.0.0/16"}}}
	was := v1.NodeNetworkStatus{Pool: "old", Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.7.0.0/24"}, MaxPods: 110}

	t.Run("a subnet node gets its batches, their reserved addresses and the watermarks in force", func(t *testing.T) {
		nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Status: *was.DeepCopy()}
		setNodeNetworkStatus(nn, &nodeObservation{pools: []*v1.IPAMPool{subnet}, poolsListed: true,
			params: mustParams(t, subnet), holdingsRead: true, satisfied: true,
			keep: []v1.IPAMBlock{claim("pods", "n", "10.9.0.8/29"), claim("pods", "n", "10.9.0.0/29")}})
		st := nn.Status
		if st.Pool != "pods" || st.Mode != v1.IPAMModeSubnet || st.MaxPods != v1.DefaultMaxPodsPerNode {
			t.Errorf("pool, mode, maxPods = %s, %s, %d", st.Pool, st.Mode, st.MaxPods)
		}
		if want := []v1.CIDR{"10.9.0.0/29", "10.9.0.8/29"}; !slices.Equal(st.CIDRs, want) {
			t.Errorf("cidrs = %v, want %v (sorted)", st.CIDRs, want)
		}
		if want := []string{"10.9.0.0", "10.9.0.1", "10.9.0.2", "10.9.0.3"}; !slices.Equal(st.ExcludeIPs, want) {
			t.Errorf("excludeIPs = %v, want the subnet's reserved addresses %v", st.ExcludeIPs, want)
		}
		// minFreeIPs defaults to half a batch; maxFreeIPs is set.
		if st.MinFreeIPs == nil || *st.MinFreeIPs != 4 || st.MaxFreeIPs == nil || *st.MaxFreeIPs != 20 {
			t.Errorf("watermarks = %v, %v, want 4, 20", ptr.Deref(st.MinFreeIPs, -1), ptr.Deref(st.MaxFreeIPs, -1))
		}
		c := meta.FindStatusCondition(st.Conditions, v1.ConditionAllocated)
		if c == nil || c.ObservedGeneration != 2 {
			t.Errorf("Allocated condition = %+v, want one at generation 2", c)
		}
	})

	t.Run("an overlay node has no watermarks", func(t *testing.T) {
		nn := &v1.NodeNetwork{Status: v1.NodeNetworkStatus{MinFreeIPs: ptr.To[int32](1), MaxFreeIPs: ptr.To[int32](9)}}
		setNodeNetworkStatus(nn, &nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true,
			params: mustParams(t, overlay), holdingsRead: true, satisfied: true,
			keep: []v1.IPAMBlock{claim("blocks", "n", "10.1.4.0/24")}})
		if nn.Status.MinFreeIPs != nil || nn.Status.MaxFreeIPs != nil {
			t.Errorf("watermarks = %v, %v, want none", nn.Status.MinFreeIPs, nn.Status.MaxFreeIPs)
		}
		if want := []string{"10.1.4.0", "10.1.4.255"}; !slices.Equal(nn.Status.ExcludeIPs, want) {
			t.Errorf("excludeIPs = %v, want %v", nn.Status.ExcludeIPs, want)
		}
	})

	t.Run("holdings stay as they were when the reconcile didn't read them", func(t *testing.T) {
		nn := &v1.NodeNetwork{Status: *was.DeepCopy()}
		setNodeNetworkStatus(nn, &nodeObservation{pools: []*v1.IPAMPool{subnet}, poolsListed: true,
			params: mustParams(t, subnet), movingFrom: "old"})
		st := nn.Status
		if st.Pool != "old" || !slices.Equal(st.CIDRs, was.CIDRs) || st.MaxPods != 110 {
			t.Errorf("status = %+v, want the old pool's holdings kept", st)
		}
		if !meta.IsStatusConditionFalse(st.Conditions, v1.ConditionAllocated) {
			t.Errorf("conditions = %+v, want Allocated False", st.Conditions)
		}
	})

	t.Run("a settled node gets an identical status", func(t *testing.T) {
		obs := &nodeObservation{pools: []*v1.IPAMPool{overlay}, poolsListed: true,
			params: mustParams(t, overlay), holdingsRead: true, satisfied: true,
			keep: []v1.IPAMBlock{claim("blocks", "n", "10.1.4.0/24")}}
		nn := &v1.NodeNetwork{}
		setNodeNetworkStatus(nn, obs)
		first := nn.Status.DeepCopy()
		setNodeNetworkStatus(nn, obs)
		if !equality.Semantic.DeepEqual(first, &nn.Status) {
			t.Errorf("second pass changed status:\n%+v\n%+v", first, nn.Status)
		}
	})
}
