package endpoint

import (
	"maps"
	"net/netip"
	"slices"
)

// idTable hands out the datapath's endpoint IDs. Conntrack entries and
// counters are keyed by ID, so an endpoint keeps its ID for as long as it
// is on the node, across agent restarts too (the table is in the state
// file): a restarted agent's first Apply then changes nothing for tracked
// flows. The compiler's own IDs depend on the order it saw pods in, which
// differs from one run to the next. IDs are not reused while the table
// lives.
type idTable struct {
	IDs  map[string]uint32 `json:"ids"` // by idKey
	Next uint32            `json:"next"`
}

// idKey names an endpoint (a pod's address) in the table.
func idKey(podKey string, ip netip.Addr) string { return podKey + "|" + ip.String() }

// assign makes the table hold exactly the given endpoints (address ->
// pod), keeping the IDs of those it has, and reports whether it changed.
func (t *idTable) assign(local map[netip.Addr]string) bool {
	if t.IDs == nil {
		t.IDs = map[string]uint32{}
	}
	if t.Next == 0 {
		t.restartNext()
	}
	want := make(map[string]bool, len(local))
	for ip, podKey := range local {
		want[idKey(podKey, ip)] = true
	}
	changed := false
	for k := range t.IDs {
		if !want[k] {
			delete(t.IDs, k)
			changed = true
		}
	}
	// New endpoints in a stable order, so that equal inputs give equal
	// tables.
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := t.IDs[k]; ok {
			continue
		}
		if t.Next == 0 { // wrapped: start over above the live IDs
			t.restartNext()
		}
		t.IDs[k] = t.Next
		t.Next++
		changed = true
	}
	return changed
}

// restartNext continues above the live IDs (a table from a state file
// without next, or one that wrapped).
func (t *idTable) restartNext() {
	t.Next = 1
	for _, id := range t.IDs {
		t.Next = max(t.Next, id+1)
	}
}

// of returns the IDs of the given endpoints.
func (t *idTable) of(local map[netip.Addr]string) map[netip.Addr]uint32 {
	out := make(map[netip.Addr]uint32, len(local))
	for ip, podKey := range local {
		if id, ok := t.IDs[idKey(podKey, ip)]; ok {
			out[ip] = id
		}
	}
	return out
}
