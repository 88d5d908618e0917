package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent"
	"github.com/sluice-dev/sluice/internal/agent/routesync"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/noderestriction"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true)))
	os.Exit(m.Run())
}

const agentNamespace = "sluice-system"

// clusterNode is a netlab node, its Kubernetes name and pod range.
type clusterNode struct {
	*netlabtest.Node
	name   string
	cidr   netip.Prefix
	cidr6  netip.Prefix // its IPv6 pod range, for a dual-stack node
	addrs  []netip.Addr // InternalIPs: its underlay addresses
	pinDir string       // its agents' bpffs, set by the first run
}

// setUpNode does what the operator and kubelet would: the Node with its
// InternalIPs, the NodeNetwork with its ranges in status, the allocation
// file the IPAM sync would write.
func setUpNode(t *testing.T, c client.Client, n *clusterNode) {
	t.Helper()
	ctx := context.Background()
	blocks := []netip.Prefix{n.cidr}
	if n.cidr6.IsValid() {
		blocks = append(blocks, n.cidr6)
	}
	var cidrs, exclude []string
	var statusCIDRs []v1.CIDR
	for _, b := range blocks {
		first, last := blockEnds(b)
		cidrs, statusCIDRs = append(cidrs, b.String()), append(statusCIDRs, v1.CIDR(b.String()))
		exclude = append(exclude, first.String(), last.String())
	}
	if err := cni.WriteAllocation(n.AllocationFile(), cni.Allocation{
		Node: n.name, Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: cidrs, ExcludeIPs: exclude, MaxPods: 20,
	}); err != nil {
		t.Fatal(err)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name}}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	for _, a := range n.addrs {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a.String()})
	}
	if err := c.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	nn := &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: n.name}}
	if err := c.Create(ctx, nn); err != nil {
		t.Fatal(err)
	}
	nn.Status = v1.NodeNetworkStatus{Pool: "default", Mode: v1.IPAMMode(cni.ModeOverlay), CIDRs: statusCIDRs, MaxPods: 20}
	if err := c.Status().Update(ctx, nn); err != nil {
		t.Fatal(err)
	}
}

// blockEnds are the first and last addresses of a small block (a /24 or
// /120): the overlay allocation keeps them out of the pods' hands.
func blockEnds(b netip.Prefix) (first, last netip.Addr) {
	first, last = b.Addr(), b.Addr()
	for range 1<<(b.Addr().BitLen()-b.Bits()) - 1 {
		last = last.Next()
	}
	return first, last
}

// startAgent runs the node's agent, as its node's agent, with native
// routing, until the test ends.
func startAgent(t *testing.T, cfg *rest.Config, n *clusterNode) *agent.Agent {
	t.Helper()
	a, _ := runAgent(t, cfg, n)
	return a
}

