package certs

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// TestEnsureAgainstAPIServer runs Ensure against a real kube-apiserver and
// etcd. The subtests share the control plane and use separate namespaces,
// webhook configurations and CRDs.
func TestEnsureAgainstAPIServer(t *testing.T) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set: it must name the directory holding kube-apiserver and etcd. " +
			"`make test` sets it to bin/k8s/<version>; `make setup-envtest` builds the binaries there.")
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start envtest control plane from %s: %v", assets, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop envtest control plane: %v", err)
		}
	})
	// Direct client: no cache, every read goes to the API server, as in
	// the manager before it starts.
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: testScheme(t)})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("bootstrap, then no writes once settled", func(t *testing.T) {
		opts := envtestFixture(t, c, "settle", "widgets", "Widget", "https://127.0.0.1:9443")
		var writes testenv.WriteCounter
		counted := writes.Wrap(c)

		if err := Ensure(testContext(t), counted, opts); err != nil {
			t.Fatalf("first Ensure: %v", err)
		}
		m := storedMaterial(t, c, opts)
		if plan := planRenewal(m, mustDefaults(t, opts), time.Now()); plan.needed() {
			t.Fatalf("stored material needs renewal: %s", plan.Reason)
		}
		assertFilesHold(t, opts.CertDir, m)
		assertBundlePublished(t, c, opts, m.CABundle)
		assertWebhooksIntact(t, c, opts)
		if writes.Count() == 0 {
			t.Fatal("first Ensure made no writes")
		}

		writes.Reset()
		if err := Ensure(testContext(t), counted, opts); err != nil {
			t.Fatalf("second Ensure: %v", err)
		}
		if got := writes.Count(); got != 0 {
			t.Errorf("second Ensure on a settled system made %d writes, want 0", got)
		}
		if !storedMaterial(t, c, opts).equal(m) {
			t.Error("second Ensure changed the stored material")
		}
	})

	t.Run("secret with garbage is repaired", func(t *testing.T) {
		opts := envtestFixture(t, c, "garbage", "gizmos", "Gizmo", "https://127.0.0.1:9443")
		garbage := keyMaterial{
			CABundle: []byte("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"),
			CAKey:    []byte("not a key"),
			Cert:     []byte("garbage"),
			Key:      []byte{0, 1, 2},
		}
		secret := secretWith(opts, garbage)
		secret.Data["unrelated"] = []byte("kept")
		if err := c.Create(t.Context(), secret); err != nil {
			t.Fatal(err)
		}

		if err := Ensure(testContext(t), c, opts); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		m := storedMaterial(t, c, opts)
		if plan := planRenewal(m, mustDefaults(t, opts), time.Now()); plan.needed() {
			t.Fatalf("repaired material still needs renewal: %s", plan.Reason)
		}
		if strings.Count(string(m.CABundle), "BEGIN CERTIFICATE") != 1 {
			t.Error("repaired bundle should hold only the new CA")
		}
		assertFilesHold(t, opts.CertDir, m)
		assertBundlePublished(t, c, opts, m.CABundle)
		stored := &corev1.Secret{}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(secret), stored); err != nil {
			t.Fatal(err)
		}
		if string(stored.Data["unrelated"]) != "kept" {
			t.Error("repair dropped a key Ensure does not own")
		}
	})

	t.Run("API server trusts the webhook through the published bundle", func(t *testing.T) {
		testAPIServerCallsWebhooks(t, c)
	})
}

// envtestFixture creates a namespace, a validating webhook configuration and
// a conversion CRD named after suffix and returns Options naming them.
func envtestFixture(t *testing.T, c client.Client, suffix, plural, kind, url string) Options {
	t.Helper()
	opts := testOptions(t)
	opts.Namespace = "certs-" + suffix
	vwc := newValidatingWebhookConfiguration("sluice-validating-"+suffix, url)
	for i := range vwc.Webhooks {
		vwc.Webhooks[i].Rules[0].Resources = []string{plural}
	}
	crd := newConversionCRD(plural, kind, url)
	opts.ValidatingWebhookConfigurations = []string{vwc.Name}
	opts.CRDs = []string{crd.Name}
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.Namespace}},
		vwc,
		crd,
	} {
		if err := c.Create(t.Context(), obj); err != nil {
			t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
		}
	}
	return opts
}

