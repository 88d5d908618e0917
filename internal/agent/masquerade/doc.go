// Package masquerade is the agent's part for pod egress: packets from this
// node's pods to addresses outside every cluster pod range, every node's
// InternalIPs and the configured non-masquerade CIDRs leave with the node's
// address, and their replies find the pod again. Pod-to-pod traffic, to
// any node's range, is never rewritten: the receiving side, and its
// policy, see the pod's own address. Nor is traffic to the nodes
// themselves, as production clusters expect of the node network.
//
// It owns:
//   - Plan: the rules a node wants, from its own pod ranges, every node's
//     pod ranges and InternalIPs and the non-masquerade CIDRs, as a pure
//     function;
//   - Table: the nftables table TableName (family inet) in the node's
//     network namespace, replaced as a whole in one netlink transaction on
//     every write, so that a restarted agent finds no duplicate and a
//     half-written table is never seen;
//   - Sync: the loop that replans whenever a NodeNetwork's ranges or a
//     Node's addresses change, and every resync interval.
//
// The rewrite is the kernel's NAT, not the eBPF datapath's. The kernel's
// conntrack keeps the translations, allocates the node's source ports and
// picks another when two pods use the same source port towards the same
// destination, and forgets a translation when its connection ends: all of
// which an eBPF SNAT would have to rebuild (its own table, port allocation
// that survives collisions, cleanup driven by connection state). The price
// is a dependency on nftables in the node's kernel and rules that live
// outside BPF, where the datapath's tools don't show them
// (`nft list table inet sluice` does). Policy is not affected: the
// datapath judges a pod's egress on the pod's veth, before the packet
// reaches the node's postrouting hook where the address is rewritten.
//
// The table stays when the agent stops, as routes and pinned programs do:
// egress keeps working across a restart. Turning masquerade off leaves it
// until someone deletes it (`nft delete table inet sluice`).
package masquerade
