package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/packet"
	"github.com/sluice-dev/sluice/internal/policy"
)

// Addresses and classes of the tests. Probes made with BPF_PROG_TEST_RUN
// never leave the kernel's test harness.
var (
	ipA     = netip.MustParseAddr("10.0.1.1") // endpoint 1, class 16
	ipB     = netip.MustParseAddr("10.0.1.2") // endpoint 2, class 17
	ipC     = netip.MustParseAddr("10.0.2.5") // no endpoint, class 30 (10.0.0.0/16)
	ipD     = netip.MustParseAddr("10.0.2.6") // no endpoint, class 30
	ipWorld = netip.MustParseAddr("192.0.2.1")

	ip6A = netip.MustParseAddr("fd00::a") // endpoint 3, class 18
	ip6B = netip.MustParseAddr("fd00::b") // endpoint 4, class 19
	ip6C = netip.MustParseAddr("fd00:1::c")
)

const (
	classA    policy.Class = 16
	classB    policy.Class = 17
	class6A   policy.Class = 18
	class6B   policy.Class = 19
	classCIDR policy.Class = 30
	idA       uint32       = 1
	idB       uint32       = 2
	id6A      uint32       = 3
	id6B      uint32       = 4
)

func newDatapath(t testing.TB, opts Options) *Datapath {
	t.Helper()
	netlabtest.RequirePrivileged(t)
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d
}

func ipcache() []policy.IPCacheEntry {
	return []policy.IPCacheEntry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
		{Prefix: netip.MustParsePrefix("::/0"), Class: policy.ClassWorld},
		{Prefix: netip.MustParsePrefix("10.0.0.0/16"), Class: classCIDR},
		{Prefix: netip.PrefixFrom(ipA, 32), Class: classA},
		{Prefix: netip.PrefixFrom(ipB, 32), Class: classB},
		{Prefix: netip.PrefixFrom(ip6A, 128), Class: class6A},
		{Prefix: netip.PrefixFrom(ip6B, 128), Class: class6B},
	}
}

// snapshot has endpoints A and B (and their IPv6 twins), nothing isolated;
// edit modifies it.
func snapshot(edit func(a, b *policy.EndpointPolicy)) *policy.Snapshot {
	s := &policy.Snapshot{
		IPCache: ipcache(),
		Endpoints: []policy.EndpointPolicy{
			{ID: idA, IP: ipA}, {ID: idB, IP: ipB},
			{ID: id6A, IP: ip6A}, {ID: id6B, IP: ip6B},
		},
	}
	if edit != nil {
		edit(&s.Endpoints[0], &s.Endpoints[1])
	}
	return s
}

func tcp(src, dst netip.Addr, dport uint16) Packet {
	return Packet{Src: src, Dst: dst, Proto: policy.ProtoTCP, SrcPort: 40000, DstPort: dport}
}

func udp(src, dst netip.Addr, dport uint16) Packet {
	return Packet{Src: src, Dst: dst, Proto: policy.ProtoUDP, SrcPort: 40000, DstPort: dport}
}

func sctp(src, dst netip.Addr, dport uint16) Packet {
	return Packet{Src: src, Dst: dst, Proto: policy.ProtoSCTP, SrcPort: 40000, DstPort: dport}
}

func ping(src, dst netip.Addr) Packet {
	return Packet{Src: src, Dst: dst, Proto: ProtoICMP, SrcPort: 7}
}

// reply is the answer to p.
func reply(p Packet) Packet {
	return Packet{Src: p.Dst, Dst: p.Src, Proto: p.Proto, SrcPort: p.DstPort, DstPort: p.SrcPort, Reply: true}
}

func entry(c policy.Class, proto uint8, port uint16, bits uint8) policy.Entry {
	return policy.Entry{Class: c, Proto: proto, Port: port, PortPrefixLen: bits}
}

