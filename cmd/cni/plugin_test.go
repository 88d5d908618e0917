package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/cni/plugin"
)

func TestAddConnectsTwoPods(t *testing.T) {
	e := newEnv(t, 2)
	e.writeAllocation(overlayAllocation())
	podA, podB := e.pods[0], e.pods[1]

	resA := e.mustAdd("pod-a", podA)
	resB := e.mustAdd("pod-b", podB)
	assertResult(t, resA, "pod-a", podA, "10.244.7.1")
	assertResult(t, resB, "pod-b", podB, "10.244.7.2")

	// The plugin ran in the netns of the thread that exec'd it: the host
	// veths are in the host netns and not in the test's own netns.
	for _, id := range []string{"pod-a", "pod-b"} {
		if !e.hostLinkExists(hostVeth(id)) {
			t.Fatalf("host veth of %s missing from the host netns", id)
		}
		if _, err := netlinksafe.LinkByName(hostVeth(id)); err == nil {
			t.Fatalf("host veth of %s leaked into the test's netns", id)
		}
	}
	assertPodWiring(t, podA, "10.244.7.1")
	assertHostWiring(t, e, "pod-a", "10.244.7.1")

	echoBetween(t, podA, podB, "10.244.7.1", "10.244.7.2")

	if err := e.check("pod-a", podA); err != nil {
		t.Fatalf("CHECK pod-a: %v", err)
	}
	if err := e.check("pod-b", podB); err != nil {
		t.Fatalf("CHECK pod-b: %v", err)
	}
	// CHECK notices a missing route, then a missing interface.
	inNS(t, podA, func() error {
		return netlink.RouteDel(&netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, Gw: plugin.GatewayIPv4})
	})
	if err := e.check("pod-a", podA); err == nil || !strings.Contains(err.Error(), "route to 0.0.0.0/0 via 169.254.1.1 on eth0 is missing") {
		t.Fatalf("CHECK without default route: %v", err)
	}
	inNS(t, podA, func() error {
		link, err := netlinksafe.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(link)
	})
	if err := e.check("pod-a", podA); err == nil || !strings.Contains(err.Error(), "interface eth0 not found") {
		t.Fatalf("CHECK without eth0: %v", err)
	}
	// CHECK of a container the plugin never saw: code 3.
	wantCode(t, e.check("stranger", podA), types.ErrUnknownContainer, "unknown container")
}

func assertResult(t *testing.T, res *current.Result, id string, pod ns.NetNS, ip string) {
	t.Helper()
	if res.CNIVersion != "1.1.0" {
		t.Errorf("result version %q", res.CNIVersion)
	}
	if len(res.Interfaces) != 2 {
		t.Fatalf("interfaces %v", res.Interfaces)
	}
	host, podIf := res.Interfaces[0], res.Interfaces[1]
	if host.Name != hostVeth(id) || host.Mac != "ee:ee:ee:ee:ee:ee" || host.Sandbox != "" {
		t.Errorf("host interface %+v", host)
	}
	if podIf.Name != "eth0" || podIf.Sandbox != pod.Path() || podIf.Mac == "" || podIf.Mtu != testMTU {
		t.Errorf("pod interface %+v", podIf)
	}
	if len(res.IPs) != 1 {
		t.Fatalf("ips %v", res.IPs)
	}
	got := res.IPs[0]
	if got.Address.String() != ip+"/32" || !got.Gateway.Equal(plugin.GatewayIPv4) || got.Interface == nil || *got.Interface != 1 {
		t.Errorf("ip %+v", got)
	}
	var haveDefault bool
	for _, r := range res.Routes {
		if r.Dst.String() == "0.0.0.0/0" && r.GW.Equal(plugin.GatewayIPv4) {
			haveDefault = true
		}
	}
	if !haveDefault {
		t.Errorf("no default route in %v", res.Routes)
	}
}

func inNS(t *testing.T, n ns.NetNS, fn func() error) {
	t.Helper()
	if err := n.Do(func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatal(err)
	}
}