// assertWebhooksIntact checks the patch touched only caBundle: every entry
// is still there with its URL.
func assertWebhooksIntact(t *testing.T, c client.Client, opts Options) {
	t.Helper()
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: opts.ValidatingWebhookConfigurations[0]}, cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Webhooks) != 2 {
		t.Fatalf("webhook configuration has %d entries after patching, want 2", len(cfg.Webhooks))
	}
	for _, wh := range cfg.Webhooks {
		if wh.ClientConfig.URL == nil || !strings.HasPrefix(*wh.ClientConfig.URL, "https://127.0.0.1:9443/") {
			t.Errorf("webhook %s URL changed to %v", wh.Name, wh.ClientConfig.URL)
		}
	}
}

// testAPIServerCallsWebhooks serves a validating and a conversion webhook on
// loopback from the files Ensure wrote, and has the API server call both:
// that only works if the serving certificate covers 127.0.0.1 and the API
// server trusts it through the caBundle fields Ensure patched.
func testAPIServerCallsWebhooks(t *testing.T, c client.Client) {
	url, port := loopbackURL(t)
	opts := envtestFixture(t, c, "serve", "gadgets", "Gadget", url)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(t.Context(), client.ObjectKey{Name: opts.ValidatingWebhookConfigurations[0]}, cfg); err != nil {
		t.Fatal(err)
	}
	// Make the API server depend on the webhook: a failed call must fail
	// the create instead of being ignored.
	patch := client.StrategicMergeFrom(cfg.DeepCopy())
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	}
	if err := c.Patch(t.Context(), cfg, patch); err != nil {
		t.Fatal(err)
	}

	if err := Ensure(testContext(t), c, opts); err != nil {
		t.Fatalf("Ensure: %v", err)
	}

	var validations, conversions atomic.Int32
	server := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: opts.CertDir})
	allow := &webhook.Admission{Handler: admission.HandlerFunc(
		func(context.Context, admission.Request) admission.Response {
			validations.Add(1)
			return admission.Allowed("")
		})}
	server.Register("/validate", allow) // both entries of the fixture
	server.Register("/validate-gadget", allow)
	server.Register("/convert", convertByRelabeling(&conversions))
	ctx, cancel := context.WithCancel(testContext(t))
	serverDone := make(chan error, 1)
	go func() { serverDone <- server.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-serverDone; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	// The API server answers slowly at first and the new CRD takes a moment
	// to be served, so each step is retried for a while.
	g := gomega.NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	g.SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	g.Eventually(func() error { return server.StartedChecker()(nil) }).Should(gomega.Succeed(), "webhook server to listen")

	gadget := &unstructured.Unstructured{}
	gadget.SetGroupVersionKind(schema.GroupVersionKind{Group: "certs.test.sluice.dev", Version: "v1", Kind: "Gadget"})
	gadget.SetNamespace(opts.Namespace)
	gadget.SetName("g")
	// Retried while the new CRD is not yet served; a TLS failure would show
	// as the last error.
	g.Eventually(func() error {
		return c.Create(t.Context(), gadget.DeepCopy())
	}).Should(gomega.Succeed(), "create a Gadget through the validating webhook")
	if validations.Load() == 0 {
		t.Error("the API server did not call the validating webhook")
	}

	old := &unstructured.Unstructured{}
	old.SetGroupVersionKind(schema.GroupVersionKind{Group: "certs.test.sluice.dev", Version: "v1alpha1", Kind: "Gadget"})
	g.Eventually(func() error {
		return c.Get(t.Context(), client.ObjectKeyFromObject(gadget), old)
	}).Should(gomega.Succeed(), "read the Gadget as v1alpha1 through the conversion webhook")
	if conversions.Load() == 0 {
		t.Error("the API server did not call the conversion webhook")
	}
}

// convertByRelabeling is a conversion webhook for schema-less versions: it
// only changes apiVersion.
func convertByRelabeling(calls *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		review := &apiextensionsv1.ConversionReview{}
		if err := json.NewDecoder(r.Body).Decode(review); err != nil || review.Request == nil {
			http.Error(w, "bad ConversionReview", http.StatusBadRequest)
			return
		}
		resp := &apiextensionsv1.ConversionResponse{UID: review.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
		for _, raw := range review.Request.Objects {
			obj := map[string]any{}
			if err := json.Unmarshal(raw.Raw, &obj); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			obj["apiVersion"] = review.Request.DesiredAPIVersion
			converted, _ := json.Marshal(obj)
			resp.ConvertedObjects = append(resp.ConvertedObjects, runtime.RawExtension{Raw: converted})
		}
		review.Request, review.Response = nil, resp
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(review)
	})
}

// loopbackURL picks a free port on 127.0.0.1 for the webhook server.
func loopbackURL(t *testing.T) (string, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "https://" + ln.Addr().String(), port
}
