package policycase

import (
	"fmt"
	"os"

	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/policy"
)

// probeSourcePort is the source port of every crafted probe packet.
const probeSourcePort = 40000

// BPFEngine runs probes through the real BPF programs: it loads them
// without pinning, fills their maps from the compiled snapshot, and runs
// one crafted packet per probe with BPF_PROG_TEST_RUN (egress at the
// source, ingress at the destination). Conntrack is emptied before each
// probe so that probes don't answer for each other.
type BPFEngine struct {
	dp *datapath.Datapath
}

// Load loads the programs and writes snap into their maps.
func (b *BPFEngine) Load(snap *policy.Snapshot) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the bpf engine loads BPF programs and needs root (CAP_BPF, CAP_NET_ADMIN); use --engine model to evaluate without the kernel")
	}
	dp, err := datapath.New(datapath.Options{})
	if err != nil {
		return fmt.Errorf("load the BPF datapath: %w", err)
	}
	b.dp = dp
	if err := dp.Apply(snap); err != nil {
		return fmt.Errorf("fill the BPF maps: %w", err)
	}
	return nil
}

// Allowed runs one crafted packet for f through both programs.
func (b *BPFEngine) Allowed(f Flow) (bool, error) {
	if err := b.dp.ResetConntrack(); err != nil {
		return false, err
	}
	return b.dp.Verdict(datapath.Packet{
		Src: f.Src, Dst: f.Dst, Proto: f.Proto, SrcPort: probeSourcePort, DstPort: f.Port,
	})
}

// Close unloads the programs; safe when nothing was loaded.
func (b *BPFEngine) Close() error {
	return b.dp.Close()
}
