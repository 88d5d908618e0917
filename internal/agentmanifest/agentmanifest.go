package agentmanifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

const (
	// ConfigFileKey is the ConfigMap key that holds the agent's configuration.
	ConfigFileKey = "config.yaml"

	// ConfigHashAnnotation on the pod template is the SHA-256 (hex) of the
	// ConfigMap's data; changing the configuration changes it and so rolls
	// the agent.
	ConfigHashAnnotation = "sluice.dev/config-hash"

	// ContainerName is the name of the agent container.
	ContainerName = "agent"

	// HealthPort is the port the agent serves /healthz and /readyz on,
	// bound to 127.0.0.1 on the host network.
	HealthPort = 9879

	// configDir is where the ConfigMap is mounted in the container.
	configDir = "/etc/sluice"

	// procSysNetDir is where the node's /proc/sys/net is mounted in the
	// container, for the agent's --proc-sys-net.
	procSysNetDir = "/host/proc/sys/net"

	// Label keys and values shared by the ConfigMap, the DaemonSet and its
	// pods.
	labelName      = "app.kubernetes.io/name"
	labelPartOf    = "app.kubernetes.io/part-of"
	labelComponent = "app.kubernetes.io/component"
	labelManagedBy = "app.kubernetes.io/managed-by"
	agentAppName   = "sluice-agent"
)

// Params are the inputs that don't come from the DataplaneConfig.
type Params struct {
	Namespace          string // where the agent runs, e.g. "sluice-system"
	Name               string // base name, e.g. "sluice-agent" (DaemonSet, ConfigMap, ServiceAccount share it)
	ServiceAccountName string
}

// labels returns a fresh copy of the labels every agent object carries.
func labels() map[string]string {
	return map[string]string{
		labelName:      agentAppName,
		labelPartOf:    "sluice",
		labelComponent: "agent",
		labelManagedBy: "sluice-operator",
	}
}

// selectorLabels returns the DaemonSet's pod selector. Selectors are
// immutable, so it holds the one label that will never change.
func selectorLabels() map[string]string {
	return map[string]string{labelName: agentAppName}
}

// validate reports the first input that would render a broken object.
func validate(cfg *v1.EffectiveConfig, p Params) error {
	switch {
	case cfg == nil:
		return errors.New("effective config is nil")
	case cfg.Agent.Image == "":
		return errors.New("agent image is empty: set spec.agent.image or start the operator with --agent-image")
	case p.Name == "":
		return errors.New("agent object name is empty")
	case p.Namespace == "":
		return errors.New("agent namespace is empty")
	case p.ServiceAccountName == "":
		return errors.New("agent service account name is empty")
	}
	return nil
}

// ConfigMap renders the ConfigMap holding the agent's configuration: the
// effective configuration as YAML under the config.yaml key, and the CNI
// conflist the agent installs on its node under 10-sluice.conflist.
func ConfigMap(cfg *v1.EffectiveConfig, p Params) (*corev1.ConfigMap, error) {
	if err := validate(cfg, p); err != nil {
		return nil, fmt.Errorf("render agent ConfigMap: %w", err)
	}
	// sigs.k8s.io/yaml goes through encoding/json: struct fields keep their
	// declaration order and quantities their canonical form, so the same
	// configuration always gives the same bytes.
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("render agent ConfigMap: serialize effective config: %w", err)
	}
	cniConfig, err := Conflist(cfg)
	if err != nil {
		return nil, fmt.Errorf("render agent ConfigMap: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: p.Namespace,
			Labels:    labels(),
		},
		Data: map[string]string{ConfigFileKey: string(data)},
	}
	if cniConfig != "" {
		cm.Data[ConflistKey] = cniConfig
	}
	return cm, nil
}

