package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IPAMMode is how a pool hands out pod IPs.
// +kubebuilder:validation:Enum=Overlay;Subnet
type IPAMMode string

const (
	// IPAMModeOverlay gives each node a block (a /24 by default) of a
	// private pod CIDR that is not part of the node network.
	IPAMModeOverlay IPAMMode = "Overlay"
	// IPAMModeSubnet gives nodes batches of IPs from a pod subnet that all
	// nodes share, as they need them, and takes back what they don't use.
	IPAMModeSubnet IPAMMode = "Subnet"
)

// CIDR is an IP network in CIDR notation with no host bits set.
// +kubebuilder:validation:MaxLength=43
// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="must be in CIDR notation, for example 10.244.0.0/16 or fd00:10:244::/56"
// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",messageExpression="self + ' has host bits set: use the network address of its range, for example 10.244.0.0/16 rather than 10.244.1.0/16'"
type CIDR string

// IPAMPoolSpec is a pool of pod IPs and the nodes that draw from it.
//
// The rules that keep a size from changing compare the value in force, an
// unset field counting as its default (DefaultBlockSize,
// DefaultIPv6BlockSize, DefaultBatchSize, pinned by a test): setting a
// field to its default, or unsetting it, changes nothing and is allowed.
//
// +kubebuilder:validation:XValidation:rule="self.mode == oldSelf.mode",message="mode can't change: nodes hold addresses in the current mode; create a new pool instead"
// +kubebuilder:validation:XValidation:rule="self.mode == 'Overlay' || (!has(self.blockSize) && !has(self.ipv6BlockSize))",message="blockSize and ipv6BlockSize apply to mode Overlay only; mode Subnet hands out batchSize IPs at a time"
// +kubebuilder:validation:XValidation:rule="self.mode == 'Subnet' || (!has(self.batchSize) && !has(self.minFreeIPs) && !has(self.maxFreeIPs))",message="batchSize, minFreeIPs and maxFreeIPs apply to mode Subnet only; mode Overlay gives each node one block"
// +kubebuilder:validation:XValidation:rule="(has(self.blockSize) ? self.blockSize : 24) == (has(oldSelf.blockSize) ? oldSelf.blockSize : 24)",message="blockSize can't change: nodes hold blocks of the size in force (24 while blockSize is unset); create a new pool instead"
// +kubebuilder:validation:XValidation:rule="!oldSelf.cidrs.exists(c, cidr(c).ip().family() == 6) || (has(self.ipv6BlockSize) ? self.ipv6BlockSize : 120) == (has(oldSelf.ipv6BlockSize) ? oldSelf.ipv6BlockSize : 120)",message="ipv6BlockSize can't change while the pool has an IPv6 range: nodes hold blocks of the size in force (120 while ipv6BlockSize is unset); create a new pool instead"
// +kubebuilder:validation:XValidation:rule="(has(self.batchSize) ? self.batchSize : 16) == (has(oldSelf.batchSize) ? oldSelf.batchSize : 16)",message="batchSize can't change: nodes hold batches of the size in force (16 while batchSize is unset); create a new pool instead"
type IPAMPoolSpec struct {
	// mode is Overlay (a block of a private pod CIDR per node) or Subnet
	// (batches of IPs from a shared pod subnet, on demand).
	Mode IPAMMode `json:"mode"`

	// cidrs are the pool's address ranges. At least one must be IPv4; one
	// IPv6 range makes the pool dual-stack. Ranges may be added at any time;
	// a range can be removed only when no node holds addresses from it.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=set
	CIDRs []CIDR `json:"cidrs"`

	// blockSize is the prefix length of a node's IPv4 block in mode Overlay
	// (default 24: 256 addresses, room for 250 pods). It can't change.
	// +optional
	// +kubebuilder:validation:Minimum=8
	// +kubebuilder:validation:Maximum=30
	BlockSize *int32 `json:"blockSize,omitempty"`

	// ipv6BlockSize is the prefix length of a node's IPv6 block in mode
	// Overlay (default 120). It can't change while the pool has an IPv6
	// range; set it when you add the first one.
	// +optional
	// +kubebuilder:validation:Minimum=64
	// +kubebuilder:validation:Maximum=124
	IPv6BlockSize *int32 `json:"ipv6BlockSize,omitempty"`

	// batchSize is how many IPs a node receives at a time in mode Subnet
	// (default 16). Batches are aligned ranges, so a power of two. It can't
	// change.
	// +optional
	// +kubebuilder:validation:Enum=1;2;4;8;16;32;64;128;256
	BatchSize *int32 `json:"batchSize,omitempty"`

	// minFreeIPs is the low watermark in mode Subnet: a node with fewer
	// free IPs asks for another batch (default half a batch).
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=250
	MinFreeIPs *int32 `json:"minFreeIPs,omitempty"`

	// maxFreeIPs is the high watermark in mode Subnet: a node with more
	// free IPs gives back whole unused batches (default two batches). It
	// must exceed minFreeIPs by at least a batch, or nodes would release
	// and request the same batch over and over.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	MaxFreeIPs *int32 `json:"maxFreeIPs,omitempty"`

	// maxPodsPerNode is the most pods a node of this pool runs (default
	// 250, at most 250).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=250
	MaxPodsPerNode *int32 `json:"maxPodsPerNode,omitempty"`

	// nodeSelector picks the nodes that draw from this pool; unset means
	// every node. A node must match exactly one pool.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
}

// IPAMPoolStatus is the pool's usage as the operator last counted it.
type IPAMPoolStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Exhausted and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// capacity is the number of IPv4 addresses nodes can receive.
	// +optional
	Capacity int64 `json:"capacity"`
	// allocated is the number of IPv4 addresses held by nodes.
	// +optional
	Allocated int64 `json:"allocated"`
	// free is capacity minus allocated.
	// +optional
	Free int64 `json:"free"`

	// allocatedNodes is the number of nodes that hold addresses.
	// +optional
	AllocatedNodes int32 `json:"allocatedNodes"`
	// nodes that hold addresses, sorted; at most the first 100 (see
	// `kubectl get nodenetworks -l sluice.dev/pool=NAME` for all).
	// +optional
	Nodes []string `json:"nodes,omitempty"`
	// waitingNodes are nodes that need addresses the pool doesn't have; at
	// most the first 100.
	// +optional
	WaitingNodes []string `json:"waitingNodes,omitempty"`
}

// IPAMPool is a range of pod IPs and the rule by which nodes draw from it.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ipp
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Capacity",type=integer,JSONPath=`.status.capacity`
// +kubebuilder:printcolumn:name="Allocated",type=integer,JSONPath=`.status.allocated`
// +kubebuilder:printcolumn:name="Free",type=integer,JSONPath=`.status.free`
// +kubebuilder:printcolumn:name="Nodes",type=integer,JSONPath=`.status.allocatedNodes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Exhausted",type=string,JSONPath=`.status.conditions[?(@.type=="Exhausted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IPAMPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the pool.
	// +required
	Spec IPAMPoolSpec `json:"spec"`

	// status is written by the operator.
	// +optional
	Status IPAMPoolStatus `json:"status,omitempty"`
}

// IPAMPoolList is a list of IPAMPool.
//
// +kubebuilder:object:root=true
type IPAMPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IPAMPool `json:"items"`
}
