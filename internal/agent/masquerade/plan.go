package masquerade

import (
	"cmp"
	"net/netip"
	"slices"
)

// Rules are what the node's table holds: packets to Exempt leave
// untouched, packets from Sources to anywhere else are masqueraded. Both
// lists are masked, sorted, and hold no prefix that another of the same
// list contains.
type Rules struct {
	Sources []netip.Prefix
	Exempt  []netip.Prefix
}

// Plan is the rules for a node whose pods use local, in a cluster whose
// pods use clusterRanges (every node's, this one's included), with
// traffic to nonMasquerade left alone too. The local ranges are exempt
// destinations as well, so pod-to-pod on the node is never rewritten
// even before its NodeNetwork shows in clusterRanges. Invalid prefixes
// are dropped.
func Plan(local, clusterRanges, nonMasquerade []netip.Prefix) Rules {
	exempt := slices.Concat(local, clusterRanges, nonMasquerade)
	return Rules{Sources: normalize(local), Exempt: normalize(exempt)}
}

// normalize masks, sorts (IPv4 first, then by address, wider first) and
// drops invalid prefixes, duplicates and prefixes inside another.
func normalize(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	// Sorted by address, wider first: a prefix contained in another comes
	// after it, and after every prefix between them that is contained too.
	kept := out[:0]
	for _, p := range out {
		if n := len(kept); n > 0 && kept[n-1].Overlaps(p) {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}
