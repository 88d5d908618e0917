// Package agent runs the node agent in-process against a real API server
// (envtest) and a local node of network namespaces (nodelab) whose pods
// are added by the real sluice-cni through libcni with agentSocket set:
// real packets between pods, allowed and dropped as the NetworkPolicies
// created through the API say, across an agent restart.
package agent
