package dataplane

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

const testImage = "sluice/agent:test"

func TestEffective(t *testing.T) {
	defaults := v1.EffectiveAgentSettings{
		Image:          testImage,
		LogLevel:       v1.LogLevelInfo,
		MaxUnavailable: intstr.FromInt32(1),
		CPURequest:     resource.MustParse("100m"),
		MemoryRequest:  resource.MustParse("256Mi"),
		BPFMaps: v1.EffectiveBPFMaps{
			PolicyEntries: 16384, ConntrackEntries: 524288, NATEntries: 524288, IPCacheEntries: 512000,
		},
	}
	native := &v1.EffectiveRouting{Mode: v1.RoutingModeNative, UnderlayMTU: 1500, PodMTU: 1500}
	legacy := func(routing *v1.EffectiveRouting) v1.EffectiveConfig {
		return v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyNone, NodePoolLabel: DefaultNodePoolLabel,
			Routing: routing, Agent: defaults,
		}
	}
	tests := []struct {
		name string
		spec v1.DataplaneConfigSpec
		want v1.EffectiveConfig
	}{{
		name: "empty spec is the legacy dataplane without policy",
		spec: v1.DataplaneConfigSpec{},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyNone, NodePoolLabel: DefaultNodePoolLabel, Routing: native, Agent: defaults,
		},
	}, {
		name: "legacy dataplane keeps the policy engine it names",
		spec: v1.DataplaneConfigSpec{NetworkPolicy: v1.NetworkPolicyCalico},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyCalico, NodePoolLabel: DefaultNodePoolLabel, Routing: native, Agent: defaults,
		},
	}, {
		name: "eBPF dataplane replaces NPM and kube-proxy",
		spec: v1.DataplaneConfigSpec{
			NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyAzure,
			NetworkPluginMode: v1.NetworkPluginModeOverlay, PodCIDR: "192.168.0.0/16",
			IPAMPools: []v1.IPAMPoolReference{{Name: "a"}, {Name: "b"}},
		},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkPluginMode: v1.NetworkPluginModeOverlay,
			NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyCilium,
			PodCIDR: "192.168.0.0/16", IPAMPools: []string{"a", "b"}, NodePoolLabel: DefaultNodePoolLabel,
			KubeProxyReplacement: true, Routing: native, Agent: defaults,
		},
	}, {
		name: "eBPF dataplane overrides networkPolicy none",
		spec: v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyNone},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneCilium,
			NetworkPolicy: v1.NetworkPolicyCilium, NodePoolLabel: DefaultNodePoolLabel,
			KubeProxyReplacement: true, Routing: native, Agent: defaults,
		},
	}, {
		name: "agent settings override each default on its own",
		spec: v1.DataplaneConfigSpec{
			NodePoolLabel: "pool",
			Agent: &v1.AgentSettings{
				Image: "custom:1", LogLevel: v1.LogLevelDebug,
				MaxUnavailable: ptr.To(intstr.FromString("10%")),
				MemoryRequest:  ptr.To(resource.MustParse("1Gi")),
				BPFMaps:        &v1.BPFMapSizes{ConntrackEntries: ptr.To[int32](1 << 20)},
			},
		},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyNone, NodePoolLabel: "pool", Routing: native,
			Agent: v1.EffectiveAgentSettings{
				Image: "custom:1", LogLevel: v1.LogLevelDebug, MaxUnavailable: intstr.FromString("10%"),
				CPURequest: resource.MustParse("100m"), MemoryRequest: resource.MustParse("1Gi"),
				BPFMaps: v1.EffectiveBPFMaps{
					PolicyEntries: 16384, ConntrackEntries: 1 << 20, NATEntries: 524288, IPCacheEntries: 512000,
				},
			},
		},
	}, {
		name: "routing without a mode is native at the underlay's MTU",
		spec: v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](9000)}},
		want: legacy(&v1.EffectiveRouting{Mode: v1.RoutingModeNative, UnderlayMTU: 9000, PodMTU: 9000}),
	}, {
		name: "a tunnel without a protocol is VXLAN and lowers the pod MTU",
		spec: v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: v1.RoutingModeTunnel}},
		want: legacy(&v1.EffectiveRouting{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolVXLAN, UnderlayMTU: 1500, PodMTU: 1450,
		}),
	}, {
		name: "non-masquerade CIDRs are carried as listed",
		spec: v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{NonMasqueradeCIDRs: []v1.CIDR{"172.16.0.0/12", "fd00:100::/64"}}},
		want: legacy(&v1.EffectiveRouting{
			Mode: v1.RoutingModeNative, UnderlayMTU: 1500, PodMTU: 1500,
			NonMasqueradeCIDRs: []v1.CIDR{"172.16.0.0/12", "fd00:100::/64"},
		}),
	}, {
		name: "a Geneve tunnel over jumbo frames",
		spec: v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve, UnderlayMTU: ptr.To[int32](9000),
		}},
		want: legacy(&v1.EffectiveRouting{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve, UnderlayMTU: 9000, PodMTU: 8950,
		}),
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Effective(&tt.spec, testImage)
			if !equality.Semantic.DeepEqual(*got, tt.want) {
				t.Errorf("Effective() =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func TestPodMTU(t *testing.T) {
	tests := []struct {
		name     string
		mode     v1.RoutingMode
		protocol v1.TunnelProtocol
		underlay int32
		want     int32
	}{
		{"native keeps the underlay's MTU", v1.RoutingModeNative, "", 1500, 1500},
		{"native with jumbo frames", v1.RoutingModeNative, "", 9000, 9000},
		{"VXLAN takes 50 bytes", v1.RoutingModeTunnel, v1.TunnelProtocolVXLAN, 1500, 1450},
		{"Geneve without options takes 50 bytes", v1.RoutingModeTunnel, v1.TunnelProtocolGeneve, 1500, 1450},
		{"VXLAN over jumbo frames", v1.RoutingModeTunnel, v1.TunnelProtocolVXLAN, 9000, 8950},
		{"the smallest underlay still leaves room for IPv6's minimum of 1280 less the tunnel",
			v1.RoutingModeTunnel, v1.TunnelProtocolGeneve, 1280, 1230},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PodMTU(tt.mode, tt.protocol, tt.underlay); got != tt.want {
				t.Errorf("PodMTU(%s, %q, %d) = %d, want %d", tt.mode, tt.protocol, tt.underlay, got, tt.want)
			}
		})
	}
}

