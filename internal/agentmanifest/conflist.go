package agentmanifest

import (
	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
)

// ConflistKey is the ConfigMap key of the CNI network configuration the
// agent installs as /etc/cni/net.d/10-sluice.conflist.
const ConflistKey = cni.ConflistFileName

// Conflist renders the CNI configuration for the effective config, or ""
// when pod networking belongs to a CNI the user brings (networkPlugin none).
// The plugin's own defaults place every file under the hostPaths the
// DaemonSet mounts; the agent listens on cni.DefaultAgentSocket. Pods get
// the effective pod MTU, which leaves room for the tunnel header in Tunnel
// mode; an effective config without routing (written by an operator that
// predates it) keeps the plugin's default.
func Conflist(cfg *v1.EffectiveConfig) (string, error) {
	if cfg.NetworkPlugin != v1.NetworkPluginAzure {
		return "", nil
	}
	opts := cni.ConflistOptions{AgentSocket: cni.DefaultAgentSocket}
	if cfg.Routing != nil {
		opts.MTU = int(cfg.Routing.PodMTU)
	}
	data, err := cni.RenderConflist(opts)
	if err != nil {
		return "", err
	}
	return string(data), nil
}
