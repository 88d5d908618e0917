package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
)

// flags are the command line.
type flags struct {
	config, logLevel, nodeName  string
	pinDir, socket, stateFile   string
	healthAddr, metricsAddr     string
	allocationFile, cniStateDir string
	procSysNet, routingMode     string
	masquerade, nonMasquerade   string
	noPin                       bool
	cniInstall                  agent.CNIInstall
}

func bindFlags(fs *flag.FlagSet, getenv func(string) string) *flags {
	f := &flags{}
	fs.StringVar(&f.config, "config", "/etc/sluice/config.yaml", "The effective configuration the operator renders (map sizes, log level); empty: defaults.")
	fs.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default: the configuration's agent.logLevel, else info).")
	fs.StringVar(&f.nodeName, "node-name", getenv("NODE_NAME"), "This node's name (default $NODE_NAME).")
	fs.StringVar(&f.pinDir, "pin-dir", datapath.DefaultPinDir, "bpffs directory for the datapath's pinned maps and links.")
	fs.BoolVar(&f.noPin, "no-pin", false, "Pin nothing: the programs are detached when the agent stops (development only).")
	fs.StringVar(&f.socket, "socket", agent.DefaultSocket, "Unix socket of the endpoint API the CNI plugin calls (the conflist's agentSocket).")
	fs.StringVar(&f.stateFile, "state-file", agent.DefaultStateFile, "Registered endpoints and endpoint IDs, kept across restarts.")
	fs.StringVar(&f.healthAddr, "health-addr", agent.DefaultHealthAddr, "Address of /healthz and /readyz; \"0\" disables them.")
	fs.StringVar(&f.metricsAddr, "metrics-addr", agent.DefaultMetricsAddr, "Address of /metrics; \"0\" disables it.")
	fs.StringVar(&f.procSysNet, "proc-sys-net", agent.DefaultProcSysNet, "The node's /proc/sys/net (in a container, a read-write mount of it), where the agent turns IP forwarding on; empty leaves forwarding alone (development only).")
	fs.StringVar(&f.routingMode, "routing-mode", "", "How pod traffic reaches other nodes: \"Native\" keeps a kernel route per other node's pod range via its InternalIP; empty takes the mode from --config (the cluster's routing in force), or leaves the node's routes alone without one.")
	fs.StringVar(&f.masquerade, "masquerade", "", "Egress masquerade of pod traffic leaving the cluster's pod ranges: \"On\", \"Off\", or empty: on with native routing.")
	fs.StringVar(&f.nonMasquerade, "non-masquerade-cidrs", "", "Comma-separated CIDRs besides the pod ranges and the nodes' InternalIPs that pods reach with their own address (e.g. a peered network); empty takes them from --config (the cluster's routing.nonMasqueradeCIDRs).")
	fs.StringVar(&f.allocationFile, "allocation-file", cni.DefaultAllocationFile, "The CNI plugin's allocation file, written from this node's NodeNetwork; empty disables the IPAM sync.")
	fs.StringVar(&f.cniStateDir, "cni-state-dir", cni.DefaultStateDir, "The CNI plugin's state directory.")
	fs.StringVar(&f.cniInstall.BinarySource, "cni-bin-source", "", "The CNI plugin binary to install on the node (in the agent image: /sluice-cni). The four --cni-* install flags go together; unset, nothing is installed.")
	fs.StringVar(&f.cniInstall.BinDir, "cni-bin-dir", "", "The node's CNI binary directory, e.g. /opt/cni/bin.")
	fs.StringVar(&f.cniInstall.ConflistSource, "cni-conf-source", "", "The conflist to install, e.g. /etc/sluice/10-sluice.conflist from the agent ConfigMap.")
	fs.StringVar(&f.cniInstall.ConfDir, "cni-conf-dir", "", "The node's CNI configuration directory, e.g. /etc/cni/net.d.")
	return f
}

