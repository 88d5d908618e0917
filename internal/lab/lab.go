package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/sluice-dev/sluice/internal/fsutil"
	"github.com/sluice-dev/sluice/internal/noderestriction"
	"github.com/sluice-dev/sluice/internal/scheme"
)

// Names the lab gives the objects it installs; the operator publishes its CA
// bundle into the webhook configuration and the CRD by these names.
const (
	Namespace                      = "sluice-system"
	ValidatingWebhookConfiguration = "sluice-validating-webhook-configuration"
	AdminUser                      = "sluice-admin"
	// KubeconfigFile is the admin kubeconfig's file name in Options.Dir.
	KubeconfigFile = "kubeconfig"
)

// Options configure a lab.
type Options struct {
	// Dir receives the admin kubeconfig and the control plane logs
	// (kube-apiserver.log, etcd.log). Created if missing. Required.
	Dir string
	// WebhookHost and WebhookPort are where the operator's webhook server
	// listens; the API server calls https://<host>:<port>. Defaults
	// 127.0.0.1 and 9443.
	WebhookHost string
	WebhookPort int
	// RepoRoot is the repository holding config/crd/bases and
	// config/webhook. Default ".".
	RepoRoot string
	// BinaryAssetsDirectory holds kube-apiserver, etcd and kubectl.
	// Default $KUBEBUILDER_ASSETS.
	BinaryAssetsDirectory string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Lab is a running local control plane.
type Lab struct {
	// Config is the admin's REST config (group system:masters).
	Config *rest.Config
	// Kubeconfig is the path of the admin kubeconfig.
	Kubeconfig string
	// KubectlPath is the kubectl next to kube-apiserver.
	KubectlPath string
	// WebhookURL is the base URL the API server calls for webhooks.
	WebhookURL string

	env  *envtest.Environment
	logs []*os.File
}

// Start starts kube-apiserver and etcd, installs namespace sluice-system,
// the CRDs with webhook conversion and the validating webhook configuration,
// and writes the admin kubeconfig to <Dir>/kubeconfig, last: the file's
// presence means the lab is ready. The control plane keeps running after ctx
// ends; call Stop.
func Start(ctx context.Context, opts Options) (_ *Lab, retErr error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			fmt.Fprintf(opts.Log, format+"\n", args...)
		}
	}

	// Read the manifests before starting anything, so a broken checkout
	// fails fast.
	webhookURL := "https://" + net.JoinHostPort(opts.WebhookHost, strconv.Itoa(opts.WebhookPort))
	crds, err := readCRDs(filepath.Join(opts.RepoRoot, "config", "crd", "bases"), webhookURL)
	if err != nil {
		return nil, err
	}
	vwc, err := readValidatingWebhooks(filepath.Join(opts.RepoRoot, "config", "webhook", "manifests.yaml"), webhookURL)
	if err != nil {
		return nil, err
	}

	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create lab directory: %w", err)
	}
	kubeconfig := filepath.Join(opts.Dir, KubeconfigFile)
	// A kubeconfig left by an earlier lab points at a dead API server.
	if err := os.Remove(kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale kubeconfig: %w", err)
	}

	l := &Lab{
		Kubeconfig:  kubeconfig,
		KubectlPath: filepath.Join(opts.BinaryAssetsDirectory, "kubectl"),
		WebhookURL:  webhookURL,
		env:         &envtest.Environment{},
	}
	defer func() {
		if retErr != nil {
			_ = l.Stop()
		}
	}()

	if err := l.configureControlPlane(opts); err != nil {
		return nil, err
	}

	logf("lab: starting etcd and kube-apiserver (%s)", opts.BinaryAssetsDirectory)
	if err := l.env.ControlPlane.Start(); err != nil {
		return nil, fmt.Errorf("start control plane (logs in %s): %w", opts.Dir, err)
	}
	admin, err := l.env.ControlPlane.AddUser(envtest.User{Name: AdminUser, Groups: []string{"system:masters"}}, &rest.Config{QPS: 100, Burst: 200})
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", AdminUser, err)
	}
	l.Config = admin.Config()
	logf("lab: kube-apiserver is serving at %s", l.Config.Host)

	c, err := client.New(l.Config, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}

	if err := l.install(ctx, c, opts.RepoRoot, crds, vwc, logf); err != nil {
		return nil, err
	}

	kc, err := admin.KubeConfig()
	if err != nil {
		return nil, fmt.Errorf("render kubeconfig: %w", err)
	}
	if err := fsutil.WriteFileAtomic(kubeconfig, kc, 0o600); err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	logf("lab: wrote the kubeconfig of user %s (group system:masters) to %s", AdminUser, kubeconfig)
	return l, nil
}

