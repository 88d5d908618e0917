package agent

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/policy"
)

// service is a protocol and port every pod serves an echo on.
type service = netlab.Port

// protoNumber is the IP protocol number the policy package uses.
func protoNumber(s service) uint8 {
	switch s.Protocol {
	case corev1.ProtocolUDP:
		return policy.ProtoUDP
	case corev1.ProtocolSCTP:
		return policy.ProtoSCTP
	}
	return policy.ProtoTCP
}

// services every pod serves: two TCP ports, a third TCP port with the
// number of the UDP one (to tell the protocols apart), UDP and SCTP.
var services = []service{
	netlab.TCP(8080),
	netlab.TCP(9090),
	netlab.TCP(5353),
	netlab.UDP(5353),
	netlab.SCTP(3868),
}

// probedServices are the services this kernel can carry; SCTP is left out
// (and the test says so) only when the kernel has no SCTP sockets.
func probedServices(t *testing.T) []service {
	t.Helper()
	err := netlab.SCTPSupport()
	if err != nil && !netlab.SCTPUnavailable(err) {
		t.Fatalf("SCTP socket: %v", err)
	}
	var out []service
	for _, s := range services {
		if s.Protocol == corev1.ProtocolSCTP && err != nil {
			t.Logf("SKIP the %s probes: this kernel has no SCTP sockets (%v)", s, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// startServers starts p's echo servers, one per service (SCTP only when
// the kernel has it), bound to p's address in p's netns.
func (w *world) startServers(p *testPod) {
	w.t.Helper()
	var svcs []service
	for _, s := range services {
		if s.Protocol != corev1.ProtocolSCTP || netlab.SCTPSupport() == nil {
			svcs = append(svcs, s)
		}
	}
	srv, err := p.ServeEcho(svcs...)
	if err != nil {
		w.t.Fatalf("%s: %v", p, err)
	}
	w.t.Cleanup(func() { _ = srv.Close() })
}

// probeTimeout bounds each probe: connect (or the first datagram's echo)
// and the echo. A local veth answers in well under a millisecond.
const probeTimeout = 300 * time.Millisecond
