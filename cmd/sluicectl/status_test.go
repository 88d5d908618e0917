package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/status"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// writeKubeconfig writes a kubeconfig for cfg, as a user would pass it.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["envtest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["envtest"] = &clientcmdapi.Context{Cluster: "envtest", AuthInfo: "admin", Namespace: "not-sluice"}
	kc.CurrentContext = "envtest"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func setConditions(conds *[]metav1.Condition, gen int64, cs ...metav1.Condition) {
	for _, c := range cs {
		c.ObservedGeneration = gen
		meta.SetStatusCondition(conds, c)
	}
}

func statusReport(t *testing.T, args ...string) (int, status.Report) {
	t.Helper()
	code, out, stderr := runCLI(append([]string{"status", "-o", "json"}, args...)...)
	var r status.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("exit %d, stdout is not a report: %v\n%s\nstderr: %s", code, err, out, stderr)
	}
	return code, r
}

func problemsOf(r status.Report) []string {
	var out []string
	for _, p := range r.Problems {
		out = append(out, p.Object+" "+p.Reason)
	}
	return out
}

func TestStatusAgainstAPIServer(t *testing.T) {
	cfg, scheme := testenv.StartFor(t)
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubeconfig := writeKubeconfig(t, cfg)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	// Nothing applied yet: no DataplaneConfig is a problem.
	code, r := statusReport(t, "--kubeconfig", kubeconfig)
	if code != 1 || r.Healthy || r.DataplaneConfig != nil || strings.Join(problemsOf(r), ";") != "DataplaneConfig default NotFound" {
		t.Fatalf("empty cluster: exit %d, report %+v; want 1 and only DataplaneConfig default NotFound", code, r)
	}

	// A cluster whose operator settled: DataplaneConfig, DaemonSet, a pool,
	// two nodes, of which one agent failed its last apply.
	dpc := &v1.DataplaneConfig{ObjectMeta: metav1.ObjectMeta{Name: v1.DataplaneConfigName},
		Spec: v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyCilium}}
	must(c.Create(ctx, dpc))
	dpc.Status.ObservedGeneration = dpc.Generation
	dpc.Status.Effective = &v1.EffectiveConfig{NetworkPlugin: v1.NetworkPluginAzure, NetworkDataplane: v1.NetworkDataplaneCilium,
		NetworkPolicy: v1.NetworkPolicyCilium, NodePoolLabel: "pool", KubeProxyReplacement: true,
		Agent: v1.EffectiveAgentSettings{Image: "sluice/agent:test", LogLevel: v1.LogLevelInfo}}
	setConditions(&dpc.Status.Conditions, dpc.Generation,
		metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1.ReasonAgentAvailable, Message: "2 of 2"},
		metav1.Condition{Type: v1.ConditionProgressing, Status: metav1.ConditionFalse, Reason: v1.ReasonAsExpected, Message: "done"},
		metav1.Condition{Type: v1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: v1.ReasonAsExpected, Message: "fine"},
		metav1.Condition{Type: v1.ConditionIPAMReady, Status: metav1.ConditionTrue, Reason: v1.ReasonPoolsReady, Message: "IPAMPools in use: pods"})
	must(c.Status().Update(ctx, dpc))

	must(c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sluice-ops"}}))
	labels := map[string]string{"app": "agent"}
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "sluice-ops", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "sluice/agent:test"}}}},
		},
	}
	must(c.Create(ctx, ds))
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2, ObservedGeneration: ds.Generation}
	must(c.Status().Update(ctx, ds))

	pool := &v1.IPAMPool{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Spec: v1.IPAMPoolSpec{Mode: v1.IPAMModeOverlay, CIDRs: []v1.CIDR{"10.244.0.0/16"}}}
	must(c.Create(ctx, pool))
	pool.Status = v1.IPAMPoolStatus{ObservedGeneration: pool.Generation, Capacity: 65536, Allocated: 512, Free: 65024, AllocatedNodes: 2}
	setConditions(&pool.Status.Conditions, pool.Generation,
		metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1.ReasonPoolReady, Message: "ok"},
		metav1.Condition{Type: v1.ConditionExhausted, Status: metav1.ConditionFalse, Reason: v1.ReasonSpaceAvailable, Message: "room"})
	must(c.Status().Update(ctx, pool))

	for _, name := range []string{"node-a", "node-b"} {
		dpn := &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
		must(c.Create(ctx, dpn))
		dpn.Status = v1.DataplaneNodeStatus{Ready: true, Endpoints: 4, AgentVersion: "test"}
		ready := metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1.ReasonDatapathLoaded, Message: "enforcing"}
		if name == "node-b" {
			dpn.Status.Ready, dpn.Status.LastError = false, "policy map full"
			ready = metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1.ReasonAgentApplyFailed,
				Message: "applying the policy snapshot failed: policy map full"}
		}
		setConditions(&dpn.Status.Conditions, 0, ready)
		must(c.Status().Update(ctx, dpn))
	}

	// The DaemonSet is in -n under --agent-name, not in the context's namespace.
	flags := []string{"--kubeconfig", kubeconfig, "-n", "sluice-ops", "--agent-name", "agent"}
	code, r = statusReport(t, flags...)
	if got := strings.Join(problemsOf(r), ";"); code != 1 || got != "DataplaneNode node-b ApplyFailed" {
		t.Fatalf("one agent failing: exit %d, problems %q; want 1 and DataplaneNode node-b ApplyFailed", code, got)
	}
	if a := r.Agents; a.DaemonSet != "sluice-ops/agent" || a.Desired != 2 || a.Ready != 2 || len(a.Nodes) != 2 ||
		a.Nodes[1].Name != "node-b" || a.Nodes[1].LastError != "policy map full" || a.Nodes[0].LastReportTime == nil {
		t.Errorf("agents %+v", a)
	}
	if d := r.DataplaneConfig; d == nil || d.NetworkDataplane != "cilium" || d.AgentImage != "sluice/agent:test" || len(d.Conditions) != 4 {
		t.Errorf("dataplaneConfig %+v", d)
	}
	if len(r.Pools) != 1 || r.Pools[0].Name != "pods" || r.Pools[0].Allocated != 512 || r.Pools[0].Capacity != 65536 {
		t.Errorf("pools %+v", r.Pools)
	}

	// Without -n the DaemonSet is looked for in sluice-system.
	if _, r := statusReport(t, "--kubeconfig", kubeconfig, "--agent-name", "agent"); !strings.Contains(strings.Join(problemsOf(r), ";"), "DaemonSet sluice-system/agent NotFound") {
		t.Errorf("without -n: problems %v, want DaemonSet sluice-system/agent NotFound", problemsOf(r))
	}

	// The agent recovers: healthy, exit 0, in every format.
	dpn := &v1.DataplaneNode{}
	must(c.Get(ctx, client.ObjectKey{Name: "node-b"}, dpn))
	dpn.Status.Ready, dpn.Status.LastError = true, ""
	setConditions(&dpn.Status.Conditions, 0, metav1.Condition{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1.ReasonDatapathLoaded, Message: "enforcing"})
	must(c.Status().Update(ctx, dpn))
	if code, r := statusReport(t, flags...); code != 0 || !r.Healthy || len(r.Problems) != 0 {
		t.Fatalf("healthy: exit %d, problems %v", code, problemsOf(r))
	}
	code, out, stderr := runCLI(append([]string{"status"}, flags...)...)
	if code != 0 || !strings.HasSuffix(out, "Status: OK\n") || !strings.Contains(out, "node-b") {
		t.Errorf("table: exit %d, stdout:\n%s\nstderr: %s", code, out, stderr)
	}
	code, out, _ = runCLI(append([]string{"status", "-o", "yaml"}, flags...)...)
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); code != 0 || err != nil || doc["healthy"] != true || doc["unallocatedNodeNetworks"] == nil {
		t.Errorf("yaml: exit %d, %v:\n%s", code, err, out)
	}

	// An API server that doesn't answer: exit 1 and no report.
	dead := rest.CopyConfig(cfg)
	dead.Host = "https://127.0.0.1:1"
	code, out, stderr = runCLI("status", "--kubeconfig", writeKubeconfig(t, dead), "--request-timeout", "2s")
	if code != 1 || out != "" || !strings.Contains(stderr, "sluicectl status: the API server at https://127.0.0.1:1") {
		t.Errorf("unreachable: exit %d, stdout %q, stderr %q; want 1 and the API server named", code, out, stderr)
	}
}
