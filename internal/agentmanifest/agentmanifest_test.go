package agentmanifest

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// testConfig is an effective configuration with every field filled in.
func testConfig() *v1.EffectiveConfig {
	return &v1.EffectiveConfig{
		NetworkPlugin:        v1.NetworkPluginAzure,
		NetworkPluginMode:    v1.NetworkPluginModeOverlay,
		NetworkDataplane:     v1.NetworkDataplaneCilium,
		NetworkPolicy:        v1.NetworkPolicyCilium,
		PodCIDR:              "192.168.0.0/16",
		IPAMPools:            []string{"pool-a", "pool-b"},
		NodePoolLabel:        "kubernetes.azure.com/agentpool",
		KubeProxyReplacement: true,
		Routing: &v1.EffectiveRouting{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolVXLAN, UnderlayMTU: 1500, PodMTU: 1450,
		},
		Agent: v1.EffectiveAgentSettings{
			Image:          "sluice/agent:v1.2.3",
			LogLevel:       v1.LogLevelInfo,
			MaxUnavailable: intstr.FromInt32(1),
			CPURequest:     resource.MustParse("100m"),
			MemoryRequest:  resource.MustParse("256Mi"),
			BPFMaps: v1.EffectiveBPFMaps{
				PolicyEntries:    16384,
				ConntrackEntries: 524288,
				NATEntries:       524288,
				IPCacheEntries:   512000,
			},
		},
	}
}

func testParams() Params {
	return Params{Namespace: "sluice-system", Name: "sluice-agent", ServiceAccountName: "sluice-agent-sa"}
}

func mustDaemonSet(t *testing.T, cfg *v1.EffectiveConfig) *appsv1.DaemonSet {
	t.Helper()
	ds, err := DaemonSet(cfg, testParams())
	if err != nil {
		t.Fatalf("DaemonSet: %v", err)
	}
	return ds
}

func mustConfigMap(t *testing.T, cfg *v1.EffectiveConfig) *corev1.ConfigMap {
	t.Helper()
	cm, err := ConfigMap(cfg, testParams())
	if err != nil {
		t.Fatalf("ConfigMap: %v", err)
	}
	return cm
}

func agent(t *testing.T, ds *appsv1.DaemonSet) corev1.Container {
	t.Helper()
	cs := ds.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Name != "agent" {
		t.Fatalf("containers = %v, want exactly one named agent", cs)
	}
	return cs[0]
}

var wantLabels = map[string]string{
	"app.kubernetes.io/name":       "sluice-agent",
	"app.kubernetes.io/part-of":    "sluice",
	"app.kubernetes.io/component":  "agent",
	"app.kubernetes.io/managed-by": "sluice-operator",
}

