package bench

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// Pod-to-pod benchmark parameters.
const (
	p2pCIDR = "10.244.9.0/24"
	// p2pPort is the one server port every measurement uses; p2pDeniedPort
	// is one (c), (d) and (e) must refuse.
	p2pPort       = 7777
	p2pDeniedPort = 7781
	// p2pRules is the size of each isolated direction's policy in (c).
	p2pRules = 10_000
	// p2pIPCache is the number of extra /32 ipcache entries (plus 256 /24s).
	p2pIPCache = 20_000
	// p2pRounds of (a, b, c, d, e); BENCH_PODTOPOD_ROUNDS overrides it.
	p2pRounds = 9
	// Samples per configuration per round.
	p2pRRWarmup  = 200
	p2pRRSamples = 2_000
	p2pConns     = 300
	p2pBulkBytes = 128 << 20
	p2pBulkRuns  = 5
	// p2pMsg is the size of every request and response.
	p2pMsg     = 64
	p2pTimeout = 10 * time.Second

	classClient policy.Class = policy.FirstDynamicClass
	classServer policy.Class = policy.FirstDynamicClass + 1
	// Classes of the other entries start here.
	classOthers policy.Class = policy.FirstDynamicClass + 16

	idClient uint32 = 1
	idServer uint32 = 2
)

// Request kinds: the first byte of a connection's first message.
const (
	kindRR   = 'r' // echo 64-byte messages until EOF
	kindConn = 'c' // one 64-byte response, then close
	kindBulk = 'b' // read the byte count in bytes 8..16, then ack with it
)

// Configurations, in the order each round runs them.
const (
	cfgNone   = iota // (a) no program attached
	cfgOpen          // (b) attached, both endpoints, nothing isolated
	cfgIsol          // (c) attached, 10,000 entries each way
	cfgIpt           // (d) no program, (c)'s policy as iptables-nft chains
	cfgIptEst        // (e) as (d) behind a conntrack ESTABLISHED shortcut
	numConfig        //
)

// cfgNames name the configurations in the table and the metrics; the
// iptables ones say their backend.
var cfgNames = [numConfig]string{"a", "b", "c", "d_nft", "e_nft"}

// cfgDenies says which configurations must refuse p2pDeniedPort.
var cfgDenies = [numConfig]bool{cfgIsol: true, cfgIpt: true, cfgIptEst: true}

// p2pFigures are one configuration's figures in one round.
type p2pFigures struct {
	rrP50, connP50 time.Duration
	mbps           float64
}

