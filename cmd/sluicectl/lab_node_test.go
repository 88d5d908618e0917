package main

import (
	"bytes"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestLabNodeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"lab", "node", "--help"}, 0, "sluicectl lab node up"},
		{[]string{"lab", "node"}, 2, "want a subcommand"},
		{[]string{"lab", "node", "sideways"}, 2, "unknown subcommand"},
		{[]string{"lab", "pod", "add", "--namespace", "Shop", "--name", "web"}, 2, "not a DNS label"},
		{[]string{"lab", "matrix", "--ports", "53/UDP"}, 2, "only TCP"},
		{[]string{"lab", "serve"}, 2, "--port is required"},
		{[]string{"lab", "up", "extra"}, 2, "unexpected arguments"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.out) {
			t.Errorf("run %q = %d, %q %q; want %d and %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.out)
		}
	}
}

func TestParseLabelsAndPorts(t *testing.T) {
	l, err := parseLabels("app=web, tier=front")
	if err != nil || len(l) != 2 || l["app"] != "web" || l["tier"] != "front" {
		t.Errorf("parseLabels = %v, %v", l, err)
	}
	if _, err := parseLabels("app"); err == nil {
		t.Error("parseLabels(app): no error")
	}
	ps, err := parseContainerPorts([]string{"http:8080/TCP", "53/udp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}
	if len(ps) != 2 || ps[0] != want[0] || ps[1] != want[1] {
		t.Errorf("parseContainerPorts = %v, want %v", ps, want)
	}
	for _, bad := range []string{"http:x", "http:8080/ICMP", "0"} {
		if _, err := parseContainerPorts([]string{bad}); err == nil {
			t.Errorf("parseContainerPorts(%q): no error", bad)
		}
	}
}
