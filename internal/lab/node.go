package lab

// The lab's node: a netlab node whose state lives on disk so that
// separate `sluicectl lab` invocations can build it up, probe it and tear
// it down. Its namespaces are named (ip netns), so the demo can run the
// agent in the host namespace with `ip netns exec`.
//
//	<dir>/node/                 Node.Dir, netlab's node directory, plus:
//	  node.json                 the node's name, the kubeconfig, the forwarder's pid
//	  agent.args                the agent's flags (AgentArgs), one a line
//	  agent.kubeconfig          the lab's kubeconfig, acting as this node's agent
//	  pods/<ns>_<name>.json     one record per pod
//	  logs/                     the forwarder's and the echo servers' logs
//
// Network namespaces: sluice-demo-host (HostNetNS) is the node's root
// namespace (the plugin runs there, forwarding on, the host veths live
// there), and each pod gets sluice-demo-<namespace>-<name>; a Node with
// another NetNSPrefix has namespaces of that prefix instead. Nothing
// touches the machine's own network namespace. The API server listens on
// loopback in the machine's namespace, where an agent in the node's host
// namespace can't reach it: the forwarder (Forward, started by Start)
// listens on the same address inside it and relays to it, so the lab's
// kubeconfig works unchanged there.

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

	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/internal/fsutil"
	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/noderestriction"
)

// NetNSPrefix starts the name of every namespace of the node NewNode
// returns, and HostNetNS is its host namespace.
const (
	NetNSPrefix = "sluice-demo-"
	HostNetNS   = NetNSPrefix + netlab.HostNetNSSuffix
)

// Node is a lab node, whose state lives in Dir (<lab dir>/node) and whose
// network namespaces all start with NetNSPrefix.
type Node struct {
	Dir         string
	NetNSPrefix string
}

// NodeState is node.json.
type NodeState struct {
	NodeName     string `json:"nodeName"`
	Kubeconfig   string `json:"kubeconfig"`
	APIAddr      string `json:"apiAddr"`
	ForwarderPID int    `json:"forwarderPID,omitempty"`
}

// PodRecord is one pod of the node: the harness's pod and its echo
// server.
type PodRecord struct {
	netlab.Pod
	ServePID   int   `json:"servePID,omitempty"`
	ServePorts []int `json:"servePorts,omitempty"`
}

// NewNode returns the node kept under labDir/node.
func NewNode(labDir string) (*Node, error) {
	abs, err := filepath.Abs(labDir)
	if err != nil {
		return nil, err
	}
	return &Node{Dir: filepath.Join(abs, "node"), NetNSPrefix: NetNSPrefix}, nil
}

// netlab is the harness's view of the node; pluginDir may be empty when
// no pod is added or deleted.
func (n *Node) netlab(pluginDir string) netlab.NodeOptions {
	return netlab.NodeOptions{Dir: n.Dir, NetNSPrefix: n.NetNSPrefix, PluginDir: pluginDir, Agent: true, IPForwarding: true}
}

// HostNetNS is the name of the node's host network namespace.
func (n *Node) HostNetNS() string { return n.NetNSPrefix + netlab.HostNetNSSuffix }

func (n *Node) statePath() string { return filepath.Join(n.Dir, "node.json") }
func (n *Node) podsDir() string   { return filepath.Join(n.Dir, "pods") }

// ConflistPath is sluice-cni's conflist.
func (n *Node) ConflistPath() string { return n.netlab("").ConflistPath() }

// AgentArgsFile holds AgentArgs, one a line, for scripts (hack/demo.sh).
func (n *Node) AgentArgsFile() string { return filepath.Join(n.Dir, "agent.args") }

// LogDir holds the forwarder's and the echo servers' logs.
func (n *Node) LogDir() string { return filepath.Join(n.Dir, "logs") }
func (n *Node) podPath(namespace, name string) string {
	return filepath.Join(n.podsDir(), namespace+"_"+name+".json")
}

// AgentKubeconfig is the kubeconfig the node's agent uses: the lab's,
// acting as this node's agent (see writeAgentKubeconfig).
func (n *Node) AgentKubeconfig() string { return filepath.Join(n.Dir, "agent.kubeconfig") }

// writeAgentKubeconfig writes AgentKubeconfig from the lab's kubeconfig.
// The lab has no kubelet to give the agent a bound service-account token,
// so the agent impersonates its service account with the node-name claim
// such a token carries: the agent's RBAC and the node restriction hold in
// the lab as on a cluster, while the lab's own commands stay admin.
func (n *Node) writeAgentKubeconfig(labKubeconfig, nodeName string) error {
	data, err := os.ReadFile(labKubeconfig)
	if err != nil {
		return fmt.Errorf("read the lab's kubeconfig: %w", err)
	}
	agentKC, err := noderestriction.AgentKubeconfig(data, Namespace, nodeName)
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(n.AgentKubeconfig(), agentKC, 0o600)
}

