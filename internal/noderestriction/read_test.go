package noderestriction

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func shipped() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "config", "admission", "node_restriction.yaml")
}

func TestReadShippedPolicy(t *testing.T) {
	p, err := Read(shipped())
	if err != nil {
		t.Fatal(err)
	}
	if p.Binding.Spec.PolicyName != p.Policy.Name {
		t.Errorf("binding names %q, policy is %q", p.Binding.Spec.PolicyName, p.Policy.Name)
	}
	if got := p.Binding.Spec.ValidationActions; len(got) != 1 || got[0] != "Deny" {
		t.Errorf("validation actions %v, want [Deny]", got)
	}
	cond := p.Policy.Spec.MatchConditions
	if len(cond) != 1 || !strings.Contains(cond[0].Expression, "'"+AgentServiceAccount+"'") {
		t.Errorf("match conditions %v don't name the agent's service account %q", cond, AgentServiceAccount)
	}
}

func TestReadRefusesIncompletePolicy(t *testing.T) {
	data, err := os.ReadFile(shipped())
	if err != nil {
		t.Fatal(err)
	}
	policyOnly, _, _ := strings.Cut(string(data), "\n---\n")
	for _, tc := range []struct{ name, content, want string }{
		{"no binding", policyOnly, "must hold a ValidatingAdmissionPolicy and its binding"},
		{"binding names another policy", strings.Replace(string(data), "policyName: agent-node-restriction", "policyName: other", 1), `the binding names policy "other"`},
		{"unknown kind", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n", `unexpected kind "ConfigMap"`},
		{"unknown field", strings.Replace(string(data), "failurePolicy: Fail", "failurePolicy: Fail\n  bogus: 1", 1), "bogus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "p.yaml")
			if err := os.WriteFile(f, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Read(f)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read() error = %v, want one saying %q", err, tc.want)
			}
		})
	}
}
