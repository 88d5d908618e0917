package noderestriction

import (
	"slices"

	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
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

func TestAgentKubeconfigImpersonatesTheNodesAgent(t *testing.T) {
	admin := []byte(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: admin
  user: {token: secret}
contexts:
- name: lab
  context: {cluster: lab, user: admin}
current-context: lab
`)
	out, err := AgentKubeconfig(admin, "sluice-system", "node-a")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	want := AgentImpersonation("sluice-system", "node-a")
	if cfg.Impersonate.UserName != want.UserName || !slices.Equal(cfg.Impersonate.Groups, want.Groups) ||
		!slices.Equal(cfg.Impersonate.Extra[NodeNameExtra], []string{"node-a"}) {
		t.Errorf("impersonation = %+v, want %+v", cfg.Impersonate, want)
	}
	if cfg.BearerToken != "secret" || cfg.Host != "https://127.0.0.1:6443" {
		t.Errorf("credentials or server lost: host %q token %q", cfg.Host, cfg.BearerToken)
	}
	if _, err := AgentKubeconfig([]byte("current-context: missing\n"), "ns", "n"); err == nil || !strings.Contains(err.Error(), `"missing" has no user`) {
		t.Errorf("a kubeconfig without the current context's user: %v", err)
	}
}
