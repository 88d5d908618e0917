package cni

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

// TestRenderConflistRoundTrip: what the renderer writes is what the
// runtime's loader and the plugin's parser read back, field for field.
func TestRenderConflistRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   ConflistOptions
		want Config
	}{{
		name: "defaults",
		in:   ConflistOptions{AgentSocket: DefaultAgentSocket},
		want: Config{MTU: DefaultMTU, AllocationFile: DefaultAllocationFile, StateDir: DefaultStateDir,
			HostVethPrefix: DefaultHostVethPrefix, AgentSocket: DefaultAgentSocket},
	}, {
		name: "lab paths, no agent",
		in:   ConflistOptions{MTU: 1450, AllocationFile: "/tmp/n1/allocation.json", StateDir: "/tmp/n1/ipam", HostVethPrefix: "lab"},
		want: Config{MTU: 1450, AllocationFile: "/tmp/n1/allocation.json", StateDir: "/tmp/n1/ipam", HostVethPrefix: "lab"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := RenderConflist(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(data)
			if err != nil {
				t.Fatalf("libcni refuses the conflist: %v\n%s", err, data)
			}
			if list.Name != NetworkName || list.CNIVersion != ConfigVersion || len(list.Plugins) != 1 {
				t.Fatalf("list = name %q version %q with %d plugins", list.Name, list.CNIVersion, len(list.Plugins))
			}
			if list.Plugins[0].Network.Type != PluginType {
				t.Errorf("plugin type %q, want %q", list.Plugins[0].Network.Type, PluginType)
			}
			got, err := ParseConfig(list.Plugins[0].Bytes)
			if err != nil {
				t.Fatalf("the plugin refuses its entry: %v", err)
			}
			got.PluginConf = tc.want.PluginConf
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("parsed %+v, want %+v", *got, tc.want)
			}
			if !strings.HasSuffix(string(data), "\n") {
				t.Error("the conflist doesn't end with a newline")
			}
		})
	}
}

func TestRenderConflistRefusesWhatThePluginWould(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   ConflistOptions
		want string
	}{
		{"mtu too small", ConflistOptions{MTU: 100}, "mtu 100"},
		{"relative state dir", ConflistOptions{StateDir: "ipam"}, `stateDir "ipam"`},
		{"relative socket", ConflistOptions{AgentSocket: "agent.sock"}, `agentSocket "agent.sock"`},
		{"long prefix", ConflistOptions{HostVethPrefix: "sluice"}, `hostVethPrefix "sluice"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := RenderConflist(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RenderConflist() = %s, %v; want an error naming %s", data, err, tc.want)
			}
		})
	}
}

// TestRenderConflistOmitsEmptySocket: no agentSocket key at all when there
// is no agent, so the plugin's "no agent" default applies.
func TestRenderConflistOmitsEmptySocket(t *testing.T) {
	data, err := RenderConflist(ConflistOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Plugins []map[string]any }
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatal(err)
	}
	if _, ok := list.Plugins[0]["agentSocket"]; ok {
		t.Errorf("agentSocket present in %s", data)
	}
}
