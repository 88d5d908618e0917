package datapath

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// Real packets: two pods wired by sluice-cni in a node's netns, the
// programs attached with tcx to their host-side veths, TCP connections
// allowed and refused as the snapshot says.
func TestRealPackets(t *testing.T) {
	d := newDatapath(t, Options{})
	a, b := twoPods(t, d, "10.250.7.0/24", false)
	snap := func(edit func(a, b *policy.EndpointPolicy)) *policy.Snapshot { return snapshotOf(a, b, edit) }
	connect := func(port int) error { return netlab.TCPRoundTripOn(b.NetNS, b.IP, port, a.NetNS, time.Second) }

	for _, step := range []struct {
		name    string
		snap    *policy.Snapshot
		allowed map[int]bool
	}{{
		name: "B admits A on 7777; A's ingress is closed, yet replies come back",
		snap: snap(func(pa, pb *policy.EndpointPolicy) {
			pa.IngressIsolated = true
			pb.IngressIsolated = true
			pb.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 7777, 16)}
		}),
		allowed: map[int]bool{7777: true, 7778: false},
	}, {
		name: "A's egress admits only 7778",
		snap: snap(func(pa, pb *policy.EndpointPolicy) {
			pa.EgressIsolated = true
			pa.Egress = []policy.Entry{entry(classB, policy.ProtoTCP, 7778, 16)}
		}),
		allowed: map[int]bool{7777: false, 7778: true},
	}, {
		name:    "nothing isolated",
		snap:    snap(func(pa, pb *policy.EndpointPolicy) {}),
		allowed: map[int]bool{7777: true, 7778: true},
	}} {
		t.Run(step.name, func(t *testing.T) {
			if err := d.Apply(step.snap); err != nil {
				t.Fatal(err)
			}
			for port, want := range step.allowed {
				err := connect(port)
				if got := err == nil; got != want {
					t.Errorf("A -> B:%d connected=%v (%v), want %v", port, got, err, want)
				}
			}
		})
	}
	ca, err := d.Counters(idA)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := d.Counters(idB)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters: A %+v, B %+v", ca, cb)
	if ca.EgressAllowed == 0 || ca.IngressAllowed == 0 || ca.EgressDropped == 0 || cb.IngressDropped == 0 {
		t.Errorf("counters missed packets: A %+v, B %+v", ca, cb)
	}
}

// twoPods wires two pods on a fresh node and attaches the programs to both
// veths, registering each pod's address with Attach when register is set.
func twoPods(t *testing.T, d *Datapath, cidr string, register bool) (a, b netlabtest.Pod) {
	t.Helper()
	lab := netlabtest.NewNode(t)
	prefix := netip.MustParsePrefix(cidr)
	last := prefix.Addr()
	for range 255 {
		last = last.Next()
	}
	if err := cni.WriteAllocation(lab.AllocationFile(), cni.Allocation{
		Node: "node-1", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{cidr}, ExcludeIPs: []string{prefix.Addr().String(), last.String()}, MaxPods: 10,
	}); err != nil {
		t.Fatal(err)
	}
	a, b = lab.WirePod(t, "pod-a"), lab.WirePod(t, "pod-b")
	for _, p := range []netlabtest.Pod{a, b} {
		var ips []netip.Addr
		if register {
			ips = []netip.Addr{p.IP}
		}
		lab.In(func() error {
			att, err := d.Attach(p.HostIfIndex, ips...)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = att.Close() })
			return nil
		})
	}
	return a, b
}

// A pod can send only from its own address: a datagram from a second
// address it gives itself never reaches the other pod, and is counted.
// The same datagram from an unregistered veth does arrive, so it is the
// check that stops it (not the host's routing).
func TestAntiSpoofing(t *testing.T) {
	d := newDatapath(t, Options{})
	for _, register := range []bool{true, false} {
		t.Run(fmt.Sprintf("registered=%v", register), func(t *testing.T) {
			a, b := twoPods(t, d, "10.250.8.0/24", register)
			if err := d.Apply(snapshotOf(a, b, nil)); err != nil {
				t.Fatal(err)
			}
			forged := netip.MustParseAddr("10.250.8.200")
			if err := netlab.AddAddress(a.NetNS, "eth0", forged); err != nil {
				t.Fatal(err)
			}
			ok, from, err := netlab.UDPDatagramFrom(b.NetNS, b.IP, 5000, a.NetNS, a.IP, 2*time.Second)
			if err != nil || !ok || from != a.IP {
				t.Fatalf("a datagram from A's own address: arrived=%v from %v (%v)", ok, from, err)
			}
			ok, from, err = netlab.UDPDatagramFrom(b.NetNS, b.IP, 5001, a.NetNS, forged, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ok != !register {
				t.Errorf("a datagram from %s: arrived=%v (from %v), want %v", forged, ok, from, !register)
			}
			if register {
				n, err := d.Spoofed(a.HostIfIndex)
				if err != nil || n == 0 {
					t.Errorf("Spoofed(A) = %d, %v; want at least 1", n, err)
				}
			} else if _, err := d.Spoofed(a.HostIfIndex); err == nil {
				t.Error("an unregistered veth has a spoofing counter")
			}
		})
	}
}

// "Port unreachable" from a pod reaches a client whose ingress is closed:
// ICMP errors about a flow pass with the flow.
func TestICMPErrorReachesIsolatedClient(t *testing.T) {
	d := newDatapath(t, Options{})
	a, b := twoPods(t, d, "10.250.9.0/24", true)
	for _, related := range []bool{true, false} {
		port := 5353
		if !related {
			port = 5354 // B's ingress refuses it: no flow, no error
		}
		if err := d.Apply(snapshotOf(a, b, func(pa, pb *policy.EndpointPolicy) {
			pa.IngressIsolated = true // nothing may open a flow to A
			pb.IngressIsolated = true
			pb.Ingress = []policy.Entry{entry(classA, policy.ProtoUDP, 5353, 16)}
		})); err != nil {
			t.Fatal(err)
		}
		refused, err := netlab.UDPRefused(a.NetNS, b.IP, port, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if refused != related {
			t.Errorf("UDP to B:%d: refused=%v, want %v", port, refused, related)
		}
	}
}

// snapshotOf is a snapshot of pods a (endpoint idA, class classA) and b
// (idB, classB), nothing isolated; edit modifies it.
func snapshotOf(a, b netlabtest.Pod, edit func(pa, pb *policy.EndpointPolicy)) *policy.Snapshot {
	s := &policy.Snapshot{
		IPCache: []policy.IPCacheEntry{
			{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
			{Prefix: netip.PrefixFrom(a.IP, 32), Class: classA},
			{Prefix: netip.PrefixFrom(b.IP, 32), Class: classB},
		},
		Endpoints: []policy.EndpointPolicy{{ID: idA, IP: a.IP}, {ID: idB, IP: b.IP}},
	}
	if edit != nil {
		edit(&s.Endpoints[0], &s.Endpoints[1])
	}
	return s
}
