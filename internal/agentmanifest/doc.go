// Package agentmanifest renders the node agent's ConfigMap and DaemonSet
// from the effective dataplane configuration.
//
// The functions here are pure: they build objects from a v1.EffectiveConfig
// and Params, talk to no API server, and leave TypeMeta and owner references
// to the caller (the reconciler, which applies them with typed clients).
//
// The agent is the component that enforces policy on every node, so the
// manifest chooses availability and least privilege over convenience:
//
//   - No resource limits. The agent has requests only: a CPU limit throttles
//     it and stalls policy updates, a memory limit gets it OOM-killed and
//     drops enforcement. Requests keep it scheduled and accounted for.
//   - No CAP_SYS_ADMIN and not privileged. The agent gets BPF, NET_ADMIN,
//     PERFMON and SYS_RESOURCE and nothing else (kernel 5.8 or later, where
//     CAP_BPF and CAP_PERFMON exist). It never mounts anything: the node's
//     systemd mounts bpffs at /sys/fs/bpf, and the agent sees it through a
//     HostToContainer mount. Because the runtime's default seccomp and
//     AppArmor profiles can refuse bpf() and writes under /sys/fs/bpf to a
//     container without CAP_SYS_ADMIN, the agent container runs with both
//     profiles Unconfined; capabilities are what confine it. A container's
//     /proc/sys is read-only, so the node's /proc/sys/net is mounted
//     read-write at /host/proc/sys/net (--proc-sys-net) for the one thing
//     the agent sets there: IP forwarding (and accept_ra=2 where IPv6
//     forwarding would otherwise stop router advertisements).
//   - maxSurge 0. Two agents on one node would fight over the same pinned
//     maps, so a rollout stops the old agent before starting the new one.
//     The pinned maps and attached programs outlive the agent process, so
//     enforcement continues while the pod restarts; that is also why the
//     termination grace period is short.
//   - A config hash. The pod template carries the SHA-256 of the
//     ConfigMap's data in the sluice.dev/config-hash annotation, so any
//     change of the effective configuration rolls the agent, and the same
//     configuration always renders the same DaemonSet (no needless rollout).
package agentmanifest
