package packet

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
)

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Published vectors for the two checksum algorithms.
func TestChecksumVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		want uint16
	}{
		// RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
		{"RFC 1071 example", "0001f203f4f5f6f7", ^uint16(0xddf2)},
		// An IPv4 header (UDP, 192.168.0.1 -> 192.168.0.199) with its
		// checksum field zeroed; the header as sent carries b861.
		{"IPv4 header", "450000730000400040110000c0a80001c0a800c7", 0xb861},
		{"odd length pads with zero", "01", ^uint16(0x0100)},
		{"empty", "", 0xffff},
	} {
		if got := Checksum(mustHex(t, tc.data)); got != tc.want {
			t.Errorf("%s: %#04x, want %#04x", tc.name, got, tc.want)
		}
	}

	// CRC32c vectors of RFC 3720 appendix B.4 (the same CRC as SCTP's).
	inc := make([]byte, 32)
	for i := range inc {
		inc[i] = byte(i)
	}
	ones := make([]byte, 32)
	for i := range ones {
		ones[i] = 0xff
	}
	for _, tc := range []struct {
		name string
		data []byte
		want uint32
	}{
		{"32 zeros", make([]byte, 32), 0x8a9136aa},
		{"32 ones", ones, 0x62a8ab43},
		{"incrementing", inc, 0x46dd794e},
	} {
		if got := SCTPChecksum(tc.data); got != tc.want {
			t.Errorf("CRC32c %s: %#08x, want %#08x", tc.name, got, tc.want)
		}
	}
}

// referenceTransportChecksum computes a pseudo-header checksum another
// way: it lays the pseudo-header out as bytes (RFC 768 and 793 for IPv4,
// RFC 8200 section 8.1 for IPv6) in front of the segment and sums the
// whole buffer in 64 bits, folding once at the end.
func referenceTransportChecksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	var pseudo []byte
	pseudo = append(pseudo, src.AsSlice()...)
	pseudo = append(pseudo, dst.AsSlice()...)
	if src.Is4() {
		pseudo = append(pseudo, 0, proto)
		pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(segment)))
	} else {
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(segment)))
		pseudo = append(pseudo, 0, 0, 0, proto)
	}
	buf := append(pseudo, segment...)
	if len(buf)%2 == 1 {
		buf = append(buf, 0)
	}
	var sum uint64
	for i := 0; i < len(buf); i += 2 {
		sum += uint64(buf[i])<<8 | uint64(buf[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func TestTransportChecksumMatchesReference(t *testing.T) {
	v4s, v4d := netip.MustParseAddr("10.0.1.1"), netip.MustParseAddr("192.0.2.200")
	v6s, v6d := netip.MustParseAddr("fd00::a"), netip.MustParseAddr("2001:db8:ffff::1")
	segments := [][]byte{
		mustHex(t, "9c40005000000000000003e800000000500200000000ffff"),
		mustHex(t, "9c4000350000000070696e67ff"), // odd length
		make([]byte, 1480),
	}
	for _, addrs := range [][2]netip.Addr{{v4s, v4d}, {v6s, v6d}} {
		for _, proto := range []uint8{ProtoTCP, ProtoUDP, ProtoICMPv6} {
			for i, seg := range segments {
				got := TransportChecksum(addrs[0], addrs[1], proto, seg)
				if want := referenceTransportChecksum(addrs[0], addrs[1], proto, seg); got != want {
					t.Errorf("%s -> %s proto %d segment %d: %#04x, want %#04x", addrs[0], addrs[1], proto, i, got, want)
				}
			}
		}
	}
}
