// Package nodeipam is the node side of IPAM. It mirrors the node's
// NodeNetwork status (the blocks or batches the operator gave it) into the
// allocation file the CNI plugin reads, and reports back in NodeNetwork
// spec how many pod IPs the plugin has handed out and which batches the
// node gives back. The node agent runs it; tests run it directly. It reads
// nothing but its own NodeNetwork: the operator resolves the pool's
// settings (maxPods, the release watermarks) into status, so the node side
// never re-derives them from the IPAMPool.
//
// Giving a batch back is the step that could hand an address out twice, so
// it is ordered: a batch is released only when no pod holds an address in
// it; it leaves the allocation file while the plugin's own lock is held (no
// ADD can take an address from it in between); only then is it listed in
// spec.releaseCIDRs; and the operator drops it from status before it lets
// the claim go. A batch stays out of the allocation file for as long as
// spec lists it.
//
// Trade-off: batches are released whole and only when fully unused, so a
// node whose pods are spread over its batches keeps them all. The plugin
// hands out the lowest free address, which packs pods into the low batches
// and leaves the high ones free to return.
package nodeipam
