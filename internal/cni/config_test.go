package cni

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestParseConfigDefaults(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"sluice","type":"sluice-cni"}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.MTU != DefaultMTU || conf.AllocationFile != DefaultAllocationFile || conf.StateDir != DefaultStateDir || conf.HostVethPrefix != DefaultHostVethPrefix || conf.AgentSocket != "" {
		t.Fatalf("defaults not applied: %+v", conf)
	}
	if conf.PluginConf.Name != "sluice" || conf.PluginConf.CNIVersion != "1.1.0" {
		t.Fatalf("plugin conf: %+v", conf.PluginConf)
	}
}

func TestParseConfigExplicit(t *testing.T) {
	conf, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"sluice","type":"sluice-cni","mtu":9000,
		"allocationFile":"/a/b.json","stateDir":"/s","hostVethPrefix":"abcd","agentSocket":"/run/agent.sock",
		"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if conf.MTU != 9000 || conf.AllocationFile != "/a/b.json" || conf.StateDir != "/s" || conf.HostVethPrefix != "abcd" || conf.AgentSocket != "/run/agent.sock" {
		t.Fatalf("fields: %+v", conf)
	}
	if len(conf.PluginConf.ValidAttachments) != 1 || conf.PluginConf.ValidAttachments[0].ContainerID != "c1" {
		t.Fatalf("valid attachments: %+v", conf.PluginConf.ValidAttachments)
	}
}

func TestParseConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, json, field string
	}{
		{"mtu too small", `"mtu":575`, "mtu"},
		{"mtu too large", `"mtu":9001`, "mtu"},
		{"mtu zero", `"mtu":0`, "mtu"},
		{"mtu as string", `"mtu":"1500"`, "mtu"},
		{"relative allocation file", `"allocationFile":"run/a.json"`, "allocationFile"},
		{"empty allocation file", `"allocationFile":""`, "allocationFile"},
		{"relative state dir", `"stateDir":"ipam"`, "stateDir"},
		{"state dir as number", `"stateDir":5`, "stateDir"},
		{"empty prefix", `"hostVethPrefix":""`, "hostVethPrefix"},
		{"long prefix", `"hostVethPrefix":"abcde"`, "hostVethPrefix"},
		{"upper-case prefix", `"hostVethPrefix":"Slc"`, "hostVethPrefix"},
		{"digit in prefix", `"hostVethPrefix":"s1"`, "hostVethPrefix"},
		{"relative agent socket", `"agentSocket":"agent.sock"`, "agentSocket"},
		{"agent socket as number", `"agentSocket":1`, "agentSocket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(`{"cniVersion":"1.1.0","name":"sluice","type":"sluice-cni",` + tc.json + `}`))
			var cniErr *types.Error
			if !errors.As(err, &cniErr) {
				t.Fatalf("want *types.Error, got %v", err)
			}
			if cniErr.Code != types.ErrInvalidNetworkConfig {
				t.Errorf("code %d, want 7", cniErr.Code)
			}
			if !strings.Contains(cniErr.Msg, tc.field) {
				t.Errorf("message %q does not name %s", cniErr.Msg, tc.field)
			}
		})
	}
}

// FuzzParseConfig: ParseConfig never panics, and whatever it accepts has
// valid fields.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.1.0","name":"sluice","plugins":[{"type":"sluice-cni"}]}`,
		`{"cniVersion":"1.1.0","name":"sluice","type":"sluice-cni","mtu":1500,"allocationFile":"/run/sluice/allocation.json","stateDir":"/var/lib/sluice/ipam","hostVethPrefix":"slc"}`,
		`{"cniVersion":"1.0.0","name":"sluice","type":"sluice-cni"}`,
		`{"type":"sluice-cni","mtu":576,"hostVethPrefix":"abcd"}`,
		`{"mtu":9000,"stateDir":"/"}`,
		`{"mtu":-1}`,
		`{"mtu":1e3}`,
		`{"mtu":1500.5}`,
		`{"mtu":null,"stateDir":null}`,
		`{"hostVethPrefix":"sl\u00e9"}`,
		`{"allocationFile":"/a\u0000b"}`,
		`{"prevResult":{"cniVersion":"1.1.0","ips":[{"address":"10.0.0.1/32"}]}}`,
		`{"cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]}`,
		`{"agentSocket":"/var/run/sluice/agent.sock"}`,
		`{"agentSocket":""}`,
		`{"agentSocket":"rel"}`,
		`[]`, `null`, `""`, `{`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		conf, err := ParseConfig(data)
		if err != nil {
			var cniErr *types.Error
			if !errors.As(err, &cniErr) || cniErr.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("error is not a code 7 *types.Error: %#v", err)
			}
			return
		}
		if conf.MTU < MinMTU || conf.MTU > MaxMTU {
			t.Fatalf("accepted mtu %d", conf.MTU)
		}
		for _, p := range []string{conf.AllocationFile, conf.StateDir} {
			if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
				t.Fatalf("accepted path %q", p)
			}
		}
		if s := conf.AgentSocket; s != "" && (!filepath.IsAbs(s) || strings.ContainsRune(s, 0)) {
			t.Fatalf("accepted agentSocket %q", s)
		}
		if n := len(conf.HostVethPrefix); n < 1 || n > MaxHostVethPrefix || strings.Trim(conf.HostVethPrefix, "abcdefghijklmnopqrstuvwxyz") != "" {
			t.Fatalf("accepted hostVethPrefix %q", conf.HostVethPrefix)
		}
		if name := HostVethName(conf.HostVethPrefix, "c", "eth0"); len(name) > 15 {
			t.Fatalf("host veth name %q is longer than 15 bytes", name)
		}
	})
}
