package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/sluice-dev/sluice/internal/cni"
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
//	go test -run '^$' -bench PodToPod -benchtime 1x ./test/bench/
//
// (it takes about two minutes, half of it (d)'s bulk sends, so the default
// benchtime also stops after one; about 20 s without (d) and (e)).
func BenchmarkPodToPodLatency(b *testing.B) {
	netlabtest.RequirePrivileged(b)
	rounds := p2pRounds
	if v := os.Getenv("BENCH_PODTOPOD_ROUNDS"); v != "" {
		var err error
		if rounds, err = strconv.Atoi(v); err != nil || rounds < 5 {
			b.Fatalf("BENCH_PODTOPOD_ROUNDS=%q: want a number, at least 5", v)
		}
	}

	lab := netlabtest.NewNode(b)
	if err := cni.WriteAllocation(lab.AllocationFile(), cni.Allocation{
		Node: "node-1", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{p2pCIDR}, ExcludeIPs: []string{"10.244.9.0", "10.244.9.255"}, MaxPods: 10,
	}); err != nil {
		b.Fatal(err)
	}
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
	figs := make([][numConfig]p2pFigures, rounds)
	for r := range rounds {
		for cfg := range configs {
			configure(cfg)
			figs[r][cfg] = measure(b, client, server.IP)
		}
	}
	b.StopTimer()
	detach()
	ipt.unhook()
	report(b, figs, configs)
}

// p2pPod is a pod of the benchmark, wired by the real plugin.
type p2pPod = netlabtest.Pod

// p2pSnapshots builds (b)'s and (c)'s snapshots by hand.
func p2pSnapshots(client, server p2pPod) (open, isolated *policy.Snapshot) {
	ipcache := make([]policy.IPCacheEntry, 0, p2pIPCache+256+3)
	ipcache = append(ipcache,
		policy.IPCacheEntry{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
		policy.IPCacheEntry{Prefix: netip.PrefixFrom(client.IP, 32), Class: classClient},
		policy.IPCacheEntry{Prefix: netip.PrefixFrom(server.IP, 32), Class: classServer},
	)
	// Other nodes' pod blocks (this node's block too: the pods' /32s are
	// longer) and other pods in 10.245.0.0/16.
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
	open = &policy.Snapshot{
		IPCache:   ipcache,
		Endpoints: []policy.EndpointPolicy{{ID: idClient, IP: client.IP}, {ID: idServer, IP: server.IP}},
	}
	isolated = &policy.Snapshot{
		IPCache: ipcache,
		Endpoints: []policy.EndpointPolicy{{
			ID: idClient, IP: client.IP,
			EgressIsolated: true, Egress: rules(classServer),
		}, {
			ID: idServer, IP: server.IP,
			IngressIsolated: true, Ingress: rules(classClient),
		}},
	}
	return open, isolated
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

// startServer listens on port in the server pod and serves every kind.
func startServer(b *testing.B, server p2pPod, port int) {
	b.Helper()
	var ln net.Listener
	if err := server.NetNS.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(server.IP.String(), strconv.Itoa(port)))
		return err
	}); err != nil {
		b.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serve(conn) })
		}
	})
}

func serve(conn net.Conn) {
	defer func() { _ = conn.Close() }()
	msg := make([]byte, p2pMsg)
	if _, err := io.ReadFull(conn, msg); err != nil {
		return
	}
	switch msg[0] {
	case kindRR:
		for {
			if _, err := conn.Write(msg); err != nil {
				return
			}
			if _, err := io.ReadFull(conn, msg); err != nil {
				return
			}
		}
	case kindConn:
		_, _ = conn.Write(msg)
	case kindBulk:
		want := binary.BigEndian.Uint64(msg[8:])
		buf := make([]byte, 256<<10)
		var got uint64
		for got < want {
			n, err := conn.Read(buf)
			got += uint64(n)
			if err != nil {
				return
			}
		}
		_, _ = conn.Write(msg[8:16])
	}
}

