// Package netlab builds Kubernetes nodes out of Linux network namespaces,
// for the lab (`sluicectl lab`) and for every test that needs real
// interfaces and real packets.
//
// It owns:
//   - Node: a host network namespace (the node's root namespace, where the
//     plugin runs and the host veths live), a directory with the node's
//     files (sluice-cni's conflist rendered by cni.RenderConflist, the
//     allocation file, the plugin's state directory, libcni's cache, and
//     the paths of the agent's socket and state file), and the pods it
//     wires. A process can create a node and another open it later: all of
//     a node's state is its namespaces and its directory.
//   - Pods: each its own network namespace, added and deleted through the
//     real sluice-cni binary by libcni, with CNI_ARGS as kubelet passes
//     them: the container runtime's calling convention, not a shortcut.
//   - Underlay: the node network between nodes (underlay.go), and its
//     Outside: a namespace at the node subnet's gateway standing for the
//     internet, for egress tests (outside.go).
//   - Traffic: an echo server (TCP, UDP and SCTP), single probes with a
//     verdict (reached, timed out, failed), and the reachability matrix
//     (cells from pod to pod on a port) with a wait until it agrees with
//     an expectation.
//
// Namespaces are named (bind mounts in /run/netns, made with `ip netns`),
// so `ip netns exec` reaches them and leftovers are easy to find: a node's
// namespaces all start with its NetNSPrefix, its host namespace is
// <prefix>host. Several nodes coexist as long as their prefixes differ.
//
// An Underlay joins nodes as a real cluster's node network does: a
// namespace holding a Linux bridge, with an IPv4 and an IPv6 node subnet;
// a node joins it with a veth (UnderlayIfName in its host namespace)
// carrying its addresses, the InternalIPs its Node object would report.
// The underlay gives the nodes a link, not routes to each other's pods:
// those are the agent's job, as on a real cluster. Nothing touches the
// machine's own network, and removing the underlay's namespace takes every
// node's underlay veth with it.
//
// What is real: namespaces, veths, routes, the plugin binary and its
// configuration, the agent when a caller runs one, and every packet.
// What is not: there is no kubelet and no container runtime. The caller
// plays the runtime's part (create the sandbox's namespace, call CNI ADD
// and DEL) and, when an API server is involved, the kubelet's (create the
// Pod, report its address). The price is that nothing here restarts a pod
// or retries a failed ADD as kubelet would; callers that need that must
// do it themselves.
//
// Everything needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Package
// netlabtest adapts the package to tests: it fails instead of skipping
// when SLUICE_REQUIRE_PRIVILEGED=1, builds the plugin once per test binary
// and cleans up after each test.
package netlab
