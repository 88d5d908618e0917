package lab

// A demo "node" made of network namespaces, for `sluicectl lab node|pod|
// matrix` and hack/demo.sh: the same layout as test/nodelab, but with
// named namespaces (ip netns) and state on disk, so separate commands can
// build it up, probe it and tear it down.
//
//	<dir>/node/                 NodeDir: everything of the node but the netns
//	  node.json                 the node's name, the kubeconfig, the forwarder's pid
//	  10-sluice.conflist        sluice-cni's conflist (allocationFile, stateDir, agentSocket below)
//	  allocation.json           written by the agent's IPAM sync
//	  ipam/                     the plugin's state directory
//	  agent.sock, agent-state.json   the agent's (run it with the flags AgentArgs returns)
//	  cni-cache/                libcni's cache
//	  pods/<ns>_<name>.json     one record per pod
//	  logs/                     the forwarder's and the echo servers' logs
//
// Network namespaces: HostNetNS is the node's root namespace (the plugin
// runs there, forwarding on, the host veths live there), and each pod gets
// sluice-demo-<namespace>-<name>. Nothing touches the machine's own
// network namespace. The API server listens on loopback in the machine's
// namespace, where an agent in HostNetNS can't reach it: the forwarder
// (`lab node forward`, started by NodeUp) listens on the same address
// inside HostNetNS and relays to it, so the lab's kubeconfig works
// unchanged there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/internal/cni"
)

// HostNetNS is the name of the demo node's host network namespace, and
// NetNSPrefix starts the name of every namespace the demo node creates.
const (
	NetNSPrefix = "sluice-demo-"
	HostNetNS   = NetNSPrefix + "host"
	netnsDir    = "/run/netns"
)

// Node is the demo node whose state lives in Dir (<lab dir>/node).
type Node struct {
	Dir string
}

// NodeState is node.json.
type NodeState struct {
	NodeName     string `json:"nodeName"`
	Kubeconfig   string `json:"kubeconfig"`
	APIAddr      string `json:"apiAddr"`
	ForwarderPID int    `json:"forwarderPID,omitempty"`
}

// PodRecord is one pod of the node.
type PodRecord struct {
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	NetNS       string `json:"netns"`
	ContainerID string `json:"containerID"`
	IP          string `json:"ip,omitempty"`
	HostIf      string `json:"hostIf,omitempty"`
	ServePID    int    `json:"servePID,omitempty"`
	ServePorts  []int  `json:"servePorts,omitempty"`
}

// Key is namespace/name.
func (p PodRecord) Key() string { return p.Namespace + "/" + p.Name }

// NewNode returns the node kept under labDir/node.
func NewNode(labDir string) (*Node, error) {
	abs, err := filepath.Abs(labDir)
	if err != nil {
		return nil, err
	}
	return &Node{Dir: filepath.Join(abs, "node")}, nil
}

func (n *Node) statePath() string { return filepath.Join(n.Dir, "node.json") }
func (n *Node) cacheDir() string  { return filepath.Join(n.Dir, "cni-cache") }
func (n *Node) podsDir() string   { return filepath.Join(n.Dir, "pods") }

// ConflistPath is sluice-cni's conflist.
func (n *Node) ConflistPath() string { return filepath.Join(n.Dir, cni.ConflistFileName) }

// AllocationFile is the conflist's allocationFile (the agent writes it).
func (n *Node) AllocationFile() string { return filepath.Join(n.Dir, "allocation.json") }

// CNIStateDir is the conflist's stateDir.
func (n *Node) CNIStateDir() string { return filepath.Join(n.Dir, "ipam") }

// AgentSocket is the conflist's agentSocket.
func (n *Node) AgentSocket() string { return filepath.Join(n.Dir, "agent.sock") }

// AgentStateFile is the agent's --state-file.
func (n *Node) AgentStateFile() string { return filepath.Join(n.Dir, "agent-state.json") }

// LogDir holds the forwarder's and the echo servers' logs.
func (n *Node) LogDir() string { return filepath.Join(n.Dir, "logs") }
func (n *Node) podPath(namespace, name string) string {
	return filepath.Join(n.podsDir(), namespace+"_"+name+".json")
}

// AgentArgs are the flags that point cmd/agent at this node's files.
func (n *Node) AgentArgs(st *NodeState) []string {
	return []string{
		"--kubeconfig", st.Kubeconfig, "--node-name", st.NodeName, "--config=", "--no-pin",
		"--socket", n.AgentSocket(), "--state-file", n.AgentStateFile(),
		"--allocation-file", n.AllocationFile(), "--cni-state-dir", n.CNIStateDir(),
	}
}

// NetNSPath is the bind mount of a named network namespace.
func NetNSPath(name string) string { return filepath.Join(netnsDir, name) }

