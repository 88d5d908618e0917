package policy

import (
	"slices"
	"sort"
)

// portRange is an inclusive range of destination ports. uint32 bounds keep
// the arithmetic of 65535+1 out of overflow.
type portRange struct{ lo, hi uint32 }

var allPorts = portRange{0, 65535}

// portPrefix is an aligned block of ports: those whose top bits bits equal
// port's.
type portPrefix struct {
	port uint16
	bits uint8
}

func (p portPrefix) first() uint32 { return uint32(p.port) }
func (p portPrefix) last() uint32  { return uint32(p.port) + (1 << (16 - p.bits)) - 1 }

// coverRange is the minimal set of port prefixes whose union is exactly r:
// at each step the largest aligned block starting at lo that stays inside
// r. Every aligned block inside r lies within one of these steps' blocks,
// which is why the greedy cover is minimal.
func coverRange(r portRange, out []portPrefix) []portPrefix {
	lo := r.lo
	for lo <= r.hi {
		bits := uint8(16)
		for bits > 0 {
			size := uint32(1) << (16 - (bits - 1))
			if lo%size != 0 || lo+size-1 > r.hi {
				break
			}
			bits--
		}
		out = append(out, portPrefix{port: uint16(lo), bits: bits})
		lo += 1 << (16 - bits)
	}
	return out
}

// normalizeRanges sorts rs and merges overlapping and adjacent ranges, in
// place. The minimal prefix cover of a union of ranges is the union of the
// covers of its maximal ranges (a prefix is a range, so it lies within one
// maximal range), hence the merge before covering.
func normalizeRanges(rs []portRange) []portRange {
	if len(rs) < 2 {
		return rs
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if r.lo <= last.hi+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func coverRanges(rs []portRange) []portPrefix {
	var out []portPrefix
	for _, r := range rs {
		out = coverRange(r, out)
	}
	return out
}

// subtractRanges is a \ b, both normalized.
func subtractRanges(a, b []portRange) []portRange {
	var out []portRange
	for _, r := range a {
		lo := r.lo
		for _, s := range b {
			if s.hi < lo || s.lo > r.hi {
				continue
			}
			if s.lo > lo {
				out = append(out, portRange{lo, s.lo - 1})
			}
			lo = s.hi + 1
		}
		if lo <= r.hi {
			out = append(out, portRange{lo, r.hi})
		}
	}
	return out
}

func intersectsAny(p portPrefix, rs []portRange) bool {
	for _, r := range rs {
		if r.lo <= p.last() && p.first() <= r.hi {
			return true
		}
	}
	return false
}

// coverWithDontCare covers need, a class's own ports, when dontCare (the
// ports ClassAny already allows on the same protocol) needs no entry of
// the class: the fewer of the cover of need alone and the cover of need ∪
// dontCare, each keeping only the prefixes that reach a port only the
// class allows. Both stay within need ∪ dontCare, so neither allows more.
func coverWithDontCare(need, dontCare []portRange) []portPrefix {
	if len(dontCare) == 0 {
		return coverRanges(need)
	}
	only := subtractRanges(need, dontCare)
	if len(only) == 0 {
		return nil
	}
	keep := func(ps []portPrefix) []portPrefix {
		return slices.DeleteFunc(ps, func(p portPrefix) bool { return !intersectsAny(p, only) })
	}
	a := keep(coverRanges(need))
	both := normalizeRanges(append(slices.Clone(need), dontCare...))
	if b := keep(coverRanges(both)); len(b) < len(a) {
		return b
	}
	return a
}
