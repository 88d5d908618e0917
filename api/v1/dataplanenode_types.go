package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition reasons of a DataplaneNode's Ready condition (ConditionReady).
const (
	// ReasonDatapathLoaded: the datapath is loaded, the policy applied and
	// the endpoints registered before a restart recovered.
	ReasonDatapathLoaded = "DatapathLoaded"
	// ReasonStarting: the agent runs but is not ready yet (caches syncing,
	// first snapshot not applied, endpoints being recovered).
	ReasonStarting = "Starting"
	// ReasonAgentApplyFailed: the last Apply of a policy snapshot to the
	// datapath failed; the agent retries.
	ReasonAgentApplyFailed = "ApplyFailed"
)

// DataplaneNodeStatus is written by the node agent only: the state of the
// datapath on its node.
type DataplaneNodeStatus struct {
	// ready is true when the agent is ready: caches synced, datapath
	// loaded, first policy snapshot applied and registered endpoints
	// recovered (what its /readyz reports).
	// +optional
	Ready bool `json:"ready,omitempty"`

	// endpoints is the number of this node's pod endpoints in the
	// datapath, as of the last successful apply.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Endpoints int32 `json:"endpoints,omitempty"`

	// lastApplyTime is when a policy batch was last applied successfully.
	// +optional
	LastApplyTime *metav1.Time `json:"lastApplyTime,omitempty"`

	// lastApplyDuration is how long the last successful batch took, from
	// the receipt of its oldest change to the datapath's Apply returning.
	// +optional
	LastApplyDuration *metav1.Duration `json:"lastApplyDuration,omitempty"`

	// lastError is the error of the last Apply, empty when it succeeded.
	// +optional
	// +kubebuilder:validation:MaxLength=4096
	LastError string `json:"lastError,omitempty"`

	// agentVersion is the version of the agent that writes this status.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	AgentVersion string `json:"agentVersion,omitempty"`

	// pinned is true when the datapath's maps and links are pinned in
	// bpffs, so enforcement survives an agent restart.
	// +optional
	Pinned bool `json:"pinned,omitempty"`

	// observedPolicyChanges is the number of policy batches the agent has
	// applied to the datapath since it started.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ObservedPolicyChanges int64 `json:"observedPolicyChanges,omitempty"`

	// conditions: Ready (reasons DatapathLoaded, Starting, ApplyFailed).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DataplaneNode is the node agent's report of its node's datapath, named
// after the node and owned by its Node object, so it goes with the node.
// It has only a status, which the agent writes.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=dpn
// +kubebuilder:printcolumn:name="Ready",type=boolean,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Endpoints",type=integer,JSONPath=`.status.endpoints`
// +kubebuilder:printcolumn:name="Last apply",type=string,JSONPath=`.status.lastApplyDuration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DataplaneNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status DataplaneNodeStatus `json:"status,omitempty"`
}

// DataplaneNodeList is a list of DataplaneNode.
//
// +kubebuilder:object:root=true
type DataplaneNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DataplaneNode `json:"items"`
}
