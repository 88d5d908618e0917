package policy

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"testing"
)

func dump(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// checkSnapshot checks what the datapath relies on: sorted, unique
// ipcache prefixes with a default route per family, sorted endpoints with
// unique IDs and IPs, sorted unique well-formed entries naming only
// classes the ipcache has, and no entries where a direction is open.
func checkSnapshot(t *testing.T, s *Snapshot) {
	t.Helper()
	classes := map[Class]bool{ClassAny: true}
	for i, e := range s.IPCache {
		if i > 0 && comparePrefixes(s.IPCache[i-1].Prefix, e.Prefix) >= 0 {
			t.Fatalf("ipcache not sorted or not unique at %v", e.Prefix)
		}
		if e.Prefix != e.Prefix.Masked() {
			t.Fatalf("ipcache prefix %v not masked", e.Prefix)
		}
		classes[e.Class] = true
	}
	if len(s.IPCache) == 0 || s.IPCache[0].Prefix != netip.MustParsePrefix("0.0.0.0/0") {
		t.Fatalf("ipcache has no 0.0.0.0/0 entry")
	}
	ips := map[netip.Addr]bool{}
	for i, ep := range s.Endpoints {
		if i > 0 && s.Endpoints[i-1].ID >= ep.ID {
			t.Fatalf("endpoints not sorted by unique ID at %d", ep.ID)
		}
		if ep.ID == 0 || ips[ep.IP] {
			t.Fatalf("endpoint %d: zero ID or duplicate IP %s", ep.ID, ep.IP)
		}
		ips[ep.IP] = true
		if (!ep.IngressIsolated && len(ep.Ingress) > 0) || (!ep.EgressIsolated && len(ep.Egress) > 0) {
			t.Fatalf("endpoint %d: entries in an open direction", ep.ID)
		}
		for _, es := range [][]Entry{ep.Ingress, ep.Egress} {
			for j, e := range es {
				if j > 0 && compareEntries(es[j-1], e) >= 0 {
					t.Fatalf("endpoint %d: entries not sorted or not unique: %v", ep.ID, es)
				}
				if !classes[e.Class] {
					t.Fatalf("endpoint %d: entry for class %d, which no ipcache entry has", ep.ID, e.Class)
				}
				if e.PortPrefixLen > 16 || (e.Proto == ProtoAny && (e.Port != 0 || e.PortPrefixLen != 0)) ||
					(e.PortPrefixLen < 16 && e.Port&(1<<(16-e.PortPrefixLen)-1) != 0) {
					t.Fatalf("endpoint %d: malformed entry %+v", ep.ID, e)
				}
			}
		}
	}
}

type canonEntry struct {
	Class string
	Proto uint8
	Port  uint16
	Len   uint8
}

type canonEndpoint struct {
	IP                              string
	IngressIsolated, EgressIsolated bool
	Ingress, Egress                 []canonEntry
}

type canonIPCache struct {
	Prefix string
	Class  string
}

type canonSnapshot struct {
	IPCache   []canonIPCache
	Endpoints []canonEndpoint
}

// canonical is s with class numbers and endpoint IDs taken out: classes are
// named by their first appearance in the (sorted) ipcache, endpoints are
// keyed by IP. Two compilers that agree on everything but numbering give
// equal canonical snapshots.
func canonical(s *Snapshot) canonSnapshot {
	names := map[Class]string{ClassAny: "any", ClassWorld: "world"}
	name := func(c Class) string {
		if n, ok := names[c]; ok {
			return n
		}
		n := fmt.Sprintf("c%d", len(names)-2)
		names[c] = n
		return n
	}
	var out canonSnapshot
	for _, e := range s.IPCache {
		out.IPCache = append(out.IPCache, canonIPCache{e.Prefix.String(), name(e.Class)})
	}
	entries := func(es []Entry) []canonEntry {
		var out []canonEntry
		for _, e := range es {
			n, ok := names[e.Class]
			if !ok {
				n = fmt.Sprintf("unknown%d", e.Class)
			}
			out = append(out, canonEntry{n, e.Proto, e.Port, e.PortPrefixLen})
		}
		slices.SortFunc(out, func(a, b canonEntry) int {
			return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Proto, b.Proto),
				cmp.Compare(a.Port, b.Port), cmp.Compare(a.Len, b.Len))
		})
		return out
	}
	for _, ep := range s.Endpoints {
		out.Endpoints = append(out.Endpoints, canonEndpoint{ep.IP.String(), ep.IngressIsolated, ep.EgressIsolated,
			entries(ep.Ingress), entries(ep.Egress)})
	}
	slices.SortFunc(out.Endpoints, func(a, b canonEndpoint) int { return cmp.Compare(a.IP, b.IP) })
	return out
}
