package policy

import "net/netip"

// Allowed answers whether the datapath lets the packet through, from the
// snapshot's entries and by the datapath's algorithm: a pod talking to
// itself passes; otherwise the source endpoint's egress (if the source is
// a pod) and the destination endpoint's ingress (if the destination is a
// pod) must both pass. A direction that is not isolated passes; an
// isolated one passes if an entry for the peer's class (longest-prefix
// match in the ipcache) or for ClassAny matches the protocol and the
// destination port. It scans the snapshot linearly: it is for tests and
// the CLI, not the fast path.
func (s *Snapshot) Allowed(src, dst netip.Addr, proto uint8, dstPort uint16) bool {
	if src == dst {
		return true
	}
	if ep, ok := EntriesFor(s, src); ok && ep.EgressIsolated && !entriesMatch(ep.Egress, s.classOf(dst), proto, dstPort) {
		return false
	}
	if ep, ok := EntriesFor(s, dst); ok && ep.IngressIsolated && !entriesMatch(ep.Ingress, s.classOf(src), proto, dstPort) {
		return false
	}
	return true
}

// EntriesFor is the endpoint whose address is ip, if any.
func EntriesFor(s *Snapshot, ip netip.Addr) (EndpointPolicy, bool) {
	for _, ep := range s.Endpoints {
		if ep.IP == ip {
			return ep, true
		}
	}
	return EndpointPolicy{}, false
}

// classOf is the class of the longest ipcache prefix containing a; an
// address no entry covers (IPv6 in a snapshot without ::/0) is the world.
func (s *Snapshot) classOf(a netip.Addr) Class {
	best, class := -1, ClassWorld
	for _, e := range s.IPCache {
		if e.Prefix.Bits() > best && e.Prefix.Contains(a) {
			best, class = e.Prefix.Bits(), e.Class
		}
	}
	return class
}

func entriesMatch(es []Entry, class Class, proto uint8, dstPort uint16) bool {
	for _, e := range es {
		if e.Class != ClassAny && e.Class != class {
			continue
		}
		if e.Proto == ProtoAny {
			return true
		}
		if e.Proto != proto {
			continue
		}
		shift := 16 - uint32(e.PortPrefixLen)
		if uint32(dstPort)>>shift == uint32(e.Port)>>shift {
			return true
		}
	}
	return false
}
