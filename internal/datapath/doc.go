// Package datapath loads and feeds the BPF programs that enforce
// NetworkPolicy on a node (bpf/sluice.c, with its steps in bpf/lib): it
// owns the programs, their maps, and the writing of a compiled
// policy.Snapshot into those maps. Numbers both sides use (directions,
// reserved classes, the mask entry, the tcx verdicts) are C enums that
// bpf2go turns into this package's constants; see bpf/README.md.
//
// # Programs
//
// sluice_from_pod runs at the tcx ingress of a pod's host-side veth
// (packets leaving the pod: the source endpoint's egress policy) and
// sluice_to_pod at its tcx egress (packets entering the pod: the
// destination's ingress policy). Attach attaches both to one veth.
// Non-IP packets, IPv6 neighbour discovery, packets whose source is their
// destination, and packets of addresses that are no endpoint pass; a
// direction no policy isolates passes; otherwise the peer's class comes
// from the ipcache (longest prefix; none: ClassWorld) and the packet passes
// if an entry of that class or of ClassAny matches its protocol and
// destination port. Every address is held as 16 bytes (IPv4 as
// IPv4-mapped IPv6), so IPv4 and IPv6 share the maps and the code.
//
// Anti-spoofing: Attach with the pod's addresses registers the veth in
// sluice_ifaces, and sluice_from_pod drops (and counts, Spoofed) every
// packet from the pod whose source is none of them, before any policy.
// IPv6 link-local and unspecified sources pass (neighbour discovery,
// multicast listener reports; the kernel never forwards them off the
// link).
//
// # Maps
//
//	sluice_state      ARRAY[1]: the live epoch (its low bit: the live generation)
//	sluice_endpoints  ARRAY_OF_MAPS[2] -> HASH addr(16) -> {id, ingress/egress isolated}
//	sluice_ipcache    ARRAY_OF_MAPS[2] -> LPM_TRIE {prefixlen, addr(16)} -> class
//	sluice_policy     HASH_OF_MAPS {endpoint, direction, generation} ->
//	                  HASH {class, proto, port prefix length, port (big-endian)} -> 1,
//	                  plus {0xffffffff, 0, 0, 0} -> the mask of lengths in use
//	sluice_conntrack  LRU_HASH {endpoint, direction, proto, sport, dport, saddr, daddr} ->
//	                  {last seen, epoch}
//	sluice_counters   PERCPU_HASH endpoint -> allowed/dropped per direction
//	sluice_ifaces     HASH host veth ifindex -> {pod's IPv4, pod's IPv6, spoofed count}
//
// A port range is a few port-prefix entries (policy.Entry). A policy
// lookup is a few hash lookups whatever the number of entries: the mask
// entry says which port prefix lengths the map holds (bits 0-16) and
// whether it has (class, ProtoAny) entries (bit 17), and a packet with
// ports is looked up at each length in use, longest first, with its class
// and then with ClassAny, masking its destination port to the length; every
// packet is then looked up at (class, ProtoAny) and (ClassAny, ProtoAny)
// if the map has such entries. A packet without ports (ICMP, other
// protocols, non-first fragments) can only match ProtoAny entries. An
// isolated direction without entries has no inner map: the lookup fails
// and the packet drops. (An LPM trie over the same keys, the first
// design, cost 11-20% more per lookup at 100,000 entries than at 1,000:
// its depth grows with the entries.)
//
// # Swap model
//
// Endpoints, ipcache and policy exist in two generations, and a program
// reads sluice_state once per packet and then uses only that generation.
// sluice_state holds an epoch that each Apply bumps by one; its low bit is
// the generation.
// Apply rewrites the idle generation (diffing against what the loader
// knows it holds; every changed policy is a new inner map, swapped in
// whole), flips sluice_state, and waits until no program still runs on the
// old generation: an update of a map-in-map returns only after an RCU grace
// period (the kernel's maybe_wait_bpf_programs). Only then does it bring
// the old generation up to date, so that both hold the snapshot and the
// next Apply diffs against it. A packet is judged wholly by one snapshot:
// no half-written policy, and no ipcache from one snapshot with a policy
// from another (which matters when the compiler renumbers classes). The
// price: Apply waits for up to five grace periods (about 10 ms each on a
// 2-core VM) whatever the size of the change, and the ipcache and endpoint
// maps exist twice.
//
// # Connection tracking
//
// When a hook allows a new flow (TCP, UDP, SCTP with ports; ICMP echo
// requests) it records the tuple as it saw it under (endpoint, direction),
// with the live epoch: sluice_from_pod under (source endpoint, egress),
// sluice_to_pod under (destination endpoint, ingress), whether the
// direction is isolated or not. A packet passes without a policy lookup
//
//   - if its own tuple is recorded at this hook under the live epoch: the
//     policy that allowed the flow's first packet is still the one in
//     force, so its answer is the same (the fast path of an established
//     flow: two hash lookups whatever the policy's size). After an Apply
//     the epoch differs, the next forward packet meets the new policy,
//     and if it passes its entry takes the new epoch; so a policy change
//     cuts the forward direction of open flows at once;
//   - if its reversed tuple is recorded for the same endpoint's other
//     direction and seen within the timeout (Options.CTTimeoutTCP,
//     CTTimeoutOther): a reply arriving at an endpoint's ingress must
//     answer a flow that endpoint's egress allowed, and the other way
//     round. A peer can't forge a reply: it would have to use exactly the
//     addresses, ports and protocol of a flow the endpoint itself was
//     allowed to open, which is what a reply is. Replies of a cut flow
//     stop with the timeout;
//   - if it is an ICMP error (IPv4 destination unreachable, time exceeded,
//     parameter problem; ICMPv6 types 1-4) quoting a packet of such a
//     flow: the quote's tuple, reversed, is looked up like a reply's. Path
//     MTU discovery and "port unreachable" work under deny-all, and an
//     error quoting no flow of the endpoint is judged as plain ICMP (only
//     ProtoAny entries admit it).
//
// There is no TCP state machine (a closed connection's entry lives until
// its timeout or LRU eviction), and tracked flows of an endpoint that
// leaves a snapshot are deleted.
//
// Non-first IPv4/IPv6 fragments carry no ports: they are judged as a
// protocol without ports, so only ProtoAny entries admit them (fragmented
// UDP to or from an endpoint isolated by port rules is dropped after its
// first fragment); a first fragment too short to hold the ports is judged
// the same way.
//
// # Service NAT and conntrack
//
// Service NAT (bpf/lib/lb.h, not built yet) will not share
// sluice_conntrack: it gets a table of its own, an LRU hash keyed by the
// translated tuple alone (protocol, addresses, ports; no endpoint, no
// direction) whose value is the original VIP and port, sized by the
// DataplaneConfig's bpfMaps.natEntries. The reasons:
//
//   - the key: a policy entry is per (endpoint, direction) because each
//     hook judges for one pod, but reverse NAT must find a reply by its
//     tuple alone, including traffic no endpoint of this node sent
//     (NodePort and LoadBalancer traffic from outside, host processes,
//     flows SNATed to a remote backend);
//   - the lifetime: a policy entry carries an epoch and goes when its
//     endpoint leaves a snapshot, and losing one costs at worst a policy
//     lookup; a NAT entry must live as long as the connection, since
//     without it the replies come back from the backend's address and the
//     client drops them, whatever the policy says;
//   - the order: sluice_from_pod translates before it judges and
//     sluice_to_pod judges before it reverse-translates, so the policy
//     sees the backend (NetworkPolicy never names a VIP) and the policy
//     entry is recorded for the translated tuple, the one replies carry on
//     the wire. The policy conntrack needs nothing from NAT.
//
// The price: a Service packet costs one hash lookup more than a shared
// entry would; a second preallocated LRU table takes its own memory (64
// MiB at the default size); and the two tables evict independently: a NAT
// entry evicted while its flow's policy entry lives breaks the connection,
// which is why natEntries defaults to conntrackEntries and should not be
// set below the node's share of Service flows. ICMP errors about a
// translated flow need their quoted header translated too.
//
// # Pinning
//
// With Options.PinDir (the agent uses DefaultPinDir, /sys/fs/bpf/sluice)
// New pins, or reuses when present, the maps that must survive an agent
// restart so that enforcement and tracked flows carry on while it is down:
//
//	/sys/fs/bpf/sluice/sluice_state
//	/sys/fs/bpf/sluice/sluice_endpoints
//	/sys/fs/bpf/sluice/sluice_ipcache
//	/sys/fs/bpf/sluice/sluice_policy
//	/sys/fs/bpf/sluice/sluice_conntrack
//	/sys/fs/bpf/sluice/sluice_counters
//	/sys/fs/bpf/sluice/sluice_ifaces
//	/sys/fs/bpf/sluice/links/<ifindex>_from_pod   tcx link, veth ingress
//	/sys/fs/bpf/sluice/links/<ifindex>_to_pod     tcx link, veth egress
//
// Inner maps are not pinned: the outer maps hold them. The knobs in
// .rodata are not either: each run sets its own. A restarted agent's New
// reads what the pinned maps hold and its first Apply replaces it; Attach
// on a pinned link updates it to the new program in place. A pinned map
// this build can't use (its key, value, size or inner map type changed: an
// upgrade, or other Options) is unpinned and created afresh; the old
// programs keep enforcing with the old maps until Attach moves each link to
// the new programs, and what the old map held (tracked flows, counters) is
// lost. Without PinDir nothing is pinned and Close detaches everything
// (tests, the CLI).
//
// # Limits
//
// The programs see packets before any service translation on the host:
// policy applies to the addresses on the wire at the veth. The ipcache is
// an LPM trie: its lookup grows (slowly) with the number of prefixes,
// unlike the policy lookup; an exact-address hash in front of it would
// make pod addresses flat too.
package datapath
