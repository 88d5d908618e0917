package datapath

import (
	"net/netip"
	"testing"

	"github.com/sluice-dev/sluice/internal/policy"
)

// icmpError is an ICMP error from src about quote.
func icmpError(src netip.Addr, quote Packet) Packet {
	return Packet{Src: src, Dst: quote.Src, Proto: ProtoICMP, Quote: &quote}
}

// An ICMP error passes an isolated direction when it reports on a flow the
// endpoint's other direction allowed, and only then: path MTU discovery
// and "port unreachable" work under deny-all, and an error can't be used
// to reach a pod on a flow it never had.
func TestICMPErrorsFollowTheirFlows(t *testing.T) {
	d := newDatapath(t, Options{})
	// A may open TCP/80, UDP/53 and pings to B, B receive them; A's
	// ingress and B's egress are closed to every new flow.
	snap := snapshot(func(a, b *policy.EndpointPolicy) {
		a.IngressIsolated, a.EgressIsolated = true, true
		a.Egress = []policy.Entry{entry(classB, policy.ProtoTCP, 80, 16), entry(classB, policy.ProtoUDP, 53, 16)}
		b.IngressIsolated, b.EgressIsolated = true, true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16), entry(classA, policy.ProtoUDP, 53, 16)}
	})
	snap.Endpoints[2].IngressIsolated, snap.Endpoints[2].EgressIsolated = true, true
	snap.Endpoints[2].Egress = []policy.Entry{entry(class6B, policy.ProtoTCP, 80, 16)}
	if err := d.Apply(snap); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		flow   Packet
		router netip.Addr // sends errors about the flow back to its source
	}{
		{"tcp", tcp(ipA, ipB, 80), ipWorld},
		{"udp", udp(ipA, ipB, 53), ipC},
		{"ipv6 tcp", tcp(ip6A, ip6B, 80), ip6C},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.ResetConntrack(); err != nil {
				t.Fatal(err)
			}
			// A router on the way reports on A's packet to A.
			toA := icmpError(tc.router, tc.flow)
			if mustVerdict(t, d, toA) {
				t.Fatal("an error about a flow A never opened passed")
			}
			if !mustVerdict(t, d, tc.flow) {
				t.Fatal("the flow was dropped")
			}
			if !mustVerdict(t, d, toA) {
				t.Error("an error about A's flow was dropped at A's ingress")
			}
			other := tc.flow
			other.DstPort++
			if mustVerdict(t, d, icmpError(tc.router, other)) {
				t.Error("an error about another port of the flow's peer passed")
			}
			other = tc.flow
			other.SrcPort++
			if mustVerdict(t, d, icmpError(tc.router, other)) {
				t.Error("an error about another source port passed")
			}
		})
	}

	t.Run("from the destination", func(t *testing.T) {
		if err := d.ResetConntrack(); err != nil {
			t.Fatal(err)
		}
		// B answers A's datagram with an error (say, port unreachable):
		// B's egress must let it out, A's ingress in.
		flow := udp(ipA, ipB, 53)
		fromB := icmpError(ipB, flow)
		if mustVerdict(t, d, fromB) {
			t.Fatal("B sent an error about a flow it never received")
		}
		if !mustVerdict(t, d, flow) {
			t.Fatal("the flow was dropped")
		}
		if !mustVerdict(t, d, fromB) {
			t.Error("B's error about A's datagram was dropped")
		}
	})

	t.Run("about a ping", func(t *testing.T) {
		if err := d.ResetConntrack(); err != nil {
			t.Fatal(err)
		}
		pingSnap := snapshot(func(a, b *policy.EndpointPolicy) {
			a.IngressIsolated, a.EgressIsolated = true, true
			a.Egress = []policy.Entry{entry(policy.ClassWorld, policy.ProtoAny, 0, 0)}
		})
		if err := d.Apply(pingSnap); err != nil {
			t.Fatal(err)
		}
		req := ping(ipA, ipWorld)
		exceeded := icmpError(ipC, req) // a router on the way: TTL ran out
		if mustVerdict(t, d, exceeded) {
			t.Fatal("an error about a ping A never sent passed")
		}
		if !mustVerdict(t, d, req) {
			t.Fatal("the ping was dropped")
		}
		if !mustVerdict(t, d, exceeded) {
			t.Error("an error about A's ping was dropped")
		}
	})
}

// A policy change reaches flows that are already open: their forward
// packets pass on conntrack alone only while the snapshot that allowed
// them is live.
func TestPolicyChangeReachesOpenFlows(t *testing.T) {
	d := newDatapath(t, Options{})
	allow := snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
	})
	deny := snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 81, 16)}
	})
	flow := tcp(ipA, ipB, 80)
	for i, step := range []struct {
		snap *policy.Snapshot
		want bool
	}{{allow, true}, {allow, true}, {deny, false}, {allow, true}, {deny, false}} {
		if err := d.Apply(step.snap); err != nil {
			t.Fatal(err)
		}
		for range 3 { // the first packet records the flow, the others ride on it
			if got := mustVerdict(t, d, flow); got != step.want {
				t.Fatalf("step %d: flow allowed=%v, want %v", i, got, step.want)
			}
		}
	}
}