// BenchmarkPodToPodLatency measures TCP between two pods of one node (a
// host netns and two pod netns wired by the real sluice-cni) in five
// configurations:
//
//	a  no program attached to the host-side veths
//	b  sluice_from_pod/sluice_to_pod attached to both veths, a snapshot
//	   with both endpoints and nothing isolated
//	c  attached, the server's ingress isolated with 10,000 entries (9,999
//	   of other classes and ports, one allowing the client's class on the
//	   server port) and the client's egress likewise towards the server's
//	   class; the ipcache holds 20,256 other prefixes besides 0.0.0.0/0
//	d  no program attached; (c)'s policy as iptables rules in the host
//	   netns, walked by every packet (metrics *_d_nft)
//	e  as d behind a conntrack ESTABLISHED,RELATED shortcut (*_e_nft)
//
// (d) and (e) are a NetworkPolicy implementation on iptables that writes a
// rule per peer and port (no ipsets), on the nf_tables backend
// (iptables-nft-restore, Debian's default) with iptables 1.8's translation:
// each rule a native nft rule with a counter. Two user chains hold (c)'s
// very entries in order, one rule each, a class standing for one of its
// ipcache addresses: the client's egress (-s client -d peer -p tcp -m tcp
// --dport N -j RETURN, 10,000 rules, then -j DROP) and the server's ingress
// (-s peer -d server ... -j ACCEPT, 10,000 rules, then -j DROP). The bench
// flow matches the last rule of each; every 100th rule has the flow's
// addresses but another port, so it is compared in full. FORWARD jumps to
// the egress chain for packets from the client and to the ingress chain for
// packets to the server, so a request walks 20,000 rules as (c) looks up
// both directions; replies match neither jump, as in (c) neither the
// server's egress nor the client's ingress is isolated. (d) is the stateless
// worst case: no conntrack in the host netns, every packet walks the chains.
// (e) puts -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT first, as
// kube-router and Calico's iptables mode do: only a connection's first
// packet walks the chains, and every packet pays for conntrack, which the
// rule turns on in the netns. The chains are loaded once (a chain nothing
// jumps to costs nothing); FORWARD exists only during (d) and (e) and is
// deleted after them (an empty nft base chain is still a hook, and deleting
// the rule turns conntrack off again), so (a), (b) and (c) run without
// netfilter in the host netns. Without iptables-nft-restore on the PATH (d)
// and (e) are logged as skipped.
//
// Per configuration: rr, the p50 of 2,000 round trips of a 64-byte request
// and a 64-byte response on one persistent connection (after 200 unmeasured);
// conn, the p50 of 300 connections (connect, request, response, close);
// MB/s, the median of 5 bulk sends of 128 MiB (reported, never gated).
//
// The datapath stays loaded throughout: (a) closes the tcx links, (b)
// attaches them and applies its snapshot, (c) applies its own, (d) closes
// the links. The configurations are interleaved (a, b, c, d, e) over
// BENCH_PODTOPOD_ROUNDS rounds (default 9, at least 5); each round's b/a,
// c/a, d/a and e/a are taken against that round's a, and the reported
// *_ratio_* are their medians across rounds. The target is rr_ratio_c and
// conn_ratio_c at most 1.10. The *_us_* and MB/s_* figures are medians
// across rounds of each round's figure. The table of every round is logged
// (benchmarks always print their logs). Before the rounds it checks that
// each configuration does what it says: (c), (d) and (e) drop a connection
// to another port of the server, (a) and (b) don't.
//
// Needs root (it skips otherwise, or fails with SLUICE_REQUIRE_PRIVILEGED=1).
// The benchmark is its own loop of rounds and ignores b.N: run it once,
//
//	go test -run '^$' -bench PodToPodLatency -benchtime 1x ./test/bench/
//
// (it takes about two minutes, half of it (d)'s bulk sends, so the default
// benchtime also stops after one; about 20 s without (d) and (e)).
func BenchmarkPodToPodLatency(b *testing.B) {
	netlabtest.RequirePrivileged(b)
	rounds := benchRounds(b, "BENCH_PODTOPOD_ROUNDS", p2pRounds)

	lab := netlabtest.NewNode(b)
	writeAllocation(b, lab, "node-1", netip.MustParsePrefix(p2pCIDR))
	client, server := lab.WirePod(b, "client"), lab.WirePod(b, "server")
	startServer(b, server, p2pPort)
	// A listener (c) must not reach, so that (a) and (b) would connect.
	startServer(b, server, p2pDeniedPort)

	d, err := datapath.New(datapath.Options{})
	if err != nil {
		b.Fatalf("load the datapath: %v", err)
	}
	b.Cleanup(func() { _ = d.Close() })
	open, isolated := p2pSnapshots(client, server)
	// (d) and (e) come last, so leaving them out shortens every round.
	ipt, configs := newP2PIptables(b, lab, client.IP, server.IP), numConfig
	if ipt == nil {
		configs = cfgIpt
	}

	var links []io.Closer
	detach := func() {
		for _, l := range links {
			if err := l.Close(); err != nil {
				b.Fatalf("detach: %v", err)
			}
		}
		links = nil
	}
	b.Cleanup(detach)
	configure := func(cfg int) {
		ipt.unhook()
		switch cfg {
		case cfgNone:
			detach()
		case cfgOpen:
			apply(b, d, open)
			for _, p := range []p2pPod{client, server} {
				lab.In(func() error {
					l, err := d.Attach(p.HostIfIndex)
					links = append(links, l)
					return err
				})
			}
		case cfgIsol:
			apply(b, d, isolated)
		case cfgIpt, cfgIptEst:
			detach()
			ipt.hook(cfg == cfgIptEst)
		}
	}

	// The configurations do what they say: (c), (d) and (e) admit the
	// server port and drop another, (a) and (b) admit both.
	for cfg := range configs {
		configure(cfg)
		if _, err := rrP50(client, server.IP, 10); err != nil {
			b.Fatalf("config %s: port %d: %v", cfgNames[cfg], p2pPort, err)
		}
		err := dialOnce(client, server.IP, p2pDeniedPort, 300*time.Millisecond)
		if denied := err != nil; denied != cfgDenies[cfg] {
			b.Fatalf("config %s: port %d denied=%v (%v)", cfgNames[cfg], p2pDeniedPort, denied, err)
		}
	}
	// The client's egress drops the denied port first.
	cc, err := d.Counters(idClient)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := d.Counters(idServer)
	if err != nil {
		b.Fatal(err)
	}
	if cc.EgressAllowed == 0 || cc.EgressDropped == 0 || sc.IngressAllowed == 0 {
		b.Fatalf("counters: client %+v, server %+v: want the client's egress to allow and drop, the server's ingress to allow", cc, sc)
	}

	b.ResetTimer()
	figs := make([][]p2pFigures, rounds)
	for r := range rounds {
		figs[r] = make([]p2pFigures, configs)
		for cfg := range configs {
			configure(cfg)
			figs[r][cfg] = measure(b, client, server.IP)
		}
	}
	b.StopTimer()
	detach()
	ipt.unhook()
	report(b, cfgNames[:configs], figs, cfgIsol)
}

