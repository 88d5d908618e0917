// Package agent is Sluice's node agent (cmd/agent runs it on every node):
// NetworkPolicy enforcement with the eBPF datapath, the endpoint handover
// from the CNI plugin, and the node side of IPAM.
//
// # Policy
//
// A controller-runtime cache watches every Pod (peers anywhere matter),
// Namespace, Node and NetworkPolicy; cached pods and nodes are trimmed to
// what the agent reads. Event handlers only queue the object's key; one
// worker takes everything queued as a batch, reads each object's current
// state from the cache, feeds it to an incremental policy.Compiler, and
// applies the result: the whole ipcache (every pod and node address of
// the cluster), but only the endpoints of this node's pods (the node
// filter, filter.go). The first batch compiles the synced caches at once
// (policy.NewCompiler). Apply is skipped when the node's snapshot did not
// change. Objects the compiler refuses for now (an address another pod
// still holds, a namespace with pods left) are retried a second later;
// so is a failed Apply.
//
// A pod's addresses are those of its registration when it has one (the
// API's status has none yet at ADD time), else status.podIPs; one per
// family, and a dual-stack pod is two compiler pods (the compiler holds
// one address per pod). Pods on the host network and finished pods are
// left out. A pod is this node's when spec.nodeName says so or when it
// registered here.
//
// Endpoint IDs in the datapath are the agent's, not the compiler's: the
// compiler numbers pods in the order it sees them, which differs between
// runs, and conntrack and counters are keyed by ID. The agent keeps a
// table (pod, address) -> ID in its state file, so an endpoint keeps its
// ID across restarts.
//
// # Endpoint handover
//
// The agent serves the API of internal/cni/agent.go on a unix socket
// (/var/run/sluice/agent.sock, mode 0600). PUT /v1/endpoints/{containerID}
// validates the request, waits until the agent is ready, checks that the
// host veth exists under that name and index, rejects a pod the API places
// on another node (409), records the registration (state file first),
// queues the pod and waits until a batch that includes it has been applied
// with every address of the endpoint in the datapath as that pod's. Only
// then does it attach both programs to the host veth with tcx and answer
// 200: when the plugin's ADD returns, the pod's policy is enforced. A pod
// the cache doesn't know yet is waited for (the informer may lag the
// kubelet); after 25 s, a compile error, or a failed Apply the request
// fails (409 or 503, with a JSON message), the registration is forgotten,
// and the plugin undoes the wiring and releases the address: fail closed.
// DELETE detaches (and unpins) and forgets; unknown IDs are fine. A PUT
// for a registered container (a retried ADD) replaces the registration and
// moves the attachment if the veth changed.
//
// # Restart recovery
//
// With a pin directory (/sys/fs/bpf/sluice in production) the datapath's
// maps and every tcx link stay in the kernel when the agent stops, so the
// old programs keep enforcing the last snapshot and keep tracking flows
// while no agent runs. The agent's own state is a small JSON file,
// /var/run/sluice/agent-state.json, rewritten atomically at every
// registration change and whenever an endpoint ID is handed out:
//
//	{"version":1,
//	 "endpoints":[{"containerID":"...","namespace":"...","name":"...","ifName":"eth0",
//	               "ips":["10.0.0.5"],"hostIfName":"slc0123456789a","hostIfIndex":12}],
//	 "ids":{"ids":{"default/web|10.0.0.5":3},"next":4}}
//
// A new run takes an exclusive flock on agent-state.json.lock (two agents
// never drive one datapath), loads the state, opens the pinned maps
// (datapath.New reuses them), turns IP forwarding on (below), syncs the
// caches, and applies a snapshot
// that already holds the registered pods under their old IDs, so tracked
// flows and counters carry on. It then re-attaches every registered
// endpoint whose veth still exists (Attach updates the pinned links to the
// new programs in place), forgets those whose veth is gone (a DEL that
// came while it was down), removes pinned links of interfaces that no
// longer exist, and only then is ready. PUTs that arrive meanwhile wait.
// Registrations whose veth disappears later are forgotten by a periodic
// sweep. Without a pin directory nothing survives: the programs are
// detached when the agent stops.
//
// # IP forwarding
//
// Pods reach each other and the world through the node, which routes
// between their host veths: that needs net.ipv4.ip_forward=1, and
// net.ipv6.conf.all.forwarding=1 for IPv6 pods, in the node's network
// namespace. Each run, once the datapath is loaded and before anything
// can report ready, the agent reads both through Options.ProcSysNet and
// writes 1 to each that isn't 1 already (the IPv6 one only if it exists:
// a node without IPv6 is fine), and logs what it changed. A node whose
// forwarding is on needs no write access. Any failure stops the agent:
// a node that doesn't forward can't carry pod traffic. A container's
// /proc/sys is read-only, so the DaemonSet mounts the node's
// /proc/sys/net read-write at /host/proc/sys/net (cmd/agent's
// --proc-sys-net; empty leaves forwarding alone). /proc/sys/net shows
// the network namespace of the thread that opens a file there, so with
// Options.NetNS the files are opened inside it.
//
// Turning forwarding on has the kernel's side effects: ip_forward also
// turns it on for every interface and turns accept_redirects off, and
// with IPv6 forwarding on, interfaces whose accept_ra is 1 ignore router
// advertisements, so a node that learns its IPv6 default route from them
// would lose it. Before turning IPv6 forwarding on, the agent therefore
// sets accept_ra to 2 (accept them while forwarding) on every interface,
// and the default for new ones, where it is 1. The agent turns forwarding
// on once per run; it doesn't watch for it being turned off.
//
// # Health and metrics
//
// /healthz and /readyz on 127.0.0.1:9879: ready once the caches synced,
// the datapath loaded (and forwarding turned on), the first snapshot
// applied and the registered endpoints recovered. /metrics (127.0.0.1:9880 by default):
// sluice_agent_policy_apply_seconds (per batch, from the receipt of its
// oldest change to Apply returning), sluice_agent_policy_apply_errors_total,
// sluice_agent_endpoints, and sluice_agent_endpoint_packets_total{namespace,
// pod,direction,verdict} read from the datapath's counters at scrape time
// (verdict allowed or dropped by the policy, or spoofed: dropped on the
// way out of the pod for a source address the registration didn't give
// it; each veth is attached with its pod's registered addresses).
//
// # IPAM
//
// nodeipam.Syncer runs every 5 s with an uncached client: the allocation
// file and the plugin's state directory are the conflist's
// (internal/agentmanifest/conflist.go).
package agent
