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

// ConditionRoutesReady is a DataplaneNode's condition for native routing:
// True when every route the node wants to other nodes' pod ranges is
// installed. It is absent when the agent doesn't route (no routing mode).
const ConditionRoutesReady = "RoutesReady"

// Reasons of the RoutesReady condition and of a RouteProblem. When a node
// has problems of several kinds, the condition carries the first in this
// order: a conflict needs someone to act on the node, the others on the
// cluster's objects.
const (
	// ReasonRoutesInstalled: every wanted route is in the kernel.
	ReasonRoutesInstalled = "RoutesInstalled"
	// ReasonRouteConflict: a route the agent doesn't own (another
	// protocol) already has the destination; the agent never replaces it.
	ReasonRouteConflict = "RouteConflict"
	// ReasonNodeAddressMissing: the node that owns a pod range has no
	// InternalIP of the range's family to route it via.
	ReasonNodeAddressMissing = "NodeAddressMissing"
	// ReasonPodRangeClaimedTwice: two nodes' NodeNetworks hold the same
	// pod range, so neither is routed.
	ReasonPodRangeClaimedTwice = "PodRangeClaimedTwice"
	// ReasonInvalidPodRange: a NodeNetwork's pod range doesn't parse.
	ReasonInvalidPodRange = "InvalidPodRange"
	// ReasonRouteSyncFailed: writing a route to the kernel failed; the
	// agent retries.
	ReasonRouteSyncFailed = "RouteSyncFailed"
)

// MaxRouteProblems bounds DataplaneNodeRouting.Problems: a cluster-wide
// mistake (a missing address family) would otherwise list every node.
const MaxRouteProblems = 32

// DataplaneNodeRouting is the node's routing to other nodes' pods.
type DataplaneNodeRouting struct {
	// mode is the routing mode in force on the node: Native, the agent
	// keeps a kernel route per other node's pod range.
	Mode RoutingMode `json:"mode"`

	// routes is the number of routes to other nodes' pod ranges the
	// agent keeps in the kernel.
	// +optional
	// +kubebuilder:validation:Minimum=0
	Routes int32 `json:"routes,omitempty"`

	// problems are the pod ranges the agent wants to route and can't,
	// sorted by destination, at most MaxRouteProblems of them.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	Problems []RouteProblem `json:"problems,omitempty"`

	// problemsOmitted counts the problems beyond the listed ones.
	// +optional
	// +kubebuilder:validation:Minimum=0
	ProblemsOmitted int32 `json:"problemsOmitted,omitempty"`
}

// RouteProblem is a pod range of another node that isn't routed.
type RouteProblem struct {
	// destination is the pod range (a CIDR, or the NodeNetwork's text
	// when it doesn't parse).
	// +kubebuilder:validation:MaxLength=64
	Destination string `json:"destination"`

	// node is the node whose pod range it is; for a range two nodes
	// claim, the nodes comma-separated.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Node string `json:"node,omitempty"`

	// reason is RouteConflict, NodeAddressMissing, PodRangeClaimedTwice,
	// InvalidPodRange or RouteSyncFailed.
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason"`

	// message says what is wrong; for a conflict, the route that is in
	// the way (its gateway, device and protocol).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

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

	// routing is the node's routing to other nodes' pods; absent when the
	// agent leaves the node's routes alone (no routing mode in force).
	// +optional
	Routing *DataplaneNodeRouting `json:"routing,omitempty"`

	// conditions: Ready (reasons DatapathLoaded, Starting, ApplyFailed)
	// and, when the node routes, RoutesReady (reasons RoutesInstalled,
	// RouteConflict, NodeAddressMissing, PodRangeClaimedTwice,
	// InvalidPodRange, RouteSyncFailed).
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
// +kubebuilder:printcolumn:name="Routes",type=integer,JSONPath=`.status.routing.routes`
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
