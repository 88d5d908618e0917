package v1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// DataplaneConfigName is the only name a DataplaneConfig may have: the
// object describes the whole cluster, so there is exactly one.
const DataplaneConfigName = "default"

// NetworkPlugin names the CNI plugin that gives pods their interfaces.
// +kubebuilder:validation:Enum=azure;none
type NetworkPlugin string

const (
	// NetworkPluginAzure is Sluice's own CNI plugin.
	NetworkPluginAzure NetworkPlugin = "azure"
	// NetworkPluginNone leaves pod networking to a CNI the user brings.
	NetworkPluginNone NetworkPlugin = "none"
)

// NetworkPluginMode selects how the plugin addresses pods.
// +kubebuilder:validation:Enum=overlay
type NetworkPluginMode string

const (
	// NetworkPluginModeOverlay gives pods IPs from a private pod CIDR that
	// is not part of the node network; each node gets a block of it.
	NetworkPluginModeOverlay NetworkPluginMode = "overlay"
)

// NetworkDataplane names the dataplane that routes and filters pod traffic.
// +kubebuilder:validation:Enum=azure;cilium
type NetworkDataplane string

const (
	// NetworkDataplaneAzure is the legacy iptables dataplane (kube-proxy).
	NetworkDataplaneAzure NetworkDataplane = "azure"
	// NetworkDataplaneCilium is the eBPF dataplane: policy and services in
	// BPF programs, no kube-proxy.
	NetworkDataplaneCilium NetworkDataplane = "cilium"
)

// NetworkPolicyEngine names the engine that enforces NetworkPolicy.
// +kubebuilder:validation:Enum=none;azure;calico;cilium
type NetworkPolicyEngine string

const (
	// NetworkPolicyNone enforces no NetworkPolicy.
	NetworkPolicyNone NetworkPolicyEngine = "none"
	// NetworkPolicyAzure is Azure Network Policy Manager (iptables).
	NetworkPolicyAzure NetworkPolicyEngine = "azure"
	// NetworkPolicyCalico is Calico's policy engine (iptables).
	NetworkPolicyCalico NetworkPolicyEngine = "calico"
	// NetworkPolicyCilium is enforcement in Sluice's eBPF programs.
	NetworkPolicyCilium NetworkPolicyEngine = "cilium"
)

// RoutingMode is how pod traffic crosses from one node to another.
// +kubebuilder:validation:Enum=Native;Tunnel
type RoutingMode string

const (
	// RoutingModeNative sends pod packets between nodes unencapsulated:
	// each node routes every other node's pod ranges to that node's
	// address, so the network between nodes must carry pod addresses.
	RoutingModeNative RoutingMode = "Native"
	// RoutingModeTunnel encapsulates pod packets between nodes in
	// TunnelProtocol, so the network between nodes only sees node
	// addresses.
	RoutingModeTunnel RoutingMode = "Tunnel"
)

// TunnelProtocol is the encapsulation of RoutingModeTunnel.
// +kubebuilder:validation:Enum=VXLAN;Geneve
type TunnelProtocol string

const (
	// TunnelProtocolVXLAN is VXLAN (RFC 7348).
	TunnelProtocolVXLAN TunnelProtocol = "VXLAN"
	// TunnelProtocolGeneve is Geneve (RFC 8926).
	TunnelProtocolGeneve TunnelProtocol = "Geneve"
)

// LogLevel is the verbosity of the node agent.
// +kubebuilder:validation:Enum=debug;info;warn;error
type LogLevel string

// Log levels of the node agent.
const (
	LogLevelDebug LogLevel = "debug"
	LogLevelInfo  LogLevel = "info"
	LogLevelWarn  LogLevel = "warn"
	LogLevelError LogLevel = "error"
)

