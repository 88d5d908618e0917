// Package packet builds Ethernet frames for tests of the BPF datapath and
// parses the frames a program hands back, so that a test can assert what
// a program did to a packet: addresses, ports, and whether every checksum
// is still right.
//
// It owns the wire formats Sluice's tests craft: Ethernet, IPv4 (no
// options), IPv6 (with extension headers when parsing), TCP, UDP, SCTP,
// ICMP and ICMPv6, with correct checksums: the IPv4 header checksum, the
// TCP, UDP and ICMPv6 checksums over their pseudo-headers (RFC 793, 768,
// 8200 section 8.1, 4443), ICMP's over the message (RFC 792) and SCTP's
// CRC32c (RFC 9260 appendix A). Probe describes the packets policy tests
// send (a flow's first packet, its reply, an ICMP error about it) and
// turns them into frames.
//
// The trade-off: it is a small codec of its own rather than gopacket.
// Tests of a rewriting datapath need exactly two things, frames with valid
// checksums and a checker that names the checksum a rewrite broke, and a
// few hundred lines cost less than a dependency with its own decoding
// model (and cgo parts) in every package that tests BPF. The price: it
// knows only the headers above, builds no IPv4 options or IPv6 extension
// headers, and leaves everything else to Raw bytes.
package packet
