package bench

import (
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/policy"
)

// BenchmarkPodToPodLatency's iptables configurations, (d) and (e): the same
// policy as (c), written as iptables rules instead of loaded into our maps.

// iptRestoreCmd is the nf_tables backend's iptables-restore, named rather
// than reached through the iptables alternative so that the backend (and
// so the figures) don't depend on how a machine sets the alternative; nft
// is Debian's default.
const iptRestoreCmd = "iptables-nft-restore"

// The policy chains: the client's egress and the server's ingress.
const (
	iptEgress  = "SLUICE-BENCH-EGRESS"
	iptIngress = "SLUICE-BENCH-INGRESS"
)

// iptUnhook deletes FORWARD. Emptying it is not enough: an nft base chain,
// even empty, is a netfilter hook every forwarded packet goes through.
const iptUnhook = "*filter\n-F FORWARD\n-X FORWARD\nCOMMIT\n"

// p2pIptables is the node's filter table: the policy chains, loaded once
// (a chain nothing jumps to costs packets nothing), and FORWARD, which
// exists only while (d) or (e) runs.
type p2pIptables struct {
	lab            *netlabtest.Node
	client, server netip.Addr
	hooked         bool
}

// newP2PIptables loads the policy chains into the node's netns, or returns
// nil when iptables-nft-restore is missing.
func newP2PIptables(b *testing.B, lab *netlabtest.Node, client, server netip.Addr) *p2pIptables {
	b.Helper()
	if _, err := exec.LookPath(iptRestoreCmd); err != nil {
		b.Logf("Skipping configurations d and e (iptables): %v", err)
		return nil
	}
	t := &p2pIptables{lab: lab, client: client, server: server}
	t.restore(iptChains(client, server))
	return t
}

// hook makes FORWARD send the client's packets through its egress chain
// and the packets to the server through its ingress chain; established
// (e) first accepts every packet conntrack has seen a reply for.
func (t *p2pIptables) hook(established bool) {
	var s strings.Builder
	s.WriteString("*filter\n:FORWARD ACCEPT [0:0]\n")
	if established {
		s.WriteString("-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n")
	}
	fmt.Fprintf(&s, "-A FORWARD -s %s/32 -j %s\n", t.client, iptEgress)
	fmt.Fprintf(&s, "-A FORWARD -d %s/32 -j %s\n", t.server, iptIngress)
	s.WriteString("COMMIT\n")
	t.restore(s.String())
	t.hooked = true
}

// unhook deletes FORWARD if hook made it; it also releases conntrack,
// which the ctstate rule had turned on in the node's netns.
func (t *p2pIptables) unhook() {
	if t == nil || !t.hooked {
		return
	}
	t.restore(iptUnhook)
	t.hooked = false
}

// restore applies rules in the node's netns, leaving the rest of the
// table as it is.
func (t *p2pIptables) restore(rules string) {
	t.lab.In(func() error {
		cmd := exec.Command(iptRestoreCmd, "--noflush")
		cmd.Stdin = strings.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", iptRestoreCmd, err, out)
		}
		return nil
	})
}

// iptChains is the iptables-restore text of both policy chains, made from
// (c)'s very entries: rules(classServer) for the client's egress,
// rules(classClient) for the server's ingress. The egress chain's allow
// target is RETURN, so that an allowed packet goes on to the ingress chain
// as it goes on to the server's ingress check in (c).
func iptChains(client, server netip.Addr) string {
	addr := func(c policy.Class) netip.Addr { return classAddr(c, client, server) }
	var s strings.Builder
	s.WriteString("*filter\n")
	iptPolicy(&s, iptEgress, rules(classServer), "RETURN", func(peer policy.Class) string {
		return fmt.Sprintf("-s %s/32 -d %s/32", client, addr(peer))
	})
	iptPolicy(&s, iptIngress, rules(classClient), "ACCEPT", func(peer policy.Class) string {
		return fmt.Sprintf("-s %s/32 -d %s/32", addr(peer), server)
	})
	s.WriteString("COMMIT\n")
	return s.String()
}

// iptPolicy writes chain: one rule per entry, in order, matching the
// addresses between the endpoint and the entry's peer class (addrs) and
// the entry's protocol and ports, then a DROP.
func iptPolicy(w io.Writer, chain string, entries []policy.Entry, allow string, addrs func(peer policy.Class) string) {
	fmt.Fprintf(w, ":%s - [0:0]\n", chain)
	for _, e := range entries {
		fmt.Fprintf(w, "-A %s %s%s -j %s\n", chain, addrs(e.Class), iptPorts(e), allow)
	}
	fmt.Fprintf(w, "-A %s -j DROP\n", chain)
}

// classAddr is an address of class c in p2pSnapshots' ipcache: the pods'
// own, or the other pod 10.245.0.0/16 + k of class classOthers + k.
func classAddr(c policy.Class, client, server netip.Addr) netip.Addr {
	switch c {
	case classClient:
		return client
	case classServer:
		return server
	}
	k := int(c - classOthers)
	return netip.AddrFrom4([4]byte{10, 245, byte(k >> 8), byte(k)})
}

// iptPorts is the protocol and destination port match of e (of TCP, UDP,
// SCTP or any protocol, all rules makes), as iptables-save writes it: a
// port prefix is a port range.
func iptPorts(e policy.Entry) string {
	name := map[uint8]string{policy.ProtoTCP: "tcp", policy.ProtoUDP: "udp", policy.ProtoSCTP: "sctp"}[e.Proto]
	if name == "" {
		return ""
	}
	m := fmt.Sprintf(" -p %s -m %s", name, name)
	if e.PortPrefixLen == 0 {
		return m
	}
	span := uint16(0xffff) >> e.PortPrefixLen
	lo, hi := e.Port&^span, e.Port|span
	if lo == hi {
		return fmt.Sprintf("%s --dport %d", m, lo)
	}
	return fmt.Sprintf("%s --dport %d:%d", m, lo, hi)
}
