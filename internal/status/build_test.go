package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

var (
	now      = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	agentKey = client.ObjectKey{Namespace: DefaultAgentNamespace, Name: DefaultAgentName}
)

func cond(t, status, reason, message string) metav1.Condition {
	return metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason, Message: message,
		LastTransitionTime: metav1.NewTime(now.Add(-time.Hour))}
}

func healthyConfig() *v1.DataplaneConfig {
	return &v1.DataplaneConfig{
		ObjectMeta: metav1.ObjectMeta{Name: v1.DataplaneConfigName, Generation: 2},
		Status: v1.DataplaneConfigStatus{
			ObservedGeneration: 2,
			Conditions: []metav1.Condition{
				cond(v1.ConditionReady, "True", v1.ReasonAgentAvailable, "every node runs a ready agent"),
				cond(v1.ConditionProgressing, "False", v1.ReasonAsExpected, ""),
				cond(v1.ConditionDegraded, "False", v1.ReasonAsExpected, ""),
				cond(v1.ConditionIPAMReady, "True", v1.ReasonPoolsReady, "IPAMPools in use: a"),
			},
			Effective: &v1.EffectiveConfig{
				NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneCilium,
				NetworkPolicy: v1.NetworkPolicyCilium, KubeProxyReplacement: true,
				Routing: &v1.EffectiveRouting{Mode: v1.RoutingModeNative, UnderlayMTU: 1500, PodMTU: 1500},
				Agent:   v1.EffectiveAgentSettings{Image: "sluice/agent:dev"},
			},
			Agent: &v1.AgentRolloutStatus{DesiredNodes: 2, UpdatedNodes: 2, AvailableNodes: 2},
		},
	}
}

func daemonSet(desired, updated, ready int32) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{Status: appsv1.DaemonSetStatus{
		DesiredNumberScheduled: desired, UpdatedNumberScheduled: updated, NumberReady: ready,
	}}
}

func readyNode(name string) v1.DataplaneNode {
	return v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.DataplaneNodeStatus{
		Ready: true, Endpoints: 3, AgentVersion: "v1",
		Conditions: []metav1.Condition{cond(v1.ConditionReady, "True", v1.ReasonDatapathLoaded, "")},
	}}
}

// withRouting gives node n native routing with routes and problems, and its
// RoutesReady condition.
func withRouting(n *v1.DataplaneNode, routes int32, ready metav1.Condition, problems ...v1.RouteProblem) {
	n.Status.Routing = &v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: routes, Problems: problems}
	n.Status.Conditions = append(n.Status.Conditions, ready)
}

var conflict = v1.RouteProblem{Destination: "10.0.3.0/24", Node: "n3", Reason: v1.ReasonRouteConflict,
	Message: "route to 10.0.3.0/24 via 192.168.0.3 (node n3): a route the agent doesn't own is there (10.0.3.0/24 via 192.168.0.99 dev eth0 proto static); not replaced"}

func readyPool(name string) v1.IPAMPool {
	return v1.IPAMPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay},
		Status: v1.IPAMPoolStatus{Capacity: 512, Allocated: 256, Free: 256, AllocatedNodes: 1, Conditions: []metav1.Condition{
			cond(v1.ConditionReady, "True", v1.ReasonPoolReady, ""),
			cond(v1.ConditionExhausted, "False", v1.ReasonSpaceAvailable, ""),
			cond(v1.ConditionDegraded, "False", v1.ReasonAsExpected, ""),
		}},
	}
}

func allocated(name string) v1.NodeNetwork {
	return v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: v1.NodeNetworkStatus{
		Pool: "a", Conditions: []metav1.Condition{cond(v1.ConditionAllocated, "True", v1.ReasonAllocated, "")},
	}}
}

// healthy is a cluster with nothing wrong; each case breaks one thing.
func healthy() *Observed {
	return &Observed{
		Config:         healthyConfig(),
		AgentDaemonSet: agentKey,
		DaemonSet:      daemonSet(2, 2, 2),
		Nodes:          []v1.DataplaneNode{readyNode("n2"), readyNode("n1")},
		Pools:          []v1.IPAMPool{readyPool("a")},
		NodeNetworks:   []v1.NodeNetwork{allocated("n1"), allocated("n2")},
	}
}

