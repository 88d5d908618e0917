package lab

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	ports, err := ParsePorts("8080/TCP, 9090,81/tcp")
	if err != nil {
		t.Fatal(err)
	}
	if got := []Port{{8080, "TCP"}, {9090, "TCP"}, {81, "TCP"}}; len(ports) != 3 || ports[0] != got[0] || ports[1] != got[1] || ports[2] != got[2] {
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
	p8080, p9090 := Port{8080, "TCP"}, Port{9090, "TCP"}
	for _, tc := range []struct {
		c    Cell
		want bool
	}{
		{Cell{"other/client", "shop/web", p8080}, false},
		{Cell{"other/client", "shop/api", p9090}, false},
		{Cell{"shop/web", "shop/api", p8080}, false},
		{Cell{"shop/web", "shop/api", p9090}, true},
		{Cell{"shop/api", "shop/web", p8080}, true},
		{Cell{"shop/web", "other/client", p8080}, true},
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

func TestMatrixPrintAndWrong(t *testing.T) {
	web, cl := &PodRecord{Namespace: "shop", Name: "web"}, &PodRecord{Namespace: "other", Name: "client"}
	p := Port{8080, "TCP"}
	m := &Matrix{Pods: []*PodRecord{web, cl}, Ports: []Port{p}, Reached: map[Cell]bool{
		{"shop/web", "other/client", p}: true,
		{"other/client", "shop/web", p}: true,
	}}
	want, _ := ParseDenied("*/*>shop/*")
	if bad := m.Wrong(want); len(bad) != 1 || bad[0] != (Cell{"other/client", "shop/web", p}) {
		t.Errorf("Wrong = %v, want the cell other/client -> shop/web", bad)
	}
	var b bytes.Buffer
	m.Print(&b, want)
	wantOut := "from \\ to     shop/web  other/client\n" +
		"shop/web      -         ✓\n" +
		"other/client  ✓!        -\n"
	if b.String() != wantOut {
		t.Errorf("Print:\n%s\nwant:\n%s", b.String(), wantOut)
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
		p := NewPodRecord(k[0], k[1])
		p.IP = "192.168.0.9"
		if err := n.SavePod(p); err != nil {
			t.Fatal(err)
		}
	}
	pods, err := n.Pods()
	if err != nil {
		t.Fatal(err)
	}
	if len(pods) != 2 || pods[0].Key() != "other/client" || pods[1].NetNS != "sluice-demo-shop-web" || pods[1].IP != "192.168.0.9" {
		t.Errorf("Pods = %+v %+v", pods[0], pods[1])
	}
	st := &NodeState{NodeName: "n0", Kubeconfig: "/k"}
	args := strings.Join(n.AgentArgs(st), " ")
	for _, want := range []string{"--node-name n0", "--socket " + filepath.Join(n.Dir, "agent.sock"), "--no-pin"} {
		if !strings.Contains(args, want) {
			t.Errorf("AgentArgs %q lacks %q", args, want)
		}
	}
	if err := ValidatePodName("shop", "Web"); err == nil {
		t.Error("ValidatePodName accepted an upper-case name")
	}
}
