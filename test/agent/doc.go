// Package agent runs the node agent in-process against a real API server
// (envtest) and a local node of network namespaces (internal/netlab) whose pods
// are added by the real sluice-cni through libcni with agentSocket set:
// real packets between pods, allowed and dropped as the NetworkPolicies
// created through the API say, across an agent restart (TestAgent). The
// node starts with IP forwarding off: the agent turns it on.
//
// TestReachabilityMatrix probes every pod to every pod on TCP (8080, 9090,
// 5353), UDP (5353) and SCTP (3868, when the kernel has SCTP sockets)
// with real packets, under one scenario per kind of policy (deny-all each
// way, namespace isolation, ipBlock with except, named ports, endPort
// ranges, protocols), and checks each cell against policy.Compile's
// verdict for the same cluster (itself checked against
// policy.ReferenceAllowed). SLUICE_MATRIX_DEBUG=1 logs every probing pass.
package agent
