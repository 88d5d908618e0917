package main

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent"
	"github.com/sluice-dev/sluice/internal/agentmanifest"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/dataplane"
)

// renderedConfig is the config.yaml the operator renders for the defaults.
func renderedConfig(t *testing.T) string {
	t.Helper()
	cm, err := agentmanifest.ConfigMap(&v1.EffectiveConfig{
		NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: "cilium", NetworkPolicy: "cilium",
		Agent: v1.EffectiveAgentSettings{
			Image: "sluice/agent:dev", LogLevel: v1.LogLevelDebug,
			BPFMaps: v1.EffectiveBPFMaps{PolicyEntries: 16384, ConntrackEntries: 524288, NATEntries: 524288, IPCacheEntries: 512000},
		},
	}, agentmanifest.Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data[agentmanifest.ConfigFileKey]), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func parse(t *testing.T, env map[string]string, args ...string) (*flags, error) {
	t.Helper()
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	f := bindFlags(fs, func(k string) string { return env[k] })
	return f, fs.Parse(args)
}

func TestOptionsFromTheRenderedConfig(t *testing.T) {
	f, err := parse(t, map[string]string{"NODE_NAME": "node-1"}, "--config="+renderedConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	opts, level, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	want := datapath.Options{PinDir: datapath.DefaultPinDir, MaxPolicyEntries: 16384, MaxConntrack: 524288, MaxIPCacheEntries: 512000}
	if opts.Datapath != want {
		t.Errorf("datapath options %+v, want %+v", opts.Datapath, want)
	}
	if level != "debug" {
		t.Errorf("level %q from the config's logLevel debug", level)
	}
	if opts.NodeName != "node-1" || opts.Endpoints.SocketPath != agent.DefaultSocket || opts.Endpoints.StateFile != agent.DefaultStateFile ||
		opts.Serving.HealthAddr != "127.0.0.1:9879" || opts.IPAM.AllocationFile != cni.DefaultAllocationFile || opts.IPAM.CNIStateDir != cni.DefaultStateDir ||
		opts.Node.ProcSysNet != "/proc/sys/net" {
		t.Errorf("options %+v", opts)
	}
	// The socket the agent listens on is the one the conflist names.
	if opts.Endpoints.SocketPath != cni.DefaultAgentSocket {
		t.Errorf("agent socket %s, conflist's %s", opts.Endpoints.SocketPath, cni.DefaultAgentSocket)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, o agent.Options, level string)
		err   string
	}{{
		name: "flags override",
		args: []string{"--config=", "--node-name=n2", "--log-level=warn", "--pin-dir=/sys/fs/bpf/x", "--socket=/tmp/a.sock",
			"--health-addr=127.0.0.1:1234", "--metrics-addr=0", "--allocation-file=", "--proc-sys-net=/host/proc/sys/net"},
		check: func(t *testing.T, o agent.Options, level string) {
			if o.NodeName != "n2" || level != "error" || o.Datapath.PinDir != "/sys/fs/bpf/x" || o.Endpoints.SocketPath != "/tmp/a.sock" ||
				o.Serving.HealthAddr != "127.0.0.1:1234" || o.Serving.MetricsAddr != "0" || o.IPAM.AllocationFile != "" || o.IPAM.CNIStateDir != "" ||
				o.Node.ProcSysNet != "/host/proc/sys/net" {
				t.Errorf("options %+v, level %q", o, level)
			}
		},
	}, {
		name: "no pinning", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=", "--no-pin"},
		check: func(t *testing.T, o agent.Options, _ string) {
			if o.Datapath.PinDir != "" {
				t.Errorf("pin dir %q", o.Datapath.PinDir)
			}
		},
	}, {
		name: "forwarding left alone", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=", "--proc-sys-net="},
		check: func(t *testing.T, o agent.Options, _ string) {
			if o.Node.ProcSysNet != "" {
				t.Errorf("proc sys net %q", o.Node.ProcSysNet)
			}
		},
	}, {
		name: "masquerade on, with non-masquerade CIDRs", env: map[string]string{"NODE_NAME": "n"},
		args: []string{"--config=", "--masquerade=On", "--non-masquerade-cidrs=192.168.200.0/24, fd00::/8"},
		check: func(t *testing.T, o agent.Options, _ string) {
			want := agent.MasqueradeOptions{Mode: agent.MasqueradeOn, NonMasquerade: []netip.Prefix{
				netip.MustParsePrefix("192.168.200.0/24"), netip.MustParsePrefix("fd00::/8")}}
			if !reflect.DeepEqual(o.Masquerade, want) {
				t.Errorf("masquerade %+v, want %+v", o.Masquerade, want)
			}
		},
	}, {
		name: "masquerade left to the routing mode by default", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config="},
		check: func(t *testing.T, o agent.Options, _ string) {
			if o.Masquerade.Mode != agent.MasqueradeAuto || o.Masquerade.NonMasquerade != nil {
				t.Errorf("masquerade %+v, want auto and no CIDRs", o.Masquerade)
			}
		},
	}, {
		name: "bad non-masquerade CIDR", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=", "--non-masquerade-cidrs=10.0.0.0/33"},
		err: "--non-masquerade-cidrs",
	}, {
		name: "no node name", args: []string{"--config="}, err: "no node name",
	}, {
		name: "missing config", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=/nonexistent/config.yaml"},
		err: "does not exist",
	}, {
		name: "bad level", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=", "--log-level=loud"},
		err: "--log-level",
	}, {
		name: "empty pin dir", env: map[string]string{"NODE_NAME": "n"}, args: []string{"--config=", "--pin-dir="},
		err: "--no-pin",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parse(t, tc.env, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			o, level, err := f.options()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o, level)
		})
	}
}

func TestBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte("agent:\n  bpfMaps:\n    conntrackEntries: lots\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, _ := parse(t, map[string]string{"NODE_NAME": "n"}, "--config="+path)
	if _, _, err := f.options(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v", err)
	}
}

// The DaemonSet the operator renders passes flags this command accepts,
// including the CNI install set and the mounted /proc/sys/net; a partial
// install set is refused.
func TestDaemonSetArgsParse(t *testing.T) {
	ds, err := agentmanifest.DaemonSet(&v1.EffectiveConfig{
		NetworkPlugin: v1.NetworkPluginAzure,
		Agent:         v1.EffectiveAgentSettings{Image: "sluice/agent:dev", LogLevel: v1.LogLevelInfo, MaxUnavailable: intstr.FromInt32(1)},
	}, agentmanifest.Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent"})
	if err != nil {
		t.Fatal(err)
	}
	args := ds.Spec.Template.Spec.Containers[0].Args
	args = append([]string{"--config=" + renderedConfig(t)}, args[1:]...) // the mounted path doesn't exist here
	f, err := parse(t, map[string]string{"NODE_NAME": "n1"}, args...)
	if err != nil {
		t.Fatalf("the rendered args don't parse: %v (%q)", err, args)
	}
	opts, _, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	want := agent.CNIInstall{BinarySource: "/sluice-cni", BinDir: "/opt/cni/bin", ConflistSource: "/etc/sluice/10-sluice.conflist", ConfDir: "/etc/cni/net.d"}
	if opts.Node.CNIInstall == nil || *opts.Node.CNIInstall != want {
		t.Fatalf("CNIInstall = %+v, want %+v", opts.Node.CNIInstall, want)
	}
	// The node's /proc/sys/net as the DaemonSet mounts it, where the agent
	// turns IP forwarding on.
	if opts.Node.ProcSysNet != "/host/proc/sys/net" {
		t.Errorf("ProcSysNet = %q, want /host/proc/sys/net", opts.Node.ProcSysNet)
	}

	f, err = parse(t, map[string]string{"NODE_NAME": "n1"}, "--config=", "--cni-bin-dir=/opt/cni/bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.options(); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("a partial install set: %v", err)
	}
}

// The operator's defaults, rendered into config.yaml and read back, size
// the datapath exactly as an agent run without any configuration does.
func TestRenderedDefaultSizesAreTheDatapathDefaults(t *testing.T) {
	eff := dataplane.Effective(&v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium}, "sluice/agent:dev")
	cm, err := agentmanifest.ConfigMap(eff, agentmanifest.Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cm.Data[agentmanifest.ConfigFileKey]), 0o600); err != nil {
		t.Fatal(err)
	}
	rendered := sizes(t, "--config="+path)
	unconfigured := sizes(t, "--config=")
	if unconfigured != (datapath.Options{}) {
		t.Fatalf("without a configuration the datapath gets sizes %+v; want zero (its defaults)", unconfigured)
	}
	want := datapath.Options{
		MaxPolicyEntries:  datapath.DefaultMaxPolicyEntries,
		MaxConntrack:      datapath.DefaultMaxConntrack,
		MaxIPCacheEntries: datapath.DefaultMaxIPCacheEntries,
	}
	if rendered != want {
		t.Errorf("the operator's defaults size the datapath %+v; its own defaults are %+v", rendered, want)
	}
}

