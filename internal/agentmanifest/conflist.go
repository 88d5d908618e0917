package agentmanifest

import (
	"encoding/json"
	"fmt"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
)

// ConflistKey is the ConfigMap key of the CNI network configuration the
// agent installs as /etc/cni/net.d/10-sluice.conflist.
const ConflistKey = "10-sluice.conflist"

// Paths on the node that the CNI plugin and the agent agree on: the
// plugin's own defaults, all under the hostPaths the DaemonSet mounts.
const (
	AllocationFile = cni.DefaultAllocationFile
	CNIStateDir    = cni.DefaultStateDir
	DefaultMTU     = cni.DefaultMTU
	// AgentSocket is where the agent takes endpoints from the plugin
	// (under the /var/run/sluice hostPath the DaemonSet mounts).
	AgentSocket = "/var/run/sluice/agent.sock"
)

// conflist is the CNI network configuration list.
type conflist struct {
	CNIVersion string         `json:"cniVersion"`
	Name       string         `json:"name"`
	Plugins    []pluginConfig `json:"plugins"`
}

type pluginConfig struct {
	Type           string `json:"type"`
	MTU            int    `json:"mtu"`
	AllocationFile string `json:"allocationFile"`
	StateDir       string `json:"stateDir"`
	HostVethPrefix string `json:"hostVethPrefix"`
	AgentSocket    string `json:"agentSocket"`
}

// Conflist renders the CNI configuration for the effective config, or ""
// when pod networking belongs to a CNI the user brings (networkPlugin none).
func Conflist(cfg *v1.EffectiveConfig) (string, error) {
	if cfg.NetworkPlugin != v1.NetworkPluginAzure {
		return "", nil
	}
	data, err := json.MarshalIndent(conflist{
		CNIVersion: "1.1.0",
		Name:       "sluice",
		Plugins: []pluginConfig{{
			Type: "sluice-cni", MTU: DefaultMTU,
			AllocationFile: AllocationFile, StateDir: CNIStateDir, HostVethPrefix: "slc",
			AgentSocket: AgentSocket,
		}},
	}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("render CNI conflist: %w", err)
	}
	return string(data) + "\n", nil
}