func setCondition(conds []metav1.Condition, c metav1.Condition) {
	for i := range conds {
		if conds[i].Type == c.Type {
			conds[i] = c
		}
	}
}

func TestBuildProblems(t *testing.T) {
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "daemonsets"}, DefaultAgentName, errors.New("no RBAC"))
	tests := []struct {
		name   string
		breaks func(*Observed)
		want   []Problem // only Object and Reason are compared
	}{
		{"healthy", func(*Observed) {}, nil},
		{"no DataplaneConfig: nothing to say about its DaemonSet", func(o *Observed) { o.Config, o.DaemonSet = nil, nil },
			[]Problem{{Object: "DataplaneConfig default", Reason: ReasonNotFound}}},
		{"operator behind the spec", func(o *Observed) { o.Config.Generation = 3 },
			[]Problem{{Object: "DataplaneConfig default", Reason: ReasonNotReconciled}}},
		{"no Ready condition yet", func(o *Observed) { o.Config.Status.Conditions = nil },
			[]Problem{{Object: "DataplaneConfig default", Reason: ReasonNoStatus}}},
		{"Ready False and Degraded True for one cause: one problem", func(o *Observed) {
			setCondition(o.Config.Status.Conditions, cond(v1.ConditionReady, "False", v1.ReasonAgentUnavailable, "1 of 2"))
			setCondition(o.Config.Status.Conditions, cond(v1.ConditionDegraded, "True", v1.ReasonAgentUnavailable, "1 of 2"))
			o.DaemonSet = daemonSet(2, 2, 1)
		}, []Problem{{Object: "DataplaneConfig default", Reason: v1.ReasonAgentUnavailable}}},
		{"rollout in progress", func(o *Observed) {
			setCondition(o.Config.Status.Conditions, cond(v1.ConditionReady, "False", v1.ReasonAgentRollingOut, "1 of 2 updated"))
			setCondition(o.Config.Status.Conditions, cond(v1.ConditionProgressing, "True", v1.ReasonAgentRollingOut, "1 of 2 updated"))
		}, []Problem{{Object: "DataplaneConfig default", Reason: v1.ReasonAgentRollingOut}}},
		{"IPAM not ready", func(o *Observed) {
			setCondition(o.Config.Status.Conditions, cond(v1.ConditionIPAMReady, "False", v1.ReasonNoPools, "No IPAMPool exists"))
		}, []Problem{{Object: "DataplaneConfig default", Reason: v1.ReasonNoPools}}},
		{"agent DaemonSet missing", func(o *Observed) { o.DaemonSet = nil },
			[]Problem{{Object: "DaemonSet sluice-system/sluice-agent", Reason: ReasonNotFound}}},
		{"agent DaemonSet unreadable: the read error, not NotFound", func(o *Observed) {
			o.DaemonSet = nil
			o.ReadErrors = []ReadError{{What: "DaemonSet sluice-system/sluice-agent", Err: forbidden}}
		}, []Problem{{Object: "DaemonSet sluice-system/sluice-agent", Reason: string(metav1.StatusReasonForbidden)}}},
		{"live DaemonSet contradicts Ready", func(o *Observed) { o.DaemonSet = daemonSet(3, 3, 2) },
			[]Problem{{Object: "DaemonSet sluice-system/sluice-agent", Reason: ReasonAgentsNotReady}}},
		{"agent apply failed", func(o *Observed) {
			o.Nodes[0].Status.Ready = false
			o.Nodes[0].Status.LastError = "map full"
			o.Nodes[0].Status.Conditions = []metav1.Condition{cond(v1.ConditionReady, "False", v1.ReasonAgentApplyFailed, "applying failed: map full")}
		}, []Problem{{Object: "DataplaneNode n2", Reason: v1.ReasonAgentApplyFailed}}},
		{"agent not ready without a condition", func(o *Observed) {
			o.Nodes[1].Status = v1.DataplaneNodeStatus{}
		}, []Problem{{Object: "DataplaneNode n1", Reason: ReasonNotReady}}},
		{"every route installed", func(o *Observed) {
			withRouting(&o.Nodes[0], 2, cond(v1.ConditionRoutesReady, "True", v1.ReasonRoutesInstalled, "every route (2)"))
		}, nil},
		{"routes not synced yet: part of starting, not a problem", func(o *Observed) {
			withRouting(&o.Nodes[0], 0, cond(v1.ConditionRoutesReady, "Unknown", v1.ReasonStarting, "not synced yet"))
		}, nil},
		{"a route conflict on a ready node", func(o *Observed) {
			withRouting(&o.Nodes[0], 1, cond(v1.ConditionRoutesReady, "False", v1.ReasonRouteConflict, "1 pod range(s) not routed; ..."), conflict)
		}, []Problem{{Object: "DataplaneNode n2", Reason: v1.ReasonRouteConflict}}},
		{"a node without an address, seen by both nodes", func(o *Observed) {
			for i := range o.Nodes {
				withRouting(&o.Nodes[i], 0, cond(v1.ConditionRoutesReady, "False", v1.ReasonNodeAddressMissing, "no IPv6 InternalIP"))
			}
		}, []Problem{{Object: "DataplaneNode n1", Reason: v1.ReasonNodeAddressMissing}, {Object: "DataplaneNode n2", Reason: v1.ReasonNodeAddressMissing}}},
		{"route writes failing", func(o *Observed) {
			withRouting(&o.Nodes[1], 3, cond(v1.ConditionRoutesReady, "False", v1.ReasonRouteSyncFailed, "writing failed"))
		}, []Problem{{Object: "DataplaneNode n1", Reason: v1.ReasonRouteSyncFailed}}},
		{"invalid pool: Ready False and Degraded True, one problem", func(o *Observed) {
			setCondition(o.Pools[0].Status.Conditions, cond(v1.ConditionReady, "False", v1.ReasonInvalidRanges, "bad"))
			setCondition(o.Pools[0].Status.Conditions, cond(v1.ConditionDegraded, "True", v1.ReasonInvalidRanges, "bad"))
		}, []Problem{{Object: "IPAMPool a", Reason: v1.ReasonInvalidRanges}}},
		{"exhausted pool and the node waiting on it", func(o *Observed) {
			setCondition(o.Pools[0].Status.Conditions, cond(v1.ConditionExhausted, "True", v1.ReasonNodesWaiting, "1 node waits"))
			o.Pools[0].Status.WaitingNodes = []string{"n3"}
			o.NodeNetworks = append(o.NodeNetworks, v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "n3"},
				Status: v1.NodeNetworkStatus{Conditions: []metav1.Condition{cond(v1.ConditionAllocated, "False", v1.ReasonPoolExhausted, "no free block")}}})
		}, []Problem{{Object: "IPAMPool a", Reason: v1.ReasonNodesWaiting}, {Object: "NodeNetwork n3", Reason: v1.ReasonPoolExhausted}}},
		{"NodeNetwork the operator has not seen", func(o *Observed) {
			o.NodeNetworks = append(o.NodeNetworks, v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "n0"}})
		}, []Problem{{Object: "NodeNetwork n0", Reason: ReasonPending}}},
		{"read errors come first", func(o *Observed) {
			o.Config = nil
			o.ReadErrors = []ReadError{{What: "IPAMPools", Err: errors.New("refused")}}
		}, []Problem{{Object: "IPAMPools", Reason: ReasonUnreadable}, {Object: "DataplaneConfig default", Reason: ReasonNotFound}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := healthy()
			tt.breaks(obs)
			r := Build(obs, now)
			var got []Problem
			for _, p := range r.Problems {
				if p.Message == "" {
					t.Errorf("problem %s %s has no message", p.Object, p.Reason)
				}
				got = append(got, Problem{Object: p.Object, Reason: p.Reason})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			if r.Healthy != (len(tt.want) == 0) {
				t.Errorf("Healthy = %v with problems %v", r.Healthy, got)
			}
		})
	}
}