// configHash is the SHA-256 (hex) of a ConfigMap's data: every key in
// sorted order, each key and value prefixed by its length so that no two
// different maps hash the same input.
func configHash(data map[string]string) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		for _, s := range []string{k, data[k]} {
			h.Write([]byte(strconv.Itoa(len(s))))
			h.Write([]byte{':'})
			h.Write([]byte(s))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// DaemonSet renders the agent DaemonSet. Its pods mount the ConfigMap of the
// same name that ConfigMap renders, and carry the hash of that ConfigMap's
// data so that a configuration change rolls them.
func DaemonSet(cfg *v1.EffectiveConfig, p Params) (*appsv1.DaemonSet, error) {
	cm, err := ConfigMap(cfg, p)
	if err != nil {
		return nil, fmt.Errorf("render agent DaemonSet: %w", err)
	}
	maxUnavailable := cfg.Agent.MaxUnavailable
	if isZero(maxUnavailable) {
		// With maxSurge 0 the API server rejects maxUnavailable 0: the
		// rollout could never make progress.
		return nil, fmt.Errorf("render agent DaemonSet: agent maxUnavailable is %s, it must be at least 1 or 1%%", maxUnavailable.String())
	}
	// Two agents on one node would fight over the same pinned maps: the
	// old pod must be gone before the new one starts.
	maxSurge := intstr.FromInt32(0)

	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      p.Name,
			Namespace: p.Namespace,
			Labels:    labels(),
		},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: selectorLabels()},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{
				Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{
					MaxUnavailable: &maxUnavailable,
					MaxSurge:       &maxSurge,
				},
			},
			RevisionHistoryLimit: new(int32(10)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels: labels(),
					Annotations: map[string]string{
						ConfigHashAnnotation: configHash(cm.Data),
					},
				},
				Spec: podSpec(cfg, p),
			},
		},
	}, nil
}

// isZero reports whether an int-or-string is 0 or "0%".
func isZero(v intstr.IntOrString) bool {
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return v.StrVal == "0%" || v.StrVal == "0" || v.StrVal == ""
}

func podSpec(cfg *v1.EffectiveConfig, p Params) corev1.PodSpec {
	return corev1.PodSpec{
		// Every Linux node, whatever its taints: a node without the agent
		// has no dataplane. Operator Exists with no key matches every taint
		// of every effect (NoSchedule, PreferNoSchedule, NoExecute).
		NodeSelector:      map[string]string{corev1.LabelOSStable: "linux"},
		Tolerations:       []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		PriorityClassName: "system-node-critical",

		// The agent programs the node's own network namespace.
		HostNetwork: true,
		DNSPolicy:   corev1.DNSClusterFirstWithHostNet,

		ServiceAccountName:           p.ServiceAccountName,
		AutomountServiceAccountToken: new(true),

		// Pinned maps and attached programs stay in the kernel when the
		// agent exits, so enforcement continues while the pod restarts; a
		// long grace period would only slow rollouts.
		TerminationGracePeriodSeconds: new(int64(30)),

		Containers: []corev1.Container{agentContainer(cfg)},
		Volumes:    volumes(p),
	}
}

// agentArgs are the agent's flags. The agent turns IP forwarding on
// through the node's /proc/sys/net mounted for it. With Sluice's CNI
// plugin it also installs the plugin (shipped in its image) and the
// conflist (from the ConfigMap) on the node, into the hostPaths mounted
// for them.
func agentArgs(cfg *v1.EffectiveConfig) []string {
	args := []string{
		"--config=" + path.Join(configDir, ConfigFileKey),
		"--log-level=" + string(cfg.Agent.LogLevel),
		"--proc-sys-net=" + procSysNetDir,
	}
	if cfg.NetworkPlugin == v1.NetworkPluginAzure {
		args = append(args,
			"--cni-bin-source=/sluice-cni",
			"--cni-bin-dir=/opt/cni/bin",
			"--cni-conf-source="+path.Join(configDir, ConflistKey),
			"--cni-conf-dir=/etc/cni/net.d",
		)
	}
	return args
}

