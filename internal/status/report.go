package status

import "time"

// Report is the cluster's dataplane at a glance. With -o json or -o yaml,
// sluicectl status prints it as is; the field names are stable.
type Report struct {
	// Time is when the objects were read.
	Time time.Time `json:"time"`
	// DataplaneConfig is the DataplaneConfig "default"; null when it
	// doesn't exist.
	DataplaneConfig *DataplaneConfig `json:"dataplaneConfig"`
	// Agents is the node agent DaemonSet and what every agent reports.
	Agents Agents `json:"agents"`
	// Pools are every IPAMPool, sorted by name.
	Pools []Pool `json:"pools"`
	// UnallocatedNodeNetworks are the NodeNetworks whose Allocated
	// condition is not True, sorted by name.
	UnallocatedNodeNetworks []NodeNetwork `json:"unallocatedNodeNetworks"`
	// Problems is everything that is not healthy, in the order of the
	// sections above; empty when all is well.
	Problems []Problem `json:"problems"`
	// Healthy is true when Problems is empty; sluicectl status exits 0
	// exactly then.
	Healthy bool `json:"healthy"`
}

// DataplaneConfig is the key values of the DataplaneConfig's effective
// configuration (status.effective) and its conditions.
type DataplaneConfig struct {
	Name string `json:"name"`
	// Generation is the spec's generation; ObservedGeneration the one the
	// operator last reconciled. They differ while the operator catches up,
	// or when it doesn't run.
	Generation         int64 `json:"generation"`
	ObservedGeneration int64 `json:"observedGeneration"`
	// The effective values; empty when the operator has not computed them.
	NetworkPlugin        string   `json:"networkPlugin,omitempty"`
	NetworkPluginMode    string   `json:"networkPluginMode,omitempty"`
	NetworkDataplane     string   `json:"networkDataplane,omitempty"`
	NetworkPolicy        string   `json:"networkPolicy,omitempty"`
	PodCIDR              string   `json:"podCIDR,omitempty"`
	IPAMPools            []string `json:"ipamPools,omitempty"`
	KubeProxyReplacement bool     `json:"kubeProxyReplacement"`
	// RoutingMode is how pod traffic crosses between nodes, Native or
	// Tunnel; TunnelProtocol is set with Tunnel only. PodMTU is the MTU
	// pods get, lowered by the tunnel's overhead.
	RoutingMode    string `json:"routingMode,omitempty"`
	TunnelProtocol string `json:"tunnelProtocol,omitempty"`
	PodMTU         int32  `json:"podMTU,omitempty"`
	AgentImage     string `json:"agentImage,omitempty"`
	// Conditions are Ready, Progressing, Degraded and IPAMReady, in this
	// order, those that are set.
	Conditions []Condition `json:"conditions"`
}

// Condition is a status condition without its bookkeeping.
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Agents is the node agent DaemonSet's rollout and the agents' reports.
type Agents struct {
	// DaemonSet is the agent DaemonSet as namespace/name.
	DaemonSet string `json:"daemonSet"`
	// Desired, Updated and Ready count nodes: nodes that should run the
	// agent, that run the current one, and whose agent is ready. They come
	// from the DaemonSet, or from the DataplaneConfig's status.agent when
	// the DaemonSet can't be read (Ready is then its availableNodes).
	Desired int32 `json:"desired"`
	Updated int32 `json:"updated"`
	Ready   int32 `json:"ready"`
	// Nodes are the DataplaneNode reports, sorted by node name.
	Nodes []AgentNode `json:"nodes"`
}

// AgentNode is one node agent's report (its DataplaneNode).
type AgentNode struct {
	Name string `json:"name"`
	// Ready, Reason and Message are the report's Ready condition.
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Endpoints is the number of pod endpoints in the node's datapath.
	Endpoints    int32  `json:"endpoints"`
	AgentVersion string `json:"agentVersion,omitempty"`
	// LastError is the error of the agent's last apply; empty when it
	// succeeded.
	LastError string `json:"lastError,omitempty"`
	// LastReportTime is when the agent last changed its report: its last
	// apply or Ready transition, whichever is later. Agents write only on
	// change, so this is not a heartbeat.
	LastReportTime *time.Time `json:"lastReportTime,omitempty"`
	// Routing is the node's routing to other nodes' pods; absent when the
	// agent doesn't route (or predates routing reports).
	Routing *NodeRouting `json:"routing,omitempty"`
}

// NodeRouting is a node's routing report and its RoutesReady condition.
type NodeRouting struct {
	// Mode is the routing mode in force on the node (Native).
	Mode string `json:"mode"`
	// Routes counts the routes to other nodes' pod ranges in its kernel.
	Routes int32 `json:"routes"`
	// Ready, Reason and Message are the RoutesReady condition; Ready is
	// false also while it is Unknown.
	Ready   bool   `json:"ready"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Problems are the pod ranges the node can't route (at most
	// v1.MaxRouteProblems; ProblemsOmitted counts the rest).
	Problems        []RouteProblem `json:"problems"`
	ProblemsOmitted int32          `json:"problemsOmitted,omitempty"`
}

// RouteProblem is a pod range a node can't route.
type RouteProblem struct {
	Destination string `json:"destination"`
	// Node owns the range (several, comma-separated, when they claim it).
	Node    string `json:"node,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Pool is one IPAMPool's usage and state.
type Pool struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	// Capacity, Allocated and Free count IPv4 addresses.
	Capacity  int64 `json:"capacity"`
	Allocated int64 `json:"allocated"`
	Free      int64 `json:"free"`
	// Nodes is the number of nodes that hold addresses of the pool.
	Nodes int32 `json:"nodes"`
	// WaitingNodes need addresses the pool doesn't have (at most 100).
	WaitingNodes []string `json:"waitingNodes,omitempty"`
	// Conditions are Ready, Exhausted and Degraded, those that are set.
	Conditions []Condition `json:"conditions"`
}

// NodeNetwork is a node whose pod addresses are not allocated.
type NodeNetwork struct {
	Name    string `json:"name"`
	Pool    string `json:"pool,omitempty"`
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
}

// Problem is one thing that is not healthy.
type Problem struct {
	// Object is "Kind name" (or "Kind namespace/name").
	Object  string `json:"object"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}
