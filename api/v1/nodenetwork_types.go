package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeOwnerReference makes the Node named name (with uid) the controlling
// owner of a per-node object (NodeNetwork, DataplaneNode), so the garbage
// collector removes the object with its node. Nodes are core/v1 and
// cluster-scoped, which a per-node object always is too.
func NodeOwnerReference(name string, uid types.UID) metav1.OwnerReference {
	isController := true
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: name, UID: uid, Controller: &isController}
}

// NodeNetworkSpec is written by the node side only: what the node uses and
// what it gives back. The operator never writes spec.
type NodeNetworkSpec struct {
	// ipsInUse is the number of pod IPs the node has assigned (mode Subnet
	// sizes the node's batches from it).
	// +optional
	// +kubebuilder:validation:Minimum=0
	IPsInUse int32 `json:"ipsInUse,omitempty"`

	// releaseCIDRs are batches the node holds, no longer uses and gives
	// back. The node removes an entry once status no longer lists it.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	ReleaseCIDRs []CIDR `json:"releaseCIDRs,omitempty"`
}

// NodeNetworkStatus is written by the operator only: what the node holds.
type NodeNetworkStatus struct {
	// observedGeneration is the spec generation the status answers.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// pool is the IPAMPool the node draws from.
	// +optional
	Pool string `json:"pool,omitempty"`

	// mode of the pool.
	// +optional
	Mode IPAMMode `json:"mode,omitempty"`

	// cidrs the node may assign pod IPs from: its block (Overlay) or its
	// batches (Subnet). Every entry is claimed by an IPAMBlock first.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	CIDRs []CIDR `json:"cidrs,omitempty"`

	// excludeIPs are addresses inside cidrs the node must not assign (a
	// block's network and broadcast addresses, a subnet's reserved ones).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1024
	// +kubebuilder:validation:items:MaxLength=39
	ExcludeIPs []string `json:"excludeIPs,omitempty"`

	// maxPods is the most pod IPs the node may assign.
	// +optional
	MaxPods int32 `json:"maxPods,omitempty"`

	// minFreeIPs is the pool's low watermark in effect (mode Subnet only):
	// the operator gives the node another batch when it has fewer free IPs.
	// The node keeps at least this many free when it gives batches back.
	// +optional
	// +kubebuilder:validation:Minimum=0
	MinFreeIPs *int32 `json:"minFreeIPs,omitempty"`

	// maxFreeIPs is the pool's high watermark in effect (mode Subnet only):
	// a node with more free IPs gives back whole unused batches. Absent,
	// the node gives nothing back.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxFreeIPs *int32 `json:"maxFreeIPs,omitempty"`

	// conditions: Allocated (the node holds what it needs).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeNetwork is the pod address allocation of one node, named after the
// node. The node side writes spec (IPs in use, batches to give back), the
// operator writes status (what the node holds): each side writes only its
// own half, so neither overwrites the other.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nn
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.status.pool`
// +kubebuilder:printcolumn:name="CIDRs",type=string,JSONPath=`.status.cidrs`
// +kubebuilder:printcolumn:name="In use",type=integer,JSONPath=`.spec.ipsInUse`
// +kubebuilder:printcolumn:name="Allocated",type=string,JSONPath=`.status.conditions[?(@.type=="Allocated")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeNetwork struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec NodeNetworkSpec `json:"spec,omitempty"`
	// +optional
	Status NodeNetworkStatus `json:"status,omitempty"`
}

// NodeNetworkList is a list of NodeNetwork.
//
// +kubebuilder:object:root=true
type NodeNetworkList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeNetwork `json:"items"`
}

// IPAMBlockSpec says which node holds which block of which pool.
type IPAMBlockSpec struct {
	// pool the block belongs to.
	// +kubebuilder:validation:MinLength=1
	Pool string `json:"pool"`
	// cidr of the block.
	CIDR CIDR `json:"cidr"`
	// node that holds it.
	// +kubebuilder:validation:MinLength=1
	Node string `json:"node"`
}

// IPAMBlock is the claim that makes an allocation unique: its name is
// derived from the block's CIDR, so the API server refuses a second claim
// on the same block however stale the operator's cache is. A block is
// claimed before any node is told about it and released after the node's
// status stops listing it. Users don't create these.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:printcolumn:name="Pool",type=string,JSONPath=`.spec.pool`
// +kubebuilder:printcolumn:name="CIDR",type=string,JSONPath=`.spec.cidr`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.node`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.spec == oldSelf.spec",message="an IPAMBlock never changes; delete it to release the block"
type IPAMBlock struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec IPAMBlockSpec `json:"spec"`
}

// IPAMBlockList is a list of IPAMBlock.
//
// +kubebuilder:object:root=true
type IPAMBlockList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPAMBlock `json:"items"`
}