func TestConfigMap(t *testing.T) {
	cfg := testConfig()
	cm := mustConfigMap(t, cfg)

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"name and namespace", func(t *testing.T) {
			if cm.Name != "sluice-agent" || cm.Namespace != "sluice-system" {
				t.Errorf("name/namespace = %s/%s, want sluice-system/sluice-agent", cm.Namespace, cm.Name)
			}
		}},
		{"labels", func(t *testing.T) {
			if !reflect.DeepEqual(cm.Labels, wantLabels) {
				t.Errorf("labels = %v, want %v", cm.Labels, wantLabels)
			}
		}},
		{"no TypeMeta, no owner references", func(t *testing.T) {
			if cm.Kind != "" || cm.APIVersion != "" || len(cm.OwnerReferences) != 0 {
				t.Errorf("TypeMeta %v, owners %v; want both empty", cm.TypeMeta, cm.OwnerReferences)
			}
		}},
		{"config.yaml and the CNI conflist", func(t *testing.T) {
			if got := slices.Sorted(maps.Keys(cm.Data)); !slices.Equal(got, []string{ConflistKey, ConfigFileKey}) || len(cm.BinaryData) != 0 {
				t.Errorf("data keys = %v, want %s and %s", got, ConflistKey, ConfigFileKey)
			}
		}},
		{"config.yaml round-trips to the effective config", func(t *testing.T) {
			var got v1.EffectiveConfig
			if err := yaml.UnmarshalStrict([]byte(cm.Data["config.yaml"]), &got); err != nil {
				t.Fatalf("unmarshal config.yaml: %v\n%s", err, cm.Data["config.yaml"])
			}
			want, _ := yaml.Marshal(cfg)
			back, _ := yaml.Marshal(&got)
			if string(want) != string(back) {
				t.Errorf("round trip:\n got %s\nwant %s", back, want)
			}
		}},
		{"config.yaml holds the agent settings", func(t *testing.T) {
			for _, s := range []string{"image: sluice/agent:v1.2.3", "logLevel: info", "cpuRequest: 100m", "memoryRequest: 256Mi", "conntrackEntries: 524288"} {
				if !strings.Contains(cm.Data["config.yaml"], s) {
					t.Errorf("config.yaml lacks %q:\n%s", s, cm.Data["config.yaml"])
				}
			}
		}},
		{"config.yaml tells the agent how to route between nodes", func(t *testing.T) {
			want := "routing:\n  mode: Tunnel\n  podMTU: 1450\n  tunnelProtocol: VXLAN\n  underlayMTU: 1500\n"
			if !strings.Contains(cm.Data[ConfigFileKey], want) {
				t.Errorf("config.yaml lacks\n%s\nin\n%s", want, cm.Data[ConfigFileKey])
			}
		}},
		{"the conflist gives pods the tunnel's pod MTU", func(t *testing.T) {
			if !strings.Contains(cm.Data[ConflistKey], `"mtu": 1450`) {
				t.Errorf("conflist lacks mtu 1450:\n%s", cm.Data[ConflistKey])
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestDaemonSet(t *testing.T) {
	ds := mustDaemonSet(t, testConfig())
	pod := ds.Spec.Template.Spec
	c := agent(t, ds)

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"name and namespace", func(t *testing.T) {
			if ds.Name != "sluice-agent" || ds.Namespace != "sluice-system" {
				t.Errorf("name/namespace = %s/%s, want sluice-system/sluice-agent", ds.Namespace, ds.Name)
			}
		}},
		{"no TypeMeta, no owner references", func(t *testing.T) {
			if ds.Kind != "" || ds.APIVersion != "" || len(ds.OwnerReferences) != 0 {
				t.Errorf("TypeMeta %v, owners %v; want both empty", ds.TypeMeta, ds.OwnerReferences)
			}
		}},
		{"labels on the DaemonSet and its pods", func(t *testing.T) {
			if !reflect.DeepEqual(ds.Labels, wantLabels) {
				t.Errorf("DaemonSet labels = %v, want %v", ds.Labels, wantLabels)
			}
			if !reflect.DeepEqual(ds.Spec.Template.Labels, wantLabels) {
				t.Errorf("pod labels = %v, want %v", ds.Spec.Template.Labels, wantLabels)
			}
		}},
		{"minimal selector that matches the pods", func(t *testing.T) {
			sel := ds.Spec.Selector
			want := map[string]string{"app.kubernetes.io/name": "sluice-agent"}
			if sel == nil || !reflect.DeepEqual(sel.MatchLabels, want) || len(sel.MatchExpressions) != 0 {
				t.Fatalf("selector = %v, want matchLabels %v only", sel, want)
			}
			for k, v := range sel.MatchLabels {
				if ds.Spec.Template.Labels[k] != v {
					t.Errorf("pod label %s = %q, selector wants %q", k, ds.Spec.Template.Labels[k], v)
				}
			}
		}},
		{"runs on every Linux node", func(t *testing.T) {
			want := map[string]string{"kubernetes.io/os": "linux"}
			if !reflect.DeepEqual(pod.NodeSelector, want) {
				t.Errorf("nodeSelector = %v, want %v", pod.NodeSelector, want)
			}
		}},
		{"tolerates every taint", func(t *testing.T) {
			want := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
			if !reflect.DeepEqual(pod.Tolerations, want) {
				t.Fatalf("tolerations = %v, want %v", pod.Tolerations, want)
			}
			for _, effect := range []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectNoExecute, corev1.TaintEffectPreferNoSchedule} {
				taint := corev1.Taint{Key: "node.kubernetes.io/not-ready", Value: "x", Effect: effect}
				if !pod.Tolerations[0].ToleratesTaint(logr.Discard(), &taint, false) {
					t.Errorf("does not tolerate %v", taint)
				}
			}
		}},
		{"system-node-critical", func(t *testing.T) {
			if pod.PriorityClassName != "system-node-critical" {
				t.Errorf("priorityClassName = %q", pod.PriorityClassName)
			}
		}},
		{"host network", func(t *testing.T) {
			if !pod.HostNetwork || pod.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
				t.Errorf("hostNetwork %v, dnsPolicy %q; want true, ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
			}
		}},
		{"service account", func(t *testing.T) {
			if pod.ServiceAccountName != "sluice-agent-sa" {
				t.Errorf("serviceAccountName = %q", pod.ServiceAccountName)
			}
			if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
				t.Errorf("automountServiceAccountToken = %v, want true", pod.AutomountServiceAccountToken)
			}
		}},
		{"short termination grace period", func(t *testing.T) {
			if g := pod.TerminationGracePeriodSeconds; g == nil || *g != 30 {
				t.Errorf("terminationGracePeriodSeconds = %v, want 30", g)
			}
		}},
		{"revision history limit", func(t *testing.T) {
			if r := ds.Spec.RevisionHistoryLimit; r == nil || *r != 10 {
				t.Errorf("revisionHistoryLimit = %v, want 10", r)
			}
		}},
		{"rolling update without surge", func(t *testing.T) {
			us := ds.Spec.UpdateStrategy
			if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil {
				t.Fatalf("updateStrategy = %v, want RollingUpdate", us)
			}
			if mu := us.RollingUpdate.MaxUnavailable; mu == nil || *mu != intstr.FromInt32(1) {
				t.Errorf("maxUnavailable = %v, want 1", mu)
			}
			if ms := us.RollingUpdate.MaxSurge; ms == nil || *ms != intstr.FromInt32(0) {
				t.Errorf("maxSurge = %v, want 0", ms)
			}
		}},
		{"image and pull policy", func(t *testing.T) {
			if c.Image != "sluice/agent:v1.2.3" {
				t.Errorf("image = %q", c.Image)
			}
		}},
		{"args", func(t *testing.T) {
			for _, a := range []string{"--config=/etc/sluice/config.yaml", "--log-level=info", "--proc-sys-net=/host/proc/sys/net"} {
				if !slices.Contains(c.Args, a) {
					t.Errorf("args %v lack %q", c.Args, a)
				}
			}
		}},
		{"NODE_NAME from spec.nodeName", func(t *testing.T) {
			i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "NODE_NAME" })
			if i < 0 {
				t.Fatalf("env %v lacks NODE_NAME", c.Env)
			}
			e := c.Env[i]
			if e.Value != "" || e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
				t.Errorf("NODE_NAME = %+v, want fieldRef spec.nodeName", e)
			}
		}},
		{"requests from the config", func(t *testing.T) {
			req := c.Resources.Requests
			if cpu := req[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("100m")) != 0 {
				t.Errorf("cpu request = %s, want 100m", cpu.String())
			}
			if mem := req[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("256Mi")) != 0 {
				t.Errorf("memory request = %s, want 256Mi", mem.String())
			}
		}},
		{"no limits at all", func(t *testing.T) {
			if len(c.Resources.Limits) != 0 || len(c.Resources.Claims) != 0 {
				t.Errorf("limits = %v, want none", c.Resources.Limits)
			}
			if pod.Resources != nil {
				t.Errorf("pod-level resources = %v, want none", pod.Resources)
			}
		}},
		{"not privileged, no privilege escalation", func(t *testing.T) {
			sc := c.SecurityContext
			if sc == nil {
				t.Fatal("no securityContext")
			}
			if sc.Privileged == nil || *sc.Privileged {
				t.Errorf("privileged = %v, want false", sc.Privileged)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("allowPrivilegeEscalation = %v, want false", sc.AllowPrivilegeEscalation)
			}
			if sc.RunAsUser == nil || *sc.RunAsUser != 0 {
				t.Errorf("runAsUser = %v, want 0", sc.RunAsUser)
			}
			if pod.HostPID || pod.HostIPC {
				t.Errorf("hostPID %v, hostIPC %v; want false", pod.HostPID, pod.HostIPC)
			}
		}},
		{"capabilities: drop ALL, add only what BPF needs", func(t *testing.T) {
			caps := c.SecurityContext.Capabilities
			if caps == nil {
				t.Fatal("no capabilities")
			}
			if !reflect.DeepEqual(caps.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("drop = %v, want [ALL]", caps.Drop)
			}
			want := []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"}
			got := slices.Clone(caps.Add)
			slices.Sort(got)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("add = %v, want %v", caps.Add, want)
			}
			for _, a := range caps.Add {
				if strings.Contains(string(a), "SYS_ADMIN") {
					t.Errorf("adds %s", a)
				}
			}
		}},
		{"seccomp and AppArmor unconfined", func(t *testing.T) {
			sc := c.SecurityContext
			if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
				t.Errorf("seccompProfile = %v, want Unconfined", sc.SeccompProfile)
			}
			if sc.AppArmorProfile == nil || sc.AppArmorProfile.Type != corev1.AppArmorProfileTypeUnconfined {
				t.Errorf("appArmorProfile = %v, want Unconfined", sc.AppArmorProfile)
			}
		}},
		{"readiness probe", func(t *testing.T) {
			checkHTTPProbe(t, c.ReadinessProbe, "/readyz")
		}},
		{"liveness probe", func(t *testing.T) {
			checkHTTPProbe(t, c.LivenessProbe, "/healthz")
		}},
		{"generous startup probe", func(t *testing.T) {
			p := c.StartupProbe
			checkHTTPProbe(t, p, "/healthz")
			if p != nil && p.PeriodSeconds*p.FailureThreshold < 300 {
				t.Errorf("startup probe allows %ds, want at least 5 minutes", p.PeriodSeconds*p.FailureThreshold)
			}
		}},
		{"config hash annotation", func(t *testing.T) {
			h := ds.Spec.Template.Annotations["sluice.dev/config-hash"]
			if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(h) {
				t.Errorf("config hash = %q, want 64 hex digits", h)
			}
			if want := configHash(mustConfigMap(t, testConfig()).Data); h != want {
				t.Errorf("config hash = %s, want the hash of the ConfigMap data %s", h, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func checkHTTPProbe(t *testing.T, p *corev1.Probe, path string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Fatalf("probe = %v, want httpGet", p)
	}
	g := p.HTTPGet
	if g.Host != "127.0.0.1" || g.Path != path || g.Port != intstr.FromInt32(9879) || g.Scheme != corev1.URISchemeHTTP {
		t.Errorf("httpGet = %+v, want http://127.0.0.1:9879%s", g, path)
	}
	if p.PeriodSeconds <= 0 || p.FailureThreshold <= 0 || p.TimeoutSeconds <= 0 {
		t.Errorf("probe timing %+v: period, timeout and failureThreshold must be set", p)
	}
}

func TestDaemonSetVolumes(t *testing.T) {
	ds := mustDaemonSet(t, testConfig())
	pod := ds.Spec.Template.Spec
	c := agent(t, ds)

	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		if _, dup := vols[v.Name]; dup {
			t.Errorf("duplicate volume %s", v.Name)
		}
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("mount %s uses undeclared volume %s", m.MountPath, m.Name)
		}
	}

	var (
		unset           corev1.HostPathType = "<unset>"
		none            corev1.MountPropagationMode
		hostToContainer = corev1.MountPropagationHostToContainer
	)
	tests := []struct {
		hostPath    string
		hostType    corev1.HostPathType
		mountPath   string
		readOnly    bool
		propagation corev1.MountPropagationMode
	}{
		{"/sys/fs/bpf", corev1.HostPathDirectoryOrCreate, "/sys/fs/bpf", false, hostToContainer},
		{"/sys/fs/cgroup", unset, "/sys/fs/cgroup", true, hostToContainer},
		{"/var/run/sluice", corev1.HostPathDirectoryOrCreate, "/var/run/sluice", false, none},
		{"/var/lib/sluice", corev1.HostPathDirectoryOrCreate, "/var/lib/sluice", false, none},
		{"/etc/cni/net.d", corev1.HostPathDirectoryOrCreate, "/etc/cni/net.d", false, none},
		{"/opt/cni/bin", corev1.HostPathDirectoryOrCreate, "/opt/cni/bin", false, none},
		{"/lib/modules", unset, "/lib/modules", true, none},
		{"/run/xtables.lock", corev1.HostPathFileOrCreate, "/run/xtables.lock", false, none},
		// Read-write: the agent turns IP forwarding on (--proc-sys-net).
		{"/proc/sys/net", corev1.HostPathDirectory, "/host/proc/sys/net", false, none},
	}
	for _, tt := range tests {
		t.Run(tt.hostPath, func(t *testing.T) {
			m, ok := mounts[tt.mountPath]
			if !ok {
				t.Fatalf("nothing mounted at %s", tt.mountPath)
			}
			hp := vols[m.Name].HostPath
			if hp == nil || hp.Path != tt.hostPath {
				t.Fatalf("volume %s = %+v, want hostPath %s", m.Name, vols[m.Name].VolumeSource, tt.hostPath)
			}
			gotType := unset
			if hp.Type != nil {
				gotType = *hp.Type
			}
			if gotType != tt.hostType {
				t.Errorf("hostPath type = %q, want %q", gotType, tt.hostType)
			}
			if m.ReadOnly != tt.readOnly {
				t.Errorf("readOnly = %v, want %v", m.ReadOnly, tt.readOnly)
			}
			var gotProp corev1.MountPropagationMode
			if m.MountPropagation != nil {
				gotProp = *m.MountPropagation
			}
			if gotProp != tt.propagation {
				t.Errorf("mountPropagation = %q, want %q", gotProp, tt.propagation)
			}
		})
	}

	t.Run("ConfigMap at /etc/sluice", func(t *testing.T) {
		m, ok := mounts["/etc/sluice"]
		if !ok {
			t.Fatal("nothing mounted at /etc/sluice")
		}
		if !m.ReadOnly {
			t.Error("config mount is writable")
		}
		if cm := vols[m.Name].ConfigMap; cm == nil || cm.Name != "sluice-agent" {
			t.Errorf("volume %s = %+v, want ConfigMap sluice-agent", m.Name, vols[m.Name].VolumeSource)
		}
	})

	t.Run("no Bidirectional propagation", func(t *testing.T) {
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("%s is Bidirectional, which needs a privileged container", m.MountPath)
			}
		}
	})

	t.Run("every volume is mounted", func(t *testing.T) {
		if len(pod.Volumes) != len(tests)+1 || len(c.VolumeMounts) != len(tests)+1 {
			t.Errorf("%d volumes and %d mounts, want %d of each", len(pod.Volumes), len(c.VolumeMounts), len(tests)+1)
		}
	})
}

