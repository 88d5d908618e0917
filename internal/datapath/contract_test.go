package datapath

import (
	"testing"

	"github.com/sluice-dev/sluice/internal/policy"
)

// The numbers internal/policy writes into entries and the programs read
// are defined in bpf/lib/common.h; this package reads them from the
// bpf2go output, but internal/policy can't (it stays free of cilium/ebpf),
// so its copies are held to the generated ones here.
func TestPolicyConstantsMatchTheProgram(t *testing.T) {
	for _, tc := range []struct {
		name        string
		policy, bpf uint64
	}{
		{"policy.Ingress = DIR_INGRESS", uint64(policy.Ingress), uint64(sluiceDirectionDIR_INGRESS)},
		{"policy.Egress = DIR_EGRESS", uint64(policy.Egress), uint64(sluiceDirectionDIR_EGRESS)},
		{"policy.ClassAny = CLASS_ANY", uint64(policy.ClassAny), uint64(sluicePeerClassCLASS_ANY)},
		{"policy.ClassWorld = CLASS_WORLD", uint64(policy.ClassWorld), uint64(sluicePeerClassCLASS_WORLD)},
	} {
		if tc.policy != tc.bpf {
			t.Errorf("%s: policy has %d, bpf/lib/common.h %d", tc.name, tc.policy, tc.bpf)
		}
	}
	// CLASS_MASK is the mask entry's key: the classes the compiler hands
	// out start above the reserved ones and can't reach it.
	if policy.FirstDynamicClass <= policy.ClassWorld || uint32(policy.FirstDynamicClass) >= uint32(sluicePeerClassCLASS_MASK) {
		t.Errorf("dynamic classes from %d collide with a reserved class", policy.FirstDynamicClass)
	}
	// The programs find where a reply's flow was recorded as dir ^ 1.
	if policy.Ingress^1 != policy.Egress {
		t.Errorf("directions %d and %d are not each other's dir ^ 1", policy.Ingress, policy.Egress)
	}
}