// DataplaneConfigSpec is the dataplane the cluster should run. Every field is
// optional; what an absent field means is written to status.effective, never
// back into spec, so GitOps tools that own spec never fight the operator.
//
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.networkDataplane) || oldSelf.networkDataplane != 'cilium' || (has(self.networkDataplane) && self.networkDataplane == 'cilium')",message="networkDataplane: the eBPF dataplane can't be disabled once enabled; create a new cluster to use another dataplane (keep networkDataplane: cilium)"
// +kubebuilder:validation:XValidation:rule="!has(self.networkPluginMode) || has(self.podCIDR)",message="networkPluginMode: overlay needs podCIDR: set spec.podCIDR to a private range that the node and service networks don't use, such as 192.168.0.0/16"
// +kubebuilder:validation:XValidation:rule="!has(self.networkPluginMode) || !has(self.networkPlugin) || self.networkPlugin == 'azure'",message="networkPluginMode: overlay needs networkPlugin: azure; with networkPlugin: none the pod network belongs to your own CNI, so leave networkPluginMode unset"
// +kubebuilder:validation:XValidation:rule="!has(self.networkDataplane) || self.networkDataplane != 'cilium' || !has(self.networkPlugin) || self.networkPlugin == 'azure'",message="networkDataplane: cilium needs networkPlugin: azure (or unset); the eBPF dataplane attaches to the interfaces Sluice's plugin creates"
// +kubebuilder:validation:XValidation:rule="!has(self.networkPolicy) || self.networkPolicy != 'cilium' || (has(self.networkDataplane) && self.networkDataplane == 'cilium')",message="networkPolicy: cilium needs networkDataplane: cilium; set networkDataplane: cilium, or choose networkPolicy none, azure or calico"
// +kubebuilder:validation:XValidation:rule="!has(self.routing) || !has(self.networkPlugin) || self.networkPlugin == 'azure'",message="routing needs networkPlugin: azure (or unset); with networkPlugin: none your own CNI carries pod traffic between nodes, so leave routing unset"
// +kubebuilder:validation:XValidation:rule="(has(self.routing) && has(self.routing.mode) ? self.routing.mode : 'Native') == (has(oldSelf.routing) && has(oldSelf.routing.mode) ? oldSelf.routing.mode : 'Native')",message="routing.mode can't change on a running cluster: nodes that switch at different moments can't reach each other's pods (the mode in force is Native while routing.mode is unset); create a new cluster to use another mode"
// +kubebuilder:validation:XValidation:rule="(has(self.routing) && has(self.routing.tunnelProtocol) ? self.routing.tunnelProtocol : 'VXLAN') == (has(oldSelf.routing) && has(oldSelf.routing.tunnelProtocol) ? oldSelf.routing.tunnelProtocol : 'VXLAN')",message="routing.tunnelProtocol can't change on a running cluster: a node decapsulates only the protocol in force (VXLAN while tunnelProtocol is unset), so nodes that switch at different moments can't reach each other's pods; create a new cluster to use another protocol"
type DataplaneConfigSpec struct {
	// networkPlugin is the CNI plugin that wires pods: "azure" (Sluice's
	// plugin, the default) or "none" to bring your own CNI.
	// +optional
	NetworkPlugin NetworkPlugin `json:"networkPlugin,omitempty"`

	// networkPluginMode is "overlay" to give pods IPs from podCIDR, a private
	// range split into one block per node; unset means pods take IPs from
	// the pod subnet of their IPAM pool.
	// +optional
	NetworkPluginMode NetworkPluginMode `json:"networkPluginMode,omitempty"`

	// networkDataplane is the dataplane: "azure" (legacy iptables and
	// kube-proxy, the default) or "cilium" (eBPF). Changing azure to cilium
	// migrates the cluster in place; cilium can never change back.
	// +optional
	NetworkDataplane NetworkDataplane `json:"networkDataplane,omitempty"`

	// networkPolicy is the NetworkPolicy engine: "none" (the default),
	// "azure" (NPM), "calico" or "cilium". With networkDataplane cilium the
	// engine in force is always cilium; an old engine named here is
	// uninstalled and replaced, and status.effective.networkPolicy says so.
	// +optional
	NetworkPolicy NetworkPolicyEngine `json:"networkPolicy,omitempty"`

	// podCIDR is the overlay pod range in CIDR notation, for example
	// 192.168.0.0/16. It must be a network address (no host bits set).
	// +optional
	// +kubebuilder:validation:MaxLength=43
	// +kubebuilder:validation:XValidation:rule="isCIDR(self)",message="podCIDR must be in CIDR notation, for example 192.168.0.0/16 or fd00:10:244::/56"
	// +kubebuilder:validation:XValidation:rule="!isCIDR(self) || cidr(self) == cidr(self).masked()",messageExpression="'podCIDR ' + self + ' has host bits set: use the network address of its range, for example 192.168.0.0/16 rather than 192.168.1.0/16'"
	PodCIDR string `json:"podCIDR,omitempty"`

	// ipamPools names the IPAMPool objects that hand out pod IPs. Empty
	// means every pool in the cluster.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	IPAMPools []IPAMPoolReference `json:"ipamPools,omitempty"`

	// nodePoolLabel is the node label whose value names the node pool a node
	// belongs to (default kubernetes.azure.com/agentpool). Migration
	// re-images node pools by this label.
	// +optional
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	NodePoolLabel string `json:"nodePoolLabel,omitempty"`

	// routing is how pod traffic crosses between nodes. Unset fields take
	// the defaults shown in status.effective.routing.
	// +optional
	Routing *RoutingSettings `json:"routing,omitempty"`

	// agent tunes the node agent DaemonSet. Unset fields take the defaults
	// shown in status.effective.agent.
	// +optional
	Agent *AgentSettings `json:"agent,omitempty"`
}

