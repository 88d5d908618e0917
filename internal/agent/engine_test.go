package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
)

// TestNodeFilter: the whole cluster's addresses in the ipcache, only this
// node's pods as endpoints, under the agent's IDs.
func TestNodeFilter(t *testing.T) {
	ip := netip.MustParseAddr
	cluster := &policy.Cluster{
		Namespaces: []policy.Namespace{{Name: "prod"}},
		Nodes:      []policy.Node{{Name: testNode, IPs: []netip.Addr{ip("192.168.0.1")}}, {Name: "node-b", IPs: []netip.Addr{ip("192.168.0.2")}}},
		Pods: []policy.Pod{
			{Namespace: "prod", Name: "a", IP: ip("10.0.0.1"), Node: testNode, Labels: map[string]string{"app": "a"}},
			{Namespace: "prod", Name: "b", IP: ip("10.0.1.1"), Node: "node-b", Labels: map[string]string{"app": "b"}},
			{Namespace: "prod", Name: "c", IP: ip("10.0.0.2"), Node: testNode, Labels: map[string]string{"app": "b"}},
		},
		Policies: []networkingv1.NetworkPolicy{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "deny"},
			Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		}},
	}
	snap, err := policy.Compile(cluster)
	if err != nil {
		t.Fatal(err)
	}
	local := map[netip.Addr]localEndpoint{
		ip("10.0.0.1"): {PodKey: "prod/a", IP: ip("10.0.0.1")},
		ip("10.0.0.2"): {PodKey: "prod/c", IP: ip("10.0.0.2")},
	}
	var ids idAllocator
	if !ids.assign(local) {
		t.Fatal("assign reported no change")
	}
	ids.IDs[local[ip("10.0.0.2")].idKey()] = 40 // not the compiler's
	got := filterSnapshot(snap, local, ids.IDs)

	if !slices.Equal(got.IPCache, snap.IPCache) {
		t.Errorf("ipcache filtered: %v, want %v", got.IPCache, snap.IPCache)
	}
	for _, want := range []string{"10.0.0.1/32", "10.0.1.1/32", "10.0.0.2/32", "192.168.0.1/32", "192.168.0.2/32", "0.0.0.0/0"} {
		if !slices.ContainsFunc(got.IPCache, func(e policy.IPCacheEntry) bool { return e.Prefix.String() == want }) {
			t.Errorf("ipcache lacks %s", want)
		}
	}
	if len(got.Endpoints) != 2 {
		t.Fatalf("endpoints %+v, want this node's two", got.Endpoints)
	}
	if got.Endpoints[0].IP != ip("10.0.0.1") || got.Endpoints[0].ID != 1 || got.Endpoints[1].ID != 40 {
		t.Errorf("endpoints %+v", got.Endpoints)
	}
	for _, ep := range got.Endpoints {
		if !ep.IngressIsolated || len(ep.Ingress) == 0 {
			t.Errorf("%s lost its policy: %+v", ep.IP, ep)
		}
	}
	if !equalSnapshots(got, filterSnapshot(snap, local, ids.IDs)) {
		t.Error("equal inputs, unequal snapshots")
	}
	// An endpoint without an ID is left out rather than numbered 0.
	delete(ids.IDs, local[ip("10.0.0.1")].idKey())
	if s := filterSnapshot(snap, local, ids.IDs); len(s.Endpoints) != 1 {
		t.Errorf("endpoint without ID kept: %+v", s.Endpoints)
	}
}

