package dataplane

import (
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Defaults of the fields a DataplaneConfig may leave unset.
const (
	DefaultNetworkPlugin    = v1.NetworkPluginAzure
	DefaultNetworkDataplane = v1.NetworkDataplaneAzure
	DefaultNetworkPolicy    = v1.NetworkPolicyNone
	DefaultNodePoolLabel    = "kubernetes.azure.com/agentpool"
	DefaultLogLevel         = v1.LogLevelInfo
	DefaultMaxUnavailable   = 1
	DefaultCPURequest       = "100m"
	DefaultMemoryRequest    = "256Mi"
)

// Effective resolves spec into the configuration in force. agentImage is the
// image used when spec doesn't name one (the operator's --agent-image).
func Effective(spec *v1.DataplaneConfigSpec, agentImage string) *v1.EffectiveConfig {
	eff := &v1.EffectiveConfig{
		NetworkPlugin:     or(spec.NetworkPlugin, DefaultNetworkPlugin),
		NetworkPluginMode: spec.NetworkPluginMode,
		NetworkDataplane:  or(spec.NetworkDataplane, DefaultNetworkDataplane),
		NetworkPolicy:     PolicyEngine(spec),
		PodCIDR:           spec.PodCIDR,
		NodePoolLabel:     or(spec.NodePoolLabel, DefaultNodePoolLabel),
	}
	eff.KubeProxyReplacement = eff.NetworkDataplane == v1.NetworkDataplaneCilium
	for _, ref := range spec.IPAMPools {
		eff.IPAMPools = append(eff.IPAMPools, ref.Name)
	}
	eff.Routing = EffectiveRouting(spec.Routing)
	eff.Agent = effectiveAgent(spec.Agent, agentImage)
	return eff
}

// PolicyEngine is the NetworkPolicy engine in force for spec. The eBPF
// dataplane always enforces policy itself: an old engine named in spec is
// replaced (and the webhook warns), "none" is overridden.
func PolicyEngine(spec *v1.DataplaneConfigSpec) v1.NetworkPolicyEngine {
	if spec.NetworkDataplane == v1.NetworkDataplaneCilium {
		return v1.NetworkPolicyCilium
	}
	return or(spec.NetworkPolicy, DefaultNetworkPolicy)
}

func effectiveAgent(in *v1.AgentSettings, defaultImage string) v1.EffectiveAgentSettings {
	if in == nil {
		in = &v1.AgentSettings{}
	}
	out := v1.EffectiveAgentSettings{
		Image:          or(in.Image, defaultImage),
		LogLevel:       or(in.LogLevel, DefaultLogLevel),
		MaxUnavailable: intstr.FromInt32(DefaultMaxUnavailable),
		CPURequest:     resource.MustParse(DefaultCPURequest),
		MemoryRequest:  resource.MustParse(DefaultMemoryRequest),
	}
	if in.MaxUnavailable != nil {
		out.MaxUnavailable = *in.MaxUnavailable
	}
	if in.CPURequest != nil {
		out.CPURequest = in.CPURequest.DeepCopy()
	}
	if in.MemoryRequest != nil {
		out.MemoryRequest = in.MemoryRequest.DeepCopy()
	}
	maps := in.BPFMaps
	if maps == nil {
		maps = &v1.BPFMapSizes{}
	}
	// The map-size defaults live in api/v1 because the agent's datapath
	// falls back to the same ones.
	out.BPFMaps = v1.EffectiveBPFMaps{
		PolicyEntries:    orPtr(maps.PolicyEntries, v1.DefaultBPFPolicyEntries),
		ConntrackEntries: orPtr(maps.ConntrackEntries, v1.DefaultBPFConntrackEntries),
		NATEntries:       orPtr(maps.NATEntries, v1.DefaultBPFNATEntries),
		IPCacheEntries:   orPtr(maps.IPCacheEntries, v1.DefaultBPFIPCacheEntries),
	}
	return out
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func orPtr[T any](v *T, def T) T {
	if v == nil {
		return def
	}
	return *v
}
