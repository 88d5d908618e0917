package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Frame is a parsed Ethernet frame: what a test asserts about a packet a
// program handed back.
type Frame struct {
	DstMAC, SrcMAC [6]byte
	EtherType      uint16

	// The IP header. Proto is the transport protocol, after any IPv6
	// extension headers.
	Src, Dst netip.Addr
	Proto    uint8
	TTL      uint8
	// Fragment: the packet is part of a fragmented datagram. Only a first
	// fragment (FragmentOffset 0) carries the transport header, and no
	// fragment carries all that the transport checksum covers.
	Fragment       bool
	FragmentOffset uint16

	// The transport header, when the packet carries one this package
	// knows (see HasPorts and Proto).
	SrcPort, DstPort uint16 // TCP, UDP, SCTP
	TCPFlags         uint8
	ICMPType         uint8 // ICMP or ICMPv6
	ICMPCode         uint8
	ICMPRest         uint32 // the 4 bytes after the ICMP checksum

	// IP is the IP packet (header to the end of the transport payload,
	// Ethernet padding cut off), Transport the part of it after the IP
	// header and extension headers, Payload what follows the transport
	// header.
	IP, Transport, Payload []byte
}

// HasPorts says whether SrcPort and DstPort were read.
func (f *Frame) HasPorts() bool {
	return f.transportParsed() && (f.Proto == ProtoTCP || f.Proto == ProtoUDP || f.Proto == ProtoSCTP)
}

func (f *Frame) transportParsed() bool {
	return !f.Fragment || f.FragmentOffset == 0
}

// IPv6 extension headers Parse skips, at most maxExtensionHeaders of them.
const (
	extHopByHop    = 0
	extRouting     = 43
	extFragment    = 44
	extAuth        = 51
	extDestination = 60

	maxExtensionHeaders = 8
)

var errTruncated = errors.New("truncated")