func TestIDAllocator(t *testing.T) {
	ip := netip.MustParseAddr
	le := func(key, addr string) localEndpoint { return localEndpoint{PodKey: key, IP: ip(addr)} }
	set := func(eps ...localEndpoint) map[netip.Addr]localEndpoint {
		m := map[netip.Addr]localEndpoint{}
		for _, e := range eps {
			m[e.IP] = e
		}
		return m
	}
	a, b, c := le("ns/a", "10.0.0.1"), le("ns/b", "10.0.0.2"), le("ns/c", "10.0.0.3")
	var ids idAllocator
	ids.assign(set(a, b))
	if ids.IDs[a.idKey()] != 1 || ids.IDs[b.idKey()] != 2 {
		t.Fatalf("ids %v", ids.IDs)
	}
	if ids.assign(set(a, b)) {
		t.Error("no change reported as a change")
	}
	ids.assign(set(b, c))
	if _, ok := ids.IDs[a.idKey()]; ok || ids.IDs[b.idKey()] != 2 || ids.IDs[c.idKey()] != 3 {
		t.Fatalf("after a left and c came: %v", ids.IDs)
	}
	ids.assign(set(a, b, c))
	if ids.IDs[a.idKey()] != 4 {
		t.Errorf("a's old ID reused or skipped: %v", ids.IDs)
	}
	// A table from a state file without next continues above its IDs.
	loaded := idAllocator{IDs: maps.Clone(ids.IDs)}
	loaded.assign(set(a, b, c, le("ns/d", "10.0.0.4")))
	if loaded.IDs["ns/d|10.0.0.4"] != 5 || loaded.IDs[a.idKey()] != 4 {
		t.Errorf("loaded table: %v", loaded.IDs)
	}
}

func TestCompilerPods(t *testing.T) {
	p := pod("prod", "web", "node-b", map[string]string{"app": "web"}, "10.0.0.9", "fd00::9", "10.0.0.10")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {ContainerPort: 9090}}
	got := compilerPods(p, nil, testNode)
	if len(got) != 2 || got[0].Name != "web" || got[1].Name != "web/1" || got[0].IP != netip.MustParseAddr("10.0.0.9") ||
		got[1].IP != netip.MustParseAddr("fd00::9") || got[0].Node != "node-b" || len(got[0].Ports) != 1 {
		t.Fatalf("from status: %+v", got)
	}
	got = compilerPods(p, []netip.Addr{netip.MustParseAddr("10.0.0.5")}, testNode)
	if len(got) != 1 || got[0].IP != netip.MustParseAddr("10.0.0.5") || got[0].Node != testNode {
		t.Fatalf("registered: %+v", got)
	}
	for name, edit := range map[string]func(*corev1.Pod){
		"host network": func(p *corev1.Pod) { p.Spec.HostNetwork = true },
		"succeeded":    func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded },
		"no address":   func(p *corev1.Pod) { p.Status.PodIPs, p.Status.PodIP = nil, "" },
	} {
		q := p.DeepCopy()
		edit(q)
		if got := compilerPods(q, nil, testNode); len(got) != 0 {
			t.Errorf("%s: %+v", name, got)
		}
	}
	trimmed, _ := trimPod(p)
	tp := trimmed.(*corev1.Pod)
	if tp.Spec.NodeName != "node-b" || len(tp.Status.PodIPs) != 3 || len(tp.Spec.Containers) != 1 ||
		len(tp.Spec.Containers[0].Ports) != 1 || tp.Spec.Containers[0].Image != "" {
		t.Errorf("trimmed pod %+v", tp)
	}
}