func TestDeterministic(t *testing.T) {
	cm1, cm2 := mustConfigMap(t, testConfig()), mustConfigMap(t, testConfig())
	if !reflect.DeepEqual(cm1, cm2) {
		t.Errorf("two renders of the same ConfigMap differ:\n%v\n%v", cm1, cm2)
	}
	ds1, ds2 := mustDaemonSet(t, testConfig()), mustDaemonSet(t, testConfig())
	if !reflect.DeepEqual(ds1, ds2) {
		t.Errorf("two renders of the same DaemonSet differ:\n%v\n%v", ds1, ds2)
	}
	h1 := ds1.Spec.Template.Annotations[ConfigHashAnnotation]
	h2 := ds2.Spec.Template.Annotations[ConfigHashAnnotation]
	if h1 == "" || h1 != h2 {
		t.Errorf("hashes %q and %q, want equal and non-empty", h1, h2)
	}

	// A quantity written differently but equal renders the same.
	cfg := testConfig()
	cfg.Agent.CPURequest = resource.MustParse("0.1")
	if h := mustDaemonSet(t, cfg).Spec.Template.Annotations[ConfigHashAnnotation]; h != h1 {
		t.Errorf("cpuRequest 0.1 hashes %s, 100m hashes %s; want equal", h, h1)
	}
}