func assertPodWiring(t *testing.T, pod ns.NetNS, ip string) {
	t.Helper()
	inNS(t, pod, func() error {
		link, err := netlinksafe.LinkByName("eth0")
		if err != nil {
			return err
		}
		if link.Attrs().MTU != testMTU {
			return fmt.Errorf("pod MTU %d", link.Attrs().MTU)
		}
		addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0].IPNet.String() != ip+"/32" {
			return fmt.Errorf("pod addresses %v", addrs)
		}
		routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var gwRoute, defRoute bool
		for _, r := range routes {
			switch {
			case r.Dst != nil && r.Dst.String() == "169.254.1.1/32" && r.Scope == netlink.SCOPE_LINK:
				gwRoute = true
			case (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.Equal(plugin.GatewayIPv4) && r.Flags&int(netlink.FLAG_ONLINK) != 0:
				defRoute = true
			}
		}
		if !gwRoute || !defRoute {
			return fmt.Errorf("pod routes %v", routes)
		}
		return nil
	})
}

func assertHostWiring(t *testing.T, e *env, id, ip string) {
	t.Helper()
	e.inHost(func() error {
		link, err := netlinksafe.LinkByName(hostVeth(id))
		if err != nil {
			return err
		}
		if link.Attrs().MTU != testMTU || link.Attrs().HardwareAddr.String() != "ee:ee:ee:ee:ee:ee" {
			return fmt.Errorf("host veth attrs %+v", link.Attrs())
		}
		if !hasHostRoute(ip, link.Attrs().Index) {
			return fmt.Errorf("no host route to %s via %s", ip, hostVeth(id))
		}
		return nil
	})
}

// hasHostRoute runs in the host netns.
func hasHostRoute(ip string, linkIndex int) bool {
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return false
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.IP.String() == ip && (linkIndex == 0 || r.LinkIndex == linkIndex) {
			return true
		}
	}
	return false
}

// echoBetween opens a TCP echo listener in pod A's netns and connects to
// it from pod B's netns through the host.
func echoBetween(t *testing.T, podA, podB ns.NetNS, ipA, ipB string) {
	t.Helper()
	var ln net.Listener
	inNS(t, podA, func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ipA, "7777"))
		return err
	})
	defer func() { _ = ln.Close() }()
	served := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer func() { _ = conn.Close() }()
		// No NAT on the way: the server sees pod B's own address.
		if from := conn.RemoteAddr().(*net.TCPAddr).IP.String(); from != ipB {
			served <- fmt.Errorf("connection from %s, want %s", from, ipB)
			return
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.CopyN(conn, conn, int64(len("hello from pod b")))
		served <- err
	}()

	var conn net.Conn
	inNS(t, podB, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(ipA, "7777"), 10*time.Second)
		return err
	})
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte("hello from pod b")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len("hello from pod b"))
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != "hello from pod b" {
		t.Fatalf("echo %q", buf)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}
}

