package cluster

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent"
	"github.com/sluice-dev/sluice/internal/netlab"
)

// TestNativeRoutingDualStack: two nodes, each with an IPv4 and an IPv6
// pod range and both underlay addresses as InternalIPs; each routes the
// other's IPv6 range via the other's IPv6 underlay address, and a pod on
// one reaches a pod on the other over IPv6 with its own address.
func TestNativeRoutingDualStack(t *testing.T) {
	cfg, c, _, node1, node2 := newCluster(t, true)
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	agents := []*agent.Agent{startAgent(t, cfg, node1), startAgent(t, cfg, node2)}
	g := NewWithT(t)
	g.Eventually(func() bool { return agents[0].Ready() && agents[1].Ready() }).WithTimeout(30 * time.Second).Should(BeTrue())

	// Each node routes the other's ranges, each family via the other's
	// underlay address of that family.
	g.Eventually(func() []string { return ownedRoutes(node1) }).WithTimeout(10 * time.Second).
		Should(ConsistOf("10.250.2.0/24 via 192.168.200.2", "fd00:10:250:2::/120 via fd5c:1ce:200::2"))
	g.Eventually(func() []string { return ownedRoutes(node2) }).WithTimeout(10 * time.Second).
		Should(ConsistOf("10.250.1.0/24 via 192.168.200.1", "fd00:10:250:1::/120 via fd5c:1ce:200::1"))
	for _, n := range []*clusterNode{node1, node2} {
		g.Eventually(func(g Gomega) {
			var dpn v1.DataplaneNode
			g.Expect(c.Get(ctx, client.ObjectKey{Name: n.name}, &dpn)).To(Succeed())
			g.Expect(dpn.Status.Routing).To(Equal(&v1.DataplaneNodeRouting{Mode: v1.RoutingModeNative, Routes: 2}))
		}).WithTimeout(10*time.Second).Should(Succeed(), n.name)
	}

	client6, server6 := ipv6Of(t, node1, addPod(t, c, node1, "x", "client")), ipv6Of(t, node2, addPod(t, c, node2, "x", "server"))
	server, clientPod := server6.pod, client6.pod

	// TCP echo over IPv6, both ways.
	for _, p := range []*podIPv6{client6, server6} {
		var s *netlab.EchoServer
		if err := p.pod.Do(func() error {
			var err error
			s, err = netlab.ListenEcho(p.addr, []netlab.Port{netlab.TCP(8080)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
	}
	g.Eventually(func(g Gomega) {
		r := netlab.Probe(clientPod, server6.addr, netlab.TCP(8080), 500*time.Millisecond)
		g.Expect(r.Verdict).To(Equal(netlab.Reached), "client -> server over IPv6: %v", r.Err)
		r = netlab.Probe(server, client6.addr, netlab.TCP(8080), 500*time.Millisecond)
		g.Expect(r.Verdict).To(Equal(netlab.Reached), "server -> client over IPv6: %v", r.Err)
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// The server sees the client's own IPv6 pod address: pod-to-pod IPv6
	// is not masqueraded.
	if got := sourceSeenBy(t, server, server6.addr, clientPod); got != client6.addr {
		t.Errorf("the server saw the IPv6 connection from %s, want the client's pod address %s", got, client6.addr)
	}
}

// podIPv6 is a pod with its IPv6 address.
type podIPv6 struct {
	pod  *netlab.Pod
	addr netip.Addr
}

// ipv6Of finds the pod's IPv6 address, which must be in its node's IPv6
// range.
func ipv6Of(t *testing.T, n *clusterNode, p *netlab.Pod) *podIPv6 {
	t.Helper()
	for _, a := range podAddrs(t, p) {
		if a.Is6() {
			if !n.cidr6.Contains(a) {
				t.Fatalf("%s's IPv6 address %s is outside %s's range %s", p.Key(), a, n.name, n.cidr6)
			}
			return &podIPv6{pod: p, addr: a}
		}
	}
	t.Fatalf("%s has no IPv6 address on a dual-stack node", p.Key())
	return nil
}

// sourceSeenBy is the source address a listener on server's addr sees
// for one TCP connection from client.
func sourceSeenBy(t *testing.T, server *netlab.Pod, addr netip.Addr, client *netlab.Pod) netip.Addr {
	t.Helper()
	var ln net.Listener
	if err := server.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 7000).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	type accepted struct {
		from netip.Addr
		err  error
	}
	peers := make(chan accepted, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			peers <- accepted{err: err}
			return
		}
		peers <- accepted{from: conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
		_ = conn.Close()
	}()
	if err := client.Do(func() error {
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(addr, 7000).String(), 2*time.Second)
		if err == nil {
			_ = conn.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	got := <-peers
	if got.err != nil {
		t.Fatal(got.err)
	}
	return got.from
}
