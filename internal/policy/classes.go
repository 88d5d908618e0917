package policy

import (
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
)

type classKind uint8

const (
	classPod classKind = iota + 1
	classNode
	classExternal
)

// class is one peer class and what its addresses have in common. A pod
// class is keyed by namespace, pod labels, the container ports that egress
// named ports may resolve to, and ipBlock memberships; a node class by the
// node and memberships; an external class by memberships alone.
type class struct {
	id      Class
	key     string
	kind    classKind
	ns      string
	labels  labels.Set
	ports   []NamedPort // pod classes: the ports named by some egress rule
	node    string
	members []int // ids of the blocks containing the addresses, sorted
	refs    int
}

// fragTable splits the address space by every ipBlock cidr and except. Any
// two prefixes are nested or disjoint, so an address's memberships are
// those of the longest cidr/except prefix containing it: every other one
// containing it is an ancestor of that one.
type fragTable struct {
	// members of the addresses whose longest cidr/except match is the key.
	members map[netip.Prefix][]int
	keys    map[netip.Prefix]string
	// lens are the prefix lengths in members per family (0: IPv4), longest
	// first.
	lens [2][]int
	// kept are the fragments the ipcache needs: those whose memberships
	// differ from their parent's (the world for the top ones), sorted.
	kept []fragEntry
	// hosts are the single-address kept fragments: a pod or node at that
	// address hides them.
	hosts map[netip.Addr]bool
	hasV6 bool
}

type fragEntry struct {
	prefix  netip.Prefix
	members []int
	key     string
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

func membershipKey(members []int) string {
	var b strings.Builder
	for i, m := range members {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(m))
	}
	return b.String()
}

// buildFragments computes the table for the given blocks.
func buildFragments(blocks map[string]*block) *fragTable {
	t := &fragTable{members: map[netip.Prefix][]int{}, keys: map[netip.Prefix]string{}, hosts: map[netip.Addr]bool{}}
	byCIDR := map[netip.Prefix][]*block{}
	var all []netip.Prefix
	seen := map[netip.Prefix]bool{}
	add := func(p netip.Prefix) {
		if !seen[p] {
			seen[p] = true
			all = append(all, p)
		}
	}
	for _, b := range blocks {
		byCIDR[b.cidr] = append(byCIDR[b.cidr], b)
		add(b.cidr)
		for _, e := range b.except {
			add(e)
		}
	}
	slices.SortFunc(all, comparePrefixes)
	lens := [2]map[int]bool{{}, {}}
	for _, p := range all {
		var m []int
		// The blocks whose cidr is p or an ancestor of p and that don't
		// except p or an ancestor of it.
		for bits := p.Bits(); bits >= 0; bits-- {
			anc, _ := p.Addr().Prefix(bits)
			for _, b := range byCIDR[anc] {
				if !b.excepts(p) {
					m = append(m, b.id)
				}
			}
		}
		slices.Sort(m)
		t.members[p] = m
		t.keys[p] = membershipKey(m)
		lens[family(p.Addr())][p.Bits()] = true
		if !p.Addr().Is4() {
			t.hasV6 = true
		}
	}
	for f := range lens {
		for l := range lens[f] {
			t.lens[f] = append(t.lens[f], l)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(t.lens[f])))
	}
	for _, p := range all {
		parentKey := ""
		for bits := p.Bits() - 1; bits >= 0; bits-- {
			anc, _ := p.Addr().Prefix(bits)
			if k, ok := t.keys[anc]; ok {
				parentKey = k
				break
			}
		}
		if t.keys[p] == parentKey {
			continue
		}
		t.kept = append(t.kept, fragEntry{prefix: p, members: t.members[p], key: t.keys[p]})
		if p.IsSingleIP() {
			t.hosts[p.Addr()] = true
		}
	}
	return t
}

// excepts reports whether b excludes all of p (p inside one of b's excepts).
func (b *block) excepts(p netip.Prefix) bool {
	for _, e := range b.except {
		if e.Bits() <= p.Bits() && e.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// membershipOf is the ids of the blocks containing a, and their key.
func (t *fragTable) membershipOf(a netip.Addr) ([]int, string) {
	for _, l := range t.lens[family(a)] {
		if l > a.BitLen() {
			continue
		}
		p, _ := a.Prefix(l)
		if m, ok := t.members[p]; ok {
			return m, t.keys[p]
		}
	}
	return nil, ""
}

func labelsKey(set map[string]string) string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(set[k]))
		b.WriteByte(',')
	}
	return b.String()
}

func portsKey(ports []NamedPort) string {
	var b strings.Builder
	for _, p := range ports {
		b.WriteString(strconv.Quote(p.Name))
		b.WriteByte('/')
		b.WriteString(string(p.Protocol))
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(p.Port)))
		b.WriteByte(',')
	}
	return b.String()
}

func podClassKey(ns, lkey string, ports []NamedPort, mkey string) string {
	return "p\x01" + ns + "\x01" + lkey + "\x01" + portsKey(ports) + "\x01" + mkey
}

func nodeClassKey(node, mkey string) string { return "n\x01" + node + "\x01" + mkey }

func externalClassKey(mkey string) string { return "x\x01" + mkey }
