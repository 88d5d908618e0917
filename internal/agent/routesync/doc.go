// Package routesync is the agent's part for native routing: it keeps, in
// the node's network namespace, one kernel route per pod range of every
// other node (each CIDR of its NodeNetwork's status, IPv4 and IPv6) via
// that node's InternalIP of the same family, so pod traffic crosses the
// node network unencapsulated with its pod addresses intact.
//
// It owns:
//   - Plan: the routes a node wants, from the Nodes and NodeNetworks the
//     agent's cache holds, and what can't be routed (no InternalIP of the
//     range's family, a range two nodes claim), as a pure function;
//   - Kernel: the routes in the main table carrying Protocol, the route
//     protocol number that marks a route as this package's. It adds,
//     changes and removes only those, so it finds its own stale routes
//     after a restart and leaves everyone else's alone: a route to the
//     same destination with another protocol is a conflict, reported and
//     never replaced;
//   - Sync: the loop that replans on every change of a Node's addresses or
//     a NodeNetwork's ranges, and every resync interval (someone may have
//     deleted a route). It keeps the latest outcome (Status: the routes
//     in place and what isn't routed, and why) for the agent's
//     DataplaneNode report, logs and counts the problems, and records a
//     Warning Event on the Node once per conflict while it lasts: a
//     conflict needs someone on the node to act, the other problems are
//     in the cluster's objects.
//
// Routes stay when the agent stops, as the datapath's pinned programs do:
// pods on other nodes stay reachable across an agent restart, and the next
// run removes what went stale meanwhile. The price is that turning native
// routing off leaves the last routes in place until someone deletes them
// (`ip route flush proto 83`).
//
// The routes use the kernel's nexthop resolution (a gateway, no device):
// this assumes every node is on-link on the node network, as native
// routing does; nodes in different L2 segments need an overlay or a
// router that knows the pod ranges.
package routesync
