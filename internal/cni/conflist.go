package cni

import (
	"encoding/json"
	"fmt"
)

// The names of Sluice's CNI network and where its configuration lives: the
// container runtime reads the lexically first conflist in its configuration
// directory, and the agent installs this one there.
const (
	// NetworkName is the conflist's network name (the runtime's cache and
	// the GC's valid-attachments are keyed by it).
	NetworkName = "sluice"
	// PluginType is the plugin binary's name in the CNI bin directory.
	PluginType = "sluice-cni"
	// ConflistFileName is the conflist's file name in /etc/cni/net.d.
	ConflistFileName = "10-sluice.conflist"
	// ConfigVersion is the CNI spec version the conflist declares.
	ConfigVersion = "1.1.0"
)

// ConflistOptions are the plugin settings a conflist carries. The operator
// renders the production one from the cluster's effective configuration;
// the lab and the tests render theirs with paths of their own, so every
// conflist on every node, real or lab, comes from RenderConflist.
type ConflistOptions struct {
	// MTU of the pod's veth (DefaultMTU when zero).
	MTU int
	// AllocationFile and StateDir (DefaultAllocationFile, DefaultStateDir
	// when empty).
	AllocationFile string
	StateDir       string
	// HostVethPrefix (DefaultHostVethPrefix when empty).
	HostVethPrefix string
	// AgentSocket is the node agent's socket; empty means no agent (the
	// plugin only wires addresses, as in the CNI-only tests).
	AgentSocket string
}

// conflist is the network configuration list as the runtime reads it.
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
	AgentSocket    string `json:"agentSocket,omitempty"`
}

// RenderConflist renders the conflist for o, with defaults filled in. The
// plugin entry is checked with ParseConfig, the plugin's own parser, so a
// conflist that renders is one the plugin accepts: a bad setting is
// refused here, where it was made, not at the first pod's ADD.
func RenderConflist(o ConflistOptions) ([]byte, error) {
	p := pluginConfig{
		Type:           PluginType,
		MTU:            o.MTU,
		AllocationFile: o.AllocationFile,
		StateDir:       o.StateDir,
		HostVethPrefix: o.HostVethPrefix,
		AgentSocket:    o.AgentSocket,
	}
	if p.MTU == 0 {
		p.MTU = DefaultMTU
	}
	if p.AllocationFile == "" {
		p.AllocationFile = DefaultAllocationFile
	}
	if p.StateDir == "" {
		p.StateDir = DefaultStateDir
	}
	if p.HostVethPrefix == "" {
		p.HostVethPrefix = DefaultHostVethPrefix
	}
	if err := checkPlugin(p); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(conflist{CNIVersion: ConfigVersion, Name: NetworkName, Plugins: []pluginConfig{p}}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("render CNI conflist: %w", err)
	}
	return append(data, '\n'), nil
}

// checkPlugin runs the plugin's parser on the entry as the runtime would
// hand it over (with the list's cniVersion and name).
func checkPlugin(p pluginConfig) error {
	entry := struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		pluginConfig
	}{ConfigVersion, NetworkName, p}
	data, err := json.Marshal(entry)
	if err != nil {
		return fmt.Errorf("render CNI conflist: %w", err)
	}
	if _, err := ParseConfig(data); err != nil {
		return fmt.Errorf("render CNI conflist: %w", err)
	}
	return nil
}
