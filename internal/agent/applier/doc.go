// Package applier owns the writes to the node's datapath. Sync loops (the
// policy loop today; services, routes and FQDN later) compute snapshots
// and hand each to their Slot; one goroutine, Applier.Run, applies them.
// Nothing else in the agent calls the datapath's Apply, so snapshots of
// different kinds never interleave their writes, and "what is in force"
// has one answer per kind: the Slot's Result, which waiters (an endpoint
// registration waiting for its pod's policy) read and watch.
//
// A Slot holds one snapshot: the latest. A snapshot submitted while an
// older one waits replaces it (the older is never applied), so a burst of
// changes costs one write, and a sync loop never waits for the datapath.
// A failed Apply is retried with the slot's latest snapshot after a delay.
//
// A new kind of snapshot adds a Slot with its own apply function; the
// loops of the other kinds don't change.
//
// The datapath's other writes (attaching the programs to a pod's veth when
// the CNI plugin hands the agent an endpoint, detaching them, sweeping the
// links of gone interfaces) can't wait for a snapshot: the plugin's ADD
// waits on them. They run through Exclusive, under the same lock as every
// Apply, so every write to the datapath goes through the Applier and none
// interleaves with another.
//
// The price: a snapshot is whole. Each Apply is handed everything of its
// kind, and the datapath diffs it against what it holds; a loop can't
// send a small delta, and a slow Apply delays the other kinds' writes.
package applier