func agentContainer(cfg *v1.EffectiveConfig) corev1.Container {
	return corev1.Container{
		Name:            ContainerName,
		Image:           cfg.Agent.Image,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Args:            agentArgs(cfg),
		Env: []corev1.EnvVar{{
			Name: "NODE_NAME",
			ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "spec.nodeName"},
			},
		}},
		// Requests only, never limits. The agent enforces policy: a CPU
		// limit throttles it and stalls policy updates, a memory limit gets
		// it OOM-killed and drops enforcement on the node. Either is an
		// outage waiting to happen.
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    cfg.Agent.CPURequest.DeepCopy(),
				corev1.ResourceMemory: cfg.Agent.MemoryRequest.DeepCopy(),
			},
		},
		SecurityContext: securityContext(),
		VolumeMounts:    volumeMounts(),
		// Loading maps and programs for a node with many endpoints can take
		// minutes: allow up to 10 minutes before liveness takes over.
		StartupProbe:   probe("/healthz", 5, 120),
		LivenessProbe:  probe("/healthz", 10, 6),
		ReadinessProbe: probe("/readyz", 5, 3),
	}
}

// probe is an HTTP GET of the agent's health endpoint. The pod is on the
// host network, where the pod IP is the node IP; the agent listens on
// loopback only, so the probe names 127.0.0.1.
func probe(urlPath string, periodSeconds, failureThreshold int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{
				Host:   "127.0.0.1",
				Path:   urlPath,
				Port:   intstr.FromInt32(HealthPort),
				Scheme: corev1.URISchemeHTTP,
			},
		},
		PeriodSeconds:    periodSeconds,
		TimeoutSeconds:   5,
		SuccessThreshold: 1,
		FailureThreshold: failureThreshold,
	}
}

func securityContext() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		Privileged:               new(false),
		AllowPrivilegeEscalation: new(false),
		// Root, so the agent can write the root-owned bpffs, CNI and state
		// directories of the host. Its power comes from the capabilities
		// below, not from being uid 0 (all others are dropped).
		RunAsUser: new(int64(0)),
		Capabilities: &corev1.Capabilities{
			Drop: []corev1.Capability{"ALL"},
			// No SYS_ADMIN: the agent mounts nothing (bpffs is mounted by
			// the node's systemd) and CAP_BPF/CAP_PERFMON (kernel 5.8+)
			// split BPF out of SYS_ADMIN.
			Add: []corev1.Capability{
				// BPF: create maps, load programs, pin and get objects
				// in bpffs (bpf(2)).
				"BPF",
				// NET_ADMIN: load and attach networking programs (tcx/tc,
				// cgroup socket programs), manage links, routes and
				// rules over netlink, iptables cleanup during migration.
				"NET_ADMIN",
				// PERFMON: what the verifier allows with CAP_PERFMON
				// (pointer arithmetic and comparisons, reading kernel
				// memory through tracing helpers) and perf_event_open for
				// the perf event arrays that carry flow events.
				"PERFMON",
				// SYS_RESOURCE: raise RLIMIT_MEMLOCK, which caps BPF map
				// memory on kernels before 5.11 (memcg accounting).
				"SYS_RESOURCE",
			},
		},
		// Seccomp Unconfined. containerd's default profile allows bpf()
		// and perf_event_open() to a container holding CAP_BPF/CAP_PERFMON
		// only in recent releases; older releases, and other runtimes,
		// allow them only with CAP_SYS_ADMIN, which the agent doesn't
		// have. A refused bpf() means no enforcement on the node, and the
		// node's runtime isn't ours to choose.
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined},
		// AppArmor Unconfined. The default profile of containerd and
		// CRI-O denies writes under /sys/fs/* except cgroup, which refuses
		// pinning BPF objects in /sys/fs/bpf. Nodes without AppArmor
		// ignore this.
		AppArmorProfile: &corev1.AppArmorProfile{Type: corev1.AppArmorProfileTypeUnconfined},
	}
}

// hostVolume describes one host directory or file the agent mounts.
type hostVolume struct {
	name, hostPath, mountPath string
	typ                       *corev1.HostPathType
	readOnly                  bool
	propagation               *corev1.MountPropagationMode
}

var (
	dir             = new(corev1.HostPathDirectory)
	dirOrCreate     = new(corev1.HostPathDirectoryOrCreate)
	fileOrCreate    = new(corev1.HostPathFileOrCreate)
	hostToContainer = new(corev1.MountPropagationHostToContainer)
)