// portRange is the port prefixes covering lo-hi, as the compiler makes them.
func portRange(c policy.Class, proto uint8, lo, hi uint16) []policy.Entry {
	var out []policy.Entry
	for p := uint32(lo); p <= uint32(hi); {
		bits := uint8(16)
		for bits > 0 {
			size := uint32(1) << (16 - (bits - 1))
			if p%size != 0 || p+size-1 > uint32(hi) {
				break
			}
			bits--
		}
		out = append(out, entry(c, proto, uint16(p), bits))
		p += uint32(1) << (16 - bits)
	}
	return out
}

func mustVerdict(t *testing.T, d *Datapath, p Packet) bool {
	t.Helper()
	ok, err := d.Verdict(p)
	if err != nil {
		t.Fatalf("Verdict(%+v): %v", p, err)
	}
	return ok
}

type probe struct {
	name string
	pkt  Packet
	want bool
}

func TestPolicy(t *testing.T) {
	d := newDatapath(t, Options{})
	for _, tc := range []struct {
		name   string
		snap   *policy.Snapshot
		probes []probe
	}{{
		name: "not isolated passes",
		snap: snapshot(nil),
		probes: []probe{
			{"tcp", tcp(ipA, ipB, 80), true},
			{"from world", tcp(ipWorld, ipB, 80), true},
			{"to world", udp(ipA, ipWorld, 53), true},
			{"icmp", ping(ipA, ipB), true},
		},
	}, {
		name: "isolated without entries drops",
		snap: snapshot(func(a, b *policy.EndpointPolicy) { b.IngressIsolated = true }),
		probes: []probe{
			{"tcp", tcp(ipA, ipB, 80), false},
			{"icmp", ping(ipA, ipB), false},
			{"from world", udp(ipWorld, ipB, 53), false},
			{"egress not isolated", tcp(ipB, ipA, 80), true},
		},
	}, {
		name: "exact class and port",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
		}),
		probes: []probe{
			{"allowed", tcp(ipA, ipB, 80), true},
			{"other port", tcp(ipA, ipB, 81), false},
			{"other class", tcp(ipC, ipB, 80), false},
			{"world", tcp(ipWorld, ipB, 80), false},
			{"udp", udp(ipA, ipB, 80), false},
		},
	}, {
		name: "ClassAny",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(policy.ClassAny, policy.ProtoTCP, 443, 16)}
		}),
		probes: []probe{
			{"pod", tcp(ipA, ipB, 443), true},
			{"cidr", tcp(ipC, ipB, 443), true},
			{"world", tcp(ipWorld, ipB, 443), true},
			{"ipv6 peer", tcp(ip6A, ip6B, 443), true}, // B6 is not isolated
			{"other port", tcp(ipWorld, ipB, 444), false},
		},
	}, {
		name: "ProtoAny",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoAny, 0, 0)}
		}),
		probes: []probe{
			{"tcp", tcp(ipA, ipB, 1), true},
			{"udp", udp(ipA, ipB, 65535), true},
			{"sctp", sctp(ipA, ipB, 9), true},
			{"icmp", ping(ipA, ipB), true},
			{"gre", Packet{Src: ipA, Dst: ipB, Proto: 47}, true},
			{"other class", tcp(ipC, ipB, 1), false},
			{"other class icmp", ping(ipC, ipB), false},
		},
	}, {
		name: "port range as one prefix",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 8080, 12)} // 8080-8095
		}),
		probes: []probe{
			{"8079", tcp(ipA, ipB, 8079), false},
			{"8080", tcp(ipA, ipB, 8080), true},
			{"8087", tcp(ipA, ipB, 8087), true},
			{"8095", tcp(ipA, ipB, 8095), true},
			{"8096", tcp(ipA, ipB, 8096), false},
		},
	}, {
		name: "whole protocol",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoUDP, 0, 0)}
		}),
		probes: []probe{
			{"udp 1", udp(ipA, ipB, 1), true},
			{"udp 65535", udp(ipA, ipB, 65535), true},
			{"tcp", tcp(ipA, ipB, 1), false},
			{"icmp", ping(ipA, ipB), false},
		},
	}, {
		name: "UDP and TCP on one port",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoUDP, 53, 16)}
		}),
		probes: []probe{
			{"udp", udp(ipA, ipB, 53), true},
			{"tcp", tcp(ipA, ipB, 53), false},
			{"sctp", sctp(ipA, ipB, 53), false},
		},
	}, {
		name: "SCTP",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoSCTP, 3868, 16)}
		}),
		probes: []probe{
			{"sctp", sctp(ipA, ipB, 3868), true},
			{"sctp other port", sctp(ipA, ipB, 3869), false},
			{"tcp", tcp(ipA, ipB, 3868), false},
		},
	}, {
		name: "ICMP only with ProtoAny",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{
				entry(classA, policy.ProtoTCP, 0, 0),
				entry(policy.ClassAny, policy.ProtoUDP, 0, 0),
				entry(policy.ClassAny, policy.ProtoTCP, 0, 16), // port 0 exactly
			}
		}),
		probes: []probe{
			{"icmp from A", ping(ipA, ipB), false},
			{"icmp from C", ping(ipC, ipB), false},
			{"tcp from A", tcp(ipA, ipB, 22), true},
		},
	}, {
		name: "ipcache longest match",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classCIDR, policy.ProtoTCP, 80, 16)}
			a.IngressIsolated = true
			a.Ingress = []policy.Entry{entry(policy.ClassWorld, policy.ProtoTCP, 80, 16)}
		}),
		probes: []probe{
			{"C in the /16", tcp(ipC, ipB, 80), true},
			{"A has its /32", tcp(ipA, ipB, 80), false},
			{"world is not the /16", tcp(ipWorld, ipB, 80), false},
			{"world to A", tcp(ipWorld, ipA, 80), true},
			{"C to A", tcp(ipC, ipA, 80), false},
		},
	}, {
		name: "src equals dst passes",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			b.IngressIsolated, b.EgressIsolated = true, true
		}),
		probes: []probe{
			{"self tcp", tcp(ipB, ipB, 80), true},
			{"self icmp", ping(ipB, ipB), true},
			{"others still drop", tcp(ipA, ipB, 80), false},
		},
	}, {
		name: "unknown endpoint passes",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			a.IngressIsolated, a.EgressIsolated = true, true
		}),
		probes: []probe{
			{"both unknown", tcp(ipC, ipD, 80), true},
			{"world to unknown", udp(ipWorld, ipC, 53), true},
			{"isolated A to unknown", tcp(ipA, ipC, 80), false},
			{"unknown to isolated A", tcp(ipC, ipA, 80), false},
		},
	}, {
		name: "egress",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			a.EgressIsolated = true
			a.Egress = append(portRange(classB, policy.ProtoTCP, 5000, 5010),
				portRange(classCIDR, policy.ProtoUDP, 53, 53)...)
		}),
		probes: []probe{
			{"to B in range", tcp(ipA, ipB, 5005), true},
			{"to B out of range", tcp(ipA, ipB, 5011), false},
			{"dns to C", udp(ipA, ipC, 53), true},
			{"dns to B", udp(ipA, ipB, 53), false},
			{"to world", tcp(ipA, ipWorld, 443), false},
			{"B is not isolated", tcp(ipB, ipA, 80), true},
		},
	}, {
		name: "both ends on the node",
		snap: snapshot(func(a, b *policy.EndpointPolicy) {
			a.EgressIsolated = true
			a.Egress = []policy.Entry{entry(classB, policy.ProtoTCP, 0, 0)}
			b.IngressIsolated = true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
		}),
		probes: []probe{
			{"both allow", tcp(ipA, ipB, 80), true},
			{"egress allows, ingress not", tcp(ipA, ipB, 81), false},
		},
	}, {
		name: "IPv6",
		snap: func() *policy.Snapshot {
			s := snapshot(nil)
			s.Endpoints[3].IngressIsolated = true
			s.Endpoints[3].Ingress = []policy.Entry{
				entry(class6A, policy.ProtoTCP, 80, 16),
				entry(policy.ClassWorld, policy.ProtoAny, 0, 0),
			}
			return s
		}(),
		probes: []probe{
			{"tcp from A6", tcp(ip6A, ip6B, 80), true},
			{"tcp from A6 other port", tcp(ip6A, ip6B, 81), false},
			{"icmpv6 from A6", Packet{Src: ip6A, Dst: ip6B, Proto: ProtoICMPv6, SrcPort: 1}, false},
			{"world", udp(ip6C, ip6B, 9), true},
			{"world icmpv6", Packet{Src: ip6C, Dst: ip6B, Proto: ProtoICMPv6, SrcPort: 1}, true},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if err := d.Apply(tc.snap); err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.probes {
				if err := d.ResetConntrack(); err != nil {
					t.Fatal(err)
				}
				if got := mustVerdict(t, d, p.pkt); got != p.want {
					t.Errorf("%s: %+v allowed=%v, want %v", p.name, p.pkt, got, p.want)
				}
			}
		})
	}
}