func TestBuildReport(t *testing.T) {
	obs := healthy()
	applied := metav1.NewTime(now.Add(-5 * time.Minute))
	obs.Nodes[0].Status.LastApplyTime = &applied // n2: applied after its Ready transition
	r := Build(obs, now)

	if got := []string{r.Agents.Nodes[0].Name, r.Agents.Nodes[1].Name}; !slices.Equal(got, []string{"n1", "n2"}) {
		t.Errorf("agent nodes %v, want sorted n1, n2", got)
	}
	if got := r.Agents.Nodes[1].LastReportTime; got == nil || !got.Equal(applied.Time) {
		t.Errorf("n2 last report %v, want its last apply %v (later than its Ready transition)", got, applied.Time)
	}
	if got := r.Agents.Nodes[0].LastReportTime; got == nil || !got.Equal(now.Add(-time.Hour)) {
		t.Errorf("n1 last report %v, want its Ready transition", got)
	}
	if a := r.Agents; a.DaemonSet != "sluice-system/sluice-agent" || a.Desired != 2 || a.Ready != 2 || a.Updated != 2 {
		t.Errorf("agents %+v, want the DaemonSet's 2/2/2", a)
	}
	dpc := r.DataplaneConfig
	if dpc.NetworkDataplane != "cilium" || dpc.NetworkPolicy != "cilium" || !dpc.KubeProxyReplacement || dpc.AgentImage != "sluice/agent:dev" {
		t.Errorf("effective values %+v", dpc)
	}
	if dpc.RoutingMode != "Native" || dpc.TunnelProtocol != "" || dpc.PodMTU != 1500 {
		t.Errorf("routing %q %q %d, want Native with pod MTU 1500", dpc.RoutingMode, dpc.TunnelProtocol, dpc.PodMTU)
	}
	var types []string
	for _, c := range dpc.Conditions {
		types = append(types, c.Type)
	}
	if want := []string{"Ready", "Progressing", "Degraded", "IPAMReady"}; !slices.Equal(types, want) {
		t.Errorf("condition order %v, want %v", types, want)
	}
	if len(r.UnallocatedNodeNetworks) != 0 || r.Problems == nil || len(r.Problems) != 0 {
		t.Errorf("healthy cluster: unallocated %v, problems %#v (want [], not null)", r.UnallocatedNodeNetworks, r.Problems)
	}

	if r.Agents.Nodes[0].Routing != nil {
		t.Errorf("n1 routing %+v, want none: its agent doesn't route", r.Agents.Nodes[0].Routing)
	}
	withRouting(&obs.Nodes[0], 1, cond(v1.ConditionRoutesReady, "False", v1.ReasonRouteConflict, "1 pod range(s) not routed"), conflict)
	obs.Nodes[0].Status.Routing.ProblemsOmitted = 2
	want := &NodeRouting{Mode: "Native", Routes: 1, Reason: v1.ReasonRouteConflict, Message: "1 pod range(s) not routed",
		Problems: []RouteProblem{{Destination: conflict.Destination, Node: "n3", Reason: v1.ReasonRouteConflict, Message: conflict.Message}}, ProblemsOmitted: 2}
	if diff := cmp.Diff(want, Build(obs, now).Agents.Nodes[1].Routing); diff != "" {
		t.Errorf("n2 routing (-want +got):\n%s", diff)
	}

	// Without the DaemonSet the counts come from the operator's status.
	obs.DaemonSet = nil
	obs.Config.Status.Agent = &v1.AgentRolloutStatus{DesiredNodes: 4, UpdatedNodes: 3, AvailableNodes: 1}
	obs.ReadErrors = []ReadError{{What: "DaemonSet sluice-system/sluice-agent", Err: errors.New("forbidden")}}
	if a := Build(obs, now).Agents; a.Desired != 4 || a.Updated != 3 || a.Ready != 1 {
		t.Errorf("agents without the DaemonSet %+v, want 4/3/1 from status.agent", a)
	}
}

