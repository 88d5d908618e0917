// Package status gathers the cluster's dataplane at a glance for
// `sluicectl status` and judges it: the DataplaneConfig and its conditions,
// the node agents (the DaemonSet rollout and every DataplaneNode report),
// the IPAM pools and the NodeNetworks that hold no addresses, and one list
// of problems, each naming the object, a reason and a message.
//
// It is split in two so the judging is testable without an API server:
// Gather reads the objects (Observed), and Build turns them into a Report,
// a pure function of what was read and the time. Report is also the
// document `sluicectl status -o json|yaml` prints, so its JSON field names
// are an interface scripts rely on: add fields, never rename them.
//
// The judge trusts the operator: a DataplaneConfig condition that is not in
// its healthy state is a problem with the operator's own reason and
// message, and the package does not re-derive what the operator already
// judged. It adds only what the operator can't see or say about itself:
// a status older than the spec (the operator is not reconciling), a live
// DaemonSet that contradicts a Ready condition, agents that report not
// ready or routes they can't install (their RoutesReady condition), and
// objects it could not read.
//
// The price: the age of a DataplaneNode report is the time of the agent's
// last change of state (its last apply or Ready transition), not a
// heartbeat, because agents write only when something changes. A quiet,
// healthy agent and a dead one that was healthy look alike in that column;
// the DaemonSet's ready count is what tells them apart.
package status
