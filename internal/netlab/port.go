package netlab

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Port is a protocol and port number: where an echo server listens, what
// a probe connects to.
type Port struct {
	Protocol corev1.Protocol
	Number   int
}

// TCP is TCP port n.
func TCP(n int) Port { return Port{corev1.ProtocolTCP, n} }

// UDP is UDP port n.
func UDP(n int) Port { return Port{corev1.ProtocolUDP, n} }

// SCTP is SCTP port n.
func SCTP(n int) Port { return Port{corev1.ProtocolSCTP, n} }

// String is NUMBER/PROTOCOL, as ParsePort reads it.
func (p Port) String() string { return strconv.Itoa(p.Number) + "/" + string(p.Protocol) }

// ParsePort reads NUMBER[/PROTOCOL] (TCP when left out; the protocol in
// any case).
func ParsePort(s string) (Port, error) {
	num, proto, _ := strings.Cut(strings.TrimSpace(s), "/")
	p := Port{Protocol: corev1.Protocol(strings.ToUpper(proto))}
	if p.Protocol == "" {
		p.Protocol = corev1.ProtocolTCP
	}
	switch p.Protocol {
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return Port{}, fmt.Errorf("port %q: protocol %q is not TCP, UDP or SCTP", s, proto)
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 1 || n > 65535 {
		return Port{}, fmt.Errorf("port %q: want NUMBER[/PROTOCOL] with NUMBER in 1-65535", s)
	}
	p.Number = n
	return p, nil
}