// p2pPod is a pod of the benchmark, wired by the real plugin.
type p2pPod = netlabtest.Pod

// p2pSnapshots builds (b)'s and (c)'s snapshots by hand.
func p2pSnapshots(client, server p2pPod) (open, isolated *policy.Snapshot) {
	ipcache := p2pIPCacheEntries(client.IP, server.IP)
	open = &policy.Snapshot{
		IPCache:   ipcache,
		Endpoints: []policy.EndpointPolicy{{ID: idClient, IP: client.IP}, {ID: idServer, IP: server.IP}},
	}
	isolated = &policy.Snapshot{
		IPCache:   ipcache,
		Endpoints: []policy.EndpointPolicy{isolatedClient(client.IP), isolatedServer(server.IP)},
	}
	return open, isolated
}

// p2pIPCacheEntries is the ipcache of every snapshot: the world, the two
// pods, and p2pIPCache+256 other prefixes.
func p2pIPCacheEntries(client, server netip.Addr) []policy.IPCacheEntry {
	ipcache := make([]policy.IPCacheEntry, 0, p2pIPCache+256+3)
	ipcache = append(ipcache,
		policy.IPCacheEntry{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
		policy.IPCacheEntry{Prefix: netip.PrefixFrom(client, 32), Class: classClient},
		policy.IPCacheEntry{Prefix: netip.PrefixFrom(server, 32), Class: classServer},
	)
	// Other nodes' pod blocks (the pods' own blocks too: the pods' /32s
	// are longer) and other pods in 10.245.0.0/16.
	for i := range 256 {
		ipcache = append(ipcache, policy.IPCacheEntry{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24),
			Class:  classOthers + policy.Class(i%64),
		})
	}
	for i := range p2pIPCache {
		ipcache = append(ipcache, policy.IPCacheEntry{
			Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 245, byte(i >> 8), byte(i)}), 32),
			Class:  classOthers + policy.Class(i%2_500),
		})
	}
	return ipcache
}

// isolatedClient is the client with its egress isolated: p2pRules entries,
// the last admitting the server's class on the server port.
func isolatedClient(ip netip.Addr) policy.EndpointPolicy {
	return policy.EndpointPolicy{ID: idClient, IP: ip, EgressIsolated: true, Egress: rules(classServer)}
}

// isolatedServer is the server with its ingress isolated likewise.
func isolatedServer(ip netip.Addr) policy.EndpointPolicy {
	return policy.EndpointPolicy{ID: idServer, IP: ip, IngressIsolated: true, Ingress: rules(classClient)}
}

// rules is p2pRules entries of which only the last admits peer on the
// server port: 9,999 of other classes (and of peer's class on other ports)
// over TCP ports, port ranges, UDP and SCTP.
func rules(peer policy.Class) []policy.Entry {
	out := make([]policy.Entry, 0, p2pRules)
	for i := range p2pRules - 1 {
		c := classOthers + policy.Class(i/4)
		if i%100 == 0 {
			c = peer
		}
		var e policy.Entry
		switch i % 4 {
		case 0:
			e = policy.Entry{Class: c, Proto: policy.ProtoTCP, Port: uint16(10_000 + i), PortPrefixLen: 16}
		case 1:
			e = policy.Entry{Class: c, Proto: policy.ProtoTCP, Port: 8080, PortPrefixLen: 12}
		case 2:
			e = policy.Entry{Class: c, Proto: policy.ProtoUDP, Port: p2pPort, PortPrefixLen: 16}
		default:
			e = policy.Entry{Class: c, Proto: policy.ProtoSCTP, Port: uint16(i), PortPrefixLen: 16}
		}
		out = append(out, e)
	}
	return append(out, policy.Entry{Class: peer, Proto: policy.ProtoTCP, Port: p2pPort, PortPrefixLen: 16})
}

func apply(b *testing.B, d *datapath.Datapath, s *policy.Snapshot) {
	b.Helper()
	if err := d.Apply(s); err != nil {
		b.Fatalf("apply: %v", err)
	}
}
