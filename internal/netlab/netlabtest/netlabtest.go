// Package netlabtest adapts netlab to tests: privileged tests that fail
// rather than skip when CI says so, the plugin built once per test binary,
// and nodes, namespaces and bpffs mounts that go away with the test.
package netlabtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/sluice-dev/sluice/internal/netlab"
)

// RequireEnv is the variable that turns a privileged test's skip into a
// failure.
const RequireEnv = "SLUICE_REQUIRE_PRIVILEGED"

// NetNSPrefix starts the name of every namespace a test makes, so that
// leftovers of a killed test run are easy to find (`ip netns | grep`).
const NetNSPrefix = "sluice-t-"

// RequirePrivileged skips t unless it runs as root, or fails it when
// RequireEnv=1 forbids skipping (CI sets it, so that a CI run never passes
// by skipping).
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root for network namespaces, veths and BPF; run the tests as root"
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal(msg + " (" + RequireEnv + "=1 forbids skipping)")
	}
	t.Skip(msg)
}

var (
	buildOnce sync.Once
	pluginDir string
	buildErr  error
)

// PluginDir builds sluice-cni once per test binary and returns the
// directory (the CNI_PATH) holding it.
func PluginDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		pluginDir, buildErr = os.MkdirTemp("", "sluice-cni-bin-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "sluice-cni"),
			"github.com/sluice-dev/sluice/cmd/cni").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build sluice-cni: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pluginDir
}

// uniquePrefix is a namespace prefix no other test (or test binary) uses.
func uniquePrefix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return NetNSPrefix + hex.EncodeToString(b) + "-"
}

// NewNetNS creates a network namespace (loopback up) removed when the
// test ends.
func NewNetNS(t testing.TB) ns.NetNS {
	t.Helper()
	RequirePrivileged(t)
	name := uniquePrefix(t) + "ns"
	netns, err := netlab.AddNetNS(name)
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		_ = netns.Close()
		if err := netlab.DelNetNS(name); err != nil {
			t.Errorf("remove netns: %v", err)
		}
	})
	return netns
}

// Node is a netlab node of a test.
type Node struct {
	*netlab.Node
	t testing.TB
}

// Pod is a pod wired by the real plugin.
type Pod = netlab.Pod

// NewNode creates a node without an agent: forwarding on in its host
// namespace, the plugin built by PluginDir, everything removed when the
// test ends.
func NewNode(t testing.TB) *Node {
	t.Helper()
	return NewNodeWith(t, netlab.NodeOptions{IPForwarding: true})
}

// NewNodeWith creates a node with opts, whose Dir, NetNSPrefix and
// PluginDir default to a temporary directory, a prefix of its own and
// PluginDir's.
func NewNodeWith(t testing.TB, opts netlab.NodeOptions) *Node {
	t.Helper()
	RequirePrivileged(t)
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "node")
	}
	if opts.NetNSPrefix == "" {
		opts.NetNSPrefix = uniquePrefix(t)
	}
	if opts.PluginDir == "" {
		opts.PluginDir = PluginDir(t)
	}
	n, err := netlab.CreateNode(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Remove(); err != nil {
			t.Errorf("remove node: %v", err)
		}
	})
	return &Node{Node: n, t: t}
}

// NewUnderlay creates an underlay (netlab.CreateUnderlay) with a prefix of
// its own unless opts has one, removed when the test ends.
func NewUnderlay(t testing.TB, opts netlab.UnderlayOptions) *netlab.Underlay {
	t.Helper()
	RequirePrivileged(t)
	if opts.NetNSPrefix == "" {
		opts.NetNSPrefix = uniquePrefix(t)
	}
	u, err := netlab.CreateUnderlay(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := u.Remove(); err != nil {
			t.Errorf("remove underlay: %v", err)
		}
	})
	return u
}

// NewNodes creates count nodes with opts (as NewNodeWith, each with a
// prefix of its own) on one new underlay, node i with the underlay's
// NodeAddrs(i) on its UnderlayIfName.
func NewNodes(t testing.TB, count int, opts netlab.NodeOptions) (*netlab.Underlay, []*Node) {
	t.Helper()
	u := NewUnderlay(t, netlab.UnderlayOptions{})
	nodes := make([]*Node, count)
	for i := range nodes {
		n := NewNodeWith(t, opts)
		if err := n.JoinUnderlay(u, u.NodeAddrs(i)...); err != nil {
			t.Fatal(err)
		}
		nodes[i] = n
	}
	return u, nodes
}

// In runs fn in the node's host namespace and fails the test on error.
func (n *Node) In(fn func() error) {
	n.t.Helper()
	if err := n.Do(fn); err != nil {
		n.t.Fatal(err)
	}
}

// WirePod adds a pod without a name (no CNI_ARGS, enough for a node
// without an agent) and fails the test on error.
func (n *Node) WirePod(t testing.TB, containerID string) Pod {
	t.Helper()
	return *n.Wire(t, netlab.PodSpec{ContainerID: containerID})
}

// Wire adds the pod (netlab.Node.AddPod) and fails the test on error; the
// pod's namespace handle is released when the test ends (the namespace
// itself goes with the node).
func (n *Node) Wire(t testing.TB, spec netlab.PodSpec) *Pod {
	t.Helper()
	p, err := n.AddPod(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// PrivateBPFFS mounts a bpffs of the test's own and returns a pin
// directory in it, so nothing the test pins lands on the host's
// /sys/fs/bpf.
func PrivateBPFFS(t testing.TB) string {
	t.Helper()
	RequirePrivileged(t)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return filepath.Join(dir, "sluice")
}

// NewOutside adds the underlay's outside with addr (netlab.AddOutside),
// removed when the test ends, and gives each node a default route via the
// underlay's gateway.
func NewOutside(t testing.TB, u *netlab.Underlay, addr netip.Addr, nodes ...*Node) *netlab.Outside {
	t.Helper()
	o, err := u.AddOutside(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := o.Remove(); err != nil {
			t.Errorf("remove outside: %v", err)
		}
	})
	for _, n := range nodes {
		if err := n.RouteDefaultVia(u.Gateway()); err != nil {
			t.Fatal(err)
		}
	}
	return o
}