// runAgent is startAgent with a func that stops the agent sooner; a later
// run on the node adopts the same pinned datapath.
func runAgent(t *testing.T, cfg *rest.Config, n *clusterNode) (*agent.Agent, func()) {
	t.Helper()
	if n.pinDir == "" {
		n.pinDir = netlabtest.PrivateBPFFS(t)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.Impersonate = noderestriction.AgentImpersonation(agentNamespace, n.name)
	a, err := agent.New(agent.Options{
		NodeName:   n.name,
		RESTConfig: cfg,
		Datapath:   datapath.Options{PinDir: n.pinDir},
		Endpoints:  agent.EndpointOptions{SocketPath: n.AgentSocket(), StateFile: n.AgentStateFile()},
		Serving:    agent.ServingOptions{HealthAddr: "0", MetricsAddr: "0", Registry: prometheus.NewRegistry()},
		Node:       agent.NodeOptions{NetNS: n.Host(), ProcSysNet: agent.DefaultProcSysNet},
		Routing:    agent.RoutingOptions{Mode: agent.RoutingModeNative},
		Logger:     ctrl.Log.WithName("agent").WithName(n.name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent %s: %v", n.name, err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

// ownedRoutes lists the node's routes of the agent's protocol as
// "dst via gw".
func ownedRoutes(n *clusterNode) []string {
	var out []string
	n.In(func() error {
		rs, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routesync.Protocol}, netlink.RT_FILTER_PROTOCOL)
		for _, r := range rs {
			out = append(out, r.Dst.String()+" via "+r.Gw.String())
		}
		return err
	})
	return out
}

// newCluster starts envtest with the agent's shipped role, and two nodes
// on an underlay, each with its pod range (10.250.<n>.0/24, and
// fd00:10:250:<n>::/120 with ipv6) and its API objects as the operator
// would leave them. Its agents are the caller's to run.
func newCluster(t *testing.T, ipv6 bool) (cfg *rest.Config, c client.Client, u *netlab.Underlay, node1, node2 *clusterNode) {
	t.Helper()
	netlabtest.RequirePrivileged(t)
	cfg, scheme := testenv.StartFor(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	role := filepath.Join(testenv.RepoRoot(), "config", "rbac", "agent_role.yaml")
	if err := noderestriction.GrantAgentRole(context.Background(), c, role, agentNamespace); err != nil {
		t.Fatal(err)
	}
	u, nodes := netlabtest.NewNodes(t, 2, netlab.NodeOptions{Agent: true})
	cluster := make([]*clusterNode, len(nodes))
	for i, n := range nodes {
		cluster[i] = &clusterNode{Node: n, name: fmt.Sprintf("node-%d", i+1),
			cidr: netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", i+1)), addrs: u.NodeAddrs(i)}
		if ipv6 {
			cluster[i].cidr6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:250:%d::/120", i+1))
		}
		setUpNode(t, c, cluster[i])
	}
	return cfg, c, u, cluster[0], cluster[1]
}

// TestNativeRouting: two nodes on an underlay, each with its agent; pods
// on one reach pods on the other with their own addresses, policy holds
// across nodes, and a node that leaves takes its route with it.
func TestNativeRouting(t *testing.T) {
	cfg, c, _, node1, node2 := newCluster(t, false)
	ctx := context.Background()
	for _, ns := range []string{"x", "y"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"team": ns}}}); err != nil {
			t.Fatal(err)
		}
	}
	agents := []*agent.Agent{startAgent(t, cfg, node1), startAgent(t, cfg, node2)}
	g := NewWithT(t)
	g.Eventually(func() bool { return agents[0].Ready() && agents[1].Ready() }).WithTimeout(30 * time.Second).Should(BeTrue())

	// Each node routes the other's range via its underlay address.
	g.Eventually(func() []string { return ownedRoutes(node1) }).WithTimeout(10 * time.Second).
		Should(ConsistOf("10.250.2.0/24 via 192.168.200.2"))
	g.Eventually(func() []string { return ownedRoutes(node2) }).WithTimeout(10 * time.Second).
		Should(ConsistOf("10.250.1.0/24 via 192.168.200.1"))
	// And each reports it on its DataplaneNode.
	for _, n := range []*clusterNode{node1, node2} {
		g.Eventually(func(g Gomega) {
			var dpn v1.DataplaneNode
			g.Expect(c.Get(ctx, client.ObjectKey{Name: n.name}, &dpn)).To(Succeed())
			g.Expect(dpn.Status.Routing).To(Equal(&v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: 1}))
			g.Expect(meta.IsStatusConditionTrue(dpn.Status.Conditions, v1.ConditionRoutesReady)).To(BeTrue(), "RoutesReady")
		}).WithTimeout(10*time.Second).Should(Succeed(), n.name)
	}

	// Pods: clients in x and y on node 1, a server in y on node 2.
	addPod := func(n *clusterNode, ns, name string) *netlab.Pod { return addPod(t, c, n, ns, name) }
	clientX, clientY := addPod(node1, "x", "client-x"), addPod(node1, "y", "client-y")
	server := addPod(node2, "y", "server")
	if !node2.cidr.Contains(server.IP) || !node1.cidr.Contains(clientX.IP) {
		t.Fatalf("pod addresses %s, %s outside their nodes' ranges", clientX.IP, server.IP)
	}

	reached := func(from, to *netlab.Pod) bool {
		return netlab.Probe(from, to.IP, netlab.TCP(8080), 500*time.Millisecond).Verdict == netlab.Reached
	}
	g.Eventually(func(g Gomega) {
		g.Expect(reached(clientX, server)).To(BeTrue(), "client-x -> server")
		g.Expect(reached(clientY, server)).To(BeTrue(), "client-y -> server")
		g.Expect(reached(server, clientX)).To(BeTrue(), "server -> client-x")
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// The server sees the client's own pod address: no masquerade on the
	// way.
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(server.IP, 7000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	peers := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			peers <- err.Error()
			return
		}
		peers <- conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap().String()
		_ = conn.Close()
	}()
	if err := clientX.Do(func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(server.IP, 7000).String(), 2*time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := <-peers; got != clientX.IP.String() {
		t.Errorf("the server saw the connection from %s, want client-x's pod address %s", got, clientX.IP)
	}

	// A policy on node 2's server denies ingress from namespace x: the
	// client on node 1 in x is dropped, the one in y still gets in.
	if err := c.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "y", Name: "not-from-x"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
					MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpNotIn, Values: []string{"x"}}},
				}}},
			}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		r := netlab.Probe(clientX, server.IP, netlab.TCP(8080), 300*time.Millisecond)
		g.Expect(r.Verdict).To(Equal(netlab.TimedOut), "client-x -> server under the policy: %v", r.Err)
		g.Expect(reached(clientY, server)).To(BeTrue(), "client-y -> server under the policy")
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Node 2 leaves: node 1's route to its range goes.
	if err := c.Delete(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: node2.name}}); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func() []string { return ownedRoutes(node1) }).WithTimeout(10 * time.Second).Should(BeEmpty())
	if got := ownedRoutes(node2); len(got) != 1 || !strings.HasPrefix(got[0], "10.250.1.0/24") {
		t.Errorf("node 2's routes after its NodeNetwork went: %q, want its route to node 1 kept", got)
	}
}