// install puts Sluice's cluster-wide objects into the new control plane:
// its namespace, the CRDs (waiting until each is established), the
// validating webhook configuration, and the agent's role and node
// restriction.
func (l *Lab) install(ctx context.Context, c client.Client, repoRoot string, crds []*apiextensionsv1.CustomResourceDefinition,
	vwc *admissionregistrationv1.ValidatingWebhookConfiguration, logf func(string, ...any),
) error {
	if err := createNamespace(ctx, c, Namespace); err != nil {
		return err
	}
	logf("lab: created namespace %s", Namespace)

	for _, crd := range crds {
		if err := c.Create(ctx, crd); err != nil {
			return fmt.Errorf("create CRD %s: %w", crd.Name, err)
		}
		if err := waitEstablished(ctx, c, crd.Name); err != nil {
			return err
		}
		logf("lab: installed CRD %s (conversion webhook %s/convert)", crd.Name, l.WebhookURL)
	}

	if err := c.Create(ctx, vwc); err != nil {
		return fmt.Errorf("create ValidatingWebhookConfiguration %s: %w", vwc.Name, err)
	}
	logf("lab: installed ValidatingWebhookConfiguration %s (webhooks at %s)", vwc.Name, l.WebhookURL)

	if err := installAgentIdentity(ctx, l.Config, c, repoRoot); err != nil {
		return err
	}
	logf("lab: installed the agent's role and its node restriction (agents act as %s with their node's name)", noderestriction.AgentUser(Namespace))
	return nil
}

// installAgentIdentity gives the agent's service account its role and puts
// the node restriction in force, as `make deploy` does on a cluster.
func installAgentIdentity(ctx context.Context, cfg *rest.Config, c client.Client, repoRoot string) error {
	if err := noderestriction.GrantAgentRole(ctx, c, filepath.Join(repoRoot, "config", "rbac", "agent_role.yaml"), Namespace); err != nil {
		return err
	}
	p, err := noderestriction.Read(filepath.Join(repoRoot, "config", "admission", "node_restriction.yaml"))
	if err != nil {
		return err
	}
	return noderestriction.Install(ctx, cfg, c, p)
}

// Stop stops kube-apiserver and etcd and removes their temporary data. The
// kubeconfig is removed too: it points at nothing once the lab is gone.
func (l *Lab) Stop() error {
	var errs []error
	if l.env != nil {
		errs = append(errs, l.env.ControlPlane.Stop())
	}
	for _, f := range l.logs {
		errs = append(errs, f.Close())
	}
	l.logs = nil
	if l.Kubeconfig != "" {
		if err := os.Remove(l.Kubeconfig); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("lab: Options.Dir is required")
	}
	if o.WebhookHost == "" {
		o.WebhookHost = "127.0.0.1"
	}
	if o.WebhookPort == 0 {
		o.WebhookPort = 9443
	}
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		return o, fmt.Errorf("lab: webhook port %d is out of range", o.WebhookPort)
	}
	if o.RepoRoot == "" {
		o.RepoRoot = "."
	}
	if o.BinaryAssetsDirectory == "" {
		o.BinaryAssetsDirectory = os.Getenv("KUBEBUILDER_ASSETS")
	}
	if o.BinaryAssetsDirectory == "" {
		return o, errors.New("lab: KUBEBUILDER_ASSETS is not set; run `make setup-envtest` and export KUBEBUILDER_ASSETS=bin/k8s/<version>")
	}
	var err error
	for _, p := range []*string{&o.Dir, &o.RepoRoot, &o.BinaryAssetsDirectory} {
		if *p, err = filepath.Abs(*p); err != nil {
			return o, err
		}
	}
	return o, nil
}

func (l *Lab) logFile(dir, name string) (stdout, stderr io.Writer, err error) {
	f, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return nil, nil, fmt.Errorf("create log file: %w", err)
	}
	l.logs = append(l.logs, f)
	return f, f, nil
}

// createNamespace creates ns, retrying while the fresh API server still
// settles (its namespace controller and default objects come up async).
func createNamespace(ctx context.Context, c client.Client, name string) error {
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		lastErr = c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
		return lastErr == nil || apierrors.IsAlreadyExists(lastErr), nil
	})
	if err != nil {
		return fmt.Errorf("create namespace %s: %w (last error: %v)", name, err, lastErr)
	}
	return nil
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, nil //nolint:nilerr // retried until the deadline
		}
		for _, cond := range crd.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("wait for CRD %s to be established: %w", name, err)
	}
	return nil
}

// splitYAML splits a multi-document YAML stream, dropping documents that
// hold nothing but comments and whitespace.
func splitYAML(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}

// configureControlPlane points envtest's control plane at the binaries and
// the log files. envtest.Environment.Start would also generate webhook
// certificates and install webhooks; the lab starts the ControlPlane alone,
// so the operator's own certificate code is what serves them.
func (l *Lab) configureControlPlane(opts Options) error {
	apiServer := l.env.ControlPlane.GetAPIServer()
	apiServer.Path = filepath.Join(opts.BinaryAssetsDirectory, "kube-apiserver")
	apiServer.StartTimeout, apiServer.StopTimeout = time.Minute, 20*time.Second
	l.env.ControlPlane.Etcd = &envtest.Etcd{
		Path:         filepath.Join(opts.BinaryAssetsDirectory, "etcd"),
		StartTimeout: time.Minute,
		StopTimeout:  20 * time.Second,
	}
	l.env.ControlPlane.KubectlPath = l.KubectlPath
	for _, bin := range []string{apiServer.Path, l.env.ControlPlane.Etcd.Path} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%w; run `make setup-envtest` and set KUBEBUILDER_ASSETS to the directory holding kube-apiserver, etcd and kubectl", err)
		}
	}
	var err error
	if apiServer.Out, apiServer.Err, err = l.logFile(opts.Dir, "kube-apiserver.log"); err != nil {
		return err
	}
	if l.env.ControlPlane.Etcd.Out, l.env.ControlPlane.Etcd.Err, err = l.logFile(opts.Dir, "etcd.log"); err != nil {
		return err
	}

	return nil
}
