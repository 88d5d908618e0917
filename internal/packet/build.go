package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// IP protocol numbers and EtherTypes of the headers this package knows.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132

	EtherTypeIPv4 uint16 = 0x0800
	EtherTypeIPv6 uint16 = 0x86dd
)

// Header lengths.
const (
	EthernetLen = 14
	IPv4Len     = 20
	IPv6Len     = 40
	TCPLen      = 20
	UDPLen      = 8
	SCTPLen     = 12
	ICMPLen     = 8
)

// TCP flags.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPAck uint8 = 0x10
)

// Default MAC addresses of built frames (locally administered).
var (
	DefaultSrcMAC = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	DefaultDstMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

// IP is the network layer of a packet to build. Src and Dst pick the
// family (IPv4-mapped addresses count as IPv4).
type IP struct {
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or IPv6 hop limit; zero means 64.
	TTL uint8
	// DontFragment sets IPv4's DF bit.
	DontFragment bool
	// ID is the IPv4 identification.
	ID uint16
}

// Transport is a transport header with its payload: TCP, UDP, SCTP, ICMP
// or Raw. Build asks it for its bytes once the addresses are known, so
// that it can checksum them.
type Transport interface {
	// protocol is the IP protocol number for the family.
	protocol(v6 bool) uint8
	// appendTo appends the header and payload, checksum included, to b.
	appendTo(b []byte, src, dst netip.Addr) ([]byte, error)
}

// TCP is a TCP segment without options.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint8
	Window           uint16
	Payload          []byte
}

// UDP is a UDP datagram.
type UDP struct {
	SrcPort, DstPort uint16
	Payload          []byte
}

// SCTP is an SCTP packet: the common header and its chunks, as bytes.
type SCTP struct {
	SrcPort, DstPort uint16
	VerificationTag  uint32
	Chunks           []byte
}

// ICMP is an ICMP message for IPv4 or ICMPv6 for IPv6, by the family of
// the addresses. Rest is the 4 bytes after the checksum (echo: identifier
// and sequence; "fragmentation needed" and "packet too big": the MTU).
type ICMP struct {
	Type, Code uint8
	Rest       uint32
	Payload    []byte
}

// Raw is a transport the package doesn't build: Data is sent as is.
type Raw struct {
	Proto uint8
	Data  []byte
}

func (TCP) protocol(bool) uint8   { return ProtoTCP }
func (UDP) protocol(bool) uint8   { return ProtoUDP }
func (SCTP) protocol(bool) uint8  { return ProtoSCTP }
func (r Raw) protocol(bool) uint8 { return r.Proto }

func (ICMP) protocol(v6 bool) uint8 {
	if v6 {
		return ProtoICMPv6
	}
	return ProtoICMP
}

func (t TCP) appendTo(b []byte, src, dst netip.Addr) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, t.SrcPort)
	b = binary.BigEndian.AppendUint16(b, t.DstPort)
	b = binary.BigEndian.AppendUint32(b, t.Seq)
	b = binary.BigEndian.AppendUint32(b, t.Ack)
	b = append(b, (TCPLen/4)<<4, t.Flags)
	b = binary.BigEndian.AppendUint16(b, t.Window)
	b = append(b, 0, 0, 0, 0) // checksum, urgent pointer
	b = append(b, t.Payload...)
	binary.BigEndian.PutUint16(b[start+16:], TransportChecksum(src, dst, ProtoTCP, b[start:]))
	return b, nil
}

func (u UDP) appendTo(b []byte, src, dst netip.Addr) ([]byte, error) {
	n := UDPLen + len(u.Payload)
	if n > 0xffff {
		return nil, fmt.Errorf("UDP datagram of %d bytes", n)
	}
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, u.SrcPort)
	b = binary.BigEndian.AppendUint16(b, u.DstPort)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	b = append(b, 0, 0)
	b = append(b, u.Payload...)
	sum := TransportChecksum(src, dst, ProtoUDP, b[start:])
	if sum == 0 {
		sum = 0xffff // zero means "no checksum" (RFC 768)
	}
	binary.BigEndian.PutUint16(b[start+6:], sum)
	return b, nil
}

