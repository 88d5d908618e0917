// Package policysync is the node agent's NetworkPolicy loop: it follows
// every Namespace, Node, NetworkPolicy and Pod of the cluster, feeds them
// to an incremental policy.Compiler, and turns the compiled cluster into
// this node's View: the whole ipcache (every pod and node address), but
// only the endpoints of this node's pods, under the endpoint registry's
// IDs. It hands each View to the applier; it never writes the datapath.
//
// Event handlers only queue the object's key; one worker takes everything
// queued as a batch, reads each object's current state from the cache and
// feeds the compiler. The first batch compiles the synced caches at once
// (policy.NewCompiler), falling back to one object at a time when one bad
// object fails the bulk compile. Objects the compiler refuses for now (an
// address another pod still holds, a namespace with pods left) are retried
// a second later. A policy the compiler refuses is replaced by
// policy.FailClosed: its pods are isolated, not opened.
//
// A pod's addresses are those of its registration when it has one (the
// API's status has none yet at ADD time), else status.podIPs; one per
// family, and a dual-stack pod is two compiler pods (the compiler holds
// one address per pod). Pods on the host network and finished pods are
// left out. A pod is this node's when spec.nodeName says so or when it
// registered here.
//
// The loop learns about registrations through the Endpoints interface and
// tells the registry which batch will see a pod's change (PodChanged), so
// a registration can wait for the View that holds its pod.
//
// The price: every batch recompiles the node's snapshot from the whole
// cluster's (Compiler.Snapshot) and the datapath diffs it again; the
// compiler's own record of what changed goes unused.
package policysync