// TestPolicyChangesReachTheDatapath: events in, snapshots out, and the
// metrics.
func TestPolicyChangesReachTheDatapath(t *testing.T) {
	att := newFakeAttacher(map[int]string{11: "slc1"})
	r := newRig(t, att, []client.Object{
		namespace("prod", nil), namespace("dev", map[string]string{"env": "dev"}),
		pod("prod", "web", testNode, map[string]string{"app": "web"}, "10.1.0.5"),
		pod("dev", "far", "node-b", nil, "10.1.1.9"),
	})
	// Another node's pod is a peer: in the ipcache, not an endpoint.
	if s := r.dp.last(); !slices.ContainsFunc(s.IPCache, func(e policy.IPCacheEntry) bool { return e.Prefix.String() == "10.1.1.9/32" }) {
		t.Errorf("ipcache lacks the other node's pod: %v", s.IPCache)
	}
	ep, ok := endpointIn(r.dp.last(), "10.1.0.5")
	if !ok || ep.IngressIsolated {
		t.Fatalf("initial endpoint %+v, %v", ep, ok)
	}
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "deny"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}
	if err := r.reader.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	r.e.enqueue(objKey{kind: kindPolicy, namespace: "prod", name: "deny"})
	waitFor(t, "the policy isolates web", func() bool {
		ep, ok := endpointIn(r.dp.last(), "10.1.0.5")
		return ok && ep.IngressIsolated
	})
	if _, ok := endpointIn(r.dp.last(), "10.1.1.9"); ok {
		t.Error("node-b's pod is an endpoint")
	}

	reg := prometheus.NewRegistry()
	undo, err := r.e.metrics.register(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer undo()
	id := r.e.endpointIDs()["10.1.0.5"]
	r.dp.mu.Lock()
	r.dp.counters[id] = datapath.Counters{IngressAllowed: 3, IngressDropped: 2, EgressAllowed: 7}
	r.dp.mu.Unlock()
	got := gather(t, reg)
	if got["sluice_agent_endpoints"] != 1 {
		t.Errorf("sluice_agent_endpoints = %v", got["sluice_agent_endpoints"])
	}
	if n := got["sluice_agent_policy_apply_seconds_count"]; n < 1 {
		t.Errorf("apply histogram has %v observations, want the policy's", n)
	}
	for series, want := range map[string]float64{
		`sluice_agent_endpoint_packets_total{direction="egress",namespace="prod",pod="web",verdict="allowed"}`:  7,
		`sluice_agent_endpoint_packets_total{direction="egress",namespace="prod",pod="web",verdict="dropped"}`:  0,
		`sluice_agent_endpoint_packets_total{direction="ingress",namespace="prod",pod="web",verdict="allowed"}`: 3,
		`sluice_agent_endpoint_packets_total{direction="ingress",namespace="prod",pod="web",verdict="dropped"}`: 2,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}

	// The pod leaves: no endpoint, no counters.
	if err := r.reader.Delete(context.Background(), pod("prod", "web", testNode, nil)); err != nil {
		t.Fatal(err)
	}
	r.e.enqueue(objKey{kind: kindPod, namespace: "prod", name: "web"})
	waitFor(t, "web leaves the datapath", func() bool {
		_, ok := endpointIn(r.dp.last(), "10.1.0.5")
		return !ok
	})
}

// gather flattens a registry: name{labels} -> value, histograms as
// name_count.
func gather(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			if len(m.GetLabel()) > 0 {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
				}
				name += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.GetHistogram() != nil:
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				out[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// endpointIDs maps applied endpoint addresses to their IDs.
func (e *engine) endpointIDs() map[string]uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]uint32{}
	for a, le := range e.pub.local {
		out[a.String()] = e.pub.ids[le.idKey()]
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecovery: a restarted engine takes its registrations from the
// state file, applies them under the same IDs before re-attaching, forgets
// those whose veth is gone, and only then is ready.
func TestRecovery(t *testing.T) {
	objs := []client.Object{
		namespace("prod", nil),
		pod("prod", "web", testNode, nil), pod("prod", "api", testNode, nil), pod("prod", "old", testNode, nil),
	}
	att := newFakeAttacher(map[int]string{11: "slc1", 12: "slc2", 13: "slc3"})
	r1 := newRig(t, att, objs)
	ctx := context.Background()
	for i, name := range []string{"web", "api", "old"} {
		idx := 11 + i
		if _, err := r1.client.PutEndpoint(ctx, "c-"+name, endpoint("prod", name, fmt.Sprintf("10.1.0.%d", 5+i), fmt.Sprintf("slc%d", 1+i), idx)); err != nil {
			t.Fatal(err)
		}
	}
	before := r1.e.endpointIDs()
	st, err := readState(r1.e.statePath)
	if err != nil || len(st.Endpoints) != 3 || len(st.IDs.IDs) != 3 {
		t.Fatalf("state file: %+v, %v", st, err)
	}

	// "Restart": a new engine with the state; old's veth went away while
	// no agent ran.
	att2 := newFakeAttacher(map[int]string{11: "slc1", 12: "slc2"})
	r2 := newRig(t, att2, objs, func(e *engine) { e.loadState(st) })
	for addr, id := range before {
		if ep, ok := endpointIn(r2.dp.first(), addr); !ok || ep.ID != id {
			t.Errorf("%s in the first snapshot after the restart: %+v (%v), ID before %d", addr, ep, ok, id)
		}
	}
	want := map[string]uint32{"10.1.0.5": before["10.1.0.5"], "10.1.0.6": before["10.1.0.6"]}
	waitFor(t, "the gone endpoint leaves", func() bool { return maps.Equal(r2.e.endpointIDs(), want) })
	if att2.live(11) != 1 || att2.live(12) != 1 {
		t.Errorf("not re-attached: %v", att2.attached)
	}
	if !maps.Equal(att2.swept, map[int]bool{11: true, 12: true}) {
		t.Errorf("swept keeping %v", att2.swept)
	}
	if _, err := r2.client.GetEndpoint(ctx, "c-old"); !cni.IsAgentNotFound(err) {
		t.Errorf("the gone endpoint is still registered: %v", err)
	}
}

func (d *fakeDP) first() *policy.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.applied) == 0 {
		return nil
	}
	return d.applied[0]
}

