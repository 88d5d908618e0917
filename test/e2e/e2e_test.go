package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/lab"
)

const (
	crdName     = "dataplaneconfigs.dataplane.sluice.dev"
	agentName   = "sluice-agent"
	v1Sample    = "config/samples/dataplane_v1_dataplaneconfig.yaml"
	alphaSample = "config/samples/dataplane_v1alpha1_dataplaneconfig.yaml"
)

func TestOperatorWithKubectl(t *testing.T) {
	t.Parallel()
	env := startOperator(t, 2*time.Minute)
	start, k := env.start, env.k

	// 1. The legacy dataplane with NPM, in v1.
	out := k.mustRun("apply", "-f", v1Sample)
	wantContains(t, out, "dataplaneconfig.dataplane.sluice.dev/default created")
	gen := k.mustRun("get", "dataplaneconfig", "default", "-o", "jsonpath={.metadata.generation}")
	k.mustRun("wait", "dataplaneconfig/default", "--for=jsonpath={.status.observedGeneration}="+gen, "--timeout=30s")
	out = k.mustRun("get", "dataplaneconfigs")
	for _, col := range []string{"NAME", "DATAPLANE", "POLICY", "READY", "AGE", "default", "azure"} {
		wantContains(t, out, col)
	}
	// No kubelet or DaemonSet controller here: the agent rollout stays pending.
	reason := k.mustRun("get", "dataplaneconfig", "default", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}/{.status.conditions[?(@.type=="Ready")].reason}`)
	wantEqual(t, "Ready condition", reason, "False/AgentPending")

	// 2. The same object read as v1alpha1, through the conversion webhook.
	var alphaSpec map[string]any
	k.mustJSON(&alphaSpec, "get", "dataplaneconfigs.v1alpha1.dataplane.sluice.dev", "default", "-o", "jsonpath={.spec}")
	if v, ok := alphaSpec["ebpfDataplane"]; ok {
		t.Errorf("v1alpha1 spec has ebpfDataplane %v; want none for the legacy dataplane", v)
	}
	wantEqual(t, "v1alpha1 spec.podCidr", fmt.Sprint(alphaSpec["podCidr"]), "192.168.0.0/16")

	// 3. The in-place move to eBPF, applied in the old shape.
	combined, err := k.run("apply", "-f", alphaSample)
	if err != nil {
		t.Fatalf("kubectl apply -f %s: %v", alphaSample, err)
	}
	wantContains(t, combined, "Warning:")
	wantContains(t, combined, "the azure engine will be uninstalled")
	wantContains(t, combined, "dataplaneconfig.dataplane.sluice.dev/default configured")
	wantEqual(t, "v1 spec.networkDataplane",
		k.mustRun("get", "dataplaneconfig", "default", "-o", "jsonpath={.spec.networkDataplane}"), "cilium")
	// spec.agent has no place in v1alpha1; the conversion keeps it.
	wantEqual(t, "v1 spec.agent.logLevel",
		k.mustRun("get", "dataplaneconfig", "default", "-o", "jsonpath={.spec.agent.logLevel}"), "info")
	k.mustRun("wait", "dataplaneconfig/default", "--for=jsonpath={.status.effective.networkPolicy}=cilium", "--timeout=30s")

	// 4. There is no way back.
	combined, err = k.run("patch", "dataplaneconfig", "default", "--type", "merge", "-p", `{"spec":{"networkDataplane":"azure"}}`)
	if err == nil {
		t.Errorf("patching networkDataplane back to azure succeeded; want it refused")
	}
	wantContains(t, combined, "the eBPF dataplane can't be disabled once enabled")

	// 5. The agent DaemonSet, controlled by the DataplaneConfig.
	owner := k.mustRun("get", "daemonset", agentName, "-n", lab.Namespace, "-o",
		"jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}/{.metadata.ownerReferences[0].controller}")
	wantEqual(t, "DaemonSet owner", owner, "DataplaneConfig/default/true")

	t.Logf("done %s after start", time.Since(start).Round(time.Millisecond))
}

// operatorEnv is a running lab with the operator built and started against
// it, and kubectl pointed at it.
type operatorEnv struct {
	ctx   context.Context
	lab   *lab.Lab
	mgr   *manager
	k     kubectl
	start time.Time
}

// startOperator starts a lab of its own (so tests may run in parallel),
// builds and starts the operator against it and waits until its webhooks
// serve. Everything stops when the test ends; timeout bounds the test.
func startOperator(t *testing.T, timeout time.Duration) *operatorEnv {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: run `make setup-envtest` and export KUBEBUILDER_ASSETS=<repo>/bin/k8s/<version> (the directory holding kube-apiserver, etcd and kubectl)")
	}
	kubectlPath := filepath.Join(assets, "kubectl")
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("no kubectl in KUBEBUILDER_ASSETS (%v): run `make setup-envtest`", err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	tmp := t.TempDir()

	// Build the operator while the control plane starts.
	managerBin := filepath.Join(tmp, "manager")
	built := make(chan error, 1)
	go func() { built <- goBuild(ctx, root, managerBin, "./cmd/manager") }()

	webhookPort := freePort(t)
	start := time.Now()
	l, err := lab.Start(ctx, lab.Options{
		Dir: filepath.Join(tmp, "lab"), WebhookHost: "127.0.0.1", WebhookPort: webhookPort,
		RepoRoot: root, BinaryAssetsDirectory: assets, Log: logWriter{t},
	})
	if err != nil {
		// Let the build finish before the test's temp dir goes.
		if buildErr := <-built; buildErr != nil {
			t.Logf("build the manager: %v", buildErr)
		}
		t.Fatalf("start the lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Stop(); err != nil {
			t.Errorf("stop the lab: %v", err)
		}
	})
	t.Logf("lab up in %s", time.Since(start).Round(time.Millisecond))
	if err := <-built; err != nil {
		t.Fatalf("build the manager: %v", err)
	}

	probeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	mgr := startManager(t, managerBin, filepath.Join(tmp, "manager.log"),
		"--kubeconfig", l.Kubeconfig,
		"--namespace", lab.Namespace,
		"--webhook-host", "127.0.0.1",
		"--webhook-port", strconv.Itoa(webhookPort),
		"--webhook-cert-ip", "127.0.0.1",
		"--webhook-cert-dir", filepath.Join(tmp, "certs"),
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", probeAddr,
		"--agent-image", "sluice/agent:e2e",
	)
	mgr.waitReady(ctx, t, "http://"+probeAddr+"/readyz")
	waitCABundles(ctx, t, mgr, l)
	t.Logf("operator ready %s after start", time.Since(start).Round(time.Millisecond))

	k := kubectl{t: t, ctx: ctx, path: kubectlPath, dir: root, global: []string{
		"--kubeconfig", l.Kubeconfig, "--cache-dir", filepath.Join(tmp, "kube-cache"),
	}}
	return &operatorEnv{ctx: ctx, lab: l, mgr: mgr, k: k, start: start}
}

// kubectl runs the kubectl binary against the lab, logging every command.
type kubectl struct {
	t      *testing.T
	ctx    context.Context
	path   string
	dir    string
	global []string
}

// run returns stdout and stderr combined, in order.
func (k kubectl) run(args ...string) (string, error) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, append(append([]string{}, k.global...), args...)...)
	cmd.Dir = k.dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	k.t.Logf("$ kubectl %s\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

// runStdin is run with stdin.
func (k kubectl) runStdin(stdin string, args ...string) (string, error) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, append(append([]string{}, k.global...), args...)...)
	cmd.Dir = k.dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	k.t.Logf("$ kubectl %s <<EOF\n%sEOF\n%s", strings.Join(args, " "), stdin, out.String())
	return out.String(), err
}

// mustRun returns stdout, failing the test when kubectl fails.
func (k kubectl) mustRun(args ...string) string {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(k.ctx, 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, k.path, append(append([]string{}, k.global...), args...)...)
	cmd.Dir = k.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	k.t.Logf("$ kubectl %s\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
	if err != nil {
		k.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func (k kubectl) mustJSON(into any, args ...string) {
	k.t.Helper()
	out := k.mustRun(args...)
	if err := json.Unmarshal([]byte(out), into); err != nil {
		k.t.Fatalf("kubectl %s: output is not JSON (%v): %s", strings.Join(args, " "), err, out)
	}
}

// manager is the operator running as a subprocess.
type manager struct {
	log    string
	exited chan struct{}
	err    error // set before exited is closed
}

func startManager(t *testing.T, bin, logPath string, args ...string) *manager {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the manager: %v", err)
	}
	m := &manager{log: logPath, exited: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		_ = logFile.Close()
		close(m.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-m.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-m.exited:
			case <-time.After(15 * time.Second):
				t.Errorf("the manager ignored SIGTERM for 15s; killing it")
				_ = cmd.Process.Kill()
				<-m.exited
			}
		}
		if t.Failed() {
			t.Logf("manager log (%s), last lines:\n%s", logPath, m.tail(60))
		}
	})
	return m
}

func (m *manager) tail(n int) string {
	data, err := os.ReadFile(m.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// poll calls cond until it reports done, failing the test when the manager
// exits or timeout passes.
func (m *manager) poll(ctx context.Context, t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.After(timeout)
	last := ""
	for {
		var done bool
		if done, last = cond(); done {
			return
		}
		select {
		case <-m.exited:
			t.Fatalf("the manager exited (%v) while waiting for %s", m.err, what)
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s (last: %s)", timeout, what, last)
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (m *manager) waitReady(ctx context.Context, t *testing.T, url string) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	m.poll(ctx, t, "the manager's "+url, 45*time.Second, func() (bool, string) {
		resp, err := hc.Get(url)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// waitCABundles waits until the operator's certificate management has put
// its CA bundle into the webhook configuration and the CRD's conversion
// webhook: until then admission and conversion fail closed.
func waitCABundles(ctx context.Context, t *testing.T, m *manager, l *lab.Lab) {
	t.Helper()
	scheme := runtime.NewScheme()
	utilruntime.Must(admissionregistrationv1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(l.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	m.poll(ctx, t, "the CA bundle in ValidatingWebhookConfiguration "+lab.ValidatingWebhookConfiguration, 30*time.Second, func() (bool, string) {
		vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: lab.ValidatingWebhookConfiguration}, vwc); err != nil {
			return false, err.Error()
		}
		for _, wh := range vwc.Webhooks {
			if len(wh.ClientConfig.CABundle) == 0 {
				return false, "webhook " + wh.Name + " has no caBundle"
			}
		}
		return len(vwc.Webhooks) > 0, "no webhooks"
	})
	m.poll(ctx, t, "the CA bundle in the conversion webhook of CRD "+crdName, 30*time.Second, func() (bool, string) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: crdName}, crd); err != nil {
			return false, err.Error()
		}
		conv := crd.Spec.Conversion
		if conv == nil || conv.Webhook == nil || conv.Webhook.ClientConfig == nil {
			return false, "the CRD has no conversion webhook"
		}
		return len(conv.Webhook.ClientConfig.CABundle) > 0, "spec.conversion.webhook.clientConfig.caBundle is empty"
	})
}

func goBuild(ctx context.Context, dir, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = dir
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, output)
	}
	return nil
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func wantContains(t *testing.T, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("output does not contain %q:\n%s", want, got)
	}
}

func wantEqual(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q; want %q", what, got, want)
	}
}

// logWriter sends the lab's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