func TestEffectiveDoesNotAliasSpec(t *testing.T) {
	spec := v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{MemoryRequest: ptr.To(resource.MustParse("1Gi"))}}
	got := Effective(&spec, testImage)
	got.Agent.MemoryRequest.Add(resource.MustParse("1Gi"))
	if spec.Agent.MemoryRequest.String() != "1Gi" {
		t.Fatalf("changing the effective config changed spec: %s", spec.Agent.MemoryRequest.String())
	}
}

func TestWarnings(t *testing.T) {
	cilium := v1.NetworkDataplaneCilium
	tests := []struct {
		name     string
		old      *v1.DataplaneConfigSpec
		spec     v1.DataplaneConfigSpec
		contains []string
	}{
		{name: "legacy dataplane with NPM: nothing to say", spec: v1.DataplaneConfigSpec{NetworkPolicy: v1.NetworkPolicyAzure}},
		{name: "cilium with cilium policy: nothing to say", spec: v1.DataplaneConfigSpec{NetworkDataplane: cilium, NetworkPolicy: v1.NetworkPolicyCilium}},
		{name: "cilium with NPM", spec: v1.DataplaneConfigSpec{NetworkDataplane: cilium, NetworkPolicy: v1.NetworkPolicyAzure},
			contains: []string{`networkPolicy "azure" is replaced by the eBPF dataplane's own enforcement: the azure engine will be uninstalled`}},
		{name: "cilium with calico", spec: v1.DataplaneConfigSpec{NetworkDataplane: cilium, NetworkPolicy: v1.NetworkPolicyCalico},
			contains: []string{"calico engine will be uninstalled"}},
		{name: "cilium with none", spec: v1.DataplaneConfigSpec{NetworkDataplane: cilium, NetworkPolicy: v1.NetworkPolicyNone},
			contains: []string{`"none" has no effect`}},
		{name: "migration from azure", old: &v1.DataplaneConfigSpec{},
			spec:     v1.DataplaneConfigSpec{NetworkDataplane: cilium, NetworkPolicy: v1.NetworkPolicyCalico},
			contains: []string{"calico engine will be uninstalled", "can't be undone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Warnings(tt.old, &tt.spec)
			if len(got) != len(tt.contains) {
				t.Fatalf("Warnings() = %q, want %d warnings", got, len(tt.contains))
			}
			for i, want := range tt.contains {
				if !strings.Contains(got[i], want) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], want)
				}
			}
		})
	}
}
