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
	tests := []struct {
		name string
		spec v1.DataplaneConfigSpec
		want v1.EffectiveConfig
	}{{
		name: "empty spec is the legacy dataplane without policy",
		spec: v1.DataplaneConfigSpec{},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyNone, NodePoolLabel: DefaultNodePoolLabel, Agent: defaults,
		},
	}, {
		name: "legacy dataplane keeps the policy engine it names",
		spec: v1.DataplaneConfigSpec{NetworkPolicy: v1.NetworkPolicyCalico},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneAzure,
			NetworkPolicy: v1.NetworkPolicyCalico, NodePoolLabel: DefaultNodePoolLabel, Agent: defaults,
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
			KubeProxyReplacement: true, Agent: defaults,
		},
	}, {
		name: "eBPF dataplane overrides networkPolicy none",
		spec: v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyNone},
		want: v1.EffectiveConfig{
			NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneCilium,
			NetworkPolicy: v1.NetworkPolicyCilium, NodePoolLabel: DefaultNodePoolLabel,
			KubeProxyReplacement: true, Agent: defaults,
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
			NetworkPolicy: v1.NetworkPolicyNone, NodePoolLabel: "pool",
			Agent: v1.EffectiveAgentSettings{
				Image: "custom:1", LogLevel: v1.LogLevelDebug, MaxUnavailable: intstr.FromString("10%"),
				CPURequest: resource.MustParse("100m"), MemoryRequest: resource.MustParse("1Gi"),
				BPFMaps: v1.EffectiveBPFMaps{
					PolicyEntries: 16384, ConntrackEntries: 1 << 20, NATEntries: 524288, IPCacheEntries: 512000,
				},
			},
		},
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