// Every port of a range made of several prefixes, and the ports around it.
func TestPortRangePrefixes(t *testing.T) {
	d := newDatapath(t, Options{})
	const lo, hi = 1000, 2050
	entries := portRange(classA, policy.ProtoTCP, lo, hi)
	if len(entries) < 3 {
		t.Fatalf("range %d-%d gave %d prefixes", lo, hi, len(entries))
	}
	if err := d.Apply(snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = entries
	})); err != nil {
		t.Fatal(err)
	}
	for port := uint16(lo - 20); port <= hi+20; port++ {
		want := port >= lo && port <= hi
		if got := mustVerdict(t, d, tcp(ipA, ipB, port)); got != want {
			t.Errorf("port %d allowed=%v, want %v (entries %v)", port, got, want, entries)
		}
	}
}

func TestNonIPPasses(t *testing.T) {
	d := newDatapath(t, Options{})
	if err := d.Apply(snapshot(func(a, b *policy.EndpointPolicy) {
		a.IngressIsolated, a.EgressIsolated = true, true
	})); err != nil {
		t.Fatal(err)
	}
	arp := make([]byte, 14+28)
	copy(arp, packet.DefaultDstMAC[:])
	copy(arp[6:], packet.DefaultSrcMAC[:])
	arp[12], arp[13] = 0x08, 0x06
	for _, p := range progs(d) {
		ret, _, err := p.Test(arp)
		if err != nil {
			t.Fatal(err)
		}
		if ret != uint32(sluiceTcxActionBaseTCX_PASS) {
			t.Errorf("%s: ARP got %d, want pass", p, ret)
		}
	}
	// A non-first IPv4 fragment has no ports: only ProtoAny entries allow it.
	frame, err := tcp(ipA, ipB, 80).Frame()
	if err != nil {
		t.Fatal(err)
	}
	frame[14+6], frame[14+7] = 0x00, 0x10 // offset 16*8 bytes
	ret, _, err := d.objs.SluiceFromPod.Test(frame)
	if err != nil {
		t.Fatal(err)
	}
	if ret != uint32(sluiceTcxActionBaseTCX_DROP) {
		t.Errorf("fragment from isolated A: %d, want drop", ret)
	}
}

