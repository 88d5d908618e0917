package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/sluice-dev/sluice/internal/policy"
)

// Protocols without ports that Packet can carry (besides policy.ProtoTCP,
// ProtoUDP and ProtoSCTP).
const (
	ProtoICMP   uint8 = 1
	ProtoICMPv6 uint8 = 58
)

// Packet is a probe for Verdict: the first packet of a flow (TCP SYN, UDP
// datagram, SCTP INIT, ICMP echo request), or with Reply its answer (TCP
// SYN-ACK, SCTP INIT-ACK, ICMP echo reply; UDP is the same either way).
// For ICMP (ProtoICMP or ProtoICMPv6, either one for either family) the
// echo identifier is SrcPort in a request and DstPort in a reply, so a
// reply is its request with addresses and ports swapped.
//
// With Quote, the packet is an ICMP error about Quote (Proto ProtoICMP or
// ProtoICMPv6; the ports unused): "fragmentation needed" for IPv4,
// "packet too big" for IPv6, carrying Quote's IP header and its first 8
// bytes after it, as a router or the destination would send it back to
// Quote's source.
type Packet struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	Reply            bool
	Quote            *Packet
}

// Verdict runs pkt through sluice_from_pod (the source's egress) and then
// sluice_to_pod (the destination's ingress) with BPF_PROG_TEST_RUN, as it
// would cross a node from one pod's veth to another's, and reports whether
// both allow it. Like real packets, allowed probes are recorded in
// conntrack (see ResetConntrack).
func (d *Datapath) Verdict(pkt Packet) (allowed bool, err error) {
	frame, err := pkt.Frame()
	if err != nil {
		return false, err
	}
	err = d.use(func() error {
		allowed = true
		for _, p := range []*ebpf.Program{d.objs.SluiceFromPod, d.objs.SluiceToPod} {
			ret, err := p.Run(&ebpf.RunOptions{Data: frame})
			if err != nil {
				return fmt.Errorf("run %s: %w", p, err)
			}
			switch ret {
			case uint32(sluiceTcxActionBaseTCX_PASS):
			case uint32(sluiceTcxActionBaseTCX_DROP):
				allowed = false
				return nil // dropped: it never reaches the next hook
			default:
				return fmt.Errorf("%s returned %d", p, ret)
			}
		}
		return nil
	})
	return allowed, err
}

const ethHeaderLen = 14

var (
	macDst = []byte{0x02, 0, 0, 0, 0, 0x02}
	macSrc = []byte{0x02, 0, 0, 0, 0, 0x01}
)

// Frame is the Ethernet frame Verdict runs for pkt.
func (pkt Packet) Frame() ([]byte, error) {
	src, dst := pkt.Src.Unmap(), pkt.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("packet %s -> %s: need two addresses of one family", pkt.Src, pkt.Dst)
	}
	proto := pkt.Proto
	if proto == ProtoICMP || proto == ProtoICMPv6 {
		proto = ProtoICMP
		if src.Is6() {
			proto = ProtoICMPv6
		}
	}
	var (
		l4  []byte
		err error
	)
	if pkt.Quote != nil {
		l4, err = pkt.icmpError(proto)
	} else {
		l4, err = pkt.transport(proto)
	}
	if err != nil {
		return nil, err
	}

	b := append(append([]byte{}, macDst...), macSrc...)
	if src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		ip[8] = 64
		ip[9] = proto
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
		b = append(b, ip...)
	} else {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = proto
		ip[7] = 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		b = append(b, ip...)
	}
	return append(b, l4...), nil
}

// icmpError is the ICMP error message about pkt.Quote.
func (pkt Packet) icmpError(proto uint8) ([]byte, error) {
	if proto != ProtoICMP && proto != ProtoICMPv6 {
		return nil, fmt.Errorf("an error about another packet must be ICMP, not protocol %d", pkt.Proto)
	}
	if pkt.Quote.Quote != nil {
		return nil, errors.New("an ICMP error about an ICMP error")
	}
	if pkt.Quote.Src.Unmap().Is4() != pkt.Src.Unmap().Is4() {
		return nil, errors.New("an ICMP error quotes a packet of its own family")
	}
	quoted, err := pkt.Quote.Frame()
	if err != nil {
		return nil, fmt.Errorf("quoted packet: %w", err)
	}
	// The quote: the IP header and the 8 bytes after it.
	quoted = quoted[ethHeaderLen:]
	typ, code, ipLen := byte(3), byte(4), 20 // destination unreachable, fragmentation needed
	if proto == ProtoICMPv6 {
		typ, code, ipLen = 2, 0, 40 // packet too big
	}
	quoted = quoted[:min(len(quoted), ipLen+8)]
	h := make([]byte, 8, 8+len(quoted))
	h[0], h[1] = typ, code
	binary.BigEndian.PutUint32(h[4:], 1280) // the MTU (IPv4: low 16 bits)
	return append(h, quoted...), nil
}

// transport is the L4 header (checksums left zero: the programs don't
// read them).
func (pkt Packet) transport(proto uint8) ([]byte, error) {
	be := binary.BigEndian
	switch proto {
	case policy.ProtoTCP:
		h := make([]byte, 20)
		be.PutUint16(h[0:], pkt.SrcPort)
		be.PutUint16(h[2:], pkt.DstPort)
		be.PutUint32(h[4:], 1000)
		h[12] = 5 << 4
		h[13] = 0x02 // SYN
		if pkt.Reply {
			be.PutUint32(h[8:], 1001)
			h[13] = 0x12 // SYN-ACK
		}
		be.PutUint16(h[14:], 65535)
		return h, nil
	case policy.ProtoUDP:
		h := make([]byte, 8+4)
		be.PutUint16(h[0:], pkt.SrcPort)
		be.PutUint16(h[2:], pkt.DstPort)
		be.PutUint16(h[4:], uint16(len(h)))
		copy(h[8:], "ping")
		return h, nil
	case policy.ProtoSCTP:
		h := make([]byte, 12+20)
		be.PutUint16(h[0:], pkt.SrcPort)
		be.PutUint16(h[2:], pkt.DstPort)
		c := h[12:]
		c[0] = 1 // INIT (verification tag 0)
		if pkt.Reply {
			be.PutUint32(h[4:], 0x5106)
			c[0] = 2 // INIT-ACK
		}
		be.PutUint16(c[2:], 20)
		be.PutUint32(c[4:], 0x5106)       // initiate tag
		be.PutUint32(c[8:], 65536)        // a_rwnd
		be.PutUint16(c[12:], 1)           // outbound streams
		be.PutUint16(c[14:], 1)           // inbound streams
		be.PutUint32(c[16:], 0x1000_0000) // initial TSN
		return h, nil
	case ProtoICMP, ProtoICMPv6:
		h := make([]byte, 8)
		req, rep := uint8(8), uint8(0)
		if proto == ProtoICMPv6 {
			req, rep = 128, 129
		}
		h[0] = req
		be.PutUint16(h[4:], pkt.SrcPort)
		if pkt.Reply {
			h[0] = rep
			be.PutUint16(h[4:], pkt.DstPort)
		}
		be.PutUint16(h[6:], 1) // sequence
		return h, nil
	case policy.ProtoAny:
		return nil, errors.New("a packet needs a protocol")
	default:
		return make([]byte, 8), nil // a header the programs don't parse
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
