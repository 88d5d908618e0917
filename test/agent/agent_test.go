package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/noderestriction"
	"github.com/sluice-dev/sluice/internal/testenv"
)

const nodeName = "agent-node"

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	os.Exit(m.Run())
}

// world is the test's cluster and node: a harness node whose conflist
// points at the agent's socket.
type world struct {
	t      *testing.T
	c      client.Client
	cfg    *rest.Config
	node   *netlabtest.Node
	pinDir string
	reg    *prometheus.Registry
	pods   map[string]*testPod // by name
}

// testPod is a pod object and, once CNI ADD wired it, its harness pod
// (netns, address, host veth) serving every service.
type testPod struct {
	*netlab.Pod // nil until addPod
	ns, name    string
	// labels and ports are the pod spec's labels and container ports (the
	// named ports policies resolve against).
	labels map[string]string
	ports  []corev1.ContainerPort
}

func (p *testPod) String() string { return p.ns + "/" + p.name }

// spec is the pod as the runtime hands it to the plugin: CNI_ARGS with
// its namespace and name, container ID ctr-<name>.
func (p *testPod) spec() netlab.PodSpec {
	return netlab.PodSpec{Namespace: p.ns, Name: p.name, ContainerID: "ctr-" + p.name}
}

// ports are the TCP ports TestAgent probes; every pod serves more (see
// services).
var ports = []int{8080, 9090}

func newWorld(t *testing.T) *world {
	t.Helper()
	netlabtest.RequirePrivileged(t)
	cfg, scheme := testenv.StartFor(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// Forwarding stays off in the node: the agent must turn it on, as on a
	// real node.
	w := &world{
		t: t, c: c, cfg: cfg, node: netlabtest.NewNodeWith(t, netlab.NodeOptions{Agent: true}),
		pinDir: netlabtest.PrivateBPFFS(t), pods: map[string]*testPod{},
	}
	if err := cni.WriteAllocation(w.node.AllocationFile(), cni.Allocation{
		Node: nodeName, Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{"10.250.9.0/24"}, ExcludeIPs: []string{"10.250.9.0", "10.250.9.255"}, MaxPods: 20,
	}); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.250.1"}}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	// The agent runs as on a cluster: its service account with the
	// shipped role, carrying its node's name, under the node restriction.
	role := filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent_role.yaml")
	if err := noderestriction.GrantAgentRole(ctx, c, role, agentNamespace); err != nil {
		t.Fatal(err)
	}
	for ns, labels := range namespaceLabels {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// forwardingSysctls turn IP forwarding on.
var forwardingSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

// forwarding reads the node's forwarding sysctls (IPv4, IPv6).
func (w *world) forwarding() []string {
	var vals []string
	w.node.In(func() error {
		for _, f := range forwardingSysctls {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			vals = append(vals, strings.TrimSpace(string(b)))
		}
		return nil
	})
	return vals
}

// runningAgent is one run of the agent.
type runningAgent struct {
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// agentNamespace is where the agent's service account lives.
const agentNamespace = "sluice-system"

// agentConfig reaches the API server as this node's agent: its service
// account and the node-name claim its bound token would carry.
func (w *world) agentConfig() *rest.Config {
	cfg := rest.CopyConfig(w.cfg)
	cfg.Impersonate = noderestriction.AgentImpersonation(agentNamespace, nodeName)
	return cfg
}

func (w *world) startAgent() *runningAgent {
	w.t.Helper()
	w.reg = prometheus.NewRegistry()
	a, err := agent.New(agent.Options{
		NodeName:   nodeName,
		RESTConfig: w.agentConfig(),
		Datapath:   datapath.Options{PinDir: w.pinDir},
		Endpoints:  agent.EndpointOptions{SocketPath: w.node.AgentSocket(), StateFile: w.node.AgentStateFile()},
		Serving:    agent.ServingOptions{HealthAddr: "127.0.0.1:0", MetricsAddr: "0", Registry: w.reg},
		IPAM:       agent.IPAMOptions{AllocationFile: w.node.AllocationFile(), CNIStateDir: w.node.StateDir()},
		Node:       agent.NodeOptions{NetNS: w.node.Host(), ProcSysNet: agent.DefaultProcSysNet},
		Logger:     ctrl.Log.WithName("agent"),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	w.t.Cleanup(func() { r.stop(w.t) })
	return r
}

// waitReady waits for /readyz.
func (r *runningAgent) waitReady(t *testing.T) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if addr := r.a.HealthAddr(); addr != nil {
			resp, err := http.Get("http://" + addr.String() + "/readyz")
			if err == nil {
				_ = resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					if !r.a.Ready() {
						t.Fatal("/readyz says ready, Ready() does not")
					}
					return time.Since(start)
				}
			}
		}
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("agent stopped before it was ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("agent not ready after 30 s")
		}
	}
}

func (r *runningAgent) stop(t *testing.T) {
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("agent Run: %v", err)
	}
	r.done <- nil // stop is idempotent
}

// cniAdd does what the runtime does for a new sandbox: a netns and CNI
// ADD (through the harness), which the agent may refuse.
func (w *world) cniAdd(p *testPod) error {
	pod, err := w.node.AddPod(context.Background(), p.spec())
	if err != nil {
		return err
	}
	p.Pod = pod
	w.t.Cleanup(func() { _ = pod.Close() })
	return nil
}

// createPod creates the pod object (scheduled here, with the container
// ports given).
func (w *world) createPod(namespace, name string, labels map[string]string, containerPorts ...corev1.ContainerPort) *testPod {
	w.t.Helper()
	if err := w.c.Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   nodeName,
			Containers: []corev1.Container{{Name: "main", Image: "example.invalid/server:1", Ports: containerPorts}},
		},
	}); err != nil {
		w.t.Fatal(err)
	}
	p := &testPod{ns: namespace, name: name, labels: labels, ports: containerPorts}
	w.pods[name] = p
	return p
}

