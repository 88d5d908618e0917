// Package nodelab is a small local "node" made of network namespaces, for
// tests that need real interfaces and real packets: a host netns in which
// the real sluice-cni binary runs (through libcni, exactly as a container
// runtime calls it), and pod netns it wires. Later datapath tests attach
// programs to the same veths.
//
// Everything here needs root. RequirePrivileged skips a test when not root,
// and fails it instead when SLUICE_REQUIRE_PRIVILEGED=1 (CI sets it), so a
// CI run can never pass by skipping.
package nodelab

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// RequireEnv is the variable that turns a privileged test's skip into a
// failure.
const RequireEnv = "SLUICE_REQUIRE_PRIVILEGED"

// RequirePrivileged skips t unless it runs as root, or fails it when
// RequireEnv=1 forbids skipping.
func RequirePrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	msg := "needs root for network namespaces and veths; run the tests as root"
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

// PluginDir builds sluice-cni once per test process and returns the
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

// Node is one host netns with its CNI configuration and plugin state.
type Node struct {
	t              testing.TB
	Host           ns.NetNS
	AllocationFile string
	StateDir       string
	cni            *libcni.CNIConfig
	list           *libcni.NetworkConfigList
}

// NewNode creates a host netns with forwarding on and a conflist for
// sluice-cni whose allocation file and state live in a temporary directory.
func NewNode(t testing.TB) *Node {
	t.Helper()
	RequirePrivileged(t)
	dir := t.TempDir()
	n := &Node{
		t:              t,
		Host:           NewNetNS(t),
		AllocationFile: filepath.Join(dir, "run", "allocation.json"),
		StateDir:       filepath.Join(dir, "ipam"),
	}
	n.In(func() error {
		for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
			if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("enable forwarding in the host netns: %w", err)
			}
		}
		return nil
	})
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{PluginDir(t)}, filepath.Join(dir, "cache"), nil)
	list, err := libcni.ConfListFromBytes(fmt.Appendf(nil,
		`{"cniVersion":"1.1.0","name":"sluice","plugins":[{"type":"sluice-cni","mtu":1500,"allocationFile":%q,"stateDir":%q,"hostVethPrefix":"slc"}]}`,
		n.AllocationFile, n.StateDir))
	if err != nil {
		t.Fatal(err)
	}
	n.list = list
	return n
}

// NewNetNS creates a network namespace removed when the test ends.
func NewNetNS(t testing.TB) ns.NetNS {
	t.Helper()
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		_ = netns.Close()
		_ = testutils.UnmountNS(netns)
	})
	return netns
}

// In runs fn on a thread locked in the host netns; processes it starts
// (the plugin, exec'd by libcni) start there too.
func (n *Node) In(fn func() error) {
	n.t.Helper()
	if err := n.Host.Do(func(ns.NetNS) error { return fn() }); err != nil {
		n.t.Fatal(err)
	}
}

// Add runs CNI ADD for a pod, as the runtime would.
func (n *Node) Add(containerID string, pod ns.NetNS) (*current.Result, error) {
	var result *current.Result
	err := n.Host.Do(func(ns.NetNS) error {
		res, err := n.cni.AddNetworkList(context.Background(), n.list, runtimeConf(containerID, pod))
		if err != nil {
			return err
		}
		result, err = current.NewResultFromResult(res)
		return err
	})
	return result, err
}

// Del runs CNI DEL for a pod.
func (n *Node) Del(containerID string, pod ns.NetNS) error {
	return n.Host.Do(func(ns.NetNS) error {
		return n.cni.DelNetworkList(context.Background(), n.list, runtimeConf(containerID, pod))
	})
}

func runtimeConf(containerID string, pod ns.NetNS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: containerID, NetNS: pod.Path(), IfName: "eth0"}
}

// TCPRoundTrip listens on serverIP:port inside server, connects from
// client, sends a message and checks it comes back: a real packet each way
// through the host.
func TCPRoundTrip(server ns.NetNS, serverIP string, client ns.NetNS) error {
	addr := net.JoinHostPort(serverIP, "7777")
	var ln net.Listener
	if err := server.Do(func(ns.NetNS) error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_, _ = io.Copy(conn, conn)
	}()

	const msg = "sluice says hello"
	return client.Do(func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return fmt.Errorf("read echo from %s: %w", addr, err)
		}
		if string(buf) != msg {
			return fmt.Errorf("echo from %s = %q, want %q", addr, buf, msg)
		}
		return nil
	})
}