func TestConntrack(t *testing.T) {
	d := newDatapath(t, Options{})
	// A may open TCP/80, UDP/53, SCTP/9 and pings to B; B may receive them.
	// Nothing else: A's ingress and B's egress deny every new flow.
	snap := snapshot(func(a, b *policy.EndpointPolicy) {
		allow := func(c policy.Class) []policy.Entry {
			return []policy.Entry{
				entry(c, policy.ProtoTCP, 80, 16), entry(c, policy.ProtoUDP, 53, 16),
				entry(c, policy.ProtoSCTP, 9, 16),
			}
		}
		a.IngressIsolated, a.EgressIsolated = true, true
		a.Egress = allow(classB)
		b.IngressIsolated, b.EgressIsolated = true, true
		b.Ingress = allow(classA)
	})
	if err := d.Apply(snap); err != nil {
		t.Fatal(err)
	}
	for _, flow := range []Packet{tcp(ipA, ipB, 80), udp(ipA, ipB, 53), sctp(ipA, ipB, 9)} {
		t.Run(fmt.Sprintf("proto %d", flow.Proto), func(t *testing.T) {
			if err := d.ResetConntrack(); err != nil {
				t.Fatal(err)
			}
			rep := reply(flow)
			if mustVerdict(t, d, rep) {
				t.Fatal("a reply before its flow passed")
			}
			if !mustVerdict(t, d, flow) {
				t.Fatal("the flow was dropped")
			}
			if !mustVerdict(t, d, rep) {
				t.Error("the reply was dropped")
			}
			forged := rep
			forged.DstPort++
			if mustVerdict(t, d, forged) {
				t.Error("a reply to another source port passed")
			}
			forged = rep
			forged.SrcPort = 81
			if mustVerdict(t, d, forged) {
				t.Error("a reply from another port passed")
			}
			// The same ports the other way round is a new flow, which
			// B's egress denies: a non-reply packet from B.
			newFlow := flow
			newFlow.Src, newFlow.Dst = flow.Dst, flow.Src
			if mustVerdict(t, d, newFlow) {
				t.Error("B opened a flow to A's port")
			}
			// Another protocol with the same tuple is not a reply.
			other := rep
			other.Proto = policy.ProtoUDP
			if flow.Proto == policy.ProtoUDP {
				other.Proto = policy.ProtoTCP
			}
			if mustVerdict(t, d, other) {
				t.Error("a reply in another protocol passed")
			}
			if err := d.ResetConntrack(); err != nil {
				t.Fatal(err)
			}
			if mustVerdict(t, d, rep) {
				t.Error("the reply passed after ResetConntrack")
			}
		})
	}

	t.Run("icmp echo", func(t *testing.T) {
		snap := snapshot(func(a, b *policy.EndpointPolicy) {
			a.IngressIsolated, a.EgressIsolated = true, true
			a.Egress = []policy.Entry{entry(classB, policy.ProtoAny, 0, 0)}
			b.IngressIsolated, b.EgressIsolated = true, true
			b.Ingress = []policy.Entry{entry(classA, policy.ProtoAny, 0, 0)}
		})
		if err := d.Apply(snap); err != nil {
			t.Fatal(err)
		}
		if err := d.ResetConntrack(); err != nil {
			t.Fatal(err)
		}
		req := ping(ipA, ipB)
		if !mustVerdict(t, d, req) {
			t.Fatal("echo request dropped")
		}
		if !mustVerdict(t, d, reply(req)) {
			t.Error("echo reply dropped")
		}
		other := reply(req)
		other.DstPort++
		if mustVerdict(t, d, other) {
			t.Error("echo reply with another identifier passed")
		}
		if mustVerdict(t, d, ping(ipB, ipA)) {
			t.Error("echo request from B passed")
		}
	})

	t.Run("a third pod can't use the flow", func(t *testing.T) {
		if err := d.Apply(snap); err != nil {
			t.Fatal(err)
		}
		flow := tcp(ipA, ipB, 80)
		if !mustVerdict(t, d, flow) {
			t.Fatal("flow dropped")
		}
		forged := reply(flow)
		forged.Src = ipC
		if mustVerdict(t, d, forged) {
			t.Error("a reply from another address passed")
		}
	})

	t.Run("removed endpoints lose their flows", func(t *testing.T) {
		if err := d.Apply(snap); err != nil {
			t.Fatal(err)
		}
		flow := tcp(ipA, ipB, 80)
		if !mustVerdict(t, d, flow) {
			t.Fatal("flow dropped")
		}
		without := snapshot(nil)
		without.Endpoints = without.Endpoints[1:] // A leaves
		if err := d.Apply(without); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(snap); err != nil { // a new A with the same ID
			t.Fatal(err)
		}
		if mustVerdict(t, d, reply(flow)) {
			t.Error("the new A accepted a reply to the old A's flow")
		}
	})
}