func TestDelCleansUp(t *testing.T) {
	e := newEnv(t, 1)
	e.writeAllocation(overlayAllocation())
	pod := e.pods[0]
	e.mustAdd("pod-a", pod)
	if err := e.del(rt("pod-a", pod)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if e.hostLinkExists(hostVeth("pod-a")) {
		t.Fatal("host veth survived DEL")
	}
	if held := e.reservations()["pod-a"]; len(held) != 0 {
		t.Fatalf("reservation survived DEL: %v", held)
	}
	e.inHost(func() error {
		if hasHostRoute("10.244.7.1", 0) {
			return fmt.Errorf("host route to 10.244.7.1 survived DEL")
		}
		return nil
	})
	inNS(t, pod, func() error {
		if _, err := netlinksafe.LinkByName("eth0"); err == nil {
			return fmt.Errorf("eth0 survived DEL")
		}
		return nil
	})
	// DEL is idempotent: again, for an unknown container, and with the
	// netns gone.
	if err := e.del(rt("pod-a", pod)); err != nil {
		t.Fatalf("second DEL: %v", err)
	}
	if err := e.del(rt("never-added", pod)); err != nil {
		t.Fatalf("DEL of unknown container: %v", err)
	}
	gone := rt("pod-a", pod)
	gone.NetNS = filepath.Join(e.dir, "no-such-netns")
	if err := e.del(gone); err != nil {
		t.Fatalf("DEL with missing netns: %v", err)
	}
	// The released address is the next one handed out.
	if res := e.mustAdd("pod-b", pod); res.IPs[0].Address.IP.String() != "10.244.7.1" {
		t.Fatalf("released address not reused: %v", res.IPs[0])
	}
}

func TestNoAllocationYet(t *testing.T) {
	e := newEnv(t, 1)
	_, err := e.add("pod-a", e.pods[0])
	wantCode(t, err, types.ErrTryAgainLater, fmt.Sprintf(
		"no allocation for this node yet (allocation file %s missing: the node agent has not received this node's addresses)", e.allocPth))
	if rs := e.reservations(); len(rs) != 0 {
		t.Fatalf("failed ADD left reservations %v", rs)
	}
	wantCode(t, e.status(), types.ErrPluginNotAvailable, "no allocation for this node yet")

	a := overlayAllocation()
	a.CIDRs = nil
	e.writeAllocation(a)
	wantCode(t, e.status(), types.ErrPluginNotAvailable, "has no CIDRs")

	e.writeAllocation(overlayAllocation())
	if err := e.status(); err != nil {
		t.Fatalf("STATUS with an allocation: %v", err)
	}
	e.mustAdd("pod-a", e.pods[0])
}

func TestExhaustion(t *testing.T) {
	e := newEnv(t, 3)
	e.writeAllocation(cni.Allocation{Node: "node-1", Pool: "small", Mode: cni.ModeSubnet, CIDRs: []string{"10.50.0.0/29"}, MaxPods: 2})
	e.mustAdd("pod-a", e.pods[0])
	e.mustAdd("pod-b", e.pods[1])
	_, err := e.add("pod-c", e.pods[2])
	wantCode(t, err, types.ErrTryAgainLater, "pool exhausted on this node: all 2 addresses in use")
	if len(e.reservations()) != 2 {
		t.Fatalf("reservations %v", e.reservations())
	}
	if e.hostLinkExists(hostVeth("pod-c")) {
		t.Fatal("failed ADD left a host veth")
	}
}

func TestBadConfigAndEnv(t *testing.T) {
	e := newEnv(t, 1)
	e.writeAllocation(overlayAllocation())
	badList, err := libcni.ConfListFromBytes([]byte(strings.Replace(string(e.list.Bytes), `"mtu":1400`, `"mtu":100`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.addWith(badList, rt("pod-a", e.pods[0]))
	wantCode(t, err, types.ErrInvalidNetworkConfig, "mtu 100")

	r := rt("pod-a", e.pods[0])
	r.NetNS = filepath.Join(e.dir, "no-such-netns")
	_, err = e.addWith(e.list, r)
	wantCode(t, err, types.ErrInvalidEnvironmentVariables, "CNI_NETNS")
}

func TestOlderSpecVersions(t *testing.T) {
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			e := newEnv(t, 1)
			e.writeAllocation(overlayAllocation())
			e.list = e.confList(v)
			res := e.mustAdd("pod-a", e.pods[0])
			if res.IPs[0].Address.String() != "10.244.7.1/32" {
				t.Fatalf("result %v", res)
			}
			if v != "0.3.1" {
				if err := e.check("pod-a", e.pods[0]); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			if err := e.del(rt("pod-a", e.pods[0])); err != nil {
				t.Fatalf("DEL: %v", err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	e := newEnv(t, 0)
	info, err := e.cni.GetVersionInfo(context.Background(), pluginName)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.SupportedVersions(); !slices.Equal(got, []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
		t.Fatalf("versions %v", got)
	}
}

func TestDualStack(t *testing.T) {
	e := newEnv(t, 2)
	a := overlayAllocation()
	a.CIDRs = append(a.CIDRs, "fd00:10:244:7::/64")
	a.ExcludeIPs = append(a.ExcludeIPs, "fd00:10:244:7::")
	e.writeAllocation(a)
	resA := e.mustAdd("pod-a", e.pods[0])
	e.mustAdd("pod-b", e.pods[1])
	var got []string
	for _, ip := range resA.IPs {
		got = append(got, ip.Address.String()+" gw "+ip.Gateway.String())
	}
	if want := []string{"10.244.7.1/32 gw 169.254.1.1", "fd00:10:244:7::1/128 gw fe80::1"}; !slices.Equal(got, want) {
		t.Fatalf("ips %v, want %v", got, want)
	}
	if err := e.check("pod-a", e.pods[0]); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	echoBetween(t, e.pods[0], e.pods[1], "10.244.7.1", "10.244.7.2")
	echoBetween(t, e.pods[0], e.pods[1], "fd00:10:244:7::1", "fd00:10:244:7::2")
}

// TestKilledAdd kills the plugin at each hang point and checks that the
// next ADD, DEL and GC repair what it left, with no address held twice and
// none lost after any step.
func TestKilledAdd(t *testing.T) {
	for _, point := range []string{plugin.HangAfterReserve, plugin.HangAfterWire} {
		t.Run(point, func(t *testing.T) {
			e := newEnv(t, 5)
			e.writeAllocation(overlayAllocation())
			// live is what the state must hold after each step.
			live := map[string]string{}
			assertLive := func(step string) {
				t.Helper()
				got := map[string]string{}
				for id, ips := range e.reservations() {
					if len(ips) != 1 {
						t.Fatalf("%s: %s holds %v", step, id, ips)
					}
					got[id] = ips[0].String()
				}
				if fmt.Sprint(got) != fmt.Sprint(live) {
					t.Fatalf("%s: state holds %v, want %v", step, got, live)
				}
			}
			killMidAdd := func(id string, pod ns.NetNS) string {
				t.Helper()
				p := e.exec("ADD", id, pod, plugin.HangEnv+"="+point)
				p.waitHanging(t)
				held := e.reservations()[id]
				if len(held) != 1 {
					t.Fatalf("hanging plugin's reservation not in state: %v", e.reservations())
				}
				if point == plugin.HangAfterWire && !e.hostLinkExists(hostVeth(id)) {
					t.Fatal("plugin hung after wire without a host veth")
				}
				p.kill(t)
				var st struct {
					Version      int               `json:"version"`
					Reservations []cni.Reservation `json:"reservations"`
				}
				data, err := os.ReadFile(filepath.Join(e.stateDir, "state.json"))
				if err != nil || json.Unmarshal(data, &st) != nil || st.Version != 1 {
					t.Fatalf("state after kill is not valid: %v %s", err, data)
				}
				live[id] = held[0].String()
				return held[0].String()
			}

			// 1. killed ADD; another container gets another address.
			ipK1 := killMidAdd("killed-1", e.pods[0])
			assertLive("after kill")
			resO := e.mustAdd("other", e.pods[1])
			if ipO := resO.IPs[0].Address.IP.String(); ipO == ipK1 {
				t.Fatalf("other container got the killed container's %s", ipO)
			} else {
				live["other"] = ipO
			}
			assertLive("after other ADD")

			// 2. a retried ADD reuses the address and builds a working pod.
			resK1 := e.mustAdd("killed-1", e.pods[0])
			if got := resK1.IPs[0].Address.IP.String(); got != ipK1 {
				t.Fatalf("retried ADD got %s, want %s", got, ipK1)
			}
			if err := e.check("killed-1", e.pods[0]); err != nil {
				t.Fatalf("CHECK after retried ADD: %v", err)
			}
			echoBetween(t, e.pods[0], e.pods[1], ipK1, live["other"])
			assertLive("after retried ADD")

			// 3. DEL releases a killed ADD's reservation.
			killMidAdd("killed-2", e.pods[2])
			if err := e.del(rt("killed-2", e.pods[2])); err != nil {
				t.Fatalf("DEL of killed ADD: %v", err)
			}
			delete(live, "killed-2")
			assertLive("after DEL")
			if e.hostLinkExists(hostVeth("killed-2")) {
				t.Fatal("DEL left the killed ADD's host veth")
			}

			// 4. GC releases a killed ADD that the runtime does not list.
			killMidAdd("killed-3", e.pods[3])
			if err := e.gc("killed-1", "other"); err != nil {
				t.Fatalf("GC: %v", err)
			}
			delete(live, "killed-3")
			assertLive("after GC")
			if e.hostLinkExists(hostVeth("killed-3")) {
				t.Fatal("GC left the killed ADD's host veth")
			}
			for _, id := range []string{"killed-1", "other"} {
				if !e.hostLinkExists(hostVeth(id)) {
					t.Fatalf("GC removed the host veth of valid %s", id)
				}
			}
			if err := e.check("killed-1", e.pods[0]); err != nil {
				t.Fatalf("CHECK after GC: %v", err)
			}

			// 5. nothing was lost: the freed addresses are handed out again.
			res := e.mustAdd("after", e.pods[4])
			if got := res.IPs[0].Address.IP.String(); got == ipK1 || got == live["other"] {
				t.Fatalf("new pod got a live address %s", got)
			}
			live["after"] = res.IPs[0].Address.IP.String()
			assertLive("at the end")
			if want := fmt.Sprint(netip.MustParseAddr("10.244.7.3")); live["after"] != want {
				t.Fatalf("freed address not reused: got %s, want %s", live["after"], want)
			}
		})
	}
}

func TestGCRemovesStaleVeths(t *testing.T) {
	e := newEnv(t, 2)
	e.writeAllocation(overlayAllocation())
	e.mustAdd("keep", e.pods[0])
	e.mustAdd("drop", e.pods[1])
	// A host veth with the prefix and no reservation (its DEL died), and a
	// link with the prefix that is not ours.
	e.inHost(func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostVeth("orphan")}, PeerName: "orphanpeer"}); err != nil {
			return err
		}
		// Veths named with the prefix but not in HostVethName's shape.
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "slcadmin"}, PeerName: "slczzzzzzzzzzz"})
	})
	if err := e.gc("keep"); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if ids := slices.Sorted(maps.Keys(e.reservations())); !slices.Equal(ids, []string{"keep"}) {
		t.Fatalf("after GC reservations of %v", ids)
	}
	if e.hostLinkExists(hostVeth("orphan")) || e.hostLinkExists(hostVeth("drop")) {
		t.Fatal("GC left a stale host veth")
	}
	if !e.hostLinkExists(hostVeth("keep")) || !e.hostLinkExists("slcadmin") || !e.hostLinkExists("slczzzzzzzzzzz") {
		t.Fatal("GC removed a link it does not own")
	}
}

func TestConcurrentAdds(t *testing.T) {
	const n = 20
	e := newEnv(t, n)
	e.writeAllocation(overlayAllocation())
	results := make([]*current.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p := e.exec("ADD", fmt.Sprintf("parallel-%02d", i), e.pods[i])
			results[i], errs[i] = p.wait()
		})
	}
	wg.Wait()
	seen := map[string]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		ip := results[i].IPs[0].Address.IP.String()
		if j, dup := seen[ip]; dup {
			t.Fatalf("ADD %d and %d both got %s", i, j, ip)
		}
		seen[ip] = i
	}
	if got := len(e.reservations()); got != n {
		t.Fatalf("state holds %d reservations, want %d", got, n)
	}
	inUse, err := cni.InUse(e.stateDir)
	if err != nil || len(inUse) != n {
		t.Fatalf("InUse: %v %v", inUse, err)
	}
	// Lowest free: exactly .1 to .20.
	if inUse[0].String() != "10.244.7.1" || inUse[n-1].String() != "10.244.7.20" {
		t.Fatalf("InUse %v", inUse)
	}
}
