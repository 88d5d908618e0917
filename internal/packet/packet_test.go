package packet

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

var (
	v4a, v4b = netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("10.0.1.2")
	v6a, v6b = netip.MustParseAddr("fd00::a"), netip.MustParseAddr("fd00::b")
)

func TestBuildParsesBack(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ip         IP
		t          Transport
		proto      uint8
		ports      bool
		payloadLen int
	}{
		{"tcp4", IP{Src: v4a, Dst: v4b}, TCP{SrcPort: 40000, DstPort: 80, Flags: TCPSyn, Payload: []byte("hello")}, ProtoTCP, true, 5},
		{"tcp6", IP{Src: v6a, Dst: v6b}, TCP{SrcPort: 40000, DstPort: 80, Flags: TCPSyn | TCPAck}, ProtoTCP, true, 0},
		{"udp4", IP{Src: v4a, Dst: v4b}, UDP{SrcPort: 5353, DstPort: 53, Payload: []byte("odd")}, ProtoUDP, true, 3},
		{"udp6", IP{Src: v6a, Dst: v6b}, UDP{SrcPort: 5353, DstPort: 53, Payload: []byte("ping")}, ProtoUDP, true, 4},
		{"sctp4", IP{Src: v4a, Dst: v4b}, SCTP{SrcPort: 9, DstPort: 9, VerificationTag: 7, Chunks: make([]byte, 20)}, ProtoSCTP, true, 20},
		{"sctp6", IP{Src: v6a, Dst: v6b}, SCTP{SrcPort: 9, DstPort: 9, Chunks: make([]byte, 20)}, ProtoSCTP, true, 20},
		{"icmp4", IP{Src: v4a, Dst: v4b}, ICMP{Type: 8, Rest: 7<<16 | 1, Payload: []byte("x")}, ProtoICMP, false, 1},
		{"icmp6", IP{Src: v6a, Dst: v6b}, ICMP{Type: 128, Rest: 7<<16 | 1}, ProtoICMPv6, false, 0},
		{"mapped IPv4 is IPv4", IP{Src: netip.AddrFrom16(v4a.As16()), Dst: v4b}, UDP{SrcPort: 1, DstPort: 2}, ProtoUDP, true, 0},
		{"raw", IP{Src: v4a, Dst: v4b, TTL: 3}, Raw{Proto: 47, Data: []byte{1, 2, 3, 4}}, 47, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := Build(tc.ip, tc.t)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(frame)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.VerifyChecksums(); err != nil {
				t.Error(err)
			}
			if f.Src != tc.ip.Src.Unmap() || f.Dst != tc.ip.Dst.Unmap() || f.Proto != tc.proto {
				t.Errorf("%s -> %s proto %d", f.Src, f.Dst, f.Proto)
			}
			if f.HasPorts() != tc.ports {
				t.Errorf("HasPorts %v", f.HasPorts())
			}
			if len(f.Payload) != tc.payloadLen {
				t.Errorf("payload %q", f.Payload)
			}
			if want := tc.ip.TTL; want != 0 && f.TTL != want || want == 0 && f.TTL != 64 {
				t.Errorf("TTL %d", f.TTL)
			}
			if f.SrcMAC != DefaultSrcMAC || f.DstMAC != DefaultDstMAC {
				t.Errorf("MACs %x -> %x", f.SrcMAC, f.DstMAC)
			}
		})
	}
}

