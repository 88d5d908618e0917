package netlab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	. "github.com/onsi/gomega"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

func writeAllocation(t *testing.T, n *netlabtest.Node, cidr string, maxPods int) {
	t.Helper()
	p := netip.MustParsePrefix(cidr)
	last := p.Addr()
	for range 1<<(32-p.Bits()) - 1 {
		last = last.Next()
	}
	if err := cni.WriteAllocation(n.AllocationFile(), cni.Allocation{
		Node: "node", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{cidr}, ExcludeIPs: []string{p.Addr().String(), last.String()}, MaxPods: maxPods,
	}); err != nil {
		t.Fatal(err)
	}
}

// Two nodes side by side, each with two pods serving every protocol: the
// matrix within a node is all reached, and nothing joins the nodes.
func TestTwoNodes(t *testing.T) {
	ports := []netlab.Port{netlab.TCP(8080), netlab.UDP(5353)}
	if err := netlab.SCTPSupport(); err == nil {
		ports = append(ports, netlab.SCTP(3868))
	} else if !netlab.SCTPUnavailable(err) {
		t.Fatalf("SCTP socket: %v", err)
	}

	var nodes [2]*netlabtest.Node
	var pods [2][]*netlab.Pod
	for i := range nodes {
		n := netlabtest.NewNode(t)
		nodes[i] = n
		cidr := fmt.Sprintf("10.250.%d.0/24", 10+i)
		writeAllocation(t, n, cidr, 10)
		for _, name := range []string{"client", "server"} {
			p := n.Wire(t, netlab.PodSpec{Namespace: "team", Name: fmt.Sprintf("%s-%d", name, i)})
			if !netip.MustParsePrefix(cidr).Contains(p.IP) || p.HostIfIndex == 0 {
				t.Fatalf("pod %s: address %s, host veth %q (%d); want an address of %s and a veth", p.Key(), p.IP, p.HostIfName, p.HostIfIndex, cidr)
			}
			if p.NetNSName != n.Options().NetNSPrefix+"team-"+p.Name || !netlab.NetNSExists(p.NetNSName) {
				t.Errorf("pod %s: netns %q, want it named after the node's prefix and the pod, and there", p.Key(), p.NetNSName)
			}
			s, err := p.ServeEcho(ports...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			pods[i] = append(pods[i], p)
		}
		if err := n.CheckPod(context.Background(), pods[i][0]); err != nil {
			t.Errorf("CNI CHECK: %v", err)
		}
	}
	if nodes[0].HostNetNSName() == nodes[1].HostNetNSName() {
		t.Fatalf("both nodes have host netns %s", nodes[0].HostNetNSName())
	}

	for i := range nodes {
		cells := netlab.Cells(pods[i], ports, true)
		if len(cells) != 4*len(ports) {
			t.Fatalf("%d cells for two pods and %d ports (self included)", len(cells), len(ports))
		}
		m, err := netlab.WaitMatrix(context.Background(), cells, func(netlab.Cell) bool { return true }, netlab.WaitOptions{Within: 5 * time.Second})
		if err != nil {
			t.Fatalf("node %d: %v: %v", i, err, wrong(m))
		}
	}

	// No underlay: a pod of one node doesn't reach the other node's pods.
	cross := []netlab.Cell{{From: pods[0][0], To: pods[1][1], Port: netlab.TCP(8080)}}
	if r := netlab.ProbeCells(cross, 200*time.Millisecond)[0]; r.Verdict == netlab.Reached {
		t.Errorf("%s reached across separate nodes", cross[0])
	}
	// The expectation "not reached" agrees with a timeout only.
	m, err := netlab.WaitMatrix(context.Background(), cross, func(netlab.Cell) bool { return true }, netlab.WaitOptions{Within: time.Millisecond, ProbeTimeout: 100 * time.Millisecond})
	if err == nil || len(m.Wrong) != 1 || m.Passes < 1 {
		t.Errorf("WaitMatrix for an unreachable cell expected reached: %v, %+v", err, m)
	}
}

func wrong(m *netlab.Matrix) []string {
	var out []string
	for _, i := range m.Wrong {
		out = append(out, fmt.Sprintf("%s: %s (%v)", m.Cells[i], m.Results[i].Verdict, m.Results[i].Err))
	}
	return out
}

// A deleted pod gives its address back: with room for two pods, a third
// ADD fails until one is deleted; the deleted pod's namespace and veth are
// gone.
func TestDeletePodFreesAddress(t *testing.T) {
	g := NewWithT(t)
	n := netlabtest.NewNode(t)
	writeAllocation(t, n, "10.250.20.0/24", 2)
	ctx := context.Background()
	a := n.Wire(t, netlab.PodSpec{ContainerID: "pod-a"})
	n.Wire(t, netlab.PodSpec{ContainerID: "pod-b"})

	_, err := n.AddPod(ctx, netlab.PodSpec{ContainerID: "pod-c"})
	var cniErr *types.Error
	g.Expect(errors.As(err, &cniErr)).To(BeTrue(), "a third ADD on a node of two pods: %v", err)
	g.Expect(netlab.NetNSExists(n.Options().NetNSPrefix+"pod-c")).To(BeFalse(), "the failed ADD left its netns")

	g.Expect(n.DelPod(ctx, a)).To(Succeed())
	g.Expect(netlab.NetNSExists(a.NetNSName)).To(BeFalse())
	n.In(func() error {
		if _, err := netlink.LinkByName(a.HostIfName); err == nil {
			return fmt.Errorf("host veth %s is still there", a.HostIfName)
		}
		return nil
	})
	rs, err := cni.Reservations(n.StateDir())
	g.Expect(err).NotTo(HaveOccurred())
	for _, r := range rs {
		g.Expect(r.IP).NotTo(Equal(a.IP), "the deleted pod's address is still reserved")
	}

	c := n.Wire(t, netlab.PodSpec{ContainerID: "pod-c"})
	g.Expect(c.IP).To(Equal(a.IP), "the only free address is the deleted pod's")
}

// A node made by one process is opened by another (the lab's CLI does
// this): the same conflist, the same host namespace.
func TestOpenNode(t *testing.T) {
	n := netlabtest.NewNode(t)
	writeAllocation(t, n, "10.250.21.0/24", 0)
	opened, err := netlab.OpenNode(n.Options())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = opened.Close() }()
	p, err := opened.AddPod(context.Background(), netlab.PodSpec{Namespace: "shop", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	// A pod read back from disk has no handle until Open.
	back := &netlab.Pod{Namespace: p.Namespace, Name: p.Name, ContainerID: p.ContainerID, NetNSName: p.NetNSName, IP: p.IP}
	if err := back.Open(); err != nil {
		t.Fatal(err)
	}
	if err := opened.DelPod(context.Background(), back); err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if rs, err := cni.Reservations(n.StateDir()); err != nil || len(rs) != 0 {
		t.Errorf("reservations after DEL from another handle: %v, %v", rs, err)
	}

	if _, err := netlab.CreateNode(n.Options()); err == nil {
		t.Error("CreateNode over a node that is up succeeded")
	}
	if err := netlab.RemoveNode(n.Options()); err != nil {
		t.Fatal(err)
	}
	if netlab.NetNSExists(n.HostNetNSName()) {
		t.Error("RemoveNode left the host netns")
	}
	if _, err := os.Stat(n.Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("RemoveNode left the directory: %v", err)
	}
	if _, err := netlab.OpenNode(n.Options()); err == nil {
		t.Error("OpenNode of a removed node succeeded")
	}
}

// The raw-socket echo the SCTP probes use, run over TCP so that its code
// is exercised on kernels without SCTP too.
func TestStreamEcho(t *testing.T) {
	netns := netlabtest.NewNetNS(t)
	lo := netip.MustParseAddr("127.0.0.1")
	if err := netns.Do(func(ns.NetNS) error {
		ln, err := netlab.ListenStream(unix.IPPROTO_TCP, lo, 3868)
		if err != nil {
			return err
		}
		defer func() { _ = ln.Close() }()
		go netlab.ServeStreamEcho(ln)
		for range 3 {
			c, err := netlab.DialStream(unix.IPPROTO_TCP, lo, 3868, time.Now().Add(time.Second))
			if err != nil {
				return err
			}
			msg := []byte("raw echo")
			if _, err := c.Write(msg); err != nil {
				return err
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != string(msg) {
				return fmt.Errorf("echo %q, %v", buf, err)
			}
			_ = c.Close()
		}
		// A port nobody listens on is refused, not a timeout.
		if _, err := netlab.DialStream(unix.IPPROTO_TCP, lo, 3869, time.Now().Add(time.Second)); !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("dial a closed port: %v, want ECONNREFUSED", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestParsePort(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netlab.Port
		err  bool
	}{
		{in: "8080", want: netlab.TCP(8080)},
		{in: "53/udp", want: netlab.UDP(53)},
		{in: " 3868/SCTP ", want: netlab.SCTP(3868)},
		{in: "0", err: true},
		{in: "70000/TCP", err: true},
		{in: "80/ICMP", err: true},
		{in: "http", err: true},
	} {
		got, err := netlab.ParsePort(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParsePort(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
	if s := netlab.UDP(53).String(); s != "53/UDP" {
		t.Errorf("String = %q", s)
	}
}

func TestAgrees(t *testing.T) {
	for _, tc := range []struct {
		want bool
		got  netlab.Verdict
		ok   bool
	}{
		{true, netlab.Reached, true},
		{false, netlab.TimedOut, true},
		{true, netlab.TimedOut, false},
		{false, netlab.Reached, false},
		{true, netlab.Failed, false},
		{false, netlab.Failed, false},
	} {
		if got := netlab.Agrees(tc.want, netlab.Result{Verdict: tc.got}); got != tc.ok {
			t.Errorf("Agrees(%v, %s) = %v", tc.want, tc.got, got)
		}
	}
	p := []*netlab.Pod{{ContainerID: "a"}, {Namespace: "n", Name: "b"}}
	if cs := netlab.Cells(p, []netlab.Port{netlab.TCP(1)}, false); len(cs) != 2 || cs[0].String() != "a -> n/b 1/TCP" {
		t.Errorf("Cells without self = %v", cs)
	}
}

// Nodes on one underlay reach each other's host namespaces over it, in
// both families, and nothing else: their pods have no routes to each
// other until someone (the agent) adds them.
func TestUnderlay(t *testing.T) {
	u, nodes := netlabtest.NewNodes(t, 2, netlab.NodeOptions{})
	// The veths' carriers come up asynchronously: wait for them.
	start := time.Now()
	NewWithT(t).Eventually(func(g Gomega) {
		for i, n := range nodes {
			for _, dst := range u.NodeAddrs(1 - i) {
				// A refused connection proves the SYN got there and
				// the RST came back.
				var err error
				n.In(func() error {
					err = netlab.EchoOnce(dst, netlab.TCP(1), time.Now().Add(200*time.Millisecond))
					return nil
				})
				g.Expect(err).To(MatchError(unix.ECONNREFUSED), "node %d -> %s over the underlay", i, dst)
			}
		}
	}).WithTimeout(10 * time.Second).Should(Succeed())
	t.Logf("nodes reach each other %v after joining", time.Since(start))
	if got := u.NodeAddrs(1); got[0] != netip.MustParseAddr("192.168.200.2") || got[1] != netip.MustParseAddr("fd5c:1ce:200::2") {
		t.Errorf("NodeAddrs(1) = %v", got)
	}
	if err := nodes[0].JoinUnderlay(u, netip.MustParseAddr("10.0.0.1")); err == nil {
		t.Error("joined with an address outside the underlay's subnets")
	}
	name := u.NetNSName()
	if err := u.Remove(); err != nil {
		t.Fatal(err)
	}
	if netlab.NetNSExists(name) {
		t.Error("the underlay's netns outlived Remove")
	}
	// The kernel tears a namespace down asynchronously, and the node's
	// veth end with it.
	NewWithT(t).Eventually(func() error {
		var err error
		nodes[0].In(func() error { _, err = netlink.LinkByName(netlab.UnderlayIfName); return nil })
		return err
	}).WithTimeout(10*time.Second).Should(HaveOccurred(), "the node's underlay veth outlived the underlay")
}