// AgentArgs are the flags that point cmd/agent at this node's files.
func (n *Node) AgentArgs(st *NodeState) []string {
	files := n.netlab("")
	return []string{
		"--kubeconfig", n.AgentKubeconfig(), "--node-name", st.NodeName, "--config=", "--no-pin",
		"--socket", files.AgentSocket(), "--state-file", files.AgentStateFile(),
		"--allocation-file", files.AllocationFile(), "--cni-state-dir", files.StateDir(),
	}
}

// PodNetNS is the name of a pod's network namespace.
func (n *Node) PodNetNS(namespace, name string) string { return n.NetNSPrefix + namespace + "-" + name }

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

// Up creates the node (netlab: host netns with forwarding on, directory,
// conflist with the agent's socket), records its state and writes
// AgentArgsFile. It fails when the node is already up.
func (n *Node) Up(nodeName, kubeconfig string) (*NodeState, error) {
	if netlab.NetNSExists(n.HostNetNS()) {
		return nil, fmt.Errorf("netns %s exists: the node is up already (run 'sluicectl lab node down' first)", n.HostNetNS())
	}
	kc, err := filepath.Abs(kubeconfig)
	if err != nil {
		return nil, err
	}
	apiAddr, err := apiServerAddr(kc)
	if err != nil {
		return nil, err
	}
	node, err := netlab.CreateNode(n.netlab(""))
	if err != nil {
		return nil, err
	}
	if err := node.Close(); err != nil {
		return nil, err
	}
	for _, d := range []string{n.podsDir(), n.LogDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := n.writeAgentKubeconfig(kc, nodeName); err != nil {
		return nil, err
	}
	st := &NodeState{NodeName: nodeName, Kubeconfig: kc, APIAddr: apiAddr}
	if err := n.SaveState(st); err != nil {
		return nil, err
	}
	args := strings.Join(n.AgentArgs(st), "\n") + "\n"
	return st, fsutil.WriteFileAtomic(n.AgentArgsFile(), []byte(args), 0o644)
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
	return fsutil.WriteFileAtomic(path, append(data, '\n'), 0o644)
}

// Forward listens on the API server's address inside the node's host
// namespace and relays every connection to the same address in this
// process's own netns, until ctx ends. ready is called once it listens.
func (n *Node) Forward(ctx context.Context, addr string, log io.Writer, ready func()) error {
	var ln net.Listener
	if err := netlab.InNetNS(n.HostNetNS(), func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s in netns %s: %w", addr, n.HostNetNS(), err)
	}
	fmt.Fprintf(log, "forwarding %s in netns %s to %s\n", addr, n.HostNetNS(), addr)
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
		err := netlab.InNetNS(netnsName, func() error {
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

// NewPodRecord is the record of a pod of the node, not wired yet.
func (n *Node) NewPodRecord(namespace, name string) *PodRecord {
	return &PodRecord{Pod: netlab.Pod{
		Namespace: namespace, Name: name, NetNSName: n.PodNetNS(namespace, name),
		ContainerID: n.PodNetNS(namespace, name),
	}}
}

// wirePod adds the pod through netlab (its netns and CNI ADD, from
// the host namespace with the plugin in pluginDir) and records it.
func (n *Node) wirePod(ctx context.Context, pluginDir string, p *PodRecord) error {
	if _, err := os.Stat(n.podPath(p.Namespace, p.Name)); err == nil {
		return fmt.Errorf("pod %s exists on the demo node", p.Key())
	}
	node, err := netlab.OpenNode(n.netlab(pluginDir))
	if err != nil {
		return err
	}
	defer func() { _ = node.Close() }()
	pod, err := node.AddPod(ctx, netlab.PodSpec{
		Namespace: p.Namespace, Name: p.Name, ContainerID: p.ContainerID, NetNSName: p.NetNSName,
	})
	if err != nil {
		return err
	}
	_ = pod.Close()
	p.Pod = *pod
	return n.SavePod(p)
}

// unwirePod stops the pod's echo server, runs CNI DEL (errors are
// returned but the netns is removed anyway) and forgets the pod.
func (n *Node) unwirePod(ctx context.Context, pluginDir string, p *PodRecord) error {
	stopPID(p.ServePID)
	var errs []error
	if node, err := netlab.OpenNode(n.netlab(pluginDir)); err != nil {
		errs = append(errs, err, netlab.DelNetNS(p.NetNSName))
	} else {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		errs = append(errs, node.DelPod(ctx, &p.Pod), node.Close())
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
		fmt.Fprintf(log, "removing pod %s (netns %s)\n", p.Key(), p.NetNSName)
		if err := n.unwirePod(ctx, pluginDir, p); err != nil {
			errs = append(errs, err)
		}
	}
	if st, err := n.State(); err == nil && st.ForwarderPID != 0 {
		stopPID(st.ForwarderPID)
	}
	left, _ := netlab.NetNSWithPrefix(n.NetNSPrefix)
	for _, name := range left {
		fmt.Fprintf(log, "removing netns %s\n", name)
	}
	if err := netlab.RemoveNode(n.netlab(pluginDir)); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// StartInNetNS starts cmd inside the named netns in a session of its own
// (a background process that outlives the caller).
func StartInNetNS(netnsName string, cmd *exec.Cmd) error {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return netlab.InNetNS(netnsName, cmd.Start)
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