func TestConfigChangeChangesHash(t *testing.T) {
	base := mustDaemonSet(t, testConfig()).Spec.Template.Annotations[ConfigHashAnnotation]
	tests := []struct {
		name   string
		mutate func(*v1.EffectiveConfig)
	}{
		{"log level", func(c *v1.EffectiveConfig) { c.Agent.LogLevel = v1.LogLevelDebug }},
		{"conntrack entries", func(c *v1.EffectiveConfig) { c.Agent.BPFMaps.ConntrackEntries *= 2 }},
		{"pod CIDR", func(c *v1.EffectiveConfig) { c.PodCIDR = "10.244.0.0/16" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			tt.mutate(cfg)
			ds := mustDaemonSet(t, cfg)
			if h := ds.Spec.Template.Annotations[ConfigHashAnnotation]; h == base {
				t.Errorf("hash unchanged (%s)", h)
			}
		})
	}
	t.Run("log level reaches the args", func(t *testing.T) {
		cfg := testConfig()
		cfg.Agent.LogLevel = v1.LogLevelDebug
		if c := agent(t, mustDaemonSet(t, cfg)); !slices.Contains(c.Args, "--log-level=debug") {
			t.Errorf("args = %v, want --log-level=debug", c.Args)
		}
	})
}

func TestConfigHash(t *testing.T) {
	single := sha256.Sum256([]byte("11:config.yaml4:a: 1"))
	tests := []struct {
		name string
		a, b map[string]string
		same bool
	}{
		{"order independent", map[string]string{"a": "1", "b": "2"}, map[string]string{"b": "2", "a": "1"}, true},
		{"key/value boundary", map[string]string{"ab": "c"}, map[string]string{"a": "bc"}, false},
		{"value change", map[string]string{"a": "1"}, map[string]string{"a": "2"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := configHash(tt.a) == configHash(tt.b); got != tt.same {
				t.Errorf("configHash(%v) == configHash(%v) is %v, want %v", tt.a, tt.b, got, tt.same)
			}
		})
	}
	t.Run("known value", func(t *testing.T) {
		if got, want := configHash(map[string]string{"config.yaml": "a: 1"}), hex.EncodeToString(single[:]); got != want {
			t.Errorf("configHash = %s, want %s", got, want)
		}
	})
}

