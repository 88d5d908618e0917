#!/usr/bin/env bash
# hack/demo.sh: run the Sluice operator against a local control plane on
# loopback and show what it does, with the real kubectl.
#
#   hack/demo.sh         (make demo) start the lab and the operator, walk
#                        through the samples in config/samples (the
#                        DataplaneConfig, then IPAM pools and the nodes of
#                        hack/demo-nodes.yaml) and sluicectl status, then,
#                        as root, the node agent enforcing NetworkPolicy on
#                        pods wired by sluice-cni in network namespaces;
#                        then stop everything (KEEP=1 leaves it running)
#   hack/demo.sh --run   (make run) start the lab and the operator and run
#                        until Ctrl-C, following the operator's log
#
# Environment: KUBECTL (default bin/k8s/1.37.0/kubectl), KUBEBUILDER_ASSETS
# (default the directory of KUBECTL; needs kube-apiserver and etcd, see
# `make setup-envtest`), KEEP=1, WEBHOOK_PORT (9443), PROBE_PORT (8081).
#
# The lab (bin/sluicectl lab up) is kube-apiserver and etcd only: no kubelet,
# scheduler or controller-manager. The operator creates its webhook
# certificate and injects the CA bundle itself, as in a real cluster.
set -Eeuo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

usage() { sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

mode=demo
case "${1:-}" in
  "") ;;
  --run) mode=run ;;
  -h | --help) usage; exit 0 ;;
  *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

KUBECTL=${KUBECTL:-$root/bin/k8s/1.37.0/kubectl}
export KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS:-$(cd "$(dirname "$KUBECTL")" && pwd)}
KEEP=${KEEP:-}
WEBHOOK_PORT=${WEBHOOK_PORT:-9443}
PROBE_PORT=${PROBE_PORT:-8081}
LAB=$root/.lab
export KUBECONFIG=$LAB/kubeconfig

lab_pid="" manager_pid="" agent_pid="" node_up="" last_cmd=""

if [[ -t 1 ]]; then bold=$'\e[1m' dim=$'\e[2m' red=$'\e[31m' reset=$'\e[0m'; else bold="" dim="" red="" reset=""; fi
section() { printf '\n%s==> %s%s\n' "$bold" "$*" "$reset"; }
info() { printf '%s%s%s\n' "$dim" "$*" "$reset"; }