func (s SCTP) appendTo(b []byte, _, _ netip.Addr) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, s.SrcPort)
	b = binary.BigEndian.AppendUint16(b, s.DstPort)
	b = binary.BigEndian.AppendUint32(b, s.VerificationTag)
	b = append(b, 0, 0, 0, 0)
	b = append(b, s.Chunks...)
	binary.LittleEndian.PutUint32(b[start+8:], SCTPChecksum(b[start:]))
	return b, nil
}

func (m ICMP) appendTo(b []byte, src, dst netip.Addr) ([]byte, error) {
	start := len(b)
	b = append(b, m.Type, m.Code, 0, 0)
	b = binary.BigEndian.AppendUint32(b, m.Rest)
	b = append(b, m.Payload...)
	var sum uint16
	if src.Is6() {
		sum = TransportChecksum(src, dst, ProtoICMPv6, b[start:])
	} else {
		sum = Checksum(b[start:])
	}
	binary.BigEndian.PutUint16(b[start+2:], sum)
	return b, nil
}

func (r Raw) appendTo(b []byte, _, _ netip.Addr) ([]byte, error) {
	return append(b, r.Data...), nil
}

// Build is the Ethernet frame (DefaultSrcMAC to DefaultDstMAC) carrying ip
// and t, every checksum computed.
func Build(ip IP, t Transport) ([]byte, error) {
	b := make([]byte, 0, 128)
	b = append(b, DefaultDstMAC[:]...)
	b = append(b, DefaultSrcMAC[:]...)
	if ip.Src.Unmap().Is4() {
		b = binary.BigEndian.AppendUint16(b, EtherTypeIPv4)
	} else {
		b = binary.BigEndian.AppendUint16(b, EtherTypeIPv6)
	}
	return AppendIP(b, ip, t)
}

// AppendIP appends the IP packet carrying t to b (no Ethernet header: an
// ICMP error quotes packets this way).
func AppendIP(b []byte, ip IP, t Transport) ([]byte, error) {
	src, dst := ip.Src.Unmap(), ip.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("packet %s -> %s: need two addresses of one family", ip.Src, ip.Dst)
	}
	if t == nil {
		return nil, errors.New("no transport")
	}
	ttl := ip.TTL
	if ttl == 0 {
		ttl = 64
	}
	v6 := src.Is6()
	start := len(b)
	if v6 {
		b = append(b, 0x60, 0, 0, 0, 0, 0, t.protocol(true), ttl)
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
	} else {
		var flags uint16
		if ip.DontFragment {
			flags = 0x4000
		}
		b = append(b, 0x45, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, ip.ID)
		b = binary.BigEndian.AppendUint16(b, flags)
		b = append(b, ttl, t.protocol(false), 0, 0)
		b = append(b, src.AsSlice()...)
		b = append(b, dst.AsSlice()...)
	}
	hdrLen := len(b) - start
	b, err := t.appendTo(b, src, dst)
	if err != nil {
		return nil, err
	}
	hdr, payload := b[start:start+hdrLen], len(b)-start-hdrLen
	if v6 {
		if payload > 0xffff {
			return nil, fmt.Errorf("IPv6 payload of %d bytes", payload)
		}
		binary.BigEndian.PutUint16(hdr[4:], uint16(payload))
		return b, nil
	}
	if hdrLen+payload > 0xffff {
		return nil, fmt.Errorf("IPv4 packet of %d bytes", hdrLen+payload)
	}
	binary.BigEndian.PutUint16(hdr[2:], uint16(hdrLen+payload))
	binary.BigEndian.PutUint16(hdr[10:], Checksum(hdr))
	return b, nil
}
