package lab

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/netlab"
)

func TestParsePorts(t *testing.T) {
	ports, err := ParsePorts("8080/TCP, 9090,81/tcp")
	if err != nil {
		t.Fatal(err)
	}
	if got := []netlab.Port{netlab.TCP(8080), netlab.TCP(9090), netlab.TCP(81)}; !slices.Equal(ports, got) {
		t.Errorf("ParsePorts = %v, want %v", ports, got)
	}
	for _, bad := range []string{"", "53/UDP", "0", "70000/TCP", "http"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q): no error", bad)
		}
	}
}

func TestDenied(t *testing.T) {
	d, err := ParseDenied("other/client>shop/*, shop/web>shop/api:8080")
	if err != nil {
		t.Fatal(err)
	}
	p8080, p9090 := netlab.TCP(8080), netlab.TCP(9090)
	client, web, api := pod("other", "client"), pod("shop", "web"), pod("shop", "api")
	for _, tc := range []struct {
		c    netlab.Cell
		want bool
	}{
		{netlab.Cell{From: client, To: web, Port: p8080}, false},
		{netlab.Cell{From: client, To: api, Port: p9090}, false},
		{netlab.Cell{From: web, To: api, Port: p8080}, false},
		{netlab.Cell{From: web, To: api, Port: p9090}, true},
		{netlab.Cell{From: api, To: web, Port: p8080}, true},
		{netlab.Cell{From: web, To: client, Port: p8080}, true},
	} {
		if got := d.Allowed(tc.c); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.c, got, tc.want)
		}
	}
	for _, s := range []string{"", "none"} {
		if d, err := ParseDenied(s); err != nil || len(d) != 0 {
			t.Errorf("ParseDenied(%q) = %v, %v; want empty", s, d, err)
		}
	}
	for _, bad := range []string{"a/b", "a>b/c", "a/b>c/d:x", "a/[>b/c"} {
		if _, err := ParseDenied(bad); err == nil {
			t.Errorf("ParseDenied(%q): no error", bad)
		}
	}
}

func pod(namespace, name string) *netlab.Pod { return &netlab.Pod{Namespace: namespace, Name: name} }

func TestMatrixPrint(t *testing.T) {
	web, cl, api := pod("shop", "web"), pod("other", "client"), pod("shop", "api")
	p := netlab.TCP(8080)
	reached, dropped, refused := netlab.Result{Verdict: netlab.Reached}, netlab.Result{Verdict: netlab.TimedOut}, netlab.Result{Verdict: netlab.Failed}
	m := &Matrix{Pods: []*netlab.Pod{web, cl, api}, Ports: []netlab.Port{p}, Results: map[netlab.Cell]netlab.Result{
		{From: web, To: cl, Port: p}:  reached,
		{From: web, To: api, Port: p}: dropped,
		{From: cl, To: web, Port: p}:  reached, // wrong: shop/* is denied
		{From: cl, To: api, Port: p}:  refused, // wrong: a refusal is no denial
		{From: api, To: web, Port: p}: dropped,
		{From: api, To: cl, Port: p}:  reached,
	}}
	want, _ := ParseDenied("*/*>shop/*")
	var b bytes.Buffer
	m.Print(&b, want)
	wantOut := "from \\ to     shop/web  other/client  shop/api\n" +
		"shop/web      -         ✓             ✗\n" +
		"other/client  ✓!        -             ✗!\n" +
		"shop/api      ✗         ✓             -\n"
	if b.String() != wantOut {
		t.Errorf("Print:\n%s\nwant:\n%s", b.String(), wantOut)
	}
	b.Reset()
	m.Print(&b, nil)
	if strings.Contains(b.String(), "!") {
		t.Errorf("Print without an expectation marks cells:\n%s", b.String())
	}
}

func TestNodeFiles(t *testing.T) {
	n, err := NewNode(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.State(); err == nil || !strings.Contains(err.Error(), "lab node up") {
		t.Errorf("State of no node: %v, want an error that says to run node up", err)
	}
	if err := os.MkdirAll(n.podsDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, k := range [][2]string{{"shop", "web"}, {"other", "client"}} {
		p := n.NewPodRecord(k[0], k[1])
		p.IP = netip.MustParseAddr("192.168.0.9")
		p.ServePID = 42
		if err := n.SavePod(p); err != nil {
			t.Fatal(err)
		}
	}
	pods, err := n.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods[0].Key() != "other/client" || pods[1].NetNSName != "sluice-demo-shop-web" ||
		pods[1].ContainerID != "sluice-demo-shop-web" || pods[1].IP != netip.MustParseAddr("192.168.0.9") || pods[1].ServePID != 42 {
		t.Errorf("Pods = %+v %+v", pods[0], pods[1])
	}
	st := &NodeState{NodeName: "n0", Kubeconfig: "/k"}
	args := strings.Join(n.AgentArgs(st), " ")
	for _, want := range []string{
		"--node-name n0", "--socket " + filepath.Join(n.Dir, "agent.sock"), "--no-pin",
		"--kubeconfig " + filepath.Join(n.Dir, "agent.kubeconfig"),
		"--allocation-file " + filepath.Join(n.Dir, "allocation.json"), "--cni-state-dir " + filepath.Join(n.Dir, "ipam"),
	} {
		if !strings.Contains(args, want) {
			t.Errorf("AgentArgs %q lacks %q", args, want)
		}
	}
	if err := ValidatePodName("shop", "Web"); err == nil {
		t.Error("ValidatePodName accepted an upper-case name")
	}
}
