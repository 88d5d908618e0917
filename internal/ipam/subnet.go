package ipam

import (
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"slices"
)

// Mode is how a pool hands addresses to nodes.
type Mode int

// The pool modes.
const (
	// Overlay: each node gets one block per family out of a private pod CIDR.
	Overlay Mode = iota
	// Subnet: nodes get aligned batches out of a shared pod subnet, as many
	// as BatchesWanted says, and give whole batches back.
	Subnet
)

// String is "Overlay", "Subnet" or "Mode(N)".
func (m Mode) String() string {
	switch m {
	case Overlay:
		return "Overlay"
	case Subnet:
		return "Subnet"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// BatchesWanted is how many batches of batchSize addresses a node in Subnet
// mode should hold when inUse of its addresses are in use: enough to leave
// at least minFree free, ceil((inUse+minFree)/batchSize), but no more than
// ceil(maxPods/batchSize) and no fewer than ceil(inUse/batchSize), and at
// least 1. Negative counts are taken as 0 and a batchSize below 1 as 1.
func BatchesWanted(inUse, minFree, maxPods, batchSize int) int {
	inUse, minFree, maxPods, batchSize = max(inUse, 0), max(minFree, 0), max(maxPods, 0), max(batchSize, 1)
	wantIPs := math.MaxInt // saturate inUse+minFree
	if inUse <= math.MaxInt-minFree {
		wantIPs = inUse + minFree
	}
	want := min(ceilDiv(wantIPs, batchSize), ceilDiv(maxPods, batchSize))
	return max(want, ceilDiv(inUse, batchSize), 1)
}

// ceilDiv is ceil(a/b) for a >= 0, b > 0, without overflow.
func ceilDiv(a, b int) int {
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

// BatchLen is the prefix length of a batch of batchSize addresses of
// family f. batchSize must be a power of two no larger than the family's
// whole address space (or, for IPv6, than the largest int).
func BatchLen(f Family, batchSize int) (int, error) {
	width := f.bits()
	if width == 0 {
		return 0, fmt.Errorf("ipam: batch length: unknown family %d", int(f))
	}
	if batchSize < 1 || batchSize&(batchSize-1) != 0 {
		return 0, fmt.Errorf("ipam: batch size %d is not a power of two", batchSize)
	}
	hostBits := bits.TrailingZeros64(uint64(batchSize))
	if hostBits > width {
		return 0, fmt.Errorf("ipam: batch size %d is larger than the whole %s address space", batchSize, f)
	}
	return width - hostBits, nil
}

// ExcludedAddresses are the addresses inside block that a node must not
// give to a pod, sorted and without duplicates.
//
// Overlay: the block's first address and, for IPv4, its last (network and
// broadcast). poolCIDRs are not consulted.
//
// Subnet: for each pool CIDR, its network address, its first three host
// addresses (the cloud's gateway and DNS addresses, which Azure reserves)
// and, for IPv4, its last address (broadcast) — those that fall inside block.
//
// The invalid Prefix and an unknown mode have no excluded addresses.
func ExcludedAddresses(mode Mode, block netip.Prefix, poolCIDRs []netip.Prefix) []netip.Addr {
	if !block.IsValid() {
		return nil
	}
	block = block.Masked()
	var out []netip.Addr
	switch mode {
	case Overlay:
		out = append(out, block.Addr())
		if block.Addr().Is4() {
			out = append(out, lastAddr(block))
		}
	case Subnet:
		for _, c := range poolCIDRs {
			if !c.IsValid() || !c.Overlaps(block) {
				continue
			}
			c = c.Masked()
			a := c.Addr()
			for range 4 {
				if c.Contains(a) && block.Contains(a) {
					out = append(out, a)
				}
				if a = a.Next(); !a.IsValid() {
					break
				}
			}
			if c.Addr().Is4() {
				if last := lastAddr(c); block.Contains(last) {
					out = append(out, last)
				}
			}
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// lastAddr is the highest address of p (masked).
func lastAddr(p netip.Prefix) netip.Addr {
	f := FamilyOf(p)
	host := uint(f.bits() - p.Bits())
	ones := u128{hi: ^uint64(0), lo: ^uint64(0)}.shr(128 - host) // host 0: shr(128) = 0
	return u128Of(p.Addr()).or(ones).addr(f)
}
