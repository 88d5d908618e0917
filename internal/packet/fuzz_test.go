package packet

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// FuzzParse: any bytes parse or fail without a panic, and what parses is
// consistent with the bytes. The seed corpus in testdata/fuzz/FuzzParse
// holds frames of every kind Build makes.
func FuzzParse(f *testing.F) {
	for _, p := range []Probe{
		{Src: v4a, Dst: v4b, Proto: ProtoTCP, SrcPort: 1, DstPort: 2},
		{Src: v6a, Dst: v6b, Proto: ProtoSCTP, SrcPort: 1, DstPort: 2},
		{Src: v6a, Dst: v6b, Proto: ProtoICMP, Quote: &Probe{Src: v6b, Dst: v6a, Proto: ProtoUDP, SrcPort: 3, DstPort: 4}},
	} {
		frame, err := p.Frame()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		p, err := Parse(frame)
		if err != nil {
			return
		}
		_ = p.VerifyChecksums()
		if len(p.IP) > len(frame)-EthernetLen || len(p.Transport) > len(p.IP) || len(p.Payload) > len(p.Transport) {
			t.Fatalf("slices out of order: frame %d, IP %d, transport %d, payload %d", len(frame), len(p.IP), len(p.Transport), len(p.Payload))
		}
		if p.HasPorts() {
			if p.SrcPort != binary.BigEndian.Uint16(p.Transport) || p.DstPort != binary.BigEndian.Uint16(p.Transport[2:]) {
				t.Fatalf("ports %d -> %d, transport %x", p.SrcPort, p.DstPort, p.Transport)
			}
		}
		if p.Src.Is4() != (p.EtherType == EtherTypeIPv4) {
			t.Fatalf("%s from EtherType %#04x", p.Src, p.EtherType)
		}
	})
}

// FuzzBuildParse: whatever Build makes parses back to what it was given,
// with every checksum valid.
func FuzzBuildParse(f *testing.F) {
	f.Add(false, uint8(0), uint16(40000), uint16(80), []byte("hello"))
	f.Add(true, uint8(2), uint16(9), uint16(9), []byte{})
	f.Add(true, uint8(3), uint16(7), uint16(1), []byte("x"))
	f.Fuzz(func(t *testing.T, v6 bool, kind uint8, sport, dport uint16, payload []byte) {
		if len(payload) > 1400 {
			payload = payload[:1400]
		}
		ip := IP{Src: v4a, Dst: netip.AddrFrom4([4]byte{byte(sport), byte(dport), 1, 1})}
		if v6 {
			ip = IP{Src: v6a, Dst: netip.AddrFrom16([16]byte{0xfd, 15: byte(sport)})}
		}
		var tr Transport
		switch kind % 4 {
		case 0:
			tr = TCP{SrcPort: sport, DstPort: dport, Payload: payload}
		case 1:
			tr = UDP{SrcPort: sport, DstPort: dport, Payload: payload}
		case 2:
			tr = SCTP{SrcPort: sport, DstPort: dport, Chunks: payload}
		case 3:
			tr = ICMP{Type: 8, Rest: uint32(sport)<<16 | uint32(dport), Payload: payload}
		}
		frame, err := Build(ip, tr)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(frame)
		if err != nil {
			t.Fatalf("parse %x: %v", frame, err)
		}
		if err := p.VerifyChecksums(); err != nil {
			t.Fatalf("%x: %v", frame, err)
		}
		if p.Src != ip.Src || p.Dst != ip.Dst || string(p.Payload) != string(payload) {
			t.Fatalf("parsed %+v from %+v %+v", p, ip, tr)
		}
		if p.HasPorts() && (p.SrcPort != sport || p.DstPort != dport) {
			t.Fatalf("ports %d -> %d, want %d -> %d", p.SrcPort, p.DstPort, sport, dport)
		}
	})
}