// sizes are the map sizes of the datapath options the flags give.
func sizes(t *testing.T, args ...string) datapath.Options {
	t.Helper()
	f, err := parse(t, map[string]string{"NODE_NAME": "node-1"}, args...)
	if err != nil {
		t.Fatal(err)
	}
	opts, _, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	return datapath.Options{
		MaxEndpoints:      opts.Datapath.MaxEndpoints,
		MaxPolicyEntries:  opts.Datapath.MaxPolicyEntries,
		MaxConntrack:      opts.Datapath.MaxConntrack,
		MaxIPCacheEntries: opts.Datapath.MaxIPCacheEntries,
	}
}

// TestRoutingModeFromTheConfig: the operator's config turns native
// routing on; --routing-mode overrides it; without either, routes are left
// alone.
func TestRoutingModeFromTheConfig(t *testing.T) {
	cm, err := agentmanifest.ConfigMap(&v1.EffectiveConfig{
		NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: "cilium", NetworkPolicy: "cilium",
		Agent:   v1.EffectiveAgentSettings{Image: "sluice/agent:dev", LogLevel: v1.LogLevelInfo},
		Routing: &v1.EffectiveRouting{Mode: v1.RoutingModeNative, UnderlayMTU: 1500, PodMTU: 1500},
	}, agentmanifest.Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent"})
	if err != nil {
		t.Fatal(err)
	}
	native := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(native, []byte(cm.Data[agentmanifest.ConfigFileKey]), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"the config's mode", []string{"--config=" + native}, agent.RoutingModeNative},
		{"no config, no flag", []string{"--config="}, ""},
		{"the flag without a config", []string{"--config=", "--routing-mode=Native"}, agent.RoutingModeNative},
		{"a config without routing (an older operator)", []string{"--config=" + renderedConfig(t)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parse(t, map[string]string{"NODE_NAME": "node-1"}, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			opts, _, err := f.options()
			if err != nil {
				t.Fatal(err)
			}
			if opts.Routing.Mode != tc.want {
				t.Errorf("routing mode %q, want %q", opts.Routing.Mode, tc.want)
			}
		})
	}
}

// TestNonMasqueradeFromTheConfig: the operator's config lists the
// non-masquerade CIDRs; --non-masquerade-cidrs replaces them.
func TestNonMasqueradeFromTheConfig(t *testing.T) {
	cm, err := agentmanifest.ConfigMap(&v1.EffectiveConfig{
		NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: "cilium", NetworkPolicy: "cilium",
		Agent: v1.EffectiveAgentSettings{Image: "sluice/agent:dev", LogLevel: v1.LogLevelInfo},
		Routing: &v1.EffectiveRouting{
			Mode: v1.RoutingModeNative, UnderlayMTU: 1500, PodMTU: 1500,
			NonMasqueradeCIDRs: []v1.CIDR{"172.16.0.0/12", "fd00:100::/64"},
		},
	}, agentmanifest.Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent"})
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(config, []byte(cm.Data[agentmanifest.ConfigFileKey]), 0o600); err != nil {
		t.Fatal(err)
	}
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		args []string
		want []netip.Prefix
	}{
		{"the config's CIDRs", []string{"--config=" + config}, pp("172.16.0.0/12", "fd00:100::/64")},
		{"the flag replaces them", []string{"--config=" + config, "--non-masquerade-cidrs=192.168.200.0/24"}, pp("192.168.200.0/24")},
		{"a config without routing (an older operator)", []string{"--config=" + renderedConfig(t)}, nil},
		{"no config, no flag", []string{"--config="}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := parse(t, map[string]string{"NODE_NAME": "node-1"}, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			opts, _, err := f.options()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(opts.Masquerade.NonMasquerade, tc.want) {
				t.Errorf("non-masquerade %v, want %v", opts.Masquerade.NonMasquerade, tc.want)
			}
		})
	}
}
