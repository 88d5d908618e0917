package cluster

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/agent/masquerade"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

// outsideAddr stands for an internet address: a documentation range,
// only ever inside the test's outside namespace.
var outsideAddr = netip.MustParseAddr("198.51.100.10")

const sourcePort = 9000

// sourceSeen dials to from the pod, bound to local port lport (any when
// 0), and returns the source the other end reports (ListenSource).
func sourceSeen(p *netlab.Pod, to netip.AddrPort, lport int) (netip.AddrPort, error) {
	var line string
	err := p.Do(func() error {
		// Five seconds leave room for a retransmitted SYN (the first is
		// resent after one second): simultaneous first packets through
		// the NAT may clash in conntrack, and the kernel then drops one.
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: p.IP.AsSlice(), Port: lport}}
		conn, err := d.Dial("tcp", to.String())
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		line, err = bufio.NewReader(conn).ReadString('\n')
		return err
	})
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.ParseAddrPort(line[:len(line)-1])
}

// masqueradeRules counts the chains and rules of the node's table.
func masqueradeRules(g Gomega, n *clusterNode) [2]int {
	chains, rules, err := (&masquerade.Table{NetNS: n.Host()}).Installed()
	g.Expect(err).NotTo(HaveOccurred())
	return [2]int{chains, rules}
}

// TestEgressMasquerade: pods reach the outside with their node's address,
// several at once from the same source port; pod-to-pod and pod-to-node
// keep the pod's address; egress policy is judged on the pod's address; a restarted
// agent leaves one table, not two.
func TestEgressMasquerade(t *testing.T) {
	cfg, c, u, node1, node2 := newCluster(t, false)
	ctx := context.Background()
	outside := netlabtest.NewOutside(t, u, outsideAddr, node1.Node, node2.Node)
	srv, err := outside.ServeSource(sourcePort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	a1, stop1 := runAgent(t, cfg, node1)
	a2 := startAgent(t, cfg, node2)
	g := NewWithT(t)
	g.Eventually(func() bool { return a1.Ready() && a2.Ready() }).WithTimeout(30 * time.Second).Should(BeTrue())
	// Node 1's table: its range the source; both ranges and both nodes'
	// InternalIPs (IPv4 and IPv6 each) exempt.
	want := [2]int{1, 1 + 2 + 4}
	g.Eventually(func(g Gomega) [2]int { return masqueradeRules(g, node1) }).WithTimeout(10 * time.Second).Should(Equal(want))

	clients := []*netlab.Pod{addPod(t, c, node1, "x", "client-a"), addPod(t, c, node1, "x", "client-b"), addPod(t, c, node1, "x", "client-c")}
	server := addPod(t, c, node2, "x", "server")
	node1Addr := u.NodeAddrs(0)[0]
	to := netip.AddrPortFrom(outsideAddr, sourcePort)

	// One pod: the outside sees node 1's underlay address.
	g.Eventually(func(g Gomega) {
		src, err := sourceSeen(clients[0], to, 0)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(src.Addr()).To(Equal(node1Addr))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Three pods at once, each from source port 40000 to the same
	// destination: one node address, so the NAT must pick other ports;
	// every pod gets its answer.
	results := make(chan error, len(clients))
	seen := make(chan netip.AddrPort, len(clients))
	for _, p := range clients {
		go func() {
			src, err := sourceSeen(p, to, 40000)
			seen <- src
			results <- err
		}()
	}
	ports := map[uint16]bool{}
	for range clients {
		g.Expect(<-results).NotTo(HaveOccurred())
		src := <-seen
		g.Expect(src.Addr()).To(Equal(node1Addr))
		ports[src.Port()] = true
	}
	g.Expect(ports).To(HaveLen(len(clients)), "three connections from one node address need three source ports")

	// Pod to pod across nodes: the pod's own address, masquerade on.
	l, err := func() (lc interface{ Close() error }, err error) {
		err = server.Do(func() error {
			lc, err = netlab.ListenSource(netip.AddrPortFrom(server.IP, 7000))
			return err
		})
		return lc, err
	}()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	g.Eventually(func(g Gomega) {
		src, err := sourceSeen(clients[0], netip.AddrPortFrom(server.IP, 7000), 0)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(src.Addr()).To(Equal(clients[0].IP))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Pod to another node's own address: the node network is exempt, so
	// node 2 sees the pod's address, while the outside still sees node 1's.
	node2Addr := u.NodeAddrs(1)[0]
	var onNode2 interface{ Close() error }
	if err := node2.Do(func() (err error) {
		onNode2, err = netlab.ListenSource(netip.AddrPortFrom(node2Addr, 7001))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = onNode2.Close() }()
	g.Eventually(func(g Gomega) {
		src, err := sourceSeen(clients[0], netip.AddrPortFrom(node2Addr, 7001), 0)
		g.Expect(err).NotTo(HaveOccurred(), "pod -> node 2's address")
		g.Expect(src.Addr()).To(Equal(clients[0].IP), "node 2 sees the pod's own address")
		src, err = sourceSeen(clients[0], to, 0)
		g.Expect(err).NotTo(HaveOccurred(), "pod -> outside")
		g.Expect(src.Addr()).To(Equal(node1Addr), "the outside sees node 1's address")
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Egress policy on client-c denies the outside's range: judged on the
	// pod's address before the rewrite, it stops client-c alone.
	if err := c.Create(ctx, &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "not-outside"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "client-c"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: []string{"198.51.100.0/24"}}}},
			}},
		},
	}); err != nil {
		t.Fatal(err)
	}
	g.Eventually(func(g Gomega) {
		_, err := sourceSeen(clients[2], to, 0)
		g.Expect(err).To(HaveOccurred(), "client-c -> outside under the policy")
		src, err := sourceSeen(clients[1], to, 0)
		g.Expect(err).NotTo(HaveOccurred(), "client-b -> outside")
		g.Expect(src.Addr()).To(Equal(node1Addr))
	}).WithTimeout(15 * time.Second).Should(Succeed())

	// Node 1's agent restarts: the table is rewritten in place, one
	// chain and the same rules, and egress still works.
	stop1()
	g.Expect(masqueradeRules(g, node1)).To(Equal(want), "the table stays while the agent is down")
	a1, _ = runAgent(t, cfg, node1)
	g.Eventually(a1.Ready).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Consistently(func(g Gomega) [2]int { return masqueradeRules(g, node1) }).WithTimeout(3 * time.Second).Should(Equal(want))
	g.Eventually(func(g Gomega) {
		src, err := sourceSeen(clients[0], to, 0)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(src.Addr()).To(Equal(node1Addr))
	}).WithTimeout(15 * time.Second).Should(Succeed())
}
