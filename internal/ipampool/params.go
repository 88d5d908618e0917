package ipampool

import (
	"fmt"
	"math/bits"
	"net/netip"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipam"
)

// Params are an IPAMPool's effective settings.
type Params struct {
	Mode    ipam.Mode
	CIDRs   []netip.Prefix
	MaxPods int
	// BlockLenV4 and BlockLenV6 are the prefix lengths of what a node
	// receives at a time: its block (Overlay) or one batch (Subnet).
	BlockLenV4, BlockLenV6 int
	// Subnet mode only.
	BatchSize, MinFree, MaxFree int
}

// FromSpec resolves defaults. It fails on CIDRs that don't parse, which
// admission has already refused.
func FromSpec(spec *v1.IPAMPoolSpec) (Params, error) {
	p := Params{MaxPods: int(deref(spec.MaxPodsPerNode, v1.DefaultMaxPodsPerNode))}
	for _, c := range spec.CIDRs {
		prefix, err := netip.ParsePrefix(string(c))
		if err != nil {
			return Params{}, fmt.Errorf("cidr %q: %w", c, err)
		}
		p.CIDRs = append(p.CIDRs, prefix)
	}
	switch spec.Mode {
	case v1.IPAMModeOverlay:
		p.Mode = ipam.Overlay
		p.BlockLenV4 = int(deref(spec.BlockSize, v1.DefaultBlockSize))
		p.BlockLenV6 = int(deref(spec.IPv6BlockSize, v1.DefaultIPv6BlockSize))
	case v1.IPAMModeSubnet:
		p.Mode = ipam.Subnet
		p.BatchSize = int(deref(spec.BatchSize, v1.DefaultBatchSize))
		p.MinFree = int(deref(spec.MinFreeIPs, int32(p.BatchSize/2)))
		p.MaxFree = int(deref(spec.MaxFreeIPs, int32(2*p.BatchSize)))
		var err error
		if p.BlockLenV4, err = ipam.BatchLen(ipam.IPv4, p.BatchSize); err != nil {
			return Params{}, err
		}
		if p.BlockLenV6, err = ipam.BatchLen(ipam.IPv6, p.BatchSize); err != nil {
			return Params{}, err
		}
	default:
		return Params{}, fmt.Errorf("mode %q: want Overlay or Subnet", spec.Mode)
	}
	return p, nil
}

// NewSpace is the allocator for the pool's ranges.
func (p Params) NewSpace() (*ipam.Space, error) {
	return ipam.NewSpace(p.CIDRs, p.BlockLenV4, p.BlockLenV6)
}

// Families are the IP families the pool has ranges of, IPv4 first.
func (p Params) Families() []ipam.Family {
	var v4, v6 bool
	for _, c := range p.CIDRs {
		if c.Addr().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	var out []ipam.Family
	if v4 {
		out = append(out, ipam.IPv4)
	}
	if v6 {
		out = append(out, ipam.IPv6)
	}
	return out
}

func (p Params) has(f ipam.Family) bool {
	for _, got := range p.Families() {
		if got == f {
			return true
		}
	}
	return false
}

// Enough reports whether a node holding blocks blocks of one family, with
// usable addresses among them, has what it needs with inUse pod IPs: one
// block in Overlay mode; in Subnet mode at least MinFree free addresses
// (but never more than MaxPods usable). usable counts the addresses pods
// may get, so a batch that holds the subnet's reserved addresses counts
// for less.
func (p Params) Enough(blocks, usable, inUse int) bool {
	if p.Mode == ipam.Overlay {
		return blocks >= 1
	}
	return blocks >= 1 && usable >= min(inUse+p.MinFree, p.MaxPods)
}

// Usable is the number of addresses in block a pod may get.
func (p Params) Usable(block netip.Prefix) int {
	n := int(min(p.BlockAddresses(ipam.FamilyOf(block)), 1<<30))
	return n - len(ipam.ExcludedAddresses(p.Mode, block, p.CIDRs))
}

// BlockAddresses is the number of addresses in one block of family f,
// saturated at the uint64 range.
func (p Params) BlockAddresses(f ipam.Family) uint64 {
	hostBits := 32 - p.BlockLenV4
	if f == ipam.IPv6 {
		hostBits = 128 - p.BlockLenV6
	}
	if hostBits >= 64 {
		return ^uint64(0)
	}
	return uint64(1) << uint(hostBits)
}

// Validate checks the rules about one pool that the CRD schema leaves to
// Go. Each problem is one message that says what is wrong and what would
// be accepted.
func (p Params) Validate() []string {
	var problems []string
	for i, a := range p.CIDRs {
		for _, b := range p.CIDRs[i+1:] {
			if a.Overlaps(b) {
				problems = append(problems, fmt.Sprintf("cidrs %s and %s overlap; list each range once", a, b))
			}
		}
	}
	if len(p.Families()) == 0 || p.Families()[0] != ipam.IPv4 {
		problems = append(problems, "cidrs need at least one IPv4 range; IPv6 ranges are accepted beside it for dual stack")
	}
	if p.Mode == ipam.Overlay {
		// A block loses its network and broadcast addresses.
		if usable := int(min(p.BlockAddresses(ipam.IPv4), 1<<20)) - 2; usable < p.MaxPods {
			problems = append(problems, fmt.Sprintf(
				"blockSize %d gives a node %d usable addresses, fewer than maxPodsPerNode %d; use blockSize %d or shorter, or lower maxPodsPerNode",
				p.BlockLenV4, usable, p.MaxPods, longestBlockFor(p.MaxPods+2, 32)))
		}
		if usable := int(min(p.BlockAddresses(ipam.IPv6), 1<<20)) - 1; p.has(ipam.IPv6) && usable < p.MaxPods {
			problems = append(problems, fmt.Sprintf(
				"ipv6BlockSize %d gives a node %d usable addresses, fewer than maxPodsPerNode %d; use ipv6BlockSize %d or shorter",
				p.BlockLenV6, usable, p.MaxPods, longestBlockFor(p.MaxPods+1, 128)))
		}
	}
	if p.Mode == ipam.Subnet && p.MaxFree < p.MinFree+p.BatchSize {
		problems = append(problems, fmt.Sprintf(
			"maxFreeIPs %d must be at least minFreeIPs %d plus batchSize %d (%d), or a node would give back a batch and ask for it again at once",
			p.MaxFree, p.MinFree, p.BatchSize, p.MinFree+p.BatchSize))
	}
	for _, c := range p.CIDRs {
		blockLen := p.BlockLenV4
		if !c.Addr().Is4() {
			blockLen = p.BlockLenV6
		}
		if c.Bits() > blockLen {
			problems = append(problems, fmt.Sprintf(
				"cidr %s is smaller than one block (/%d); use a range of /%d or shorter", c, blockLen, blockLen))
		}
	}
	return problems
}

// longestBlockFor is the longest prefix whose block holds n addresses.
func longestBlockFor(n, addrBits int) int {
	return addrBits - bits.Len(uint(n-1))
}

func deref(v *int32, def int32) int32 {
	if v == nil {
		return def
	}
	return *v
}