func TestMaxUnavailable(t *testing.T) {
	tests := []struct {
		name string
		in   intstr.IntOrString
	}{
		{"number", intstr.FromInt32(3)},
		{"percentage", intstr.FromString("10%")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.Agent.MaxUnavailable = tt.in
			ds := mustDaemonSet(t, cfg)
			ru := ds.Spec.UpdateStrategy.RollingUpdate
			if ru == nil || ru.MaxUnavailable == nil || *ru.MaxUnavailable != tt.in {
				t.Fatalf("maxUnavailable = %v, want %v", ru, tt.in)
			}
			if ru.MaxSurge == nil || *ru.MaxSurge != intstr.FromInt32(0) {
				t.Errorf("maxSurge = %v, want 0", ru.MaxSurge)
			}
			// A copy, not an alias of the caller's config.
			cfg.Agent.MaxUnavailable = intstr.FromInt32(99)
			if *ru.MaxUnavailable != tt.in {
				t.Errorf("maxUnavailable follows later changes to the config")
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func() *v1.EffectiveConfig
		params  func(*Params)
		wantErr string
	}{
		{"nil config", func() *v1.EffectiveConfig { return nil }, nil, "config is nil"},
		{"empty image", func() *v1.EffectiveConfig {
			c := testConfig()
			c.Agent.Image = ""
			return c
		}, nil, "image is empty"},
		{"empty name", testConfig, func(p *Params) { p.Name = "" }, "name is empty"},
		{"empty namespace", testConfig, func(p *Params) { p.Namespace = "" }, "namespace is empty"},
		{"empty service account", testConfig, func(p *Params) { p.ServiceAccountName = "" }, "service account name is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testParams()
			if tt.params != nil {
				tt.params(&p)
			}
			cm, cmErr := ConfigMap(tt.cfg(), p)
			ds, dsErr := DaemonSet(tt.cfg(), p)
			for what, err := range map[string]error{"ConfigMap": cmErr, "DaemonSet": dsErr} {
				if err == nil {
					t.Errorf("%s: no error", what)
					continue
				}
				if msg := err.Error(); !strings.Contains(msg, tt.wantErr) || msg != strings.ToLower(msg[:1])+msg[1:] {
					t.Errorf("%s: error %q, want a lower-case error containing %q", what, msg, tt.wantErr)
				}
			}
			if cm != nil || ds != nil {
				t.Errorf("objects returned with an error: %v, %v", cm, ds)
			}
		})
	}

	t.Run("zero maxUnavailable", func(t *testing.T) {
		for _, mu := range []intstr.IntOrString{intstr.FromInt32(0), intstr.FromString("0%")} {
			cfg := testConfig()
			cfg.Agent.MaxUnavailable = mu
			if _, err := DaemonSet(cfg, testParams()); err == nil || !strings.Contains(err.Error(), "maxUnavailable") {
				t.Errorf("maxUnavailable %s: error %v, want one naming maxUnavailable", mu.String(), err)
			}
		}
	})
}

// Objects returned by two calls share no memory, so the caller may mutate one
// (say, set owner references or merge server defaults) without the other.
func TestNoSharedState(t *testing.T) {
	ds1, ds2 := mustDaemonSet(t, testConfig()), mustDaemonSet(t, testConfig())
	ds1.Labels["x"] = "y"
	ds1.Spec.Template.Spec.Tolerations[0].Key = "k"
	*ds1.Spec.Template.Spec.Volumes[0].HostPath.Type = corev1.HostPathSocket
	*ds1.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPropagation = corev1.MountPropagationBidirectional
	ds1.Spec.Template.Spec.Containers[0].SecurityContext.Capabilities.Add[0] = "SYS_ADMIN"
	ds3 := mustDaemonSet(t, testConfig())
	if !reflect.DeepEqual(ds2, ds3) {
		t.Error("mutating one rendered DaemonSet changed a later render")
	}
	if ds2.Spec.Template.Labels["x"] != "" || ds2.Labels["x"] != "" {
		t.Error("label maps are shared")
	}
}
