package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/policy"
	"github.com/sluice-dev/sluice/test/nodelab"
)

// Real packets: two pods wired by sluice-cni in a node's netns, the
// programs attached with tcx to their host-side veths, TCP connections
// allowed and refused as the snapshot says.
func TestRealPackets(t *testing.T) {
	nodelab.RequirePrivileged(t)
	lab := nodelab.NewNode(t)
	// Addresses inside this test's own network namespaces only.
	if err := cni.WriteAllocation(lab.AllocationFile, cni.Allocation{
		Node: "node-1", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{"10.250.7.0/24"}, ExcludeIPs: []string{"10.250.7.0", "10.250.7.255"}, MaxPods: 10,
	}); err != nil {
		t.Fatal(err)
	}
	a, b := lab.AddPod(t, "pod-a"), lab.AddPod(t, "pod-b")

	d := newDatapath(t, Options{})
	for _, p := range []nodelab.Pod{a, b} {
		lab.In(func() error {
			att, err := d.Attach(p.HostIfIndex)
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = att.Close() })
			return nil
		})
	}

	snap := func(edit func(a, b *policy.EndpointPolicy)) *policy.Snapshot {
		s := &policy.Snapshot{
			IPCache: []policy.IPCacheEntry{
				{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
				{Prefix: netip.PrefixFrom(a.IP, 32), Class: classA},
				{Prefix: netip.PrefixFrom(b.IP, 32), Class: classB},
			},
			Endpoints: []policy.EndpointPolicy{{ID: idA, IP: a.IP}, {ID: idB, IP: b.IP}},
		}
		edit(&s.Endpoints[0], &s.Endpoints[1])
		return s
	}
	connect := func(port int) error { return nodelab.TCPRoundTripOn(b.NetNS, b.IP, port, a.NetNS, time.Second) }

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