// options turns the flags and the configuration file into the agent's
// options and the log level as controller-runtime's --zap-log-level takes
// it. The API server comes later.
func (f *flags) options() (agent.Options, string, error) {
	var cfg v1.EffectiveConfig
	if f.config != "" {
		data, err := os.ReadFile(f.config)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return agent.Options{}, "", fmt.Errorf("read --config: %w", err)
		}
		if err != nil {
			return agent.Options{}, "", fmt.Errorf("--config %s does not exist (use --config= for defaults)", f.config)
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return agent.Options{}, "", fmt.Errorf("--config %s: %w", f.config, err)
		}
	}
	levelName := f.logLevel
	if levelName == "" {
		levelName = string(cfg.Agent.LogLevel)
	}
	level, err := parseLevel(levelName)
	if err != nil {
		return agent.Options{}, "", err
	}
	// The routing mode in force comes from the operator's config, as the
	// log level does; the flag overrides it (development, the lab).
	routingMode := f.routingMode
	if routingMode == "" && cfg.Routing != nil {
		routingMode = string(cfg.Routing.Mode)
	}
	opts := agent.Options{
		NodeName:   f.nodeName,
		Endpoints:  agent.EndpointOptions{SocketPath: f.socket, StateFile: f.stateFile},
		Serving:    agent.ServingOptions{HealthAddr: f.healthAddr, MetricsAddr: f.metricsAddr},
		Node:       agent.NodeOptions{ProcSysNet: f.procSysNet},
		Routing:    agent.RoutingOptions{Mode: routingMode},
		Masquerade: agent.MasqueradeOptions{Mode: f.masquerade},
		// Unset sizes (no --config) are zero: the datapath then uses the
		// same defaults the operator fills in. NATEntries has no map to
		// size yet; Service NAT will read it.
		Datapath: datapath.Options{
			PinDir:            f.pinDir,
			MaxPolicyEntries:  int(cfg.Agent.BPFMaps.PolicyEntries),
			MaxConntrack:      int(cfg.Agent.BPFMaps.ConntrackEntries),
			MaxIPCacheEntries: int(cfg.Agent.BPFMaps.IPCacheEntries),
		},
	}
	if opts.Masquerade.NonMasquerade, err = nonMasquerade(f.nonMasquerade, cfg.Routing); err != nil {
		return agent.Options{}, "", err
	}
	if f.noPin {
		opts.Datapath.PinDir = ""
	} else if f.pinDir == "" {
		return agent.Options{}, "", errors.New("--pin-dir is empty (use --no-pin to pin nothing)")
	}
	if f.allocationFile != "" {
		opts.IPAM.AllocationFile, opts.IPAM.CNIStateDir = f.allocationFile, f.cniStateDir
	}
	switch in := f.cniInstall; {
	case in == agent.CNIInstall{}:
	case in.BinarySource == "" || in.BinDir == "" || in.ConflistSource == "" || in.ConfDir == "":
		return agent.Options{}, "", errors.New("--cni-bin-source, --cni-bin-dir, --cni-conf-source and --cni-conf-dir go together: set all four to install the CNI files, or none")
	default:
		opts.Node.CNIInstall = &in
	}
	if opts.NodeName == "" {
		return agent.Options{}, "", errors.New("no node name: set --node-name or NODE_NAME")
	}
	return opts, level, nil
}

// parseLevel maps the agent's log levels to zap's. logr has no warning
// level (only Info, at verbosities, and Error), so warn shows what error
// does: errors only.
func parseLevel(s string) (string, error) {
	switch v1.LogLevel(s) {
	case "", v1.LogLevelInfo:
		return "info", nil
	case v1.LogLevelDebug:
		return "debug", nil
	case v1.LogLevelWarn, v1.LogLevelError:
		return "error", nil
	}
	return "", fmt.Errorf("--log-level %q: want debug, info, warn or error", s)
}

// nonMasquerade is the flag's CIDRs when set, else the config's: the flag
// replaces the list rather than adding to it, as --routing-mode replaces
// the mode, so what the agent uses is always one list someone wrote.
func nonMasquerade(flag string, routing *v1.EffectiveRouting) ([]netip.Prefix, error) {
	if strings.TrimSpace(flag) != "" || routing == nil {
		out, err := parseCIDRs(flag)
		if err != nil {
			return nil, fmt.Errorf("--non-masquerade-cidrs: %w", err)
		}
		return out, nil
	}
	var out []netip.Prefix
	for _, c := range routing.NonMasqueradeCIDRs {
		p, err := netip.ParsePrefix(string(c))
		if err != nil {
			return nil, fmt.Errorf("--config: routing.nonMasqueradeCIDRs: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
}

// parseCIDRs parses a comma-separated list of CIDRs (nil when empty).
func parseCIDRs(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}
