// Package endpoint is the node agent's endpoint registry: the pod
// interfaces the CNI plugin hands over, their datapath endpoint IDs, the
// state file that keeps both across restarts, the socket API the plugin
// calls, and attaching the datapath's programs to each pod's host veth.
// It reads the policy through the Policy interface and never writes the
// datapath's maps: attaching (tcx links and the veth's pod addresses) is
// its only datapath call, made through the Attacher it is given (the
// agent routes it through the applier, the datapath's one writer).
//
// # Handover
//
// The registry serves the API of internal/cni/agent.go on a unix socket
// (/var/run/sluice/agent.sock, mode 0600). PUT /v1/endpoints/{containerID}
// validates the request, waits until the agent is ready, checks that the
// host veth exists under that name and index, rejects a pod the API
// places on another node (409), records the registration (state file
// first), tells the policy loop, and waits until a policy batch that read
// the pod is in force with every address of the endpoint (one per family,
// OnePerFamily) as that pod's. Only then does it attach both programs to
// the host veth with tcx and answer 200: when the plugin's ADD returns,
// the pod's policy is enforced. A pod the cache doesn't know yet is
// waited for (the informer may lag the kubelet); after the register
// timeout, a compile error, or a failed Apply the request fails (409 or
// 503, with a JSON message), the registration is forgotten, and the plugin
// undoes the wiring and releases the address: fail closed. DELETE detaches
// (and unpins) and forgets; unknown IDs are fine. A PUT for a registered
// container (a retried ADD) replaces the registration and moves the
// attachment if the veth changed. Registrations whose veth disappears are
// forgotten by a periodic sweep.
//
// The protocol (Registry.Register) returns an *Error whose Kind says why;
// api.go alone maps kinds to HTTP statuses.
//
// # Endpoint IDs
//
// Endpoint IDs in the datapath are the registry's, not the compiler's:
// the compiler numbers pods in the order it sees them, which differs
// between runs, and conntrack and counters are keyed by ID. The table
// (pod, address) -> ID is in the state file, so an endpoint keeps its ID
// across restarts.
//
// # Restart recovery
//
// The state file is small JSON, rewritten atomically at every
// registration change and whenever an ID is handed out:
//
//	{"version":1,
//	 "endpoints":[{"containerID":"...","namespace":"...","name":"...","ifName":"eth0",
//	               "ips":["10.0.0.5"],"hostIfName":"slc0123456789a","hostIfIndex":12}],
//	 "ids":{"ids":{"default/web|10.0.0.5":3},"next":4}}
//
// An agent holds an exclusive flock on <state file>.lock (LockState) so
// two agents never drive one datapath. New loads the file; the first
// policy snapshot then already holds the registered pods under their old
// IDs, so tracked flows and counters carry on. Once it is in force, Run
// re-attaches every registered endpoint whose veth still exists (pinned
// links are updated to the new programs in place), forgets those whose
// veth is gone (a DEL that came while no agent ran), and sweeps pinned
// links of interfaces that no longer exist; only then is the registry
// ready. PUTs that arrive meanwhile wait.
//
// The price: the file is rewritten whole at every change, and a
// registration costs a policy batch and an Apply before it answers; a
// node that starts many pods at once pays for it in ADD latency, not in a
// window without policy.
package endpoint
