// Package integration runs the operator's IPAM reconcilers against a real
// API server (envtest) together with the node side (nodeipam) and the real
// CNI plugin on network namespaces (netlab): the allocation a pool makes
// is the address a pod gets, and the addresses pods use flow back to the
// operator.
package integration