// TestApplyFailureIsRetried: not ready until an Apply succeeds.
func TestApplyFailureIsRetried(t *testing.T) {
	att := newFakeAttacher(nil)
	reader := fake.NewClientBuilder().WithScheme(Scheme()).WithObjects(namespace("prod", nil)).Build()
	dp := &fakeDP{err: errors.New("boom")}
	e := newEngine(testr.New(t), testNode, reader, dp, att, "")
	e.retryDelay = 20 * time.Millisecond
	e.setSynced()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.runWorker(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "an apply error is published", func() bool { return strings.Contains(e.notReady(), "boom") })
	dp.mu.Lock()
	dp.err = nil
	dp.mu.Unlock()
	waitFor(t, "ready", func() bool { return e.notReady() == "" })
}

// TestRefusedPolicyFailsClosed: a policy the compiler refuses still
// isolates the pods it selects, with none of its rules.
func TestRefusedPolicyFailsClosed(t *testing.T) {
	att := newFakeAttacher(map[int]string{11: "slc1"})
	r := newRig(t, att, []client.Object{
		namespace("prod", nil),
		pod("prod", "web", testNode, map[string]string{"app": "web"}, "10.1.0.5"),
		pod("prod", "db", testNode, map[string]string{"app": "db"}, "10.1.0.6"),
	})
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "prod", Name: "broken"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{
				// except outside its cidr: the compiler refuses the policy.
				IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/24", Except: []string{"192.168.0.0/24"}},
			}}}},
		},
	}
	if _, err := policy.Compile(&policy.Cluster{
		Namespaces: []policy.Namespace{{Name: "prod"}}, Policies: []networkingv1.NetworkPolicy{*np},
	}); err == nil {
		t.Fatal("the test's policy compiles; it must be one the compiler refuses")
	}
	if err := r.reader.Create(context.Background(), np); err != nil {
		t.Fatal(err)
	}
	r.e.enqueue(objKey{kind: kindPolicy, namespace: "prod", name: "broken"})
	waitFor(t, "web is isolated for ingress", func() bool {
		ep, ok := endpointIn(r.dp.last(), "10.1.0.5")
		return ok && ep.IngressIsolated
	})
	web, _ := endpointIn(r.dp.last(), "10.1.0.5")
	db, _ := endpointIn(r.dp.last(), "10.1.0.6")
	snap := r.dp.last()
	if snap.Allowed(netip.MustParseAddr("10.0.0.7"), web.IP, policy.ProtoTCP, 80) {
		t.Error("the refused policy's ipBlock rule was let through")
	}
	if db.IngressIsolated {
		t.Error("a pod the policy doesn't select was isolated")
	}
}
