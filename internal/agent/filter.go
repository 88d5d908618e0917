package agent

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/sluice-dev/sluice/internal/policy"
)

// The node filter. The compiler compiles the whole cluster: every pod is a
// peer whose address the ipcache must classify, wherever it runs. Only the
// endpoints of this node's pods go into this node's datapath, under IDs the
// agent owns rather than the compiler's (see idAllocator).

// localEndpoint is one address of a pod of this node.
type localEndpoint struct {
	PodKey string // namespace/name of the API pod
	IP     netip.Addr
}

// idKey names a local endpoint in the ID table.
func (e localEndpoint) idKey() string { return e.PodKey + "|" + e.IP.String() }

// filterSnapshot returns the snapshot for this node: the whole ipcache, and
// the endpoints whose address is in local, renumbered with ids (which must
// hold every local endpoint). Entry slices are copied: the compiler's are
// shared and may change under a kept snapshot.
func filterSnapshot(snap *policy.Snapshot, local map[netip.Addr]localEndpoint, ids map[string]uint32) *policy.Snapshot {
	out := &policy.Snapshot{IPCache: slices.Clone(snap.IPCache)}
	for _, ep := range snap.Endpoints {
		le, ok := local[ep.IP]
		if !ok {
			continue
		}
		id, ok := ids[le.idKey()]
		if !ok {
			continue
		}
		ep.ID = id
		ep.Ingress = slices.Clone(ep.Ingress)
		ep.Egress = slices.Clone(ep.Egress)
		out.Endpoints = append(out.Endpoints, ep)
	}
	slices.SortFunc(out.Endpoints, func(a, b policy.EndpointPolicy) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// idAllocator hands out the datapath's endpoint IDs. Conntrack entries
// and counters are keyed by ID, so an endpoint keeps its ID for as long as
// it is on the node, across agent restarts too (the table is in the state
// file): a restarted agent's first Apply then changes nothing for tracked
// flows. The compiler's own IDs depend on the order it saw pods in, which
// differs from one run to the next. IDs are not reused while the table
// lives.
type idAllocator struct {
	IDs  map[string]uint32 `json:"ids"`
	Next uint32            `json:"next"`
}

// assign makes the table hold exactly the given endpoints, keeping the IDs
// of those it has, and reports whether it changed.
func (a *idAllocator) assign(local map[netip.Addr]localEndpoint) bool {
	if a.IDs == nil {
		a.IDs = map[string]uint32{}
	}
	if a.Next == 0 {
		a.Next = 1
		for _, id := range a.IDs {
			a.Next = max(a.Next, id+1)
		}
	}
	want := make(map[string]bool, len(local))
	for _, le := range local {
		want[le.idKey()] = true
	}
	changed := false
	for k := range a.IDs {
		if !want[k] {
			delete(a.IDs, k)
			changed = true
		}
	}
	// New endpoints in a stable order, so that equal inputs give equal
	// tables.
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := a.IDs[k]; ok {
			continue
		}
		if a.Next == 0 { // wrapped: start over above the live IDs
			a.Next = 1
			for _, id := range a.IDs {
				a.Next = max(a.Next, id+1)
			}
		}
		a.IDs[k] = a.Next
		a.Next++
		changed = true
	}
	return changed
}

// equalSnapshots says whether two filtered snapshots hold the same thing.
func equalSnapshots(a, b *policy.Snapshot) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !slices.Equal(a.IPCache, b.IPCache) || len(a.Endpoints) != len(b.Endpoints) {
		return false
	}
	for i := range a.Endpoints {
		x, y := a.Endpoints[i], b.Endpoints[i]
		if x.ID != y.ID || x.IP != y.IP || x.IngressIsolated != y.IngressIsolated || x.EgressIsolated != y.EgressIsolated ||
			!slices.Equal(x.Ingress, y.Ingress) || !slices.Equal(x.Egress, y.Egress) {
			return false
		}
	}
	return true
}
