package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/scheme"
)

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

// TestRecovery: restarted parts take its registrations from the
// state file, applies them under the same IDs before re-attaching, forgets
// those whose veth is gone, and only then is ready.
func TestRecovery(t *testing.T) {
	objs := []client.Object{
		prod(),
		pod("web", testNode, nil), pod("api", testNode, nil), pod("old", testNode, nil),
	}
	att := newFakeAttacher(map[int]string{11: "slc1", 12: "slc2", 13: "slc3"})
	r1 := newRig(t, att, objs)
	ctx := context.Background()
	for i, name := range []string{"web", "api", "old"} {
		idx := 11 + i
		if _, err := r1.client.PutEndpoint(ctx, "c-"+name, cniEndpoint("prod", name, fmt.Sprintf("10.1.0.%d", 5+i), fmt.Sprintf("slc%d", 1+i), idx)); err != nil {
			t.Fatal(err)
		}
	}
	before := r1.endpointIDs()
	if len(before) != 3 {
		t.Fatalf("IDs in force %v, want 3", before)
	}

	// "Restart": new parts on the same state file; old's veth went away
	// while no agent ran.
	att2 := newFakeAttacher(map[int]string{11: "slc1", 12: "slc2"})
	r2 := newRig(t, att2, objs, func(c *partsConfig) { c.statePath = r1.state })
	for addr, id := range before {
		if ep, ok := endpointIn(r2.dp.first(), addr); !ok || ep.ID != id {
			t.Errorf("%s in the first snapshot after the restart: %+v (%v), ID before %d", addr, ep, ok, id)
		}
	}
	want := map[string]uint32{"10.1.0.5": before["10.1.0.5"], "10.1.0.6": before["10.1.0.6"]}
	NewWithT(t).Eventually(r2.endpointIDs).Should(Equal(want), "the gone endpoint leaves")
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

// TestApplyFailureIsRetried: not ready until an Apply succeeds, and the
// failure is what the agent reports meanwhile.
func TestApplyFailureIsRetried(t *testing.T) {
	g := NewWithT(t)
	reader := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(prod()).Build()
	dp := &fakeDP{err: errors.New("boom")}
	p, err := assemble(partsConfig{log: testr.New(t), node: testNode, reader: reader, dp: dp,
		attacher: newFakeAttacher(nil), registerTimeout: time.Second, retryDelay: 20 * time.Millisecond})
	g.Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = p.policy.Run(ctx, func(context.Context) bool { return true }) })
	wg.Go(func() { p.applier.Run(ctx) })
	wg.Go(func() { p.endpoints.Run(ctx, time.Hour) })
	defer func() { cancel(); wg.Wait() }()

	g.Eventually(p.endpoints.NotReady).Should(ContainSubstring("boom"))
	g.Expect(p.nodeState().lastErr).To(Equal("boom"))
	dp.mu.Lock()
	dp.err = nil
	dp.mu.Unlock()
	g.Eventually(p.endpoints.NotReady).Should(BeEmpty())
	g.Eventually(func() string { return p.nodeState().lastErr }).Should(BeEmpty())
}

// TestMetrics: the apply metrics, the endpoints in force and the
// counters of a registered pod, read at scrape time.
func TestMetrics(t *testing.T) {
	att := newFakeAttacher(map[int]string{11: "slc1"})
	r := newRig(t, att, []client.Object{prod(), pod("web", testNode, nil)})
	if _, err := r.client.PutEndpoint(context.Background(), "c1", cniEndpoint("prod", "web", "10.1.0.5", "slc1", 11)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	undo, err := r.p.metrics.register(reg)
	if err != nil {
		t.Fatal(err)
	}
	defer undo()
	if _, err := r.p.metrics.register(reg); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
	id := r.endpointIDs()["10.1.0.5"]
	r.dp.mu.Lock()
	r.dp.counters[id] = datapath.Counters{IngressAllowed: 3, IngressDropped: 2, EgressAllowed: 7}
	r.dp.mu.Unlock()
	got := gather(t, reg)
	if got["sluice_agent_endpoints"] != 1 {
		t.Errorf("sluice_agent_endpoints = %v", got["sluice_agent_endpoints"])
	}
	if n := got["sluice_agent_policy_apply_seconds_count"]; n < 1 {
		t.Errorf("apply histogram has %v observations, want the registration's", n)
	}
	for series, want := range map[string]float64{
		`sluice_agent_endpoint_packets_total{direction="egress",namespace="prod",pod="web",verdict="allowed"}`:  7,
		`sluice_agent_endpoint_packets_total{direction="egress",namespace="prod",pod="web",verdict="dropped"}`:  0,
		`sluice_agent_endpoint_packets_total{direction="egress",namespace="prod",pod="web",verdict="spoofed"}`:  0,
		`sluice_agent_endpoint_packets_total{direction="ingress",namespace="prod",pod="web",verdict="allowed"}`: 3,
		`sluice_agent_endpoint_packets_total{direction="ingress",namespace="prod",pod="web",verdict="dropped"}`: 2,
	} {
		if v, ok := got[series]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	st := r.p.nodeState()
	if st.notReady != "" || st.endpoints != 1 || st.applies < 1 || st.lastApply.IsZero() || st.lastErr != "" {
		t.Errorf("node state %+v", st)
	}
}

// TestRegisterTimeoutNestsInThePlugins: the agent gives up on a
// registration, waiting for readiness included, before the plugin gives up
// on the agent, by RegisterMargin; a longer wait is refused.
func TestRegisterTimeoutNestsInThePlugins(t *testing.T) {
	o := Options{NodeName: testNode, RESTConfig: &rest.Config{}}
	o.Defaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if RegisterMargin <= 0 || o.Endpoints.RegisterTimeout+RegisterMargin > cni.AgentRegisterTimeout {
		t.Fatalf("the agent waits %v with a margin of %v; the plugin waits %v", o.Endpoints.RegisterTimeout, RegisterMargin, cni.AgentRegisterTimeout)
	}
	o.Endpoints.RegisterTimeout = cni.AgentRegisterTimeout
	if err := o.Validate(); err == nil {
		t.Error("a register timeout as long as the plugin's was accepted")
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		err  string
	}{
		{"defaults", func(*Options) {}, ""},
		{"no node", func(o *Options) { o.NodeName = "" }, "no node name"},
		{"no API server", func(o *Options) { o.RESTConfig = nil }, "no API server"},
		{"relative socket", func(o *Options) { o.Endpoints.SocketPath = "agent.sock" }, "socket"},
		{"relative state file", func(o *Options) { o.Endpoints.StateFile = "state.json" }, "state file"},
		{"relative /proc/sys/net", func(o *Options) { o.Node.ProcSysNet = "proc" }, "/proc/sys/net"},
		{"allocation file alone", func(o *Options) { o.IPAM.AllocationFile = "/a" }, "AllocationFile and CNIStateDir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{NodeName: testNode, RESTConfig: &rest.Config{}}
			tc.edit(&o)
			a, err := New(o)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if a.opts.Endpoints.SocketPath != DefaultSocket || a.opts.Endpoints.StateFile != DefaultStateFile || a.opts.Endpoints.RegisterTimeout != DefaultRegisterTimeout ||
					a.opts.Endpoints.GCInterval != DefaultGCInterval || a.opts.Serving.Registry == nil {
					t.Errorf("defaults not filled in: %+v", a.opts)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("New: %v, want an error about %q", err, tc.err)
			}
		})
	}
}
