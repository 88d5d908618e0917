package ipampool

import (
	"net/netip"
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
)

func TestFromSpecDefaults(t *testing.T) {
	overlay, err := FromSpec(&v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/8", "fd00::/48"}})
	if err != nil {
		t.Fatal(err)
	}
	if overlay.BlockLenV4 != 24 || overlay.BlockLenV6 != 120 || overlay.MaxPods != 250 || overlay.Mode != ipam.Overlay {
		t.Errorf("overlay defaults = %+v", overlay)
	}
	if fams := overlay.Families(); len(fams) != 2 || fams[0] != ipam.IPv4 {
		t.Errorf("families = %v, want IPv4 then IPv6", fams)
	}
	subnet, err := FromSpec(&v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.0.0.0/16"}, BatchSize: ptr.To[int32](32)})
	if err != nil {
		t.Fatal(err)
	}
	if subnet.BatchSize != 32 || subnet.BlockLenV4 != 27 || subnet.MinFree != 16 || subnet.MaxFree != 64 {
		t.Errorf("subnet defaults = %+v", subnet)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		spec v1.IPAMPoolSpec
		want string // "" means valid
	}{
		{"valid overlay", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16"}}, ""},
		{"valid dual stack", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16", "fd00::/56"}}, ""},
		{"overlapping ranges", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16", "10.0.1.0/24"}},
			"cidrs 10.0.0.0/16 and 10.0.1.0/24 overlap"},
		{"IPv6 only", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"fd00::/56"}}, "at least one IPv4 range"},
		{"block too small", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16"}, BlockSize: ptr.To[int32](25)},
			"blockSize 25 gives a node 126 usable addresses, fewer than maxPodsPerNode 250; use blockSize 24"},
		{"small block, few pods", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16"},
			BlockSize: ptr.To[int32](26), MaxPodsPerNode: ptr.To[int32](60)}, ""},
		{"IPv6 block too small", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/16", "fd00::/56"},
			IPv6BlockSize: ptr.To[int32](124)}, "ipv6BlockSize 124 gives a node 15 usable addresses"},
		{"range smaller than a block", v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.0.0.0/25"}},
			"cidr 10.0.0.0/25 is smaller than one block (/24)"},
		{"flapping watermarks", v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.0.0.0/16"},
			MinFreeIPs: ptr.To[int32](8), MaxFreeIPs: ptr.To[int32](16)}, "maxFreeIPs 16 must be at least minFreeIPs 8 plus batchSize 16 (24)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := FromSpec(&tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			problems := strings.Join(p.Validate(), "\n")
			if tt.want == "" && problems != "" {
				t.Fatalf("unexpected problems: %s", problems)
			}
			if !strings.Contains(problems, tt.want) {
				t.Fatalf("problems %q, want one containing %q", problems, tt.want)
			}
		})
	}
}

func TestEnoughCountsReservedAddresses(t *testing.T) {
	p, err := FromSpec(&v1.IPAMPoolSpec{Mode: v1.IPAMModeSubnet, CIDRs: []v1.CIDR{"10.61.0.0/20"}, MinFreeIPs: ptr.To[int32](4), MaxFreeIPs: ptr.To[int32](20)})
	if err != nil {
		t.Fatal(err)
	}
	first := netip.MustParsePrefix("10.61.0.0/28")
	second := netip.MustParsePrefix("10.61.0.16/28")
	if got := p.Usable(first); got != 12 {
		t.Fatalf("usable in the subnet's first batch = %d, want 12 (four reserved)", got)
	}
	if got := p.Usable(second); got != 16 {
		t.Fatalf("usable in the second batch = %d, want 16", got)
	}
	// 8 pods + 4 free fit the first batch; 9 don't.
	if !p.Enough(1, 12, 8) || p.Enough(1, 12, 9) {
		t.Error("the first batch's reserved addresses are not counted")
	}
	if p.Enough(0, 0, 0) {
		t.Error("a node with no batch has enough")
	}
	// Never more than maxPods usable are needed.
	p.MaxPods = 20
	if !p.Enough(2, 28, 20) {
		t.Error("a node at maxPods with room for it still wants more")
	}
}