# show prints a kubectl command the way a user would type it.
show() {
  local out="\$ kubectl" a
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+=" $a"
    elif [[ $a =~ ^(--?[A-Za-z-]+=)(.*)$ ]]; then # --flag='value'
      out+=" ${BASH_REMATCH[1]}'${BASH_REMATCH[2]//\'/\'\\\'\'}'"
    else
      out+=" '${a//\'/\'\\\'\'}'"
    fi
  done
  last_cmd=${out#\$ }
  printf '%s%s%s\n' "$bold" "$out" "$reset"
}
# kc shows a kubectl command, then runs it.
kc() { show "$@"; "$KUBECTL" "$@"; }

# status_pending runs sluicectl status, which must exit 1 for one reason
# only: the lab has no DaemonSet controller, so the agent rollout stays
# pending (section 5). Any other problem fails the demo.
status_pending() {
  local out rc=0
  printf '%s$ sluicectl status%s\n' "$bold" "$reset"
  out=$(bin/sluicectl status 2>&1) || rc=$?
  printf '%s\n' "$out"
  ((rc == 1)) || die "sluicectl status exited $rc; want 1 (the agent rollout is pending in the lab)"
  if ! grep -q '^  DataplaneConfig default: AgentPending: ' <<<"$out" || ! grep -qx 'Status: 1 problem' <<<"$out"; then
    die "sluicectl status reports more than the pending agent rollout"
  fi
}

logtail() {
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    printf '%s--- last lines of %s ---%s\n' "$red" "${f#"$root"/}" "$reset" >&2
    tail -n 25 "$f" >&2
  done
}

die() {
  printf '\n%sdemo: %s%s\n' "$red" "$*" "$reset" >&2
  # Only the logs of this run: a precondition failure has none.
  logtail ${agent_pid:+"$LAB/agent.log"} ${manager_pid:+"$LAB/manager.log"} ${lab_pid:+"$LAB/lab.log"}
  exit 1
}

on_err() {
  # $2 is the text of the failed command: kc's own line is shown as the
  # kubectl command it ran, which show kept in last_cmd.
  # shellcheck disable=SC2016 # the literal text of kc's command, not an expansion
  if [[ $2 == '"$KUBECTL" "$@"' && -n $last_cmd ]]; then die "failed: $last_cmd"; fi
  die "failed (line $1): $2"
}
trap 'on_err $LINENO "$BASH_COMMAND"' ERR

stop_pid() { # name pid
  local name=$1 pid=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  info "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    info "$name did not stop in 30s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - ERR
  if [[ $mode == demo && $KEEP == 1 && -n $lab_pid ]]; then
    section "Left running (KEEP=1)"
    echo "kubeconfig:  $KUBECONFIG"
    echo "             export KUBECONFIG=$KUBECONFIG"
    [[ -n $manager_pid ]] && echo "operator:    pid $manager_pid, log .lab/manager.log"
    [[ -n $agent_pid ]] && echo "node agent:  pid $agent_pid, log .lab/agent.log (in netns sluice-demo-host)"
    [[ -n $node_up ]] && echo "demo node:   netns sluice-demo-*, state in .lab/node; bin/sluicectl lab matrix --dir .lab"
    echo "lab:         pid $lab_pid, log .lab/lab.log"
    if [[ -n $node_up ]]; then
      echo "stop with:   bin/sluicectl lab node down --dir .lab"
      echo "and then:    kill ${agent_pid:+$agent_pid }${manager_pid:+$manager_pid }$lab_pid"
    else
      echo "stop with:   kill ${manager_pid:+$manager_pid }$lab_pid"
    fi
    return
  fi
  # The node first (CNI DEL tells the agent), then the agent, whose
  # programs go with it (--no-pin).
  if [[ -n $node_up ]]; then
    info "removing the demo node (pods, echo servers, network namespaces)"
    bin/sluicectl lab node down --dir "$LAB" >/dev/null || info "lab node down failed; run: bin/sluicectl lab node down --dir .lab"
  fi
  [[ -n $agent_pid ]] && stop_pid "the node agent" "$agent_pid"
  [[ -n $manager_pid ]] && stop_pid "the operator" "$manager_pid"
  [[ -n $lab_pid ]] && stop_pid "the lab (kube-apiserver, etcd)" "$lab_pid"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for DESCRIPTION SECONDS PID COMMAND...: retry COMMAND until it
# succeeds, failing when PID (the process it depends on) exits.
wait_for() {
  local what=$1 secs=$2 pid=$3 i
  shift 3
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || die "$what: the process it depends on (pid $pid) exited"
    sleep 0.25
  done
  die "timed out after ${secs}s waiting for $what"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

has_ca_bundles() {
  [[ -n $("$KUBECTL" get validatingwebhookconfiguration sluice-validating-webhook-configuration \
    -o jsonpath='{.webhooks[0].clientConfig.caBundle}') ]] &&
    [[ -n $("$KUBECTL" get crd dataplaneconfigs.dataplane.sluice.dev \
      -o jsonpath='{.spec.conversion.webhook.clientConfig.caBundle}') ]]
}

# ---------------------------------------------------------------------------

[[ -x $KUBECTL ]] || die "no kubectl at $KUBECTL; run 'make setup-envtest' or set KUBECTL"
for bin in kube-apiserver etcd; do
  [[ -x $KUBEBUILDER_ASSETS/$bin ]] || die "no $bin in KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS; run 'make setup-envtest'"
done
for port in "$WEBHOOK_PORT" "$PROBE_PORT"; do
  port_free "$port" || die "port $port on 127.0.0.1 is in use (an operator or lab left by KEEP=1? stop it, or set WEBHOOK_PORT / PROBE_PORT)"
done

section "Building bin/manager and bin/sluicectl"
info "go build -o bin/ ./cmd/manager ./cmd/sluicectl"
go build -o bin/ ./cmd/manager ./cmd/sluicectl

section "Starting the local control plane (kube-apiserver and etcd on 127.0.0.1)"
mkdir -p "$LAB"
rm -f "$KUBECONFIG"
info "bin/sluicectl lab up --dir .lab --webhook-port $WEBHOOK_PORT   (log: .lab/lab.log)"
bin/sluicectl lab up --dir "$LAB" --webhook-port "$WEBHOOK_PORT" --repo-root "$root" >"$LAB/lab.log" 2>&1 </dev/null &
lab_pid=$!
wait_for "the lab's kubeconfig" 120 "$lab_pid" test -s "$KUBECONFIG"
wait_for "the API server's /readyz" 60 "$lab_pid" "$KUBECTL" get --raw /readyz
echo "API server ready; kubeconfig: .lab/kubeconfig"

section "Starting the operator"
manager_args=(
  --kubeconfig "$KUBECONFIG"
  --namespace sluice-system
  --webhook-host 127.0.0.1
  --webhook-port "$WEBHOOK_PORT"
  --webhook-cert-ip 127.0.0.1
  --webhook-cert-dir "$LAB/certs"
  --metrics-bind-address 0
  --health-probe-bind-address "127.0.0.1:$PROBE_PORT"
  --agent-image sluice/agent:dev
)
info "bin/manager ${manager_args[*]/#$root\//}   (log: .lab/manager.log)"
bin/manager "${manager_args[@]}" >"$LAB/manager.log" 2>&1 </dev/null &
manager_pid=$!
wait_for "the operator's /readyz" 60 "$manager_pid" curl -fsS "http://127.0.0.1:$PROBE_PORT/readyz"
wait_for "the operator to inject its CA bundle into the webhook configuration and the CRD" 30 "$manager_pid" has_ca_bundles
echo "operator ready; its webhook certificate is in .lab/certs and its CA bundle is published"

if [[ $mode == run ]]; then
  section "Running (Ctrl-C stops the operator and the lab)"
  echo "kubeconfig: $KUBECONFIG"
  echo "in another shell:  export KUBECONFIG=$KUBECONFIG"
  echo "                   kubectl apply -f config/samples/dataplane_v1_dataplaneconfig.yaml"
  echo "                   kubectl apply -f config/samples/dataplane_v1_ipampool_overlay.yaml -f hack/demo-nodes.yaml"
  section "Operator log (.lab/manager.log)"
  tail -n +1 -f "$LAB/manager.log" --pid="$manager_pid" || true
  wait "$manager_pid" && rc=0 || rc=$?
  manager_pid=""
  # The operator exits 0 only when a signal (Ctrl-C) stopped it.
  [[ $rc == 0 ]] || die "the operator exited (status $rc)"
  info "the operator stopped"
  exit 0
fi

echo
info "kubectl below uses KUBECONFIG=.lab/kubeconfig (export KUBECONFIG=$KUBECONFIG to follow along)"

# 1 --------------------------------------------------------------------------
section "1. A cluster on the legacy dataplane with NPM (v1)"
kc apply -f config/samples/dataplane_v1_dataplaneconfig.yaml
gen=$("$KUBECTL" get dataplaneconfig default -o jsonpath='{.metadata.generation}')
kc wait dataplaneconfig/default --for=jsonpath='{.status.observedGeneration}'="$gen" --timeout=60s
kc get dataplaneconfigs
kc get dataplaneconfig default -o yaml
info "status.effective is the configuration in force, every default filled in; spec stays as written."
kc get daemonset,configmap -n sluice-system

# 2 --------------------------------------------------------------------------
section "2. The same object read as v1alpha1 (through the conversion webhook)"
kc get dataplaneconfigs.v1alpha1.dataplane.sluice.dev default -o yaml
info "No ebpfDataplane: the legacy dataplane. v1 fields v1alpha1 has no place for ride in the dataplane.sluice.dev/v1-fields annotation."

# 3 --------------------------------------------------------------------------
section "3. The in-place move to eBPF, applied in the old (v1alpha1) shape"
kc apply -f config/samples/dataplane_v1alpha1_dataplaneconfig.yaml
info "The warnings come from the API server (v1alpha1 is deprecated) and from the operator's admission webhook."
gen=$("$KUBECTL" get dataplaneconfig default -o jsonpath='{.metadata.generation}')
kc wait dataplaneconfig/default --for=jsonpath='{.status.observedGeneration}'="$gen" --timeout=60s
kc get dataplaneconfig default -o jsonpath='networkDataplane: {.spec.networkDataplane}{"\n"}spec.networkPolicy: {.spec.networkPolicy}{"\n"}status.effective.networkPolicy: {.status.effective.networkPolicy}{"\n"}status.effective.kubeProxyReplacement: {.status.effective.kubeProxyReplacement}{"\n"}'
kc describe dataplaneconfig default
kc get ds -n sluice-system sluice-agent -o jsonpath='image: {.spec.template.spec.containers[0].image}{"\n"}priorityClassName: {.spec.template.spec.priorityClassName}{"\n"}tolerations: {.spec.template.spec.tolerations}{"\n"}capabilities: {.spec.template.spec.containers[0].securityContext.capabilities}{"\n"}resources: {.spec.template.spec.containers[0].resources}{"\n"}updateStrategy: {.spec.updateStrategy}{"\n"}'

# 4 --------------------------------------------------------------------------
section "4. Trying to go back to the legacy dataplane"
patch=(patch dataplaneconfig default --type merge -p '{"spec":{"networkDataplane":"azure"}}')
show "${patch[@]}"
if out=$("$KUBECTL" "${patch[@]}" 2>&1); then
  echo "$out"
  die "the API server accepted networkDataplane: azure after cilium; it must refuse it"
fi
echo "$out"
grep -q "the eBPF dataplane can't be disabled once enabled" <<<"$out" ||
  die "the patch failed, but not with the expected message"
info "Refused, as it must be: the eBPF dataplane can't be disabled once enabled."

# 5 --------------------------------------------------------------------------
section "5. The agent rollout stays pending here"
kc get dataplaneconfig default -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'
info "This local control plane runs no kubelet and no DaemonSet controller, so the agent"
info "DaemonSet is stored but never rolled out: Ready=False with reason AgentPending is"
info "expected here. In a real cluster the operator reports the rollout node by node."

# 6 --------------------------------------------------------------------------
section "6. IPAM: two pools, four nodes"
info "An Overlay pool for node pool \"system\" (a /24 of 192.168.0.0/16 per node) and a Subnet"
info "pool for node pool \"user\" (batches of 16 addresses of the shared pod subnet 10.225.0.0/16)."
kc apply -f config/samples/dataplane_v1_ipampool_overlay.yaml -f config/samples/dataplane_v1_ipampool_subnet.yaml
info "No kubelet here: the nodes are API objects, and the demo sets their InternalIPs (the node subnet"
info "10.224.0.0/16) through the status subresource, as a kubelet would."
kc apply -f hack/demo-nodes.yaml
declare -A node_ip=([aks-system-0]=10.224.0.4 [aks-system-1]=10.224.0.5 [aks-user-0]=10.224.0.6 [aks-user-1]=10.224.0.7)
nodes=(aks-system-0 aks-system-1 aks-user-0 aks-user-1)
for n in "${nodes[@]}"; do
  kc patch node "$n" --subresource=status --type=merge \
    -p "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"${node_ip[$n]}\"},{\"type\":\"Hostname\",\"address\":\"$n\"}]}}"
done
# kubectl wait --for=create waits for one named object only (with several it
# fails at once on those not created yet), so one wait per NodeNetwork.
for n in "${nodes[@]}"; do
  kc wait --for=create "nodenetwork/$n" --timeout=60s
done
kc wait --for=condition=Allocated "${nodes[@]/#/nodenetwork/}" --timeout=60s
kc wait ipampool/overlay-system ipampool/subnet-user --for=jsonpath='{.status.allocatedNodes}'=2 --timeout=60s
kc get ipampools
info "Capacity, allocated and free count IPv4 addresses: the overlay pool's two nodes hold a /24 each,"
info "the subnet pool's two nodes a batch of 16 each."
kc get nodenetworks
kc get ipamblocks
info "An IPAMBlock is the claim on one block, named after its CIDR: the API server refuses a second claim."

# 7 --------------------------------------------------------------------------
section "7. The node side asks for more: aks-user-0 uses 20 pod IPs"
info "A node writes spec (ipsInUse, releaseCIDRs), the operator status. 20 in use plus"
info "minFreeIPs 8 (half a batch) needs a second batch of 16."
kc patch nodenetwork aks-user-0 --type=merge -p '{"spec":{"ipsInUse":20}}'
gen=$("$KUBECTL" get nodenetwork aks-user-0 -o jsonpath='{.metadata.generation}')
kc wait nodenetwork/aks-user-0 --for=jsonpath='{.status.observedGeneration}'="$gen" --timeout=60s
kc wait nodenetwork/aks-user-0 --for=condition=Allocated --timeout=60s
read -ra user0_cidrs <<<"$("$KUBECTL" get nodenetwork aks-user-0 -o jsonpath='{.status.cidrs[*]}')"
((${#user0_cidrs[@]} == 2)) || die "aks-user-0 holds ${#user0_cidrs[@]} batches (${user0_cidrs[*]}) after ipsInUse 20; want 2"
kc get nodenetwork aks-user-0 -o yaml
kc wait ipampool/subnet-user --for=jsonpath='{.status.allocated}'=48 --timeout=60s
kc get ipampool subnet-user

# 8 --------------------------------------------------------------------------
section "8. A node leaves: aks-system-1 is deleted"
block=$("$KUBECTL" get ipamblocks -l sluice.dev/node=aks-system-1 -o name)
[[ -n $block ]] || die "aks-system-1 holds no IPAMBlock"
kc delete node aks-system-1
kc wait --for=delete nodenetwork/aks-system-1 "$block" --timeout=60s
kc wait ipampool/overlay-system --for=jsonpath='{.status.allocatedNodes}'=1 --timeout=60s
kc get ipamblocks
kc get ipampools
info "The operator released the node's block (${block#*/}) back to overlay-system: it is free for the next node."

# 9 --------------------------------------------------------------------------
section "9. A pool that would hand out addresses twice"
bad_pool='apiVersion: dataplane.sluice.dev/v1
kind: IPAMPool
metadata:
  name: overlay-gpu
spec:
  mode: Overlay
  cidrs:
  - 192.168.128.0/17
  nodeSelector:
    matchLabels:
      kubernetes.azure.com/agentpool: gpu'
show apply -f -
printf '%s\n' "$bad_pool" | sed 's/^/    /'
if out=$(printf '%s\n' "$bad_pool" | "$KUBECTL" apply -f - 2>&1); then
  echo "$out"
  die "the API server accepted a pool overlapping overlay-system; it must refuse it"
fi
echo "$out"
grep -q "overlaps 192.168.0.0/16 of IPAMPool overlay-system" <<<"$out" ||
  die "the apply failed, but not with the expected message"
info "Refused, as it must be: pools must not share addresses (nor overlap the service CIDR or a node's address)."
kc get dataplaneconfig default -o jsonpath='{range .status.conditions[?(@.type=="IPAMReady")]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'

# 10 -------------------------------------------------------------------------
section "10. The dataplane at a glance: sluicectl status"
info "What a user runs first when something is wrong: the DataplaneConfig and its conditions, the"
info "agents, the IPAM pools, the NodeNetworks without addresses, and every problem with its reason."
status_pending
info "Exit status 1: the only problem is the agent rollout this lab can't run (section 5). In a cluster"
info "where every agent is ready and every node has its addresses, it prints 'Status: OK' and exits 0."
info "sluicectl status -o json (or yaml) prints the same report for scripts."

# 11 -------------------------------------------------------------------------
section "11. NetworkPolicy on real packets: the node agent on aks-system-0"
if ((EUID != 0)); then
  info "Skipped: this part creates network namespaces and veths and loads eBPF programs, which"
  info "needs root. Run 'sudo make demo' (or hack/demo.sh as root) to see it."
else
  info "A node of network namespaces: sluice-demo-host is the node's own namespace (the machine's"
  info "network is not touched), each pod gets one more. sluice-cni wires them, called through"
  info "libcni as a container runtime calls it, and hands every pod to the node agent, which"
  info "enforces NetworkPolicy with eBPF on the pod's host veth before ADD returns."
  info "go build -o bin/ ./cmd/agent && go build -o bin/sluice-cni ./cmd/cni"
  go build -o bin/ ./cmd/agent
  go build -o bin/sluice-cni ./cmd/cni
  # Leftovers of an interrupted run.
  bin/sluicectl lab node down --dir "$LAB" >/dev/null 2>&1 || true
  node_up=1
  info "\$ bin/sluicectl lab node up --dir .lab --node-name aks-system-0"
  bin/sluicectl lab node up --dir "$LAB" --node-name aks-system-0 | sed "s|$root/||g"
  N=$LAB/node
  # The flags that point the agent at the node's files, as lab node up wrote
  # them (one a line), plus where it serves health and metrics.
  mapfile -t agent_args <"$N/agent.args"
  agent_args+=(--health-addr 127.0.0.1:9879 --metrics-addr 127.0.0.1:9880)
  info "\$ ip netns exec sluice-demo-host bin/agent ${agent_args[*]//$root\//}   (log: .lab/agent.log)"
  ip netns exec sluice-demo-host bin/agent "${agent_args[@]}" >"$LAB/agent.log" 2>&1 </dev/null &
  agent_pid=$!
  in_node() { ip netns exec sluice-demo-host "$@"; }
  wait_for "the agent's /readyz" 60 "$agent_pid" in_node curl -fsS 127.0.0.1:9879/readyz
  wait_for "the agent's IPAM sync to write .lab/node/allocation.json" 30 "$agent_pid" test -s "$N/allocation.json"
  echo "agent ready; its IPAM sync wrote the node's allocation from NodeNetwork aks-system-0:"
  sed 's/^/    /' "$N/allocation.json"
  echo

  pod_add() { # ns name labels [port]
    info "\$ bin/sluicectl lab pod add --namespace $1 --name $2 --labels $3${4:+ --port $4}"
    bin/sluicectl lab pod add --dir "$LAB" --namespace "$1" --name "$2" --labels "$3" ${4:+--port "$4"} --serve 8080
  }
  pod_add shop web app=web http:8080/TCP
  pod_add shop api app=api
  pod_add other client app=client
  kc get pods -A -o wide
  pods=shop/web,shop/api,other/client
  matrix() { # title denied
    echo
    printf '%s%s%s\n' "$bold" "$1" "$reset"
    info "\$ bin/sluicectl lab matrix --pods $pods --ports 8080/TCP --denied '$2'"
    bin/sluicectl lab matrix --dir "$LAB" --pods "$pods" --ports 8080/TCP --denied "$2" ||
      die "the reachability matrix differs from the expectation ($1)"
  }
  matrix "Every pod to every pod on TCP 8080, no policy (✓ the echo came back, ✗ it did not):" none

  deny_all='apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny-ingress
  namespace: shop
spec:
  podSelector: {}
  policyTypes: [Ingress]'
  echo
  show apply -f -
  printf '%s\n' "$deny_all" | sed 's/^/    /'
  printf '%s\n' "$deny_all" | "$KUBECTL" apply -f -
  matrix "Nothing reaches the pods of shop; other/client still accepts connections:" '*/*>shop/*'

  allow_api='apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: web-from-api
  namespace: shop
spec:
  podSelector:
    matchLabels: {app: web}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector:
        matchLabels: {app: api}
    ports:
    - port: http
      protocol: TCP'
  echo
  show apply -f -
  printf '%s\n' "$allow_api" | sed 's/^/    /'
  printf '%s\n' "$allow_api" | "$KUBECTL" apply -f -
  matrix "shop/api reaches shop/web on its port http (8080); nothing else reaches shop:" \
    'other/client>shop/*,shop/web>shop/api'
  info "Every matrix is checked against its expectation: the demo fails if a cell differs."

  echo
  info "The agent's metrics (inside the node's netns): policy apply latency and per-pod verdict counters"
  info "\$ curl -s 127.0.0.1:9880/metrics | grep -E 'sluice_agent_(policy_apply_seconds_(sum|count)|endpoints) |verdict=\"dropped\"'"
  metrics=$(in_node curl -fsS 127.0.0.1:9880/metrics)
  grep -E '^sluice_agent_(policy_apply_seconds_(sum|count)|endpoints) ' <<<"$metrics" ||
    die "the agent's /metrics has no sluice_agent_policy_apply_seconds"
  grep -E '^sluice_agent_endpoint_packets_total\{.*verdict="dropped' <<<"$metrics" | grep -v ' 0$' || true

  # 12 -----------------------------------------------------------------------
  section "12. sluicectl status with the agent running"
  info "The agent reports its node in a DataplaneNode: ready, the endpoints in its datapath, its last"
  info "apply error. The DaemonSet counts stay at 0: the agent runs by hand here, not from the DaemonSet."
  node_reports_ready() { [[ $("$KUBECTL" get dataplanenode aks-system-0 -o jsonpath='{.status.ready}') == true ]]; }
  wait_for "DataplaneNode aks-system-0 to report ready" 30 "$agent_pid" node_reports_ready
  status_pending
fi

section "Done"