// RoutingSettings say how pod packets travel between nodes.
//
// +kubebuilder:validation:XValidation:rule="!has(self.tunnelProtocol) || (has(self.mode) && self.mode == 'Tunnel')",message="tunnelProtocol applies to mode Tunnel only: Native routing doesn't encapsulate; set mode: Tunnel or remove tunnelProtocol"
type RoutingSettings struct {
	// mode is "Native" (the default) or "Tunnel", and can't change once
	// set.
	//
	// Native: every node routes each other node's pod ranges to that
	// node's address, and pod packets cross the network between nodes
	// unencapsulated, at full MTU. It fits where that network delivers
	// packets addressed to pods: a cloud network with a route table for
	// the pod ranges, pods in the node subnet (IPAM mode Subnet), or nodes
	// on one flat L2 segment. It is the default because the cloud product
	// Sluice models runs this way.
	//
	// Tunnel: pod packets between nodes are wrapped in tunnelProtocol,
	// addressed node to node. It fits where the network between nodes
	// knows only node addresses and drops or misroutes pod addresses (an
	// overlay podCIDR with no routes for it, a network you don't control).
	// The price: pods get an MTU lowered by the encapsulation overhead (see
	// status.effective.routing.podMTU) and every packet between nodes costs
	// an encapsulation.
	// +optional
	Mode RoutingMode `json:"mode,omitempty"`

	// tunnelProtocol is the encapsulation of mode Tunnel: "VXLAN" (the
	// default) or "Geneve". Both add 50 bytes to every packet over an IPv4
	// underlay (Sluice sends no Geneve options). Only with mode Tunnel;
	// can't change once set.
	// +optional
	TunnelProtocol TunnelProtocol `json:"tunnelProtocol,omitempty"`

	// underlayMTU is the MTU of the network between nodes, in bytes
	// (default 1500; 9000 for jumbo frames where every node and the network
	// support them). Pods get this MTU with mode Native, and this MTU less
	// the encapsulation overhead with mode Tunnel. It applies to pods
	// created after it changes; running pods keep their MTU.
	// +optional
	// +kubebuilder:validation:Minimum=1280
	// +kubebuilder:validation:Maximum=9000
	UnderlayMTU *int32 `json:"underlayMTU,omitempty"`

	// nonMasqueradeCIDRs are destinations outside the cluster that pods
	// reach with their own address, for example the VNet's address space,
	// a peered VNet or on-premises ranges reached over a gateway that
	// routes pod addresses back. Pod traffic to any other destination
	// outside the pod ranges leaves with its node's address (with mode
	// Native). Traffic to the pod ranges and to every node's InternalIP is
	// never masqueraded, listed here or not. Changes apply to new
	// connections; established ones keep their translation.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +listType=set
	NonMasqueradeCIDRs []CIDR `json:"nonMasqueradeCIDRs,omitempty"`
}

// IPAMPoolReference names an IPAMPool.
type IPAMPoolReference struct {
	// name of the IPAMPool.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
}