// addPod runs CNI ADD and starts the pod's echo servers (every service).
func (w *world) addPod(p *testPod) {
	w.t.Helper()
	if err := w.cniAdd(p); err != nil {
		w.t.Fatal(err)
	}
	w.startServers(p)
}

// dial connects from src to dst:port and echoes once.
func dial(src, dst *testPod, port int, timeout time.Duration) (net.Conn, error) {
	return netlab.DialEcho(src.Pod, netip.AddrPortFrom(dst.IP, uint16(port)), timeout)
}

func echo(conn net.Conn, timeout time.Duration) error { return netlab.EchoOn(conn, timeout) }

// quickReachable is reachable with a 30 ms budget.
func quickReachable(src, dst *testPod, port int) bool {
	return netlab.Probe(src.Pod, dst.IP, netlab.TCP(port), 30*time.Millisecond).Verdict == netlab.Reached
}

func reachable(src, dst *testPod, port int) bool {
	return netlab.Probe(src.Pod, dst.IP, netlab.TCP(port), 400*time.Millisecond).Verdict == netlab.Reached
}

// probe is one cell of a reachability matrix.
type probe struct {
	src, dst string
	port     int
}

func (p probe) String() string { return fmt.Sprintf("%s -> %s:%d", p.src, p.dst, p.port) }

// expectation says which probes pass; everything else must.
type expectation func(p probe) bool

// waitMatrix probes every pair of pods (not a pod to itself) on every
// port until the matrix is as expected.
func (w *world) waitMatrix(what string, names []string, want expectation) {
	w.t.Helper()
	pods := make([]*netlab.Pod, len(names))
	for i, name := range names {
		pods[i] = w.pods[name].Pod
	}
	tcp := make([]netlab.Port, len(ports))
	for i, port := range ports {
		tcp[i] = netlab.TCP(port)
	}
	m, err := netlab.WaitMatrix(context.Background(), netlab.Cells(pods, tcp, false), func(c netlab.Cell) bool {
		return want(probe{c.From.Name, c.To.Name, c.Port.Number})
	}, netlab.WaitOptions{ProbeTimeout: 400 * time.Millisecond, Within: 10 * time.Second})
	if err != nil {
		var bad []string
		for _, i := range m.Wrong {
			c := m.Cells[i]
			p := probe{c.From.Name, c.To.Name, c.Port.Number}
			bad = append(bad, fmt.Sprintf("%s: %s, want reachable=%v", p, m.Results[i].Verdict, want(p)))
		}
		slices.Sort(bad)
		w.t.Fatalf("%s: reachability differs (%v):\n  %s", what, err, strings.Join(bad, "\n  "))
	}
}

func (w *world) apply(np *networkingv1.NetworkPolicy) time.Time {
	w.t.Helper()
	now := time.Now()
	if err := w.c.Create(context.Background(), np); err != nil {
		w.t.Fatal(err)
	}
	return now
}

func tcpPort(p int) []networkingv1.NetworkPolicyPort {
	port := intstr.FromInt32(int32(p))
	proto := corev1.ProtocolTCP
	return []networkingv1.NetworkPolicyPort{{Protocol: &proto, Port: &port}}
}