// PodNetNS is the name of a pod's network namespace.
func PodNetNS(namespace, name string) string { return NetNSPrefix + namespace + "-" + name }

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// ValidatePodName checks namespace and name are DNS labels short enough
// for a netns name.
func ValidatePodName(namespace, name string) error {
	for _, s := range []string{namespace, name} {
		if len(s) > 63 || !dnsLabel.MatchString(s) {
			return fmt.Errorf("%q is not a DNS label (lower case letters, digits and '-')", s)
		}
	}
	return nil
}

// Up creates the host netns (forwarding on), the node directory and the
// conflist. It fails when the node is already up.
func (n *Node) Up(nodeName, kubeconfig string) (*NodeState, error) {
	if _, err := os.Stat(NetNSPath(HostNetNS)); err == nil {
		return nil, fmt.Errorf("netns %s exists: the node is up already (run 'sluicectl lab node down' first)", HostNetNS)
	}
	kc, err := filepath.Abs(kubeconfig)
	if err != nil {
		return nil, err
	}
	apiAddr, err := apiServerAddr(kc)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{n.Dir, n.podsDir(), n.LogDir(), n.CNIStateDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := AddNetNS(HostNetNS); err != nil {
		return nil, err
	}
	if err := InNetNS(HostNetNS, func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable forwarding in netns %s: %w", HostNetNS, err)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	conflist, err := cni.RenderConflist(cni.ConflistOptions{
		AllocationFile: n.AllocationFile(), StateDir: n.CNIStateDir(), AgentSocket: n.AgentSocket(),
	})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.ConflistPath(), conflist, 0o644); err != nil {
		return nil, err
	}
	st := &NodeState{NodeName: nodeName, Kubeconfig: kc, APIAddr: apiAddr}
	return st, n.SaveState(st)
}

// apiServerAddr is host:port of the kubeconfig's current server.
func apiServerAddr(kubeconfig string) (string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return "", fmt.Errorf("read kubeconfig: %w", err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("kubeconfig %s: server %q is not a URL", kubeconfig, cfg.Host)
	}
	if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() || u.Port() == "" {
		return "", fmt.Errorf("kubeconfig %s: server %s is not a loopback address with a port (the lab's is)", kubeconfig, cfg.Host)
	}
	return u.Host, nil
}

// State reads node.json.
func (n *Node) State() (*NodeState, error) {
	data, err := os.ReadFile(n.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no demo node in %s: run 'sluicectl lab node up' first", n.Dir)
	}
	if err != nil {
		return nil, err
	}
	st := &NodeState{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%s: %w", n.statePath(), err)
	}
	return st, nil
}

// SaveState writes node.json.
func (n *Node) SaveState(st *NodeState) error { return writeJSON(n.statePath(), st) }

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Forward listens on the API server's address inside HostNetNS and relays
// every connection to the same address in this process's own netns, until
// ctx ends. ready is called once it listens.
func Forward(ctx context.Context, addr string, log io.Writer, ready func()) error {
	var ln net.Listener
	if err := InNetNS(HostNetNS, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s in netns %s: %w", addr, HostNetNS, err)
	}
	fmt.Fprintf(log, "forwarding %s in netns %s to %s\n", addr, HostNetNS, addr)
	if ready != nil {
		ready()
	}
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer func() { _ = c.Close() }()
			var d net.Dialer
			up, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				fmt.Fprintf(log, "dial %s: %v\n", addr, err)
				return
			}
			defer func() { _ = up.Close() }()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// WaitListening dials addr inside netns until it answers or timeout.
