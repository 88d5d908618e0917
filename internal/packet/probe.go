package packet

import (
	"errors"
	"fmt"
	"net/netip"
)

// ICMP types Probe sends.
const (
	icmpEchoReply           = 0
	icmpDestUnreachable     = 3
	icmpEchoRequest         = 8
	icmpv6PacketTooBig      = 2
	icmpv6EchoRequest       = 128
	icmpv6EchoReply         = 129
	icmpFragmentationNeeded = 4 // code of icmpDestUnreachable
	// probeMTU is the MTU an ICMP error of a Probe reports.
	probeMTU = 1280
)

// Probe is a packet policy tests send: the first packet of a flow (TCP
// SYN, UDP datagram, SCTP INIT, ICMP echo request), or with Reply its
// answer (TCP SYN-ACK, SCTP INIT-ACK, ICMP echo reply; UDP is the same
// either way). For ICMP (ProtoICMP or ProtoICMPv6, either one for either
// family) the echo identifier is SrcPort in a request and DstPort in a
// reply, so a reply is its request with addresses and ports swapped.
//
// With Quote, the packet is an ICMP error about Quote (Proto ProtoICMP or
// ProtoICMPv6; the ports unused): "fragmentation needed" for IPv4,
// "packet too big" for IPv6, carrying Quote's IP header and its first 8
// bytes after it, as a router or the destination would send it back to
// Quote's source.
type Probe struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	Reply            bool
	Quote            *Probe
}

// Frame is the Ethernet frame of the probe, with valid checksums.
func (p Probe) Frame() ([]byte, error) {
	t, err := p.transport()
	if err != nil {
		return nil, err
	}
	return Build(p.ip(), t)
}

func (p Probe) ip() IP {
	return IP{Src: p.Src, Dst: p.Dst, DontFragment: true}
}

func (p Probe) transport() (Transport, error) {
	if p.Quote != nil {
		return p.icmpError()
	}
	switch p.Proto {
	case ProtoTCP:
		if p.Reply {
			return TCP{SrcPort: p.SrcPort, DstPort: p.DstPort, Seq: 1000, Ack: 1001, Flags: TCPSyn | TCPAck, Window: 65535}, nil
		}
		return TCP{SrcPort: p.SrcPort, DstPort: p.DstPort, Seq: 1000, Flags: TCPSyn, Window: 65535}, nil
	case ProtoUDP:
		return UDP{SrcPort: p.SrcPort, DstPort: p.DstPort, Payload: []byte("ping")}, nil
	case ProtoSCTP:
		return p.sctp(), nil
	case ProtoICMP, ProtoICMPv6:
		v6 := p.Src.Unmap().Is6()
		typ, id := uint8(icmpEchoRequest), p.SrcPort
		switch {
		case p.Reply && v6:
			typ, id = icmpv6EchoReply, p.DstPort
		case p.Reply:
			typ, id = icmpEchoReply, p.DstPort
		case v6:
			typ = icmpv6EchoRequest
		}
		return ICMP{Type: typ, Rest: uint32(id)<<16 | 1}, nil // sequence 1
	case 0:
		return nil, errors.New("a packet needs a protocol")
	default:
		return Raw{Proto: p.Proto, Data: make([]byte, 8)}, nil // a header the programs don't parse
	}
}

// sctp is an INIT (verification tag 0) or, as a reply, an INIT-ACK
// without the state cookie a real one carries: the programs read only
// the ports.
func (p Probe) sctp() SCTP {
	const tag = 0x5106
	chunk := []byte{
		1, 0, 0, 20, // INIT, flags, length
		0, 0, 0x51, 0x06, // initiate tag
		0, 1, 0, 0, // a_rwnd 65536
		0, 1, 0, 1, // outbound and inbound streams
		0x10, 0, 0, 0, // initial TSN
	}
	s := SCTP{SrcPort: p.SrcPort, DstPort: p.DstPort, Chunks: chunk}
	if p.Reply {
		chunk[0] = 2 // INIT-ACK
		s.VerificationTag = tag
	}
	return s
}

// icmpError is the ICMP error about p.Quote.
func (p Probe) icmpError() (Transport, error) {
	if p.Proto != ProtoICMP && p.Proto != ProtoICMPv6 {
		return nil, fmt.Errorf("an error about another packet must be ICMP, not protocol %d", p.Proto)
	}
	if p.Quote.Quote != nil {
		return nil, errors.New("an ICMP error about an ICMP error")
	}
	v6 := p.Src.Unmap().Is6()
	if p.Quote.Src.Unmap().Is6() != v6 {
		return nil, errors.New("an ICMP error quotes a packet of its own family")
	}
	qt, err := p.Quote.transport()
	if err != nil {
		return nil, fmt.Errorf("quoted packet: %w", err)
	}
	quoted, err := AppendIP(nil, p.Quote.ip(), qt)
	if err != nil {
		return nil, fmt.Errorf("quoted packet: %w", err)
	}
	// The quote: the IP header and the 8 bytes after it.
	typ, code, ipLen := uint8(icmpDestUnreachable), uint8(icmpFragmentationNeeded), IPv4Len
	if v6 {
		typ, code, ipLen = icmpv6PacketTooBig, 0, IPv6Len
	}
	return ICMP{Type: typ, Code: code, Rest: probeMTU, Payload: quoted[:min(len(quoted), ipLen+8)]}, nil
}
