package packet

import (
	"encoding/binary"
	"hash/crc32"
	"net/netip"
)

// sum16 adds b as big-endian 16-bit words (an odd last byte padded with a
// zero) to sum, without folding: the Internet checksum's one's complement
// sum (RFC 1071) is the folded result.
func sum16(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// fold turns a sum16 total into the checksum field's value.
func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Checksum is the Internet checksum of b (RFC 1071): the IPv4 header's,
// and ICMP's over the message.
func Checksum(b []byte) uint16 {
	return fold(sum16(0, b))
}

// pseudoHeaderSum is the sum of the pseudo-header TCP, UDP and ICMPv6
// checksums cover: the addresses, the protocol and the transport length
// (RFC 793 and 768 for IPv4, RFC 8200 section 8.1 for IPv6).
func pseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	s, d := src.AsSlice(), dst.AsSlice()
	sum := sum16(sum16(0, s), d)
	if src.Is4() {
		return sum + uint32(proto) + uint32(length)
	}
	return sum + uint32(length>>16) + uint32(length&0xffff) + uint32(proto)
}

// TransportChecksum is the checksum of a TCP, UDP or ICMPv6 segment (its
// checksum field zero) sent from src to dst.
func TransportChecksum(src, dst netip.Addr, proto uint8, segment []byte) uint16 {
	return fold(sum16(pseudoHeaderSum(src, dst, proto, len(segment)), segment))
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SCTPChecksum is the CRC32c of an SCTP packet (its checksum field zero).
// The field holds it least significant byte first, as Linux writes it
// (cpu_to_le32 in sctp_end_cksum): read and write it little-endian.
func SCTPChecksum(packet []byte) uint32 {
	return crc32.Checksum(packet, castagnoli)
}
