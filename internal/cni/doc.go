// Package cni is the node-local half of Sluice's pod addressing: the
// configuration of the sluice-cni plugin, the allocation file that tells the
// plugin which addresses this node holds, and the allocator that hands those
// addresses to pods.
//
// The allocation file (/run/sluice/allocation.json by default) is written by
// the node side from the node's NodeNetwork status with WriteAllocation and
// read by the plugin with ReadAllocation. It says which CIDRs (one /24 in
// overlay mode, several /28 batches in pod-subnet mode, optionally one IPv6
// family) the node may use, which addresses never to hand out, and how many
// pods the node runs at most.
//
// The allocator keeps its state in <stateDir>/state.json: one record per
// reserved address with the (containerID, ifName) attachment that holds it.
// Every change happens under an exclusive flock on <stateDir>/lock and is
// written with a temporary file, fsync, rename and an fsync of the
// directory, so a plugin killed at any point leaves either the old or the
// new state on disk and never a torn file; the kernel drops the flock of a
// killed process. InUse and Reservations read the state without the lock
// (the rename makes every read see one whole version) for the node side,
// which publishes ipsInUse and releases fully unused batches.
//
// agent.go is the other half of the handover to the node agent: the
// endpoint API the agent serves on its unix socket (Config.AgentSocket)
// and the client the plugin calls it with.
//
// Trade-off: the state is one small JSON file rewritten on every change
// rather than one file per address (host-local's layout). A node holds at
// most a few hundred reservations, so a rewrite costs microseconds, and a
// single file makes "which addresses are in use" one atomic read.
package cni
