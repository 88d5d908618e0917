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
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/cni"
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
	conf, err := cni.RenderConflist(cni.ConflistOptions{AllocationFile: n.AllocationFile, StateDir: n.StateDir})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes(conf)
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

// Pod is a pod wired by CNI ADD: its netns, its first address and its
// host-side veth (where the datapath attaches).
type Pod struct {
	NetNS       ns.NetNS
	IP          netip.Addr
	HostIfName  string
	HostIfIndex int
}

// AddPod creates a pod netns, runs CNI ADD for it and finds its host veth.
func (n *Node) AddPod(t testing.TB, containerID string) Pod {
	t.Helper()
	p := Pod{NetNS: NewNetNS(t)}
	res, err := n.Add(containerID, p.NetNS)
	if err != nil {
		t.Fatalf("CNI ADD %s: %v", containerID, err)
	}
	if len(res.IPs) == 0 {
		t.Fatalf("CNI ADD %s gave no address", containerID)
	}
	p.IP, _ = netip.AddrFromSlice(res.IPs[0].Address.IP)
	p.IP = p.IP.Unmap()
	for _, i := range res.Interfaces {
		if i.Sandbox == "" {
			p.HostIfName = i.Name
		}
	}
	n.In(func() error {
		l, err := netlink.LinkByName(p.HostIfName)
		if err != nil {
			return fmt.Errorf("host veth %q of %s: %w", p.HostIfName, containerID, err)
		}
		p.HostIfIndex = l.Attrs().Index
		return nil
	})
	return p
}

func runtimeConf(containerID string, pod ns.NetNS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: containerID, NetNS: pod.Path(), IfName: "eth0"}
}

// TCPRoundTrip is TCPRoundTripOn port 7777 with a 5 s timeout.
func TCPRoundTrip(server ns.NetNS, serverIP string, client ns.NetNS) error {
	return TCPRoundTripOn(server, netip.MustParseAddr(serverIP), 7777, client, 5*time.Second)
}

// TCPRoundTripOn listens on serverIP:port inside server, connects from
// client, sends a message and checks it comes back: a real packet each way
// through the host. A connection that isn't answered within timeout (a
// dropped SYN) is an error.
func TCPRoundTripOn(server ns.NetNS, serverIP netip.Addr, port int, client ns.NetNS, timeout time.Duration) error {
	addr := net.JoinHostPort(serverIP.String(), fmt.Sprint(port))
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
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", addr, err)
		}
		defer func() { _ = conn.Close() }()
		_ = conn.SetDeadline(time.Now().Add(timeout))
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

// TCXPrograms counts the tcx programs attached to the interface ifName, in
// both directions, in the netns the calling thread is in (call it inside
// Node.In or NetNS.Do).
func TCXPrograms(ifName string) (int, error) {
	l, err := netlink.LinkByName(ifName)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		r, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: at})
		if err != nil {
			return 0, fmt.Errorf("query tcx programs on %s: %w", ifName, err)
		}
		n += len(r.Programs)
	}
	return n, nil
}
