package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/sluice-dev/sluice/internal/cni"
)

// HostNetNSSuffix ends the name of a node's host network namespace.
const HostNetNSSuffix = "host"

// NodeOptions say where a node lives and how its conflist reads.
type NodeOptions struct {
	// Dir holds the node's files (see Node's path methods). Required.
	Dir string
	// NetNSPrefix starts the name of every network namespace of the node:
	// the host namespace is NetNSPrefix+"host", a pod's is NetNSPrefix
	// followed by its namespace and name (or its container ID). Nodes
	// that coexist need different prefixes. Required.
	NetNSPrefix string
	// PluginDir holds the sluice-cni binary (libcni's CNI_PATH). Required
	// to add or delete pods.
	PluginDir string
	// Agent puts the agent's socket (AgentSocket) in the conflist: every
	// ADD then waits for a node agent, which the caller runs.
	Agent bool
	// IPForwarding turns forwarding on in the host namespace when the
	// node is created, as a node without an agent needs for pod-to-pod
	// traffic (the agent turns it on itself).
	IPForwarding bool
}

// Node is a node made of network namespaces: its host namespace, its
// directory and the pods wired in it.
type Node struct {
	opts NodeOptions
	host ns.NetNS
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// CreateNode creates the node's directory, host namespace (forwarding on
// when asked) and conflist. It fails when the host namespace exists: a
// node of that prefix is up already.
func CreateNode(opts NodeOptions) (_ *Node, retErr error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	n := &Node{opts: opts}
	if NetNSExists(n.HostNetNSName()) {
		return nil, fmt.Errorf("netns %s exists: a node with prefix %q is up already", n.HostNetNSName(), opts.NetNSPrefix)
	}
	for _, d := range []string{opts.Dir, n.StateDir(), n.cacheDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create node directory: %w", err)
		}
	}
	host, err := AddNetNS(n.HostNetNSName())
	if err != nil {
		return nil, err
	}
	n.host = host
	defer func() {
		if retErr != nil {
			_ = n.Close()
			_ = DelNetNS(n.HostNetNSName())
		}
	}()
	if opts.IPForwarding {
		if err := n.Do(func() error { return writeSysctls(forwardingSysctls, "1") }); err != nil {
			return nil, fmt.Errorf("enable forwarding in netns %s: %w", n.HostNetNSName(), err)
		}
	}
	conflist, err := cni.RenderConflist(n.conflistOptions())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(n.ConflistPath(), conflist, 0o644); err != nil {
		return nil, fmt.Errorf("write conflist: %w", err)
	}
	return n, n.loadConflist()
}

// OpenNode opens a node an earlier CreateNode made, in this process or
// another.
func OpenNode(opts NodeOptions) (*Node, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	n := &Node{opts: opts}
	host, err := ns.GetNS(NetNSPath(n.HostNetNSName()))
	if err != nil {
		return nil, fmt.Errorf("open the node's host netns %s (is the node up?): %w", n.HostNetNSName(), err)
	}
	n.host = host
	if err := n.loadConflist(); err != nil {
		_ = n.Close()
		return nil, err
	}
	return n, nil
}

// RemoveNode removes everything of the node opts describe that exists:
// every network namespace with its prefix (pods' and host's, so their
// veths too) and its directory. It goes on past errors and returns them
// all; on a node that is gone it does nothing. It runs no CNI DEL: callers
// that want the plugin (and an agent) to forget the pods delete them
// first.
func RemoveNode(opts NodeOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	var errs []error
	names, err := NetNSWithPrefix(opts.NetNSPrefix)
	errs = append(errs, err)
	for _, name := range names {
		errs = append(errs, DelNetNS(name))
	}
	errs = append(errs, os.RemoveAll(opts.Dir))
	return errors.Join(errs...)
}

// Remove closes the node and removes it (RemoveNode).
func (n *Node) Remove() error {
	return errors.Join(n.Close(), RemoveNode(n.opts))
}

