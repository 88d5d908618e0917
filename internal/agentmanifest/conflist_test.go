package agentmanifest

import (
	"encoding/json"
	"testing"

	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/dataplane"
)

func TestConflistMTU(t *testing.T) {
	tests := []struct {
		name    string
		routing *v1.RoutingSettings
		want    float64
	}{
		{"native by default at Ethernet's MTU", nil, 1500},
		{"native with jumbo frames", &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](9000)}, 9000},
		{"a VXLAN tunnel leaves 50 bytes for its headers", &v1.RoutingSettings{Mode: v1.RoutingModeTunnel}, 1450},
		{"a Geneve tunnel over jumbo frames", &v1.RoutingSettings{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve, UnderlayMTU: ptr.To[int32](9000),
		}, 8950},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := dataplane.Effective(&v1.DataplaneConfigSpec{Routing: tt.routing}, "sluice/agent:test")
			out, err := Conflist(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var got struct{ Plugins []struct{ MTU float64 } }
			if err := json.Unmarshal([]byte(out), &got); err != nil || len(got.Plugins) != 1 {
				t.Fatalf("conflist %s: %v", out, err)
			}
			if got.Plugins[0].MTU != tt.want {
				t.Errorf("mtu = %v, want %v", got.Plugins[0].MTU, tt.want)
			}
		})
	}
}

func TestConflist(t *testing.T) {
	t.Run("Sluice's plugin", func(t *testing.T) {
		out, err := Conflist(&v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginAzure})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			CNIVersion string `json:"cniVersion"`
			Name       string `json:"name"`
			Plugins    []map[string]any
		}
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("conflist is not JSON: %v\n%s", err, out)
		}
		if got.CNIVersion != "1.1.0" || got.Name != "sluice" || len(got.Plugins) != 1 {
			t.Fatalf("conflist = %+v", got)
		}
		plugin := got.Plugins[0]
		for key, want := range map[string]any{
			"type": cni.PluginType, "allocationFile": cni.DefaultAllocationFile, "stateDir": cni.DefaultStateDir,
			"mtu": float64(cni.DefaultMTU), "agentSocket": cni.DefaultAgentSocket,
		} {
			if plugin[key] != want {
				t.Errorf("plugin %s = %v, want %v", key, plugin[key], want)
			}
		}
	})
	t.Run("bring your own CNI", func(t *testing.T) {
		out, err := Conflist(&v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginNone})
		if err != nil || out != "" {
			t.Fatalf("Conflist() = %q, %v; want nothing", out, err)
		}
	})
}