// TestReportJSONFields pins the top-level field names: scripts read them.
func TestReportJSONFields(t *testing.T) {
	b, err := json.Marshal(Build(healthy(), now))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	wantKeys := []string{"agents", "dataplaneConfig", "healthy", "pools", "problems", "time", "unallocatedNodeNetworks"}
	if !slices.Equal(keys, wantKeys) {
		t.Errorf("top-level fields %v, want %v", keys, wantKeys)
	}
	var agents map[string]json.RawMessage
	if err := json.Unmarshal(doc["agents"], &agents); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"daemonSet", "desired", "updated", "ready", "nodes"} {
		if _, ok := agents[k]; !ok {
			t.Errorf("agents has no %q: %s", k, doc["agents"])
		}
	}
	obs := healthy()
	withRouting(&obs.Nodes[0], 1, cond(v1.ConditionRoutesReady, "False", v1.ReasonRouteConflict, "1 pod range(s) not routed"), conflict)
	b, err = json.Marshal(Build(obs, now).Agents.Nodes[1].Routing)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON := `{"mode":"Native","routes":1,"ready":false,"reason":"RouteConflict","message":"1 pod range(s) not routed",` +
		`"problems":[{"destination":"10.0.3.0/24","node":"n3","reason":"RouteConflict","message":` + strconv.Quote(conflict.Message) + `}]}`
	if string(b) != wantJSON {
		t.Errorf("node routing JSON\n got %s\nwant %s", b, wantJSON)
	}

	var dpc map[string]json.RawMessage
	if err := json.Unmarshal(doc["dataplaneConfig"], &dpc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"networkDataplane", "networkPolicy", "kubeProxyReplacement", "routingMode", "podMTU"} {
		if _, ok := dpc[k]; !ok {
			t.Errorf("dataplaneConfig has no %q: %s", k, doc["dataplaneConfig"])
		}
	}
}