// gather reads one metric family's samples as name{labels} -> value.
func (w *world) gather(name string) map[string]float64 {
	w.t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := strings.Join(ls, ",")
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key+"count"] = float64(m.GetHistogram().GetSampleCount())
				out[key+"sum"] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return out
}

// programsOn counts the tcx programs on a host veth.
func (w *world) programsOn(ifName string) int {
	w.t.Helper()
	n := 0
	w.node.In(func() error {
		var err error
		n, err = netlab.TCXPrograms(ifName)
		return err
	})
	return n
}

// TestAgent: real packets through the real agent, policies through the
// API, an agent restart with a connection open, and fail-closed ADDs.
func TestAgent(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	if got := w.forwarding(); !slices.Equal(got, []string{"0", "0"}) {
		t.Fatalf("forwarding (IPv4, IPv6) on the node before the agent starts: %q, want it off", got)
	}
	agent1 := w.startAgent()
	t.Logf("agent ready in %v", agent1.waitReady(t))
	if got := w.forwarding(); !slices.Equal(got, []string{"1", "1"}) {
		t.Errorf("forwarding (IPv4, IPv6) on the node once the agent is ready: %q, want it on", got)
	}
	// The agent wrote its report as its node's agent, under the shipped
	// role and the node restriction.
	NewWithT(t).Eventually(func(g Gomega) {
		var dn v1.DataplaneNode
		g.Expect(w.c.Get(ctx, client.ObjectKey{Name: nodeName}, &dn)).To(Succeed())
		g.Expect(dn.Status.Ready).To(BeTrue(), "DataplaneNode %s not ready: %+v", nodeName, dn.Status)
	}).WithTimeout(30 * time.Second).Should(Succeed())

	client, server := map[string]string{"app": "client"}, map[string]string{"app": "server"}
	for _, p := range []*testPod{
		w.createPod("alpha", "client-a", client), w.createPod("alpha", "server-a", server),
		w.createPod("beta", "client-b", client), w.createPod("beta", "server-b", server),
	} {
		start := time.Now()
		w.addPod(p)
		t.Logf("ADD %s: %s in %v", p, p.IP, time.Since(start).Round(time.Millisecond))
		if n := w.programsOn(p.HostIfName); n != 2 {
			t.Fatalf("%s: %d programs on %s, want 2", p, n, p.HostIfName)
		}
	}
	all := []string{"client-a", "server-a", "client-b", "server-b"}
	nsOf := func(name string) string { return w.pods[name].ns }

	w.waitMatrix("no policy", all, func(probe) bool { return true })
	if got := w.gather("sluice_agent_endpoints")[""]; got != 4 {
		t.Errorf("sluice_agent_endpoints = %v, want 4", got)
	}

	// Refusals fail the ADD and leave nothing: a pod the API places on
	// another node, and CNI_ARGS without the pod's name.
	if err := w.c.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "beta", Name: "elsewhere"},
		Spec:       corev1.PodSpec{NodeName: "other-node", Containers: []corev1.Container{{Name: "main", Image: "example.invalid/server:1"}}},
	}); err != nil {
		t.Fatal(err)
	}
	elsewhere := &testPod{ns: "beta", name: "elsewhere"}
	err := w.cniAdd(elsewhere)
	wantRefusal(t, w, err, types.ErrTryAgainLater, "scheduled on node other-node")
	// The same sandbox without CNI_ARGS.
	_, err = w.node.AddPod(ctx, netlab.PodSpec{ContainerID: elsewhere.spec().ContainerID})
	wantRefusal(t, w, err, types.ErrInvalidEnvironmentVariables, "K8S_POD_NAMESPACE")

	var latencies []time.Duration
	// step creates a policy, measures how long until one flow it flips
	// does (tight probes: a connection on a local veth takes well under a
	// millisecond, so a 30 ms timeout means dropped), then checks the
	// whole matrix.
	step := func(what string, np *networkingv1.NetworkPolicy, flip probe, want expectation) {
		t.Helper()
		if reachable(w.pods[flip.src], w.pods[flip.dst], flip.port) == want(flip) {
			t.Fatalf("%s: %s already as the policy will make it", what, flip)
		}
		created := w.apply(np)
		for quickReachable(w.pods[flip.src], w.pods[flip.dst], flip.port) != want(flip) {
			if time.Since(created) > 10*time.Second {
				t.Fatalf("%s: %s did not change", what, flip)
			}
		}
		latency := time.Since(created)
		latencies = append(latencies, latency)
		t.Logf("%s: %s changed %v after the create", what, flip, latency.Round(100*time.Microsecond))
		w.waitMatrix(what, all, want)
	}

	// 1. Deny all ingress in alpha.
	denyAlpha := func(p probe) bool { return nsOf(p.dst) != "alpha" }
	step("deny-all ingress in alpha", &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "alpha", Name: "deny-all"},
		Spec:       networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
	}, probe{"client-b", "server-a", 8080}, denyAlpha)

	// 2. Allow alpha's clients to alpha's servers on 8080.
	allowClients := func(p probe) bool {
		return denyAlpha(p) || (p.src == "client-a" && p.dst == "server-a" && p.port == 8080)
	}
	step("allow app=client to app=server:8080 in alpha", &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "alpha", Name: "allow-clients"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: server},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: client}}},
				Ports: tcpPort(8080),
			}},
		},
	}, probe{"client-a", "server-a", 8080}, allowClients)

	// 3. Namespace isolation in beta: only beta's pods get in.
	isolated := func(p probe) bool {
		if nsOf(p.dst) == "beta" {
			return nsOf(p.src) == "beta"
		}
		return allowClients(p)
	}
	step("beta admits only beta", &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "beta", Name: "same-namespace"},
		Spec: networkingv1.NetworkPolicySpec{
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
			}},
		},
	}, probe{"client-a", "server-b", 9090}, isolated)

	// 4. An ipBlock with client-b's pod address opens server-a:9090 to it.
	final := func(p probe) bool {
		return isolated(p) || (p.src == "client-b" && p.dst == "server-a" && p.port == 9090)
	}
	step("ipBlock of client-b's address to server-a:9090", &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "alpha", Name: "from-client-b-ip"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: server},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: w.pods["client-b"].IP.String() + "/32"}}},
				Ports: tcpPort(9090),
			}},
		},
	}, probe{"client-b", "server-a", 9090}, final)

	h := w.gather("sluice_agent_policy_apply_seconds")
	t.Logf("policy create to enforcement, probed: %v; agent's apply histogram: %v batches, mean %v",
		latencies, h["count"], time.Duration(h["sum"]/h["count"]*float64(time.Second)).Round(time.Microsecond))
	packets := w.gather("sluice_agent_endpoint_packets_total")
	if packets["direction=ingress,namespace=alpha,pod=server-a,verdict=dropped"] == 0 ||
		packets["direction=ingress,namespace=alpha,pod=server-a,verdict=allowed"] == 0 {
		t.Errorf("server-a's counters: %v", packets)
	}

	// The restart. An allowed connection stays open and keeps echoing;
	// a denied flow stays denied throughout.
	before := w.gather("sluice_agent_endpoint_packets_total")["direction=ingress,namespace=alpha,pod=server-a,verdict=allowed"]
	conn, err := dial(w.pods["client-a"], w.pods["server-a"], 8080, time.Second)
	if err != nil {
		t.Fatalf("open the long-lived connection: %v", err)
	}
	defer func() { _ = conn.Close() }()
	// Phases: 0 agent 1 runs, 1 no agent, 2 agent 2 starting, 3 ready.
	var (
		phase            atomic.Int32
		echoes, failures [4]atomic.Int64
		leaks            atomic.Int64
		stopPing         = make(chan struct{})
		pingers          sync.WaitGroup
	)
	pingers.Go(func() {
		for {
			select {
			case <-stopPing:
				return
			case <-time.After(5 * time.Millisecond):
			}
			ph := phase.Load()
			if err := echo(conn, time.Second); err != nil {
				failures[ph].Add(1)
			} else {
				echoes[ph].Add(1)
			}
		}
	})
	clientB, serverA := w.pods["client-b"], w.pods["server-a"]
	pingers.Go(func() {
		for {
			select {
			case <-stopPing:
				return
			default:
			}
			if quickReachable(clientB, serverA, 8080) {
				leaks.Add(1)
			}
		}
	})

	for echoes[0].Load() < 5 && failures[0].Load() == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	agent1.stop(t)
	phase.Store(1)
	if _, err := os.Stat(w.node.AgentSocket()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after the agent stopped: %v", err)
	}
	if n := w.programsOn(w.pods["server-a"].HostIfName); n != 2 {
		t.Errorf("%d programs on server-a's veth while no agent runs, want the 2 pinned", n)
	}
	w.waitMatrix("agent down", all, final)

	// Fail closed: an ADD while the agent is down fails and keeps no
	// address.
	late := w.createPod("alpha", "late", client)
	err = w.cniAdd(late)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater || !strings.Contains(cniErr.Msg, "node agent not reachable at "+w.node.AgentSocket()) {
		t.Fatalf("ADD with the agent down: %v", err)
	}
	rs, err := cni.Reservations(w.node.StateDir())
	if err != nil || len(rs) != 4 {
		t.Fatalf("reservations after the failed ADD: %v, %v", rs, err)
	}
	if w.hostLinkExists(cni.HostVethName("slc", "ctr-late", "eth0")) {
		t.Error("the failed ADD left its host veth")
	}

	phase.Store(2)
	agent2 := w.startAgent()
	t.Logf("restarted agent ready in %v", agent2.waitReady(t))
	phase.Store(3)
	w.waitMatrix("after the restart", all, final)
	close(stopPing)
	pingers.Wait()
	for ph, name := range []string{"agent 1", "no agent", "agent 2 starting", "agent 2 ready"} {
		t.Logf("%s: %d echoes on the open connection, %d failed", name, echoes[ph].Load(), failures[ph].Load())
		if failures[ph].Load() > 0 || echoes[ph].Load() == 0 {
			t.Errorf("%s: the open connection: %d echoes, %d failed", name, echoes[ph].Load(), failures[ph].Load())
		}
	}
	if leaks.Load() > 0 {
		t.Errorf("a denied flow got through %d times during the restart", leaks.Load())
	}
	if err := echo(conn, time.Second); err != nil {
		t.Errorf("the open connection after the restart: %v", err)
	}
	// Same endpoint IDs, so the counters carried on.
	if after := w.gather("sluice_agent_endpoint_packets_total")["direction=ingress,namespace=alpha,pod=server-a,verdict=allowed"]; after <= before {
		t.Errorf("server-a's allowed ingress packets went from %v to %v across the restart", before, after)
	}
	for _, name := range all {
		if n := w.programsOn(w.pods[name].HostIfName); n != 2 {
			t.Errorf("%s: %d programs after the restart, want 2 (adopted, not doubled)", name, n)
		}
	}

	// The new agent enforces changes and takes new pods: late (a client of
	// alpha) now gets in, and reaches server-a:8080.
	w.addPod(late)
	withLate := append(slices.Clone(all), "late")
	w.waitMatrix("late joined", withLate, func(p probe) bool {
		switch {
		case p.src == "late":
			return p.dst == "server-a" && p.port == 8080
		case p.dst == "late":
			return false // alpha's deny-all
		}
		return final(p)
	})
	if err := w.node.CheckPod(ctx, late.Pod); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := w.c.Delete(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "alpha", Name: "deny-all"}}); err != nil {
		t.Fatal(err)
	}
	// deny-all gone: client-a is open again; servers stay isolated by
	// their allow policies.
	w.waitMatrix("deny-all deleted", withLate, func(p probe) bool {
		switch p.dst {
		case "client-a", "late":
			return true
		case "server-a":
			return (p.port == 8080 && (p.src == "client-a" || p.src == "late")) || (p.port == 9090 && p.src == "client-b")
		}
		return nsOf(p.src) == "beta" // beta admits only beta
	})

	// DEL: the agent forgets the endpoint and the pin goes.
	if err := w.node.DelPod(ctx, late.Pod); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if _, err := cni.NewAgentClient(w.node.AgentSocket()).GetEndpoint(ctx, "ctr-late"); !cni.IsAgentNotFound(err) {
		t.Errorf("the agent still knows the deleted endpoint: %v", err)
	}
	pins, _ := os.ReadDir(filepath.Join(w.pinDir, "links"))
	if len(pins) != 2*len(all) {
		t.Errorf("%d pinned links, want %d", len(pins), 2*len(all))
	}
}

// wantRefusal checks a failed ADD and that it kept no address and no veth.
func wantRefusal(t *testing.T, w *world, err error, code uint, msg string) {
	t.Helper()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != code || !strings.Contains(cniErr.Msg, msg) {
		t.Fatalf("ADD: %v; want code %d with %q", err, code, msg)
	}
	rs, err := cni.Reservations(w.node.StateDir())
	if err != nil || len(rs) != 4 {
		t.Fatalf("reservations after the failed ADD: %v, %v", rs, err)
	}
	if w.hostLinkExists(cni.HostVethName("slc", "ctr-elsewhere", "eth0")) {
		t.Error("the failed ADD left its host veth")
	}
}

func (w *world) hostLinkExists(name string) bool {
	exists := false
	w.node.In(func() error {
		_, err := netlink.LinkByName(name)
		exists = err == nil
		return nil
	})
	return exists
}