// Parse parses an Ethernet frame carrying IPv4 or IPv6. It checks that the
// headers fit and agree with each other, not the checksums (see
// VerifyChecksums).
func Parse(frame []byte) (*Frame, error) {
	if len(frame) < EthernetLen {
		return nil, fmt.Errorf("ethernet header: %w", errTruncated)
	}
	f := &Frame{EtherType: binary.BigEndian.Uint16(frame[12:])}
	copy(f.DstMAC[:], frame[0:6])
	copy(f.SrcMAC[:], frame[6:12])
	var err error
	switch f.EtherType {
	case EtherTypeIPv4:
		err = f.parseIPv4(frame[EthernetLen:])
	case EtherTypeIPv6:
		err = f.parseIPv6(frame[EthernetLen:])
	default:
		return nil, fmt.Errorf("EtherType %#04x is not IP", f.EtherType)
	}
	if err != nil {
		return nil, err
	}
	if f.transportParsed() {
		if err := f.parseTransport(); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *Frame) parseIPv4(b []byte) error {
	if len(b) < IPv4Len {
		return fmt.Errorf("IPv4 header: %w", errTruncated)
	}
	if b[0]>>4 != 4 {
		return fmt.Errorf("IPv4 header: version %d", b[0]>>4)
	}
	hdrLen, total := int(b[0]&0xf)*4, int(binary.BigEndian.Uint16(b[2:]))
	if hdrLen < IPv4Len || total < hdrLen {
		return fmt.Errorf("IPv4 header: length %d, total %d", hdrLen, total)
	}
	if total > len(b) {
		return fmt.Errorf("IPv4 packet of %d bytes in %d: %w", total, len(b), errTruncated)
	}
	frag := binary.BigEndian.Uint16(b[6:])
	f.FragmentOffset = frag & 0x1fff
	f.Fragment = frag&0x2000 != 0 || f.FragmentOffset != 0
	f.TTL, f.Proto = b[8], b[9]
	f.Src = netip.AddrFrom4([4]byte(b[12:16]))
	f.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	f.IP, f.Transport = b[:total], b[hdrLen:total]
	return nil
}

func (f *Frame) parseIPv6(b []byte) error {
	if len(b) < IPv6Len {
		return fmt.Errorf("IPv6 header: %w", errTruncated)
	}
	if b[0]>>4 != 6 {
		return fmt.Errorf("IPv6 header: version %d", b[0]>>4)
	}
	total := IPv6Len + int(binary.BigEndian.Uint16(b[4:]))
	if total > len(b) {
		return fmt.Errorf("IPv6 packet of %d bytes in %d: %w", total, len(b), errTruncated)
	}
	f.TTL = b[7]
	f.Src = netip.AddrFrom16([16]byte(b[8:24]))
	f.Dst = netip.AddrFrom16([16]byte(b[24:40]))
	f.IP = b[:total]
	next, off := b[6], IPv6Len
	for range maxExtensionHeaders {
		if next != extHopByHop && next != extRouting && next != extFragment && next != extAuth && next != extDestination {
			break
		}
		if off+8 > total {
			return fmt.Errorf("IPv6 extension header %d: %w", next, errTruncated)
		}
		var n int
		switch next {
		case extFragment:
			frag := binary.BigEndian.Uint16(b[off+2:])
			f.FragmentOffset = frag >> 3
			f.Fragment = true
			n = 8
		case extAuth:
			n = (int(b[off+1]) + 2) * 4
		default:
			n = (int(b[off+1]) + 1) * 8
		}
		if off+n > total {
			return fmt.Errorf("IPv6 extension header %d: %w", next, errTruncated)
		}
		next, off = b[off], off+n
	}
	f.Proto, f.Transport = next, b[off:total]
	return nil
}

func (f *Frame) parseTransport() error {
	t := f.Transport
	need := map[uint8]int{ProtoTCP: TCPLen, ProtoUDP: UDPLen, ProtoSCTP: SCTPLen, ProtoICMP: ICMPLen, ProtoICMPv6: ICMPLen}[f.Proto]
	if need == 0 {
		f.Payload = t
		return nil
	}
	if len(t) < need {
		return fmt.Errorf("protocol %d header: %w", f.Proto, errTruncated)
	}
	switch f.Proto {
	case ProtoTCP, ProtoUDP, ProtoSCTP:
		f.SrcPort, f.DstPort = binary.BigEndian.Uint16(t), binary.BigEndian.Uint16(t[2:])
	}
	switch f.Proto {
	case ProtoTCP:
		off := int(t[12]>>4) * 4
		if off < TCPLen || off > len(t) {
			return fmt.Errorf("TCP data offset %d in a segment of %d bytes", off, len(t))
		}
		f.TCPFlags, need = t[13], off
	case ProtoUDP:
		// A fragment's UDP length covers the whole datagram.
		if n := int(binary.BigEndian.Uint16(t[4:])); !f.Fragment && n != len(t) {
			return fmt.Errorf("UDP length %d in %d bytes", n, len(t))
		}
	case ProtoICMP, ProtoICMPv6:
		f.ICMPType, f.ICMPCode, f.ICMPRest = t[0], t[1], binary.BigEndian.Uint32(t[4:])
	}
	f.Payload = t[need:]
	return nil
}

// VerifyChecksums checks the IPv4 header checksum and, unless the packet
// is a fragment, the transport checksum of TCP, UDP (zero over IPv4: none),
// SCTP, ICMP and ICMPv6. The error names each checksum that is wrong.
func (f *Frame) VerifyChecksums() error {
	var errs []error
	if f.Src.Is4() {
		hdr := f.IP[:len(f.IP)-len(f.Transport)]
		if got := binary.BigEndian.Uint16(hdr[10:]); Checksum(hdr) != 0 {
			hdr := append([]byte(nil), hdr...)
			hdr[10], hdr[11] = 0, 0
			errs = append(errs, fmt.Errorf("IPv4 header checksum %#04x, want %#04x", got, Checksum(hdr)))
		}
	}
	if f.Fragment {
		return errors.Join(errs...)
	}
	t := f.Transport
	field := map[uint8]int{ProtoTCP: 16, ProtoUDP: 6, ProtoICMP: 2, ProtoICMPv6: 2}
	switch f.Proto {
	case ProtoTCP, ProtoUDP, ProtoICMP, ProtoICMPv6:
		at := field[f.Proto]
		got := binary.BigEndian.Uint16(t[at:])
		if f.Proto == ProtoUDP && got == 0 && f.Src.Is4() {
			break // no checksum
		}
		z := append([]byte(nil), t...)
		z[at], z[at+1] = 0, 0
		var want uint16
		if f.Proto == ProtoICMP {
			want = Checksum(z)
		} else {
			want = TransportChecksum(f.Src, f.Dst, f.Proto, z)
			if f.Proto == ProtoUDP && want == 0 {
				want = 0xffff
			}
		}
		if got != want {
			errs = append(errs, fmt.Errorf("protocol %d checksum %#04x, want %#04x", f.Proto, got, want))
		}
	case ProtoSCTP:
		got := binary.LittleEndian.Uint32(t[8:])
		z := append([]byte(nil), t...)
		clear(z[8:12])
		if want := SCTPChecksum(z); got != want {
			errs = append(errs, fmt.Errorf("SCTP checksum %#08x, want %#08x", got, want))
		}
	}
	return errors.Join(errs...)
}