func TestWriteTable(t *testing.T) {
	var out bytes.Buffer
	obs := healthy()
	obs.Config.Status.Effective.PodCIDR = "192.168.0.0/16"
	if err := WriteTable(&out, Build(obs, now)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dataplane cilium, policy cilium", "routing Native (pod MTU 1500), kube-proxy replacement on", "pod CIDR 192.168.0.0/16, IPAM pools all", "desired 2, ready 2, updated 2", "n1", "60m ago", "256/512", "Status: OK"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table has no %q:\n%s", want, out.String())
		}
	}

	obs = healthy()
	obs.Config.Status.Effective.Routing = &v1.EffectiveRouting{
		Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve, UnderlayMTU: 9000, PodMTU: 8950,
	}
	out.Reset()
	if err := WriteTable(&out, Build(obs, now)); err != nil {
		t.Fatal(err)
	}
	if want := "routing Tunnel (Geneve, pod MTU 8950)"; !strings.Contains(out.String(), want) {
		t.Errorf("table has no %q:\n%s", want, out.String())
	}

	obs = healthy()
	withRouting(&obs.Nodes[0], 1, cond(v1.ConditionRoutesReady, "False", v1.ReasonRouteConflict, "1 pod range(s) not routed"), conflict)
	withRouting(&obs.Nodes[1], 2, cond(v1.ConditionRoutesReady, "True", v1.ReasonRoutesInstalled, ""))
	out.Reset()
	if err := WriteTable(&out, Build(obs, now)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ROUTES", "Native 2 ", "Native 1 (1 not routed)", "Routes not installed:",
		"n2    10.0.3.0/24  n3     RouteConflict", "dev eth0 proto static", "DataplaneNode n2: RouteConflict", "Status: 1 problem"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table has no %q:\n%s", want, out.String())
		}
	}

	obs = healthy()
	setCondition(obs.Pools[0].Status.Conditions, cond(v1.ConditionExhausted, "True", v1.ReasonNodesWaiting, "25 nodes wait"))
	for i := range 25 {
		obs.NodeNetworks = append(obs.NodeNetworks, v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w%02d", i)}})
	}
	out.Reset()
	if err := WriteTable(&out, Build(obs, now)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Exhausted=True (NodesWaiting)", "IPAMPool a: NodesWaiting: 25 nodes wait", "... and 6 more", "Status: 26 problems"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table has no %q:\n%s", want, out.String())
		}
	}
}