func TestConntrackTimeout(t *testing.T) {
	d := newDatapath(t, Options{CTTimeoutOther: 50 * time.Millisecond})
	if err := d.Apply(snapshot(func(a, b *policy.EndpointPolicy) {
		a.IngressIsolated = true
	})); err != nil {
		t.Fatal(err)
	}
	flow := udp(ipA, ipB, 53)
	if !mustVerdict(t, d, flow) {
		t.Fatal("flow dropped")
	}
	if !mustVerdict(t, d, reply(flow)) {
		t.Fatal("reply dropped")
	}
	time.Sleep(100 * time.Millisecond)
	if mustVerdict(t, d, reply(flow)) {
		t.Error("a reply passed after the flow expired")
	}
}

func TestCounters(t *testing.T) {
	d := newDatapath(t, Options{})
	if err := d.Apply(snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = []policy.Entry{entry(classA, policy.ProtoTCP, 80, 16)}
	})); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustVerdict(t, d, tcp(ipA, ipB, 80))
	}
	for range 2 {
		mustVerdict(t, d, tcp(ipA, ipB, 81))
	}
	a, err := d.Counters(idA)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{EgressAllowed: 5}); a != want {
		t.Errorf("A: %+v, want %+v", a, want)
	}
	b, err := d.Counters(idB)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Counters{IngressAllowed: 3, IngressDropped: 2}); b != want {
		t.Errorf("B: %+v, want %+v", b, want)
	}
	// Counters survive a new snapshot and go with their endpoint.
	if err := d.Apply(snapshot(nil)); err != nil {
		t.Fatal(err)
	}
	if b2, _ := d.Counters(idB); b2 != b {
		t.Errorf("B after Apply: %+v, want %+v", b2, b)
	}
	s := snapshot(nil)
	s.Endpoints = s.Endpoints[:1]
	if err := d.Apply(s); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Counters(idB); err == nil {
		t.Error("B's counters outlived B")
	}
}

