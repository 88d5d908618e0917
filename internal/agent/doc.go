// Package agent is Sluice's node agent (cmd/agent runs it on every node),
// as a composition root: it owns the Options and their defaults, Run and
// the order things start and stop in, the HTTP servers (endpoint socket,
// health, metrics), the DataplaneNode report, the metrics, IP forwarding
// (sysctl.go) and the CNI install. The work is done by parts with one job
// each, wired in parts.go:
//
//   - policysync: watches → policy.Compiler → this node's View;
//   - applier: the datapath's only writer; sync loops hand their latest
//     snapshot to a Slot and read what is in force from it, and the
//     registry's attaches, detaches and sweeps run through its Exclusive;
//   - endpoint: the registry of the pods the CNI plugin hands over, their
//     IDs and state file, the socket API, attaching to host veths.
//   - routesync (Options.Routing.Mode "Native" only): kernel routes in
//     the node's namespace to every other node's pod ranges via its
//     InternalIP. Kernel routes aren't datapath writes, so it writes them
//     itself, marked with its own route protocol.
//   - masquerade (Options.Masquerade, on with native routing by default):
//     the node's nftables table that gives pod traffic leaving the pod
//     ranges the node's address; the kernel's NAT, not the datapath's, so
//     it writes the table itself.
//
// The parts don't import each other's types (but for endpoint.OnePerFamily):
// each says what it needs in a small interface, and policyState adapts the
// applier's policy slot to what the registry reads. A new sync loop
// (services, routes, FQDN) adds a Slot and a goroutine in Run; the policy
// loop doesn't change.
//
// # Start and stop
//
// Run takes the state file's lock (two agents never drive one datapath),
// loads the datapath (reusing pinned maps), turns IP forwarding on, builds
// the parts (the registry reads the state file), listens, and then runs
// the cache, the policy loop, the applier, the registry's recovery and
// sweep, the report and the IPAM sync in one errgroup: the first failure
// stops them all. The CNI files are installed once the socket listens, so
// the first ADD finds an agent. On stop the servers shut down last, so a
// PUT in flight gets an answer. With a pin directory the datapath's maps
// and links stay: the old programs keep enforcing until the next run
// adopts them.
//
// # IP forwarding
//
// Pods reach each other and the world through the node, which routes
// between their host veths: that needs net.ipv4.ip_forward=1, and
// net.ipv6.conf.all.forwarding=1 for IPv6 pods. Once the datapath is
// loaded and before anything can report ready, the agent writes 1 to each
// that isn't 1 already through Options.Node.ProcSysNet (the node's /proc/sys/net
// mounted read-write; a container's own is read-only), inside
// Options.NetNS. Before turning IPv6 forwarding on it sets accept_ra to 2
// where it is 1, so a node that learns its default route from router
// advertisements keeps it. Any failure stops the agent; it doesn't watch
// for forwarding being turned off.
//
// # Health, metrics and report
//
// /healthz and /readyz on 127.0.0.1:9879: ready once the caches synced,
// the datapath loaded, the first snapshot applied and the registered
// endpoints recovered. /metrics (127.0.0.1:9880): the applier records
// sluice_agent_policy_apply_seconds (per snapshot in force, from the
// receipt of its oldest change) and sluice_agent_policy_apply_errors_total;
// sluice_agent_endpoints and sluice_agent_endpoint_packets_total{namespace,
// pod,direction,verdict} are read from the parts and the datapath's
// counters at scrape time (verdict spoofed: dropped on the way out of the
// pod for a source address its registration didn't give it). The node's
// DataplaneNode status says the same, at most once a second and only when
// it changed.
//
// # IPAM
//
// nodeipam.Syncer runs every 5 s with an uncached client: the allocation
// file and the plugin's state directory are the conflist's.
//
// The price: the agent hand-rolls what a controller-runtime manager would
// give (servers, health checks, start order) to keep its cache, readiness
// and shutdown order its own; and each part copies what it hands on
// (views, enforcement), trading allocations per batch for parts that share
// no locks.
package agent
