package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/policycase"
)

const goodCase = `{
  "name": "deny-all",
  "namespaces": {"x": {"labels": {"ns": "x"}}},
  "pods": [{"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ip": "10.244.1.5"},
           {"namespace": "x", "name": "b", "labels": {"pod": "b"}, "ip": "10.244.1.6"}],
  "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny", "namespace": "x"}, "spec": {"podSelector": {"matchLabels": {"pod": "a"}}}}],
  "probes": [{"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "expect": "deny"},
             {"from": "x/a", "to": "x/b", "port": 53, "protocol": "UDP", "expect": "deny"},
             {"from": "192.0.2.1", "to": "x/b", "port": 443, "protocol": "TCP"}],
  "tags": ["free", "text"], "source": "a test", "notes": "ignored"
}`

func writeCase(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "case.json")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestVerdictsModel(t *testing.T) {
	code, out, stderr := runCLI("policy", "verdicts", "--case", writeCase(t, goodCase), "--engine", "model", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got []policycase.Verdict
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not a JSON array of verdicts: %v\n%s", err, out)
	}
	want := []policycase.Verdict{
		{From: "x/b", To: "x/a", Port: 80, Protocol: "TCP", Verdict: "deny"},
		{From: "x/a", To: "x/b", Port: 53, Protocol: "UDP", Verdict: "allow"},
		{From: "192.0.2.1", To: "x/b", Port: 443, Protocol: "TCP", Verdict: "allow"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("verdict %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if strings.Contains(out, "expect") {
		t.Errorf("plain output carries expect: %s", out)
	}
}

func TestVerdictsCheck(t *testing.T) {
	code, out, _ := runCLI("policy", "verdicts", "--case", writeCase(t, goodCase), "--engine", "model", "--check")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (one probe differs from expect)\n%s", code, out)
	}
	var got []policycase.Verdict
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].From != "x/a" || got[0].Verdict != "allow" || got[0].Expect != "deny" {
		t.Fatalf("--check printed %+v, want only x/a -> x/b (allow, expected deny)", got)
	}

	fixed := strings.Replace(goodCase, `"port": 53, "protocol": "UDP", "expect": "deny"`, `"port": 53, "protocol": "UDP", "expect": "allow"`, 1)
	if code, out, _ := runCLI("policy", "verdicts", "--case", writeCase(t, fixed), "--engine", "model", "--check"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("exit %d, output %q; want 0 and []", code, out)
	}
}

func TestVerdictsBadInputExits2(t *testing.T) {
	tests := []struct {
		name, content, message string
	}{
		{"unknown field", strings.Replace(goodCase, `"name": "deny-all"`, `"name": "deny-all", "nmespaces": {}`, 1), `unknown field "nmespaces"`},
		{"unknown field in a policy", strings.Replace(goodCase, `"podSelector": {"matchLabels"`, `"podSelectr": {}, "podSelector": {"matchLabels"`, 1), `unknown field "podSelectr"`},
		{"unknown pod", strings.Replace(goodCase, `"from": "x/b", "to": "x/a"`, `"from": "x/zz", "to": "x/a"`, 1), `probes[0] (x/zz -> x/a): from: no pod "x/zz" in the case`},
		{"bad protocol", strings.Replace(goodCase, `"port": 443, "protocol": "TCP"`, `"port": 443, "protocol": "ICMP"`, 1), `protocol "ICMP": want TCP, UDP or SCTP`},
		{"bad port", strings.Replace(goodCase, `"port": 443`, `"port": 70000`, 1), `port 70000: want 1 to 65535`},
		{"bad expect", strings.Replace(goodCase, `"expect": "deny"}`, `"expect": "drop"}`, 1), `expect "drop": want "allow" or "deny"`},
		{"pod in an unknown namespace", strings.Replace(goodCase, `{"namespace": "x", "name": "b"`, `{"namespace": "q", "name": "b"`, 1), `namespace "q" is not in namespaces`},
		{"not JSON", `{"name": `, "decode case"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, stderr := runCLI("policy", "verdicts", "--case", writeCase(t, tt.content), "--engine", "model")
			if code != 2 {
				t.Fatalf("exit %d, want 2; stdout %q", code, out)
			}
			if !strings.Contains(stderr, tt.message) {
				t.Fatalf("stderr %q, want it to contain %q", stderr, tt.message)
			}
		})
	}
	for _, args := range [][]string{
		{"policy", "verdicts"},
		{"policy", "verdicts", "--case", "/nonexistent.json", "--engine", "model"},
		{"policy", "verdicts", "--case", "x.json", "--engine", "iptables"},
		{"policy", "verdicts", "--case", "x.json", "--output", "xml"},
		{"policy", "verdicts", "--case", "x.json", "extra"},
		{"policy", "ruling"},
	} {
		if code, _, _ := runCLI(args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