// Verdicts keep coming while snapshots alternate; each must be the old or
// the new snapshot's answer. Between the two, A's class is renumbered in
// the ipcache and B's policy follows it, the port entries change shape,
// and endpoint C appears: an ipcache, endpoints or policy written in place
// would be seen half-way.
func TestApplyIsAtomic(t *testing.T) {
	d := newDatapath(t, Options{})
	ipE := netip.MustParseAddr("10.0.1.9")
	old := snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = append([]policy.Entry{
			entry(classA, policy.ProtoTCP, 80, 16),
			entry(policy.ClassAny, policy.ProtoUDP, 53, 16),
		}, portRange(classA, policy.ProtoTCP, 9000, 9999)...)
	})
	const classA2 policy.Class = 40
	next := snapshot(func(a, b *policy.EndpointPolicy) {
		b.IngressIsolated = true
		b.Ingress = append([]policy.Entry{
			entry(classA2, policy.ProtoTCP, 80, 12), // 80-95
		}, portRange(classA2, policy.ProtoTCP, 9000, 9999)...)
	})
	for i, e := range next.IPCache {
		if e.Class == classA {
			next.IPCache[i].Class = classA2
		}
	}
	// E is isolated with nothing allowed in next, absent (so open) in old.
	next.Endpoints = append(next.Endpoints, policy.EndpointPolicy{ID: 9, IP: ipE, IngressIsolated: true})

	type check struct {
		pkt      Packet
		old, new bool
	}
	checks := []check{
		{tcp(ipA, ipB, 80), true, true},
		{tcp(ipA, ipB, 9500), true, true},
		{tcp(ipA, ipB, 81), false, true},
		{udp(ipA, ipB, 53), true, false},
		{tcp(ipA, ipB, 443), false, false},
		{tcp(ipA, ipE, 80), true, false},
	}
	if err := d.Apply(old); err != nil {
		t.Fatal(err)
	}
	var (
		stop   atomic.Bool
		wg     sync.WaitGroup
		probes atomic.Int64
		bad    = make(chan string, 10)
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for _, c := range checks {
				got, err := d.Verdict(c.pkt)
				if err != nil {
					bad <- err.Error()
					return
				}
				probes.Add(1)
				if got != c.old && got != c.new {
					select {
					case bad <- fmt.Sprintf("%+v allowed=%v: neither old (%v) nor new (%v)", c.pkt, got, c.old, c.new):
					default:
					}
				}
			}
		}
	}()
	const rounds = 100
	start := time.Now()
	for i := range rounds {
		s := old
		if i%2 == 0 {
			s = next
		}
		if err := d.Apply(s); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	close(bad)
	for msg := range bad {
		t.Error(msg)
	}
	t.Logf("%d applies in %v (%v each), %d probes meanwhile", rounds, elapsed, elapsed/rounds, probes.Load())
	if probes.Load() < rounds {
		t.Errorf("only %d probes ran during %d applies", probes.Load(), rounds)
	}

	// After Apply returns the new snapshot is in force.
	for _, s := range []struct {
		snap  *policy.Snapshot
		isNew bool
	}{{next, true}, {old, false}} {
		if err := d.Apply(s.snap); err != nil {
			t.Fatal(err)
		}
		for _, c := range checks {
			want := c.old
			if s.isNew {
				want = c.new
			}
			if got := mustVerdict(t, d, c.pkt); got != want {
				t.Errorf("new=%v: %+v allowed=%v, want %v", s.isNew, c.pkt, got, want)
			}
		}
	}
}

