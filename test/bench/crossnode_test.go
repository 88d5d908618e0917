package bench

import (
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/internal/agent/routesync"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// Cross-node configurations, in the order each round runs them.
const (
	xnNone = iota // (a) kernel routing only
	xnIsol        // (c) programs attached, 10,000 entries each way
)

// xnNames name the cross-node configurations as the one-node benchmark
// names the same ones.
var xnNames = []string{"a", "c"}

// BenchmarkCrossNodePodToPod measures TCP between a client pod on one
// netlab node and a server pod on another (each wired by the real
// sluice-cni), the nodes joined by an underlay, in two configurations:
//
//	a  no program attached; each node routes the other's pod range via
//	   the other's underlay address
//	c  the same routes; sluice_from_pod/sluice_to_pod attached to both
//	   pods' host-side veths, the client's egress and the server's ingress
//	   isolated with 10,000 entries each (as the one-node benchmark's c),
//	   the ipcache holding 20,256 other prefixes
//
// Each node has a datapath of its own, as each runs an agent of its own,
// whose snapshot holds only the node's pod as an endpoint. The routes are
// installed once with routesync's kernel writer, so they have exactly the
// shape the agent gives them and (a) and (c) differ only by the programs.
//
// The figures, rounds (BENCH_CROSSNODE_ROUNDS, default 9, at least 5),
// table and metrics are the one-node benchmark's (see
// BenchmarkPodToPodLatency); the target is rr_ratio_c and conn_ratio_c at
// most 1.10, reported and never asserted. Needs root; run it once:
//
//	go test -run '^$' -bench CrossNode -benchtime 1x ./test/bench/
func BenchmarkCrossNodePodToPod(b *testing.B) {
	netlabtest.RequirePrivileged(b)
	rounds := benchRounds(b, "BENCH_CROSSNODE_ROUNDS", p2pRounds)

	u, nodes := netlabtest.NewNodes(b, 2, netlab.NodeOptions{IPForwarding: true})
	cidrs := []netip.Prefix{netip.MustParsePrefix("10.244.11.0/24"), netip.MustParsePrefix("10.244.12.0/24")}
	for i, n := range nodes {
		// The other node's pod range via its underlay address.
		other := 1 - i
		want := []routesync.Route{{Dst: cidrs[other], Via: u.NodeAddrs(other)[0], Node: xnNodeName(other)}}
		out, err := (&routesync.Kernel{NetNS: n.Host()}).Sync(want)
		if err != nil || out.Installed != 1 {
			b.Fatalf("route on %s: %+v, %v", xnNodeName(i), out, err)
		}
		writeAllocation(b, n, xnNodeName(i), cidrs[i])
	}
	client, server := nodes[0].WirePod(b, "client"), nodes[1].WirePod(b, "server")
	startServer(b, server, p2pPort)
	startServer(b, server, p2pDeniedPort)

	ipcache := p2pIPCacheEntries(client.IP, server.IP)
	type attachment struct {
		node *netlabtest.Node
		pod  p2pPod
		d    *datapath.Datapath
	}
	var atts []attachment
	for i, ep := range []policy.EndpointPolicy{isolatedClient(client.IP), isolatedServer(server.IP)} {
		d, err := datapath.New(datapath.Options{})
		if err != nil {
			b.Fatalf("load the datapath: %v", err)
		}
		b.Cleanup(func() { _ = d.Close() })
		apply(b, d, &policy.Snapshot{IPCache: ipcache, Endpoints: []policy.EndpointPolicy{ep}})
		atts = append(atts, attachment{node: nodes[i], pod: []p2pPod{client, server}[i], d: d})
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
		detach()
		if cfg == xnIsol {
			for _, a := range atts {
				a.node.In(func() error {
					l, err := a.d.Attach(a.pod.HostIfIndex)
					links = append(links, l)
					return err
				})
			}
		}
	}

	// The configurations do what they say: both cross the underlay to
	// the server port, only (c) drops another port.
	for cfg := range xnNames {
		configure(cfg)
		if _, err := rrP50(client, server.IP, 10); err != nil {
			b.Fatalf("config %s: port %d: %v", xnNames[cfg], p2pPort, err)
		}
		err := dialOnce(client, server.IP, p2pDeniedPort, 300*time.Millisecond)
		if denied := err != nil; denied != (cfg == xnIsol) {
			b.Fatalf("config %s: port %d denied=%v (%v)", xnNames[cfg], p2pDeniedPort, denied, err)
		}
	}
	// The server's node saw the flow: its ingress allowed it.
	sc, err := atts[1].d.Counters(idServer)
	if err != nil {
		b.Fatal(err)
	}
	if sc.IngressAllowed == 0 {
		b.Fatalf("server counters %+v: want its ingress to have allowed the client", sc)
	}

	b.ResetTimer()
	figs := make([][]p2pFigures, rounds)
	for r := range rounds {
		figs[r] = make([]p2pFigures, len(xnNames))
		for cfg := range xnNames {
			configure(cfg)
			figs[r][cfg] = measure(b, client, server.IP)
		}
	}
	b.StopTimer()
	detach()
	report(b, xnNames, figs, xnIsol)
}

func xnNodeName(i int) string { return []string{"node-1", "node-2"}[i] }

// writeAllocation gives the node's plugin cidr, less its network and
// broadcast addresses.
func writeAllocation(b *testing.B, n *netlabtest.Node, name string, cidr netip.Prefix) {
	b.Helper()
	last := cidr.Addr()
	for range 1<<(32-cidr.Bits()) - 1 {
		last = last.Next()
	}
	if err := cni.WriteAllocation(n.AllocationFile(), cni.Allocation{
		Node: name, Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{cidr.String()}, ExcludeIPs: []string{cidr.Addr().String(), last.String()}, MaxPods: 10,
	}); err != nil {
		b.Fatal(err)
	}
}
