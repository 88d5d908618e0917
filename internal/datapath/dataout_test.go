package datapath

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/sluice-dev/sluice/internal/packet"
	"github.com/sluice-dev/sluice/internal/policy"
)

// The programs judge and never rewrite: what each hands back (DataOut) is
// the frame it was given, so every checksum is still right. The first test
// a rewriting step (service NAT) extends: there the frame comes back
// changed, and internal/packet says how.
func TestProgramsHandBackTheFrameUnchanged(t *testing.T) {
	d := newDatapath(t, Options{})
	// A and B (and their IPv6 twins) allow each other everything: every
	// probe passes both hooks and is handed back.
	if err := d.Apply(snapshot(func(a, b *policy.EndpointPolicy) {
		a.EgressIsolated, b.IngressIsolated = true, true
		a.Egress = []policy.Entry{entry(policy.ClassAny, policy.ProtoAny, 0, 0)}
		b.Ingress = []policy.Entry{entry(policy.ClassAny, policy.ProtoAny, 0, 0)}
	})); err != nil {
		t.Fatal(err)
	}
	type pair struct{ src, dst netip.Addr }
	for _, ips := range []pair{{ipA, ipB}, {ip6A, ip6B}} {
		for _, pkt := range []Packet{
			tcp(ips.src, ips.dst, 80), reply(tcp(ips.dst, ips.src, 80)),
			udp(ips.src, ips.dst, 53), sctp(ips.src, ips.dst, 9), ping(ips.src, ips.dst),
			{Src: ips.src, Dst: ips.dst, Proto: ProtoICMP, Quote: &Packet{Src: ips.dst, Dst: ips.src, Proto: policy.ProtoUDP, SrcPort: 53, DstPort: 40000}},
		} {
			frame, err := pkt.Frame()
			if err != nil {
				t.Fatal(err)
			}
			for _, prog := range progs(d) {
				out := make([]byte, len(frame)+64)
				ret, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
				if err != nil {
					t.Fatal(err)
				}
				out = out[:len(frame)]
				if ret != uint32(sluiceTcxActionBaseTCX_PASS) {
					t.Fatalf("%s dropped %+v", prog, pkt)
				}
				f, err := packet.Parse(out)
				if err != nil {
					t.Fatalf("%s handed back %x for %+v: %v", prog, out, pkt, err)
				}
				if err := f.VerifyChecksums(); err != nil {
					t.Errorf("%s, %+v: %v", prog, pkt, err)
				}
				if f.Src != ips.src.Unmap() || f.Dst != ips.dst.Unmap() {
					t.Errorf("%s, %+v: addresses %s -> %s", prog, pkt, f.Src, f.Dst)
				}
				if f.HasPorts() && (f.SrcPort != pkt.SrcPort || f.DstPort != pkt.DstPort) {
					t.Errorf("%s, %+v: ports %d -> %d", prog, pkt, f.SrcPort, f.DstPort)
				}
				if !bytes.Equal(out, frame) {
					t.Errorf("%s changed %+v:\n in %x\nout %x", prog, pkt, frame, out)
				}
			}
		}
	}
}