func TestApplyRejects(t *testing.T) {
	d := newDatapath(t, Options{MaxEndpoints: 2, MaxPolicyEntries: 2})
	for name, s := range map[string]*policy.Snapshot{
		"too many endpoints": snapshot(nil),
		"too many entries": {Endpoints: []policy.EndpointPolicy{{ID: 1, IP: ipA, IngressIsolated: true, Ingress: []policy.Entry{
			entry(1, 6, 1, 16), entry(1, 6, 2, 16), entry(1, 6, 3, 16)}}}},
		"duplicate ID":   {Endpoints: []policy.EndpointPolicy{{ID: 1, IP: ipA}, {ID: 1, IP: ipB}}},
		"duplicate IP":   {Endpoints: []policy.EndpointPolicy{{ID: 1, IP: ipA}, {ID: 2, IP: ipA}}},
		"no IP":          {Endpoints: []policy.EndpointPolicy{{ID: 1}}},
		"port prefix 17": {Endpoints: []policy.EndpointPolicy{{ID: 1, IP: ipA, EgressIsolated: true, Egress: []policy.Entry{entry(1, 6, 1, 17)}}}},
		"ProtoAny port":  {Endpoints: []policy.EndpointPolicy{{ID: 1, IP: ipA, EgressIsolated: true, Egress: []policy.Entry{entry(1, 0, 80, 16)}}}},
	} {
		if err := d.Apply(s); err == nil {
			t.Errorf("%s: Apply succeeded", name)
		}
	}
	if err := d.Apply(nil); err == nil {
		t.Error("Apply(nil) succeeded")
	}
}

func TestClose(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	var nilDP *Datapath
	if err := nilDP.Close(); err != nil {
		t.Errorf("nil Close: %v", err)
	}
	if _, err := nilDP.Verdict(tcp(ipA, ipB, 80)); err == nil {
		t.Error("Verdict on nil succeeded")
	}
	d, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(snapshot(nil)); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := d.Verdict(tcp(ipA, ipB, 80)); !errors.Is(err, errClosed) {
		t.Errorf("Verdict after Close: %v", err)
	}
	if err := d.Apply(snapshot(nil)); !errors.Is(err, errClosed) {
		t.Errorf("Apply after Close: %v", err)
	}
	if _, err := d.Attach(1); !errors.Is(err, errClosed) {
		t.Errorf("Attach after Close: %v", err)
	}
	if _, err := d.Counters(idA); !errors.Is(err, errClosed) {
		t.Errorf("Counters after Close: %v", err)
	}
}

func progs(d *Datapath) []*ebpf.Program {
	return []*ebpf.Program{d.objs.SluiceFromPod, d.objs.SluiceToPod}
}
