package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EBPFDataplane names the eBPF dataplane; absent means the legacy dataplane.
// +kubebuilder:validation:Enum=cilium
type EBPFDataplane string

// EBPFDataplaneCilium switches the cluster to the eBPF dataplane.
const EBPFDataplaneCilium EBPFDataplane = "cilium"

// DataplaneConfigSpec is the desired dataplane in the old shape.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.ebpfDataplane) || has(self.ebpfDataplane)",message="ebpfDataplane: the eBPF dataplane can't be disabled once enabled; create a new cluster to use another dataplane (keep ebpfDataplane: cilium)"
// +kubebuilder:validation:XValidation:rule="!has(self.networkPluginMode) || has(self.podCidr)",message="networkPluginMode: overlay needs podCidr: set spec.podCidr to a private range that the node and service networks don't use, such as 192.168.0.0/16"
type DataplaneConfigSpec struct {
	// networkPlugin is the CNI plugin: "azure" (default) or "none".
	// +optional
	// +kubebuilder:validation:Enum=azure;none
	NetworkPlugin string `json:"networkPlugin,omitempty"`

	// networkPluginMode is "overlay" to give pods IPs from podCidr.
	// +optional
	// +kubebuilder:validation:Enum=overlay
	NetworkPluginMode string `json:"networkPluginMode,omitempty"`

	// ebpfDataplane is "cilium" for the eBPF dataplane; absent means the
	// legacy iptables dataplane. Once set it can't be removed. v1 calls this
	// field networkDataplane.
	// +optional
	EBPFDataplane EBPFDataplane `json:"ebpfDataplane,omitempty"`

	// networkPolicy is the NetworkPolicy engine: none, azure, calico or cilium.
	// +optional
	// +kubebuilder:validation:Enum=none;azure;calico;cilium
	NetworkPolicy string `json:"networkPolicy,omitempty"`

	// podCidr is the overlay pod range in CIDR notation. v1 calls this field
	// podCIDR.
	// +optional
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="podCidr must be in CIDR notation, for example 192.168.0.0/16 or fd00:10:244::/56"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",messageExpression="'podCidr ' + self + ' has host bits set: use the network address of its range, for example 192.168.0.0/16 rather than 192.168.1.0/16'"
	PodCidr string `json:"podCidr,omitempty"`
}

// DataplaneConfigStatus is what the operator observed.
type DataplaneConfigStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DataplaneConfig is the cluster's dataplane in the old shape. Prefer v1.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dpc
// +kubebuilder:deprecatedversion:warning="dataplane.sluice.dev/v1alpha1 DataplaneConfig is deprecated; use dataplane.sluice.dev/v1, whose field networkDataplane replaces ebpfDataplane"
// +kubebuilder:printcolumn:name="eBPF",type=string,JSONPath=`.spec.ebpfDataplane`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="DataplaneConfig is a cluster singleton: its name must be 'default'"
type DataplaneConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired dataplane.
	// +required
	Spec DataplaneConfigSpec `json:"spec"`

	// status is written by the operator.
	// +optional
	Status DataplaneConfigStatus `json:"status,omitempty"`
}

// DataplaneConfigList is a list of DataplaneConfig.
//
// +kubebuilder:object:root=true
type DataplaneConfigList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataplaneConfig `json:"items"`
}