// Close releases the node's handle on its host namespace; the node stays.
func (n *Node) Close() error {
	if n.host == nil {
		return nil
	}
	err := n.host.Close()
	n.host = nil
	return err
}

func (o NodeOptions) validate() error {
	if o.Dir == "" || !filepath.IsAbs(o.Dir) {
		return fmt.Errorf("netlab: node directory %q is not an absolute path", o.Dir)
	}
	if o.NetNSPrefix == "" {
		return errors.New("netlab: a node needs a NetNSPrefix")
	}
	return nil
}

func (n *Node) conflistOptions() cni.ConflistOptions {
	o := cni.ConflistOptions{AllocationFile: n.AllocationFile(), StateDir: n.StateDir()}
	if n.opts.Agent {
		o.AgentSocket = n.AgentSocket()
	}
	return o
}

func (n *Node) loadConflist() error {
	list, err := libcni.ConfListFromFile(n.ConflistPath())
	if err != nil {
		return fmt.Errorf("read the node's conflist: %w", err)
	}
	n.list = list
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{n.opts.PluginDir}, n.cacheDir(), nil)
	return nil
}

// Options are the options the node was made or opened with.
func (n *Node) Options() NodeOptions { return n.opts }

// Host is the node's host network namespace.
func (n *Node) Host() ns.NetNS { return n.host }

// HostNetNSName is the name of the node's host network namespace.
func (n *Node) HostNetNSName() string { return n.opts.NetNSPrefix + HostNetNSSuffix }

// Do runs fn on a thread locked in the host namespace; processes fn
// starts (the plugin, exec'd by libcni) start there too.
func (n *Node) Do(fn func() error) error {
	if n.host == nil {
		return fmt.Errorf("netlab: node %s is closed", n.HostNetNSName())
	}
	return n.host.Do(func(ns.NetNS) error { return fn() })
}

// The node's files, all in Dir. NodeOptions has them too, for callers
// that need a path without opening the node (to tell an agent, say).

// Dir is the node's directory.
func (n *Node) Dir() string { return n.opts.Dir }

// ConflistPath is sluice-cni's conflist.
func (n *Node) ConflistPath() string { return n.opts.ConflistPath() }

// AllocationFile is the conflist's allocationFile: the agent's IPAM sync
// or the test writes it.
func (n *Node) AllocationFile() string { return n.opts.AllocationFile() }

// StateDir is the conflist's stateDir, the plugin's reservations.
func (n *Node) StateDir() string { return n.opts.StateDir() }

// AgentSocket is the agent's socket (in the conflist when Agent is set).
func (n *Node) AgentSocket() string { return n.opts.AgentSocket() }

// AgentStateFile is where the node's agent keeps its endpoint state.
func (n *Node) AgentStateFile() string { return n.opts.AgentStateFile() }

// cacheDir is libcni's cache (results of ADD, read back by DEL and CHECK).
func (n *Node) cacheDir() string { return filepath.Join(n.opts.Dir, "cni-cache") }

// ConflistPath is Node.ConflistPath.
func (o NodeOptions) ConflistPath() string { return filepath.Join(o.Dir, cni.ConflistFileName) }

// AllocationFile is Node.AllocationFile.
func (o NodeOptions) AllocationFile() string { return filepath.Join(o.Dir, "allocation.json") }

// StateDir is Node.StateDir.
func (o NodeOptions) StateDir() string { return filepath.Join(o.Dir, "ipam") }

// AgentSocket is Node.AgentSocket.
func (o NodeOptions) AgentSocket() string { return filepath.Join(o.Dir, "agent.sock") }

// AgentStateFile is Node.AgentStateFile.
func (o NodeOptions) AgentStateFile() string { return filepath.Join(o.Dir, "agent-state.json") }

// forwardingSysctls turn IP forwarding on, for IPv4 and IPv6.
var forwardingSysctls = []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"}

func writeSysctls(files []string, v string) error {
	for _, f := range files {
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			return err
		}
	}
	return nil
}
