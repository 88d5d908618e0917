package policy

import (
	"cmp"
	"slices"
)

// portSpec is one resolved port of a rule: ProtoAny (every protocol and
// port) or a protocol and a port range.
type portSpec struct {
	proto uint8
	ports portRange
}

var anyPortSpec = portSpec{proto: ProtoAny, ports: allPorts}

// accumulator collects what one direction of one endpoint allows, as
// (class, protocol, port range) items, and turns them into the fewest
// entries it knows how to. Items are packed so that sorting them is
// sorting integers: class, then protocol (ProtoAny first), then the first
// port, in key.
type accumulator struct {
	items []accItem
}

type accItem struct {
	key uint64 // class<<24 | proto<<16 | lo
	hi  uint32
}

func (a *accumulator) reset() { a.items = a.items[:0] }

func (a *accumulator) add(c Class, s portSpec) {
	a.items = append(a.items, accItem{key: uint64(c)<<24 | uint64(s.proto)<<16 | uint64(s.ports.lo), hi: s.ports.hi})
}

func (it accItem) class() Class  { return Class(it.key >> 24) }
func (it accItem) proto() uint8  { return uint8(it.key >> 16) }
func (it accItem) lo() uint32    { return uint32(it.key & 0xffff) }
func (it accItem) group() uint64 { return it.key >> 16 } // class and proto

// entries is the accumulated allowance as sorted entries, minimized: an
// entry of ClassAny makes the same ports of every class redundant, a
// ProtoAny entry makes the class's other entries redundant, and ranges
// become the fewest port prefixes (see coverWithDontCare).
func (a *accumulator) entries() []Entry {
	if len(a.items) == 0 {
		return nil
	}
	slices.SortFunc(a.items, func(x, y accItem) int { return cmp.Compare(x.key, y.key) })
	// ClassAny is 0 and ProtoAny is 0: a ClassAny ProtoAny item sorts first.
	if a.items[0].class() == ClassAny && a.items[0].proto() == ProtoAny {
		return []Entry{{Class: ClassAny, Proto: ProtoAny}}
	}
	var anyRanges [256][]portRange // ClassAny's ports per protocol
	var out []Entry
	for i := 0; i < len(a.items); {
		c, proto := a.items[i].class(), a.items[i].proto()
		if proto == ProtoAny {
			out = append(out, Entry{Class: c, Proto: ProtoAny})
			for i < len(a.items) && a.items[i].class() == c {
				i++
			}
			continue
		}
		var rs []portRange
		g := a.items[i].group()
		for ; i < len(a.items) && a.items[i].group() == g; i++ {
			r := portRange{a.items[i].lo(), a.items[i].hi}
			if n := len(rs); n > 0 && r.lo <= rs[n-1].hi+1 {
				rs[n-1].hi = max(rs[n-1].hi, r.hi)
				continue
			}
			rs = append(rs, r)
		}
		var prefixes []portPrefix
		if c == ClassAny {
			anyRanges[proto] = rs
			prefixes = coverRanges(rs)
		} else {
			prefixes = coverWithDontCare(rs, anyRanges[proto])
		}
		for _, p := range prefixes {
			out = append(out, Entry{Class: c, Proto: proto, Port: p.port, PortPrefixLen: p.bits})
		}
	}
	return out
}

func sortEntries(es []Entry) {
	slices.SortFunc(es, compareEntries)
}

func compareEntries(a, b Entry) int {
	return cmp.Or(
		cmp.Compare(a.Class, b.Class),
		cmp.Compare(a.Proto, b.Proto),
		cmp.Compare(a.Port, b.Port),
		cmp.Compare(a.PortPrefixLen, b.PortPrefixLen),
	)
}

// withNodeClasses is base plus an allow-everything entry for each of the
// endpoint's own node's classes (sorted; its node always reaches it),
// dropping base's entries for those classes, which the new ones cover.
func withNodeClasses(base []Entry, nodeClasses []Class) []Entry {
	if len(nodeClasses) == 0 || (len(base) > 0 && base[0] == Entry{Class: ClassAny, Proto: ProtoAny}) {
		return base
	}
	out := make([]Entry, 0, len(base)+len(nodeClasses))
	j := 0
	for _, e := range base {
		for j < len(nodeClasses) && nodeClasses[j] < e.Class {
			out = append(out, Entry{Class: nodeClasses[j], Proto: ProtoAny})
			j++
		}
		if j < len(nodeClasses) && nodeClasses[j] == e.Class {
			continue
		}
		out = append(out, e)
	}
	for ; j < len(nodeClasses); j++ {
		out = append(out, Entry{Class: nodeClasses[j], Proto: ProtoAny})
	}
	return out
}