// addPod creates the pod in the API on n, wires it in the lab, reports
// its address as kubelet would, and serves echo on TCP 8080 in it.
func addPod(t *testing.T, c client.Client, n *clusterNode, ns, name string) *netlab.Pod {
	ctx := context.Background()
	t.Helper()
	if err := c.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: n.name, Containers: []corev1.Container{{Name: "main", Image: "example.invalid/echo:1"}}},
	}); err != nil {
		t.Fatal(err)
	}
	p := n.Wire(t, netlab.PodSpec{Namespace: ns, Name: name, ContainerID: "ctr-" + name})
	// The API learns the pod's address, as kubelet would report it:
	// the other node's policy compiler needs it.
	var pod corev1.Pod
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod); err != nil {
		t.Fatal(err)
	}
	pod.Status.PodIP = p.IP.String()
	for _, a := range podAddrs(t, p) {
		pod.Status.PodIPs = append(pod.Status.PodIPs, corev1.PodIP{IP: a.String()})
	}
	pod.Status.Phase = corev1.PodRunning
	if err := c.Status().Update(ctx, &pod); err != nil {
		t.Fatal(err)
	}
	s, err := p.ServeEcho(netlab.TCP(8080))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return p
}

// podAddrs are the pod's global addresses on its interface, the plugin's
// first (p.IP) first: one per family on a dual-stack node.
func podAddrs(t *testing.T, p *netlab.Pod) []netip.Addr {
	t.Helper()
	out := []netip.Addr{p.IP}
	if err := p.Do(func() error {
		l, err := netlink.LinkByName(netlab.PodIfName)
		if err != nil {
			return err
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		for _, a := range as {
			ip, ok := netip.AddrFromSlice(a.IP)
			if ip = ip.Unmap(); ok && ip != p.IP && ip.IsGlobalUnicast() {
				out = append(out, ip)
			}
		}
		return err
	}); err != nil {
		t.Fatalf("addresses of %s: %v", p.Key(), err)
	}
	return out
}
