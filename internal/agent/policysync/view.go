package policysync

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"

	"github.com/sluice-dev/sluice/internal/policy"
)

// View is what one batch makes of the cluster for this node.
type View struct {
	// Batch is the batch's number; later batches have higher ones.
	Batch uint64
	// Snapshot is for the datapath: the whole ipcache, and the endpoints
	// of this node's pods under the registry's IDs.
	Snapshot *policy.Snapshot
	// Endpoints are the snapshot's endpoints by address.
	Endpoints map[netip.Addr]Endpoint
	// PodErrors are why the compiler refused pods (by namespace/name).
	PodErrors map[string]string
}

// Endpoint is one address of a pod of this node in a View.
type Endpoint struct {
	PodKey string // namespace/name of the API pod
	ID     uint32 // its endpoint ID in the datapath
}

// nodeView keeps of the compiler's snapshot of the cluster what this node
// needs: the whole ipcache, since every pod is a peer whose address must
// be classified wherever it runs, and the endpoints whose address is in
// local (address -> pod), renumbered with ids. An endpoint without an ID
// is left out rather than numbered 0. Slices are copied: the compiler's
// are shared, and it changes them while the applier holds the view.
func nodeView(snap *policy.Snapshot, local map[netip.Addr]string, ids map[netip.Addr]uint32) (*policy.Snapshot, map[netip.Addr]Endpoint) {
	out := &policy.Snapshot{IPCache: slices.Clone(snap.IPCache)}
	eps := map[netip.Addr]Endpoint{}
	for _, ep := range snap.Endpoints {
		podKey, ok := local[ep.IP]
		if !ok {
			continue
		}
		id, ok := ids[ep.IP]
		if !ok || id == 0 {
			continue
		}
		ep.ID = id
		ep.Ingress = slices.Clone(ep.Ingress)
		ep.Egress = slices.Clone(ep.Egress)
		out.Endpoints = append(out.Endpoints, ep)
		eps[ep.IP] = Endpoint{PodKey: podKey, ID: id}
	}
	slices.SortFunc(out.Endpoints, func(a, b policy.EndpointPolicy) int { return cmp.Compare(a.ID, b.ID) })
	return out, eps
}

// clonePodErrors is for a View: the worker goes on changing its own.
func clonePodErrors(m map[string]string) map[string]string { return maps.Clone(m) }