// measure takes one configuration's figures.
func measure(b *testing.B, client p2pPod, server netip.Addr) p2pFigures {
	b.Helper()
	var f p2pFigures
	var err error
	if f.rrP50, err = rrP50(client, server, p2pRRSamples); err != nil {
		b.Fatalf("request/response: %v", err)
	}
	if f.connP50, err = connP50(client, server); err != nil {
		b.Fatalf("connections: %v", err)
	}
	if f.mbps, err = throughput(client, server); err != nil {
		b.Fatalf("bulk: %v", err)
	}
	return f
}

func dial(client p2pPod, server netip.Addr, port int, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := client.NetNS.Do(func(ns.NetNS) error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(server.String(), strconv.Itoa(port)), timeout)
		return err
	})
	if conn != nil {
		_ = conn.SetDeadline(time.Now().Add(p2pTimeout))
	}
	return conn, err
}

// dialOnce connects to port and closes the connection.
func dialOnce(client p2pPod, server netip.Addr, port int, timeout time.Duration) error {
	conn, err := dial(client, server, port, timeout)
	if err != nil {
		return err
	}
	return conn.Close()
}

// rrP50 is the median of n round trips on one connection, after a warm-up.
func rrP50(client p2pPod, server netip.Addr, n int) (time.Duration, error) {
	conn, err := dial(client, server, p2pPort, p2pTimeout)
	if err != nil {
		return 0, err
	}
	defer func() { _ = conn.Close() }()
	req, resp := make([]byte, p2pMsg), make([]byte, p2pMsg)
	req[0] = kindRR
	samples := make([]time.Duration, 0, n)
	for i := range p2pRRWarmup + n {
		start := time.Now()
		if _, err := conn.Write(req); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			return 0, err
		}
		if i >= p2pRRWarmup {
			samples = append(samples, time.Since(start))
		}
	}
	return median(samples), nil
}