// Each checksum catches a change to what it covers, and the error names
// the checksum a rewrite forgot to fix.
func TestVerifyChecksumsNamesTheBrokenOne(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   IP
		t    Transport
		// at: an offset from the start of the IP header to flip.
		at   int
		want string
	}{
		{"IPv4 source, header and pseudo-header", IP{Src: v4a, Dst: v4b}, TCP{SrcPort: 1, DstPort: 2}, 12, "IPv4 header checksum"},
		{"IPv4 TTL, header only", IP{Src: v4a, Dst: v4b}, TCP{SrcPort: 1, DstPort: 2}, 8, "IPv4 header checksum"},
		{"TCP port", IP{Src: v4a, Dst: v4b}, TCP{SrcPort: 1, DstPort: 2}, IPv4Len + 2, "protocol 6 checksum"},
		{"UDP over IPv6, destination address", IP{Src: v6a, Dst: v6b}, UDP{SrcPort: 1, DstPort: 2}, 39, "protocol 17 checksum"},
		{"ICMPv6 pseudo-header", IP{Src: v6a, Dst: v6b}, ICMP{Type: 128}, 8, "protocol 58 checksum"},
		{"ICMP message", IP{Src: v4a, Dst: v4b}, ICMP{Type: 8}, IPv4Len + 4, "protocol 1 checksum"},
		{"SCTP port", IP{Src: v6a, Dst: v6b}, SCTP{SrcPort: 1, DstPort: 2}, IPv6Len + 1, "SCTP checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame, err := Build(tc.ip, tc.t)
			if err != nil {
				t.Fatal(err)
			}
			frame[EthernetLen+tc.at] ^= 0x01
			f, err := Parse(frame)
			if err != nil {
				t.Fatal(err)
			}
			err = f.VerifyChecksums()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

func TestUDPOverIPv4WithoutChecksumIsValid(t *testing.T) {
	frame, err := Build(IP{Src: v4a, Dst: v4b}, UDP{SrcPort: 1, DstPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	frame[EthernetLen+IPv4Len+6], frame[EthernetLen+IPv4Len+7] = 0, 0
	f, err := Parse(frame)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.VerifyChecksums(); err != nil {
		t.Error(err)
	}
}

func TestParseRejects(t *testing.T) {
	good, err := Build(IP{Src: v4a, Dst: v4b}, TCP{SrcPort: 1, DstPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	good6, err := Build(IP{Src: v6a, Dst: v6b}, UDP{SrcPort: 1, DstPort: 2})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(b []byte, fn func([]byte)) []byte {
		b = bytes.Clone(b)
		fn(b)
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"short ethernet", good[:10]},
		{"ARP", edit(good, func(b []byte) { b[12], b[13] = 0x08, 0x06 })},
		{"short IPv4 header", good[:EthernetLen+12]},
		{"IPv4 total length past the frame", good[:len(good)-1]},
		{"IPv4 header length 4 words", edit(good, func(b []byte) { b[EthernetLen] = 0x44 })},
		{"wrong version", edit(good, func(b []byte) { b[EthernetLen] = 0x65 })},
		{"TCP data offset past the segment", edit(good, func(b []byte) { b[EthernetLen+IPv4Len+12] = 0xf0 })},
		{"IPv6 payload past the frame", good6[:len(good6)-1]},
		{"UDP length disagrees", edit(good6, func(b []byte) { b[EthernetLen+IPv6Len+5]++ })},
	} {
		if _, err := Parse(tc.frame); err == nil {
			t.Errorf("%s: parsed", tc.name)
		}
	}
}

func TestParseIPv6ExtensionHeadersAndFragments(t *testing.T) {
	frame, err := Build(IP{Src: v6a, Dst: v6b}, UDP{SrcPort: 1, DstPort: 53, Payload: []byte("ping")})
	if err != nil {
		t.Fatal(err)
	}
	// Insert a fragment header (first fragment, more to come) in front of
	// UDP: next header UDP, offset 0, M set.
	ip := frame[EthernetLen:]
	ext := []byte{ProtoUDP, 0, 0, 1, 0, 0, 0, 42}
	withExt := append(append(append([]byte{}, frame[:EthernetLen+IPv6Len]...), ext...), ip[IPv6Len:]...)
	withExt[EthernetLen+6] = extFragment
	withExt[EthernetLen+5] += 8
	f, err := Parse(withExt)
	if err != nil {
		t.Fatal(err)
	}
	if f.Proto != ProtoUDP || !f.Fragment || f.FragmentOffset != 0 || !f.HasPorts() || f.DstPort != 53 {
		t.Errorf("first fragment parsed as %+v", f)
	}
	// A later fragment: no transport header.
	withExt[EthernetLen+IPv6Len+3] = 0x10 // offset 2 (16 bytes)
	f, err = Parse(withExt)
	if err != nil {
		t.Fatal(err)
	}
	if !f.Fragment || f.FragmentOffset != 2 || f.HasPorts() {
		t.Errorf("later fragment parsed as %+v", f)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   IP
		t    Transport
	}{
		{"mixed families", IP{Src: v4a, Dst: v6b}, UDP{}},
		{"no address", IP{Dst: v6b}, UDP{}},
		{"no transport", IP{Src: v4a, Dst: v4b}, nil},
		{"oversized UDP", IP{Src: v6a, Dst: v6b}, UDP{Payload: make([]byte, 70000)}},
	} {
		if _, err := Build(tc.ip, tc.t); err == nil {
			t.Errorf("%s: built", tc.name)
		}
	}
}
