package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
)

// Defaults for the fields of the plugin configuration that may be omitted.
const (
	DefaultMTU            = 1500
	DefaultAllocationFile = "/var/run/sluice/allocation.json"
	DefaultStateDir       = "/var/lib/sluice/ipam"
	DefaultHostVethPrefix = "slc"

	// MinMTU and MaxMTU bound the mtu field: IPv4's minimum datagram size
	// and a jumbo frame.
	MinMTU = 576
	MaxMTU = 9000
	// MaxHostVethPrefix is the longest hostVethPrefix: with the 11 hex
	// digits of the hash the host veth name fills the kernel's 15 bytes.
	MaxHostVethPrefix = 4
)

// Config is the sluice-cni entry of the conflist the operator renders into
// /etc/cni/net.d/10-sluice.conflist, with defaults applied:
//
//	{"type":"sluice-cni","mtu":1500,"allocationFile":"/var/run/sluice/allocation.json",
//	 "stateDir":"/var/lib/sluice/ipam","hostVethPrefix":"slc",
//	 "agentSocket":"/var/run/sluice/agent.sock"}
type Config struct {
	// PluginConf holds the fields every plugin gets: cniVersion, name,
	// type, prevResult (CHECK, DEL) and cni.dev/valid-attachments (GC).
	PluginConf types.PluginConf
	// MTU is set on both ends of the pod's veth.
	MTU int
	// AllocationFile is the file the node side writes with WriteAllocation.
	AllocationFile string
	// StateDir holds state.json and the lock file of the allocator.
	StateDir string
	// HostVethPrefix starts the name of every host-side veth; GC removes
	// leftover links with this prefix.
	HostVethPrefix string
	// AgentSocket, when set, is the node agent's unix socket: ADD hands
	// every new endpoint to the agent and succeeds only once the agent has
	// its policy in the datapath and its programs attached (fail closed),
	// DEL tells the agent the endpoint is gone, CHECK and STATUS ask it.
	// Empty (the default): no agent, the plugin only wires addresses.
	AgentSocket string
}

// rawConfig tells an omitted field (nil: default) from a zero one (invalid).
type rawConfig struct {
	MTU            *int    `json:"mtu"`
	AllocationFile *string `json:"allocationFile"`
	StateDir       *string `json:"stateDir"`
	HostVethPrefix *string `json:"hostVethPrefix"`
	AgentSocket    *string `json:"agentSocket"`
}

// ParseConfig decodes the plugin's stdin, applies defaults and validates the
// Sluice fields. Every error is a *types.Error with code 7 (invalid network
// configuration) whose message names the field at fault.
func ParseConfig(data []byte) (*Config, error) {
	var conf Config
	if err := json.Unmarshal(data, &conf.PluginConf); err != nil {
		return nil, configError(err)
	}
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, configError(err)
	}
	conf.MTU = DefaultMTU
	if raw.MTU != nil {
		conf.MTU = *raw.MTU
	}
	conf.AllocationFile = stringOr(raw.AllocationFile, DefaultAllocationFile)
	conf.StateDir = stringOr(raw.StateDir, DefaultStateDir)
	conf.HostVethPrefix = stringOr(raw.HostVethPrefix, DefaultHostVethPrefix)

	if conf.MTU < MinMTU || conf.MTU > MaxMTU {
		return nil, invalidConfig("mtu %d is out of range %d..%d", conf.MTU, MinMTU, MaxMTU)
	}
	if err := checkAbsPath("allocationFile", conf.AllocationFile); err != nil {
		return nil, err
	}
	if err := checkAbsPath("stateDir", conf.StateDir); err != nil {
		return nil, err
	}
	conf.AgentSocket = stringOr(raw.AgentSocket, "")
	if conf.AgentSocket != "" {
		if err := checkAbsPath("agentSocket", conf.AgentSocket); err != nil {
			return nil, err
		}
	}
	if !validPrefix(conf.HostVethPrefix) {
		return nil, invalidConfig("hostVethPrefix %q must be 1 to %d lowercase letters a-z", conf.HostVethPrefix, MaxHostVethPrefix)
	}
	return &conf, nil
}

func stringOr(s *string, def string) string {
	if s == nil {
		return def
	}
	return *s
}

func checkAbsPath(field, p string) error {
	if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
		return invalidConfig("%s %q must be an absolute path", field, p)
	}
	return nil
}

func validPrefix(p string) bool {
	if len(p) < 1 || len(p) > MaxHostVethPrefix {
		return false
	}
	for _, c := range []byte(p) {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

func invalidConfig(format string, args ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, "invalid sluice-cni config: "+fmt.Sprintf(format, args...), "")
}

// configError names the field of a JSON type error ("mtu" given as a
// string, say) and reports anything else as it is.
func configError(err error) *types.Error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return invalidConfig("field %s: cannot use JSON %s as %s", typeErr.Field, typeErr.Value, typeErr.Type)
	}
	return invalidConfig("%v", err)
}
