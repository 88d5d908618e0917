package agentmanifest

import (
	"encoding/json"
	"testing"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
)

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
