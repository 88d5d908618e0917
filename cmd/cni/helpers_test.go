package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
)

const (
	pluginName  = "sluice-cni"
	networkName = "sluice"
	testMTU     = 1400
)

// requirePrivileged, newNS and pluginDir are the harness's; the CNI tests
// keep their own world (env) on a harness node for the finer control the
// version and crash tests need: their conflist is a hand-written fixture
// whose cniVersion each test picks.
func requirePrivileged(t *testing.T) { t.Helper(); netlabtest.RequirePrivileged(t) }

func pluginDir(t *testing.T) string { t.Helper(); return netlabtest.PluginDir(t) }

// env is one test's world: a harness node's host netns (forwarding on) in
// which every plugin runs, "pod" netns, the node's allocation file and
// state dir, and a libcni cache.
type env struct {
	t        *testing.T
	host     ns.NetNS
	pods     []ns.NetNS
	dir      string
	allocPth string
	stateDir string
	cni      *libcni.CNIConfig
	list     *libcni.NetworkConfigList
}

func newEnv(t *testing.T, pods int) *env {
	t.Helper()
	requirePrivileged(t)
	node := netlabtest.NewNode(t)
	e := &env{t: t, dir: t.TempDir(), host: node.Host(), allocPth: node.AllocationFile(), stateDir: node.StateDir()}
	for range pods {
		e.pods = append(e.pods, newNS(t))
	}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, filepath.Join(e.dir, "cache"), nil)
	e.list = e.confList("1.1.0")
	return e
}

func newNS(t *testing.T) ns.NetNS { t.Helper(); return netlabtest.NewNetNS(t) }

func (e *env) pluginConf() string {
	return fmt.Sprintf(`{"type":%q,"mtu":%d,"allocationFile":%q,"stateDir":%q,"hostVethPrefix":"slc"}`,
		pluginName, testMTU, e.allocPth, e.stateDir)
}

func (e *env) confList(cniVersion string) *libcni.NetworkConfigList {
	e.t.Helper()
	list, err := libcni.ConfListFromBytes(fmt.Appendf(nil, `{"cniVersion":%q,"name":%q,"plugins":[%s]}`, cniVersion, networkName, e.pluginConf()))
	if err != nil {
		e.t.Fatal(err)
	}
	return list
}

func (e *env) writeAllocation(a cni.Allocation) {
	e.t.Helper()
	if err := cni.WriteAllocation(e.allocPth, a); err != nil {
		e.t.Fatal(err)
	}
}

func overlayAllocation() cni.Allocation {
	return cni.Allocation{
		Node: "node-1", Pool: "default", Mode: cni.ModeOverlay,
		CIDRs: []string{"10.244.7.0/24"}, ExcludeIPs: []string{"10.244.7.0", "10.244.7.255"}, MaxPods: 110,
	}
}

// inHost runs fn on a thread locked in the host netns; processes it
// execs (the plugin, through libcni) start in that netns.
func (e *env) inHost(fn func() error) {
	e.t.Helper()
	if err := e.host.Do(func(ns.NetNS) error { return fn() }); err != nil {
		e.t.Fatal(err)
	}
}

func rt(id string, pod ns.NetNS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: pod.Path(), IfName: "eth0"}
}

func (e *env) add(id string, pod ns.NetNS) (*current.Result, error) {
	return e.addWith(e.list, rt(id, pod))
}

func (e *env) addWith(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := e.host.Do(func(ns.NetNS) error {
		var err error
		res, err = e.cni.AddNetworkList(context.Background(), list, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (e *env) mustAdd(id string, pod ns.NetNS) *current.Result {
	e.t.Helper()
	res, err := e.add(id, pod)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", id, err)
	}
	return res
}

func (e *env) check(id string, pod ns.NetNS) error {
	return e.host.Do(func(ns.NetNS) error {
		return e.cni.CheckNetworkList(context.Background(), e.list, rt(id, pod))
	})
}

func (e *env) del(r *libcni.RuntimeConf) error {
	return e.host.Do(func(ns.NetNS) error {
		return e.cni.DelNetworkList(context.Background(), e.list, r)
	})
}

func (e *env) gc(valid ...string) error {
	args := &libcni.GCArgs{}
	for _, id := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: id, IfName: "eth0"})
	}
	return e.host.Do(func(ns.NetNS) error {
		return e.cni.GCNetworkList(context.Background(), e.list, args)
	})
}