func WaitListening(netnsName, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := InNetNS(netnsName, func() error {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				_ = c.Close()
			}
			return err
		})
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s in netns %s after %v: %w", addr, netnsName, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// AddNetNS creates a named network namespace with loopback up.
func AddNetNS(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		_ = DelNetNS(name)
		return fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DelNetNS removes a named network namespace (and with it its veths); a
// missing one is fine.
func DelNetNS(name string) error {
	if _, err := os.Stat(NetNSPath(name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// InNetNS runs fn on a thread locked in the named netns; processes it
// starts start there too.
func InNetNS(name string, fn func() error) error {
	netns, err := ns.GetNS(NetNSPath(name))
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer func() { _ = netns.Close() }()
	return netns.Do(func(ns.NetNS) error { return fn() })
}

// cni is the plugin as the runtime calls it.
func (n *Node) cni(pluginDir string) (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	list, err := libcni.ConfListFromFile(n.ConflistPath())
	if err != nil {
		return nil, nil, err
	}
	return libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, n.cacheDir(), nil), list, nil
}

func runtimeConf(p *PodRecord) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: p.ContainerID, NetNS: NetNSPath(p.NetNS), IfName: "eth0",
		Args: [][2]string{{"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name}},
	}
}

// NewPodRecord is the record of a pod not wired yet.
func NewPodRecord(namespace, name string) *PodRecord {
	return &PodRecord{
		Namespace: namespace, Name: name, NetNS: PodNetNS(namespace, name),
		ContainerID: "sluice-demo-" + namespace + "-" + name,
	}
}

// AddPod creates the pod's netns and runs CNI ADD for it from HostNetNS
// with the plugin in pluginDir. On failure the netns is removed again.
func (n *Node) AddPod(ctx context.Context, pluginDir string, p *PodRecord) error {
	if _, err := os.Stat(n.podPath(p.Namespace, p.Name)); err == nil {
		return fmt.Errorf("pod %s exists on the demo node", p.Key())
	}
	if err := AddNetNS(p.NetNS); err != nil {
		return err
	}
	if err := n.SavePod(p); err != nil {
		_ = DelNetNS(p.NetNS)
		return err
	}
	cniConf, list, err := n.cni(pluginDir)
	if err == nil {
		err = InNetNS(HostNetNS, func() error {
			r, err := cniConf.AddNetworkList(ctx, list, runtimeConf(p))
			if err != nil {
				return fmt.Errorf("CNI ADD: %w", err)
			}
			res, err := current.NewResultFromResult(r)
			if err != nil {
				return err
			}
			if len(res.IPs) == 0 {
				return errors.New("CNI ADD returned no address")
			}
			p.IP = res.IPs[0].Address.IP.String()
			for _, i := range res.Interfaces {
				if i.Sandbox == "" {
					p.HostIf = i.Name
				}
			}
			return nil
		})
	}
	if err != nil {
		_ = DelNetNS(p.NetNS)
		_ = os.Remove(n.podPath(p.Namespace, p.Name))
		return err
	}
	return n.SavePod(p)
}

// DelPod stops the pod's echo server, runs CNI DEL (errors are returned
// but the netns is removed anyway) and forgets the pod.
func (n *Node) DelPod(ctx context.Context, pluginDir string, p *PodRecord) error {
	stopPID(p.ServePID)
	var errs []error
	if cniConf, list, err := n.cni(pluginDir); err != nil {
		errs = append(errs, err)
	} else if _, err := os.Stat(NetNSPath(HostNetNS)); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := InNetNS(HostNetNS, func() error { return cniConf.DelNetworkList(ctx, list, runtimeConf(p)) }); err != nil {
			errs = append(errs, fmt.Errorf("CNI DEL %s: %w", p.Key(), err))
		}
	}
	if err := DelNetNS(p.NetNS); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(n.podPath(p.Namespace, p.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SavePod writes a pod's record.
func (n *Node) SavePod(p *PodRecord) error { return writeJSON(n.podPath(p.Namespace, p.Name), p) }

// Pod reads a pod's record.
func (n *Node) Pod(namespace, name string) (*PodRecord, error) {
	data, err := os.ReadFile(n.podPath(namespace, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no pod %s/%s on the demo node", namespace, name)
	}
	if err != nil {
		return nil, err
	}
	p := &PodRecord{}
	return p, json.Unmarshal(data, p)
}

// Pods reads every pod's record, sorted by key.
func (n *Node) Pods() ([]*PodRecord, error) {
	files, err := filepath.Glob(filepath.Join(n.podsDir(), "*.json"))
	if err != nil {
		return nil, err
	}
	var pods []*PodRecord
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		p := &PodRecord{}
		if err := json.Unmarshal(data, p); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		pods = append(pods, p)
	}
	slices.SortFunc(pods, func(a, b *PodRecord) int { return strings.Compare(a.Key(), b.Key()) })
	return pods, nil
}

// Down removes everything the node made: each pod (echo server, CNI DEL,
// netns), the forwarder, every netns named NetNSPrefix*, and Dir. It goes
// on past errors and returns them all; running it twice is fine.
func (n *Node) Down(ctx context.Context, pluginDir string, log io.Writer) error {
	var errs []error
	pods, err := n.Pods()
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range pods {
		fmt.Fprintf(log, "removing pod %s (netns %s)\n", p.Key(), p.NetNS)
		if err := n.DelPod(ctx, pluginDir, p); err != nil {
			errs = append(errs, err)
		}
	}
	if st, err := n.State(); err == nil && st.ForwarderPID != 0 {
		stopPID(st.ForwarderPID)
	}
	left, _ := filepath.Glob(filepath.Join(netnsDir, NetNSPrefix+"*"))
	for _, path := range left {
		name := filepath.Base(path)
		fmt.Fprintf(log, "removing netns %s\n", name)
		if err := DelNetNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(n.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StartInNetNS starts cmd inside the named netns in a session of its own
// (a background process that outlives the caller).
func StartInNetNS(netnsName string, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return InNetNS(netnsName, cmd.Start)
}

// stopPID sends SIGTERM to pid and waits up to 5 s for it to go, then
// kills it.
func stopPID(pid int) {
	if pid <= 0 {
		return
	}
	// A stale record must not kill whatever has the pid now.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "lab\x00") {
		return
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	if p.Signal(syscall.SIGTERM) != nil {
		return
	}
	for range 100 {
		if p.Signal(syscall.Signal(0)) != nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = p.Kill()
}