// AgentSettings are the node agent knobs users may tune.
type AgentSettings struct {
	// image of the node agent. Default: the image the operator was started
	// with (its --agent-image flag).
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Image string `json:"image,omitempty"`

	// logLevel of the agent: debug, info (default), warn or error.
	// +optional
	LogLevel LogLevel `json:"logLevel,omitempty"`

	// maxUnavailable is how many nodes may run without a ready agent during
	// an agent rollout, a number (at least 1) or a percentage such as "10%".
	// Default 1.
	// +optional
	// +kubebuilder:validation:XIntOrString
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`

	// cpuRequest is the agent's CPU request (default 100m); zero or more. The
	// agent never has a CPU or memory limit: a throttled or OOM-killed agent
	// stops enforcing policy.
	// +optional
	CPURequest *resource.Quantity `json:"cpuRequest,omitempty"`

	// memoryRequest is the agent's memory request (default 256Mi); zero or
	// more.
	// +optional
	MemoryRequest *resource.Quantity `json:"memoryRequest,omitempty"`

	// bpfMaps sizes the agent's BPF maps. Larger maps hold more endpoints,
	// connections and policy entries at the cost of kernel memory.
	// +optional
	BPFMaps *BPFMapSizes `json:"bpfMaps,omitempty"`
}

// BPFMapSizes are the maximum entries of the agent's BPF maps.
type BPFMapSizes struct {
	// policyEntries is the most entries one endpoint's policy may hold in
	// one direction: each endpoint and direction has a map of its own
	// (default 16384). The kernel allocates about 16 bytes per entry of
	// each map up front (256 KiB at the default), so this is a per-pod
	// cost, not a cluster-wide one.
	// +optional
	// +kubebuilder:validation:Minimum=1024
	// +kubebuilder:validation:Maximum=1048576
	PolicyEntries *int32 `json:"policyEntries,omitempty"`

	// conntrackEntries is the size of the node's connection tracking
	// table, shared by all its pods; a flow between two pods of one node
	// takes two entries (default 524288). Allocated up front, about 128
	// bytes an entry (64 MiB at the default). When it is full the oldest
	// flows are forgotten and their replies meet the policy again.
	// +optional
	// +kubebuilder:validation:Minimum=65536
	// +kubebuilder:validation:Maximum=16777216
	ConntrackEntries *int32 `json:"conntrackEntries,omitempty"`

	// natEntries is reserved for the size of the Service NAT table
	// (default 524288). No map uses it yet.
	// +optional
	// +kubebuilder:validation:Minimum=65536
	// +kubebuilder:validation:Maximum=16777216
	NATEntries *int32 `json:"natEntries,omitempty"`

	// ipcacheEntries is the most prefixes the IP-to-class map may hold:
	// every pod and node address of the cluster and the ipBlock prefixes
	// policies name (default 512000). Memory is taken per prefix held,
	// not up front.
	// +optional
	// +kubebuilder:validation:Minimum=16384
	// +kubebuilder:validation:Maximum=16777216
	IPCacheEntries *int32 `json:"ipcacheEntries,omitempty"`
}

// Default BPF map sizes: the operator's effective configuration fills
// them in for unset BPFMapSizes fields, and the agent's datapath uses them
// for sizes it isn't given, so that both sides agree on one set. They
// follow Cilium's defaults, which users of the dataplane Sluice models
// have sized their nodes for.
const (
	DefaultBPFPolicyEntries    int32 = 16384
	DefaultBPFConntrackEntries int32 = 524288
	DefaultBPFNATEntries       int32 = 524288
	DefaultBPFIPCacheEntries   int32 = 512000
)

// DataplaneConfigStatus is what the operator observed and put in force.
type DataplaneConfigStatus struct {
	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// effective is the configuration in force: spec with every default
	// filled in and every implied value resolved.
	// +optional
	Effective *EffectiveConfig `json:"effective,omitempty"`

	// agent is the rollout state of the node agent DaemonSet.
	// +optional
	Agent *AgentRolloutStatus `json:"agent,omitempty"`
}

// EffectiveConfig is a DataplaneConfigSpec after defaulting and resolution.
type EffectiveConfig struct {
	NetworkPlugin     NetworkPlugin       `json:"networkPlugin"`
	NetworkPluginMode NetworkPluginMode   `json:"networkPluginMode,omitempty"`
	NetworkDataplane  NetworkDataplane    `json:"networkDataplane"`
	NetworkPolicy     NetworkPolicyEngine `json:"networkPolicy"`
	// +optional
	PodCIDR string `json:"podCIDR,omitempty"`
	// +optional
	IPAMPools     []string `json:"ipamPools,omitempty"`
	NodePoolLabel string   `json:"nodePoolLabel"`
	// kubeProxyReplacement is true when the dataplane routes Services
	// itself and kube-proxy must not run.
	KubeProxyReplacement bool `json:"kubeProxyReplacement"`
	// routing is how pod traffic crosses between nodes. The operator always
	// sets it; it is optional so that a status written by an operator that
	// predates it stays valid.
	// +optional
	Routing *EffectiveRouting      `json:"routing,omitempty"`
	Agent   EffectiveAgentSettings `json:"agent"`
}

// EffectiveRouting is RoutingSettings with every default filled in and
// the pod MTU that follows from them.
type EffectiveRouting struct {
	Mode RoutingMode `json:"mode"`
	// tunnelProtocol is set with mode Tunnel only.
	// +optional
	TunnelProtocol TunnelProtocol `json:"tunnelProtocol,omitempty"`
	UnderlayMTU    int32          `json:"underlayMTU"`
	// podMTU is the MTU of every pod's interface: underlayMTU less the
	// encapsulation overhead of the tunnel, if any.
	PodMTU int32 `json:"podMTU"`
	// nonMasqueradeCIDRs are the destinations outside the cluster that
	// pods reach with their own address, as spec.routing lists them.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	NonMasqueradeCIDRs []CIDR `json:"nonMasqueradeCIDRs,omitempty"`
}

// EffectiveAgentSettings are AgentSettings with every default filled in.
type EffectiveAgentSettings struct {
	Image          string             `json:"image"`
	LogLevel       LogLevel           `json:"logLevel"`
	MaxUnavailable intstr.IntOrString `json:"maxUnavailable"`
	CPURequest     resource.Quantity  `json:"cpuRequest"`
	MemoryRequest  resource.Quantity  `json:"memoryRequest"`
	BPFMaps        EffectiveBPFMaps   `json:"bpfMaps"`
}

// EffectiveBPFMaps are BPFMapSizes with every default filled in.
type EffectiveBPFMaps struct {
	PolicyEntries    int32 `json:"policyEntries"`
	ConntrackEntries int32 `json:"conntrackEntries"`
	NATEntries       int32 `json:"natEntries"`
	IPCacheEntries   int32 `json:"ipcacheEntries"`
}

// AgentRolloutStatus mirrors the agent DaemonSet's rollout.
type AgentRolloutStatus struct {
	// desiredNodes is the number of nodes that should run the agent.
	DesiredNodes int32 `json:"desiredNodes"`
	// updatedNodes run the agent of the current configuration.
	UpdatedNodes int32 `json:"updatedNodes"`
	// availableNodes run an agent that is ready.
	AvailableNodes int32 `json:"availableNodes"`
	// daemonSetGeneration is the generation of the agent DaemonSet as the
	// operator last wrote it. A live DaemonSet with another generation was
	// changed by someone else, and the operator puts its spec back.
	// +optional
	DaemonSetGeneration int64 `json:"daemonSetGeneration,omitempty"`
}

// DataplaneConfig is the cluster's dataplane: which dataplane runs, which
// policy engine enforces NetworkPolicy, where pod IPs come from, and how the
// node agent is tuned. It is a singleton named "default".
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:resource:scope=Cluster,shortName=dpc
// +kubebuilder:printcolumn:name="Dataplane",type=string,JSONPath=`.status.effective.networkDataplane`
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.status.effective.networkPolicy`
// +kubebuilder:printcolumn:name="Routing",type=string,JSONPath=`.status.effective.routing.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'default'",message="DataplaneConfig is a cluster singleton: its name must be 'default'"
type DataplaneConfig struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired dataplane.
	// +required
	Spec DataplaneConfigSpec `json:"spec"`

	// status is the dataplane in force, written by the operator.
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