func (e *env) status() error {
	return e.host.Do(func(ns.NetNS) error {
		return e.cni.GetStatusNetworkList(context.Background(), e.list)
	})
}

// reservations reads the allocator's state the way the node side does and
// fails the test when any address is held twice.
func (e *env) reservations() map[string][]netip.Addr {
	e.t.Helper()
	rs, err := cni.Reservations(e.stateDir)
	if err != nil {
		e.t.Fatalf("read state: %v", err)
	}
	byID := map[string][]netip.Addr{}
	seen := map[netip.Addr]string{}
	for _, r := range rs {
		if other, dup := seen[r.IP]; dup {
			e.t.Fatalf("%s is held by both %s and %s", r.IP, other, r.ContainerID)
		}
		seen[r.IP] = r.ContainerID
		byID[r.ContainerID] = append(byID[r.ContainerID], r.IP)
	}
	return byID
}

// hostLinkExists says whether the host netns has a link of that name.
func (e *env) hostLinkExists(name string) bool {
	var found bool
	e.inHost(func() error {
		_, err := netlinksafe.LinkByName(name)
		found = err == nil
		return nil
	})
	return found
}

func hostVeth(id string) string { return cni.HostVethName("slc", id, "eth0") }

// wantCode asserts that err is a CNI error with the code and a message
// containing want.
func wantCode(t *testing.T, err error, code uint, want string) {
	t.Helper()
	var cniErr *types.Error
	if !errors.As(err, &cniErr) {
		t.Fatalf("want CNI error %d %q, got %v", code, want, err)
	}
	if cniErr.Code != code || !strings.Contains(cniErr.Msg, want) {
		t.Fatalf("got error %d %q, want %d containing %q", cniErr.Code, cniErr.Msg, code, want)
	}
}

// started is a plugin process the test execs itself, so it owns the pid.
type started struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	lines  chan string
}

// exec runs the plugin as a runtime does: CNI_* variables, the plugin's
// config (with name and cniVersion) on stdin, started from the host netns.
func (e *env) exec(command, id string, pod ns.NetNS, extraEnv ...string) *started {
	e.t.Helper()
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,%s`, networkName, strings.TrimPrefix(e.pluginConf(), "{"))
	p := &started{lines: make(chan string, 16)}
	p.cmd = exec.Command(filepath.Join(pluginDir(e.t), pluginName))
	p.cmd.Stdin = strings.NewReader(conf)
	p.cmd.Stdout = &p.stdout
	p.cmd.Env = append([]string{
		"CNI_COMMAND=" + command, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + pod.Path(),
		"CNI_IFNAME=eth0", "CNI_PATH=" + pluginDir(e.t),
	}, extraEnv...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	e.inHost(p.cmd.Start)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	return p
}

// waitHanging waits for the plugin to announce that it hangs at the hook.
func (p *started) waitHanging(t *testing.T) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("plugin exited before hanging: %s", p.stdout.String())
			}
			if strings.Contains(line, "hanging until killed") {
				return
			}
		case <-timeout:
			_ = p.cmd.Process.Kill()
			t.Fatal("plugin did not reach the hang point in 30s")
		}
	}
}

func (p *started) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for range p.lines { // drain until the pipe closes
	}
	_ = p.cmd.Wait()
}

// wait returns the plugin's result or its CNI error.
func (p *started) wait() (*current.Result, error) {
	for range p.lines {
	}
	if err := p.cmd.Wait(); err != nil {
		var cniErr types.Error
		if json.Unmarshal(p.stdout.Bytes(), &cniErr) == nil && cniErr.Msg != "" {
			return nil, &cniErr
		}
		return nil, fmt.Errorf("%w: %s", err, p.stdout.String())
	}
	res, err := current.NewResult(p.stdout.Bytes())
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}