// connP50 is the median of p2pConns connect, request, response, close.
func connP50(client p2pPod, server netip.Addr) (time.Duration, error) {
	addr := net.JoinHostPort(server.String(), strconv.Itoa(p2pPort))
	samples := make([]time.Duration, 0, p2pConns)
	// Sockets are made in the client's netns: the whole loop runs there.
	err := client.NetNS.Do(func(ns.NetNS) error {
		req, resp := make([]byte, p2pMsg), make([]byte, p2pMsg)
		req[0] = kindConn
		for range p2pConns {
			start := time.Now()
			conn, err := net.DialTimeout("tcp", addr, p2pTimeout)
			if err != nil {
				return err
			}
			_ = conn.SetDeadline(time.Now().Add(p2pTimeout))
			if _, err := conn.Write(req); err != nil {
				_ = conn.Close()
				return err
			}
			if _, err := io.ReadFull(conn, resp); err != nil {
				_ = conn.Close()
				return err
			}
			if err := conn.Close(); err != nil {
				return err
			}
			samples = append(samples, time.Since(start))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return median(samples), nil
}

// throughput is the median MB/s (10^6 bytes) of p2pBulkRuns sends of
// p2pBulkBytes, each timed until the server acknowledges the last byte.
func throughput(client p2pPod, server netip.Addr) (float64, error) {
	runs := make([]float64, 0, p2pBulkRuns)
	data := make([]byte, 64<<10)
	for range p2pBulkRuns {
		conn, err := dial(client, server, p2pPort, p2pTimeout)
		if err != nil {
			return 0, err
		}
		hdr := make([]byte, p2pMsg)
		hdr[0] = kindBulk
		binary.BigEndian.PutUint64(hdr[8:], p2pBulkBytes)
		start := time.Now()
		err = func() error {
			defer func() { _ = conn.Close() }()
			if _, err := conn.Write(hdr); err != nil {
				return err
			}
			for sent := 0; sent < p2pBulkBytes; sent += len(data) {
				if _, err := conn.Write(data); err != nil {
					return err
				}
			}
			ack := make([]byte, 8)
			if _, err := io.ReadFull(conn, ack); err != nil {
				return err
			}
			if binary.BigEndian.Uint64(ack) != p2pBulkBytes {
				return errors.New("short bulk acknowledgement")
			}
			return nil
		}()
		if err != nil {
			return 0, err
		}
		runs = append(runs, p2pBulkBytes/time.Since(start).Seconds()/1e6)
	}
	return medianF(runs), nil
}

func median(s []time.Duration) time.Duration {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(s []float64) float64 {
	s = slices.Clone(s)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// report logs the per-round table and reports the medians of the first
// configs configurations.
func report(b *testing.B, figs [][numConfig]p2pFigures, configs int) {
	b.Helper()
	// vals[metric][cfg][round], ratios[metric][cfg][round] (against a).
	const rr, conn, mbps, numMetric = 0, 1, 2, 3
	var vals, ratios [numMetric][numConfig][]float64
	for _, f := range figs {
		for cfg := range configs {
			for m, v := range [numMetric]float64{us(f[cfg].rrP50), us(f[cfg].connP50), f[cfg].mbps} {
				vals[m][cfg] = append(vals[m][cfg], v)
			}
		}
		for m := range numMetric {
			a := vals[m][cfgNone][len(vals[m][cfgNone])-1]
			for cfg := range configs {
				ratios[m][cfg] = append(ratios[m][cfg], vals[m][cfg][len(vals[m][cfg])-1]/a)
			}
		}
	}

	// Rounds are columns and the verdict shares the table's first line
	// (the testing package keeps only the first ten lines a benchmark
	// logs); the last column is the median across rounds.
	table := [][]string{{"round"}}
	for r := range figs {
		table[0] = append(table[0], strconv.Itoa(r+1))
	}
	table[0] = append(table[0], "median")
	for m, name := range [numMetric]string{"rr_us", "conn_us", "MB/s"} {
		format := "%.0f"
		if m == rr {
			format = "%.1f"
		}
		table = append(table,
			append([]string{name}, row(vals[m][:configs], format, "/")...),
			append([]string{name + "_ratio"}, row(ratios[m][cfgOpen:configs], "%.3f", ",")...))
	}
	rrC, connC := medianF(ratios[rr][cfgIsol]), medianF(ratios[conn][cfgIsol])
	verdict := "met"
	if rrC > 1.10 || connC > 1.10 {
		verdict = "missed"
	}
	names := cfgNames[:configs]
	b.Logf("Target c/a <= 1.10 at %d rules: rr %.3f, conn %.3f: %s. Per round: p50 latencies (us) and median MB/s of %s; ratios of %s against the same round's a\n%s",
		p2pRules, rrC, connC, verdict, strings.Join(names, "/"), strings.Join(names[cfgOpen:], ","), formatTable(table))

	for cfg := range configs {
		n := cfgNames[cfg]
		b.ReportMetric(medianF(vals[rr][cfg]), "rr_p50_us_"+n)
		b.ReportMetric(medianF(vals[conn][cfg]), "conn_p50_us_"+n)
		b.ReportMetric(medianF(vals[mbps][cfg]), "MB/s_"+n)
		if cfg != cfgNone {
			b.ReportMetric(medianF(ratios[rr][cfg]), "rr_ratio_"+n)
			b.ReportMetric(medianF(ratios[conn][cfg]), "conn_ratio_"+n)
			b.ReportMetric(medianF(ratios[mbps][cfg]), "MB/s_ratio_"+n)
		}
	}
}

// row is one table row's cells: per round, the round's value of each
// series joined with sep, then the series' medians across rounds.
func row(series [][]float64, format, sep string) []string {
	join := func(pick func([]float64) float64) string {
		parts := make([]string, len(series))
		for i, s := range series {
			parts[i] = fmt.Sprintf(format, pick(s))
		}
		return strings.Join(parts, sep)
	}
	cells := make([]string, 0, len(series[0])+1)
	for r := range series[0] {
		cells = append(cells, join(func(s []float64) float64 { return s[r] }))
	}
	return append(cells, join(medianF))
}

// formatTable right-aligns every column but the first to the widest cell.
func formatTable(table [][]string) string {
	width := 0
	for _, cells := range table {
		for _, c := range cells[1:] {
			width = max(width, len(c))
		}
	}
	var t strings.Builder
	for i, cells := range table {
		if i > 0 {
			t.WriteByte('\n')
		}
		fmt.Fprintf(&t, "%-14s", cells[0])
		for _, c := range cells[1:] {
			fmt.Fprintf(&t, " %*s", width, c)
		}
	}
	return t.String()
}
