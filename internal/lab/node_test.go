package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/internal/netlab"
	"github.com/sluice-dev/sluice/internal/netlab/netlabtest"
	"github.com/sluice-dev/sluice/internal/noderestriction"
)

// The node's life across separate commands: Up makes the host netns and
// the files (the agent's flags among them), Forward makes a loopback
// server of this netns reachable inside the node, Down removes it all.
// The node gets a namespace prefix of its own, so a demo running on the
// same machine is left alone.
func TestNodeUpForwardDown(t *testing.T) {
	netlabtest.RequirePrivileged(t)
	n, err := NewNode(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n.NetNSPrefix = fmt.Sprintf("%slab%d-", netlabtest.NetNSPrefix, os.Getpid())
	t.Cleanup(func() { _ = n.Down(context.Background(), "", io.Discard) })

	// The API server's stand-in: an echo server on loopback, here.
	api, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = api.Close() }()
	go func() {
		for {
			c, err := api.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); _ = c.Close() }()
		}
	}()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: "https://%s"}}]
users: [{name: admin, user: {}}]
contexts: [{name: lab, context: {cluster: lab, user: admin}}]
current-context: lab
`, api.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}

	st, err := n.Up("n0", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if st.APIAddr != api.Addr().String() || !netlab.NetNSExists(n.HostNetNS()) {
		t.Fatalf("Up: API address %q (want %s), host netns %s there: %v", st.APIAddr, api.Addr(), n.HostNetNS(), netlab.NetNSExists(n.HostNetNS()))
	}
	if back, err := n.State(); err != nil || *back != *st {
		t.Errorf("State = %+v, %v; want %+v", back, err, st)
	}
	if got := readLines(t, n.AgentArgsFile()); !slices.Equal(got, n.AgentArgs(st)) {
		t.Errorf("%s = %q, want %q", n.AgentArgsFile(), got, n.AgentArgs(st))
	}
	agentCfg, err := clientcmd.BuildConfigFromFlags("", n.AgentKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	if want := noderestriction.AgentImpersonation(Namespace, "n0"); agentCfg.Impersonate.UserName != want.UserName ||
		!slices.Equal(agentCfg.Impersonate.Extra[noderestriction.NodeNameExtra], []string{"n0"}) {
		t.Errorf("the agent's kubeconfig impersonates %+v, want %+v", agentCfg.Impersonate, want)
	}
	conflist, err := os.ReadFile(n.ConflistPath())
	if err != nil || !strings.Contains(string(conflist), `"agentSocket": "`+filepath.Join(n.Dir, "agent.sock")+`"`) {
		t.Errorf("conflist %s (%v) does not point at the agent's socket", conflist, err)
	}
	if _, err := n.Up("n0", kubeconfig); err == nil || !strings.Contains(err.Error(), "up already") {
		t.Errorf("a second Up: %v, want 'up already'", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() { done <- n.Forward(ctx, st.APIAddr, io.Discard, func() { close(ready) }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Forward: %v", err)
	}
	_, port, _ := net.SplitHostPort(st.APIAddr)
	num, _ := strconv.Atoi(port)
	if err := netlab.InNetNS(n.HostNetNS(), func() error {
		return netlab.EchoOnce(netip.MustParseAddr("127.0.0.1"), netlab.TCP(num), time.Now().Add(5*time.Second))
	}); err != nil {
		t.Errorf("the API address inside the node: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Forward after its context ended: %v", err)
	}

	if err := n.Down(context.Background(), "", io.Discard); err != nil {
		t.Fatal(err)
	}
	if left, _ := netlab.NetNSWithPrefix(n.NetNSPrefix); len(left) > 0 || netlab.NetNSExists(n.HostNetNS()) {
		t.Errorf("netns left after Down: %v", left)
	}
	if _, err := os.Stat(n.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node directory after Down: %v", err)
	}
	if err := n.Down(context.Background(), "", io.Discard); err != nil {
		t.Errorf("a second Down: %v", err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var lines []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	return lines
}