// hostVolumes are the host paths the agent mounts, in a fixed order.
func hostVolumes() []hostVolume {
	return []hostVolume{
		// bpffs, where the agent pins maps and programs so they outlive it.
		// The node's systemd mounts it; the agent never does, so it needs
		// no CAP_SYS_ADMIN and the mount needs no Bidirectional
		// propagation (which requires a privileged container).
		// HostToContainer still shows the agent a bpffs mounted on the
		// host after the pod started. DirectoryOrCreate: type Directory
		// would keep the pod from starting if the path were absent.
		{name: "bpffs", hostPath: "/sys/fs/bpf", mountPath: "/sys/fs/bpf", typ: dirOrCreate, propagation: hostToContainer},
		// cgroup v2 root, to attach cgroup socket programs; opening a
		// cgroup directory to attach to needs no write access.
		{name: "cgroup", hostPath: "/sys/fs/cgroup", mountPath: "/sys/fs/cgroup", readOnly: true, propagation: hostToContainer},
		// The agent's socket and state, and the allocation file it writes
		// for the CNI plugin.
		{name: "run", hostPath: "/var/run/sluice", mountPath: "/var/run/sluice", typ: dirOrCreate},
		// The CNI plugin's IPAM state: the agent reads which addresses pods
		// hold (under the plugin's lock) before it gives batches back.
		{name: "cni-state", hostPath: "/var/lib/sluice", mountPath: "/var/lib/sluice", typ: dirOrCreate},
		// The agent installs the CNI conflist and plugin binary.
		{name: "cni-conf", hostPath: "/etc/cni/net.d", mountPath: "/etc/cni/net.d", typ: dirOrCreate},
		{name: "cni-bin", hostPath: "/opt/cni/bin", mountPath: "/opt/cni/bin", typ: dirOrCreate},
		// Kernel modules and their configuration, read to detect features.
		{name: "lib-modules", hostPath: "/lib/modules", mountPath: "/lib/modules", readOnly: true},
		// The iptables lock shared with kube-proxy, so that removing
		// iptables rules during migration doesn't race kube-proxy.
		{name: "xtables-lock", hostPath: "/run/xtables.lock", mountPath: "/run/xtables.lock", typ: fileOrCreate},
		// The node's network sysctls, where the agent turns IP forwarding
		// on (pods are routed by the node). The container's own /proc/sys
		// is read-only; this mount is not, and as the pod is on the host
		// network it shows the node's network namespace. Root with
		// NET_ADMIN may write it, and the AppArmor profile that would deny
		// writes under /proc/sys is Unconfined (above). Directory: every
		// Linux node has it.
		{name: "proc-sys-net", hostPath: "/proc/sys/net", mountPath: procSysNetDir, typ: dir},
	}
}

func volumes(p Params) []corev1.Volume {
	hv := hostVolumes()
	vols := make([]corev1.Volume, 0, len(hv)+1)
	for _, v := range hv {
		vols = append(vols, corev1.Volume{
			Name: v.name,
			VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: v.hostPath, Type: cloneType(v.typ)},
			},
		})
	}
	return append(vols, corev1.Volume{
		Name: "config",
		VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: p.Name},
			},
		},
	})
}

func volumeMounts() []corev1.VolumeMount {
	hv := hostVolumes()
	mounts := make([]corev1.VolumeMount, 0, len(hv)+1)
	for _, v := range hv {
		m := corev1.VolumeMount{Name: v.name, MountPath: v.mountPath, ReadOnly: v.readOnly}
		if v.propagation != nil {
			m.MountPropagation = new(*v.propagation)
		}
		mounts = append(mounts, m)
	}
	return append(mounts, corev1.VolumeMount{Name: "config", MountPath: configDir, ReadOnly: true})
}

// cloneType copies a host path type so that no two objects share a pointer.
func cloneType(t *corev1.HostPathType) *corev1.HostPathType {
	if t == nil {
		return nil
	}
	return new(*t)
}
