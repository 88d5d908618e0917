package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/sluice-dev/sluice/internal/packet"
)

// Protocols without ports that Packet can carry (besides policy.ProtoTCP,
// ProtoUDP and ProtoSCTP).
const (
	ProtoICMP   = packet.ProtoICMP
	ProtoICMPv6 = packet.ProtoICMPv6
)

// Packet is a probe for Verdict; internal/packet builds its frame (see
// packet.Probe for what each field means).
type Packet = packet.Probe

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
