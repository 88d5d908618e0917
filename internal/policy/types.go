package policy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// Namespace is a namespace and its labels. The compiler adds the
// kubernetes.io/metadata.name label itself, as the API server does, so a
// namespaceSelector on it works on hand-written clusters too.
type Namespace struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// NamedPort is one container port of a pod; named ports in policies are
// resolved against these. An empty Protocol means TCP, as in a pod spec.
type NamedPort struct {
	Name     string          `json:"name,omitempty"`
	Port     int32           `json:"port"`
	Protocol corev1.Protocol `json:"protocol,omitempty"`
}

// Pod is a pod with an address. Node is optional: without it (or when the
// node is unknown) no node gets the always-allowed path to the pod.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels,omitempty"`
	IP        netip.Addr        `json:"ip"`
	Node      string            `json:"node,omitempty"`
	Ports     []NamedPort       `json:"ports,omitempty"`
}

// Node is a node and its addresses.
type Node struct {
	Name string       `json:"name"`
	IPs  []netip.Addr `json:"ips"`
}

// Cluster is everything the compiler reads. Policies are as the user wrote
// them; the compiler applies Default to its own copies.
type Cluster struct {
	Namespaces []Namespace                  `json:"namespaces,omitempty"`
	Pods       []Pod                        `json:"pods,omitempty"`
	Nodes      []Node                       `json:"nodes,omitempty"`
	Policies   []networkingv1.NetworkPolicy `json:"policies,omitempty"`
}

// namespaceNameLabel is set on every namespace by the API server.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// namespaceLabels is ns's labels as the API server stores them: with
// kubernetes.io/metadata.name, which it sets and users can't change.
func namespaceLabels(ns Namespace) map[string]string {
	out := make(map[string]string, len(ns.Labels)+1)
	for k, v := range ns.Labels {
		out[k] = v
	}
	out[namespaceNameLabel] = ns.Name
	return out
}

// protoNumber maps a Kubernetes protocol to its IP protocol number; the
// empty protocol is TCP (the default of container and policy ports).
func protoNumber(p corev1.Protocol) (uint8, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return ProtoTCP, true
	case corev1.ProtocolUDP:
		return ProtoUDP, true
	case corev1.ProtocolSCTP:
		return ProtoSCTP, true
	}
	return 0, false
}
