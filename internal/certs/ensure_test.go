package certs

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/sluice-dev/sluice/internal/testenv"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// testContext logs through t, verbosely, so V(1) messages show on failure.
func testContext(t *testing.T) context.Context {
	return ctrl.LoggerInto(t.Context(), testr.NewWithOptions(t, testr.Options{Verbosity: 1}))
}

func storedMaterial(t *testing.T, c client.Client, opts Options) keyMaterial {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(t.Context(), client.ObjectKey{Namespace: opts.Namespace, Name: opts.SecretName}, s); err != nil {
		t.Fatalf("get secret: %v", err)
	}
	return materialFromSecret(s)
}

// assertFilesHold checks CertDir holds exactly m's serving pair and bundle.
func assertFilesHold(t *testing.T, dir string, m keyMaterial) {
	t.Helper()
	for name, want := range m.files() {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("read %s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s does not hold the stored material", name)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, caKeyName)); err == nil {
		t.Errorf("the CA key was written to the cert dir")
	}
}

func secretWith(opts Options, m keyMaterial) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.SecretName}}
	m.applyTo(s)
	return s
}

func TestEnsureWithFakeClient(t *testing.T) {
	opts := testOptions(t)
	opts.ValidatingWebhookConfigurations = []string{"sluice-validating"}
	opts.CRDs = []string{"widgets.certs.test.sluice.dev"}
	opts = at(opts, t0)
	var writes testenv.WriteCounter
	c := writes.Wrap(fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		newValidatingWebhookConfiguration("sluice-validating", "https://127.0.0.1:9443"),
		newConversionCRD("widgets", "Widget", "https://127.0.0.1:9443"),
	).Build())

	if err := Ensure(testContext(t), c, opts); err != nil {
		t.Fatalf("first Ensure: %v", err)
	}
	m := storedMaterial(t, c, opts)
	if plan := planRenewal(m, mustDefaults(t, opts), t0); plan.needed() {
		t.Fatalf("stored material needs renewal: %s", plan.Reason)
	}
	assertFilesHold(t, opts.CertDir, m)
	assertBundlePublished(t, c, opts, m.CABundle)
	if got := writes.Count(); got != 3 {
		t.Errorf("first Ensure made %d writes, want 3 (secret, webhook configuration, CRD)", got)
	}

	writes.Reset()
	if err := Ensure(testContext(t), c, opts); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if got := writes.Count(); got != 0 {
		t.Errorf("second Ensure on a settled system made %d writes, want 0", got)
	}
}

func assertBundlePublished(t *testing.T, c client.Client, opts Options, bundle []byte) {
	t.Helper()
	for _, name := range opts.ValidatingWebhookConfigurations {
		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, cfg); err != nil {
			t.Fatal(err)
		}
		for _, wh := range cfg.Webhooks {
			if !bytes.Equal(wh.ClientConfig.CABundle, bundle) {
				t.Errorf("webhook %s in %s lacks the CA bundle", wh.Name, name)
			}
			if wh.ClientConfig.URL == nil {
				t.Errorf("webhook %s in %s lost its URL", wh.Name, name)
			}
		}
	}
	for _, name := range opts.CRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(t.Context(), client.ObjectKey{Name: name}, crd); err != nil {
			t.Fatal(err)
		}
		if got := crd.Spec.Conversion.Webhook.ClientConfig.CABundle; !bytes.Equal(got, bundle) {
			t.Errorf("CRD %s conversion webhook lacks the CA bundle", name)
		}
	}
}

// TestEnsureAdoptsWinnerOfUpdateRace simulates another replica renewing the
// expired material between our read and our Update.
func TestEnsureAdoptsWinnerOfUpdateRace(t *testing.T) {
	opts := testOptions(t)
	expired, _ := mustReconcile(t, keyMaterial{}, opts, t0.Add(-2*365*day))
	winner, _ := mustReconcile(t, keyMaterial{}, opts, t0)
	var raced atomic.Bool
	c := interceptor.NewClient(
		fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(secretWith(opts, expired)).Build(),
		interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if raced.CompareAndSwap(false, true) {
				other := &corev1.Secret{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(obj), other); err != nil {
					return err
				}
				winner.applyTo(other)
				if err := c.Update(ctx, other); err != nil {
					return err
				}
			}
			return c.Update(ctx, obj, opts...) // stale resourceVersion now: Conflict
		}},
	)

	if err := Ensure(testContext(t), c, at(opts, t0)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if !raced.Load() {
		t.Fatal("Ensure did not try to update the expired secret")
	}
	if got := storedMaterial(t, c, opts); !got.equal(winner) {
		t.Error("Ensure replaced the winning replica's material instead of adopting it")
	}
	assertFilesHold(t, opts.CertDir, winner)
}

// TestEnsureAdoptsWinnerOfCreateRace simulates another replica creating the
// Secret between our NotFound and our Create.
func TestEnsureAdoptsWinnerOfCreateRace(t *testing.T) {
	opts := testOptions(t)
	winner, _ := mustReconcile(t, keyMaterial{}, opts, t0)
	var creates atomic.Int32
	c := interceptor.NewClient(
		fake.NewClientBuilder().WithScheme(testScheme(t)).Build(),
		interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if creates.Add(1) == 1 {
				if err := c.Create(ctx, secretWith(Options{Namespace: obj.GetNamespace(), SecretName: obj.GetName()}, winner)); err != nil {
					return err
				}
			}
			return c.Create(ctx, obj, opts...) // AlreadyExists now
		}},
	)

	if err := Ensure(testContext(t), c, at(opts, t0)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	if got := creates.Load(); got != 1 {
		t.Errorf("Ensure tried %d creates, want 1", got)
	}
	if got := storedMaterial(t, c, opts); !got.equal(winner) {
		t.Error("Ensure replaced the winning replica's material instead of adopting it")
	}
	assertFilesHold(t, opts.CertDir, winner)
}

func TestEnsureGivesUpAfterRepeatedConflicts(t *testing.T) {
	opts := testOptions(t)
	c := interceptor.NewClient(
		fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(secretWith(opts, keyMaterial{})).Build(),
		interceptor.Funcs{Update: func(context.Context, client.WithWatch, client.Object, ...client.UpdateOption) error {
			return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, opts.SecretName, errors.New("changed"))
		}},
	)
	err := Ensure(testContext(t), c, opts)
	if err == nil || !strings.Contains(err.Error(), "still conflicting") {
		t.Fatalf("err = %v, want giving up on conflicts", err)
	}
}

func TestEnsureToleratesMissingTargets(t *testing.T) {
	opts := testOptions(t)
	opts.ValidatingWebhookConfigurations = []string{"not-yet"}
	opts.MutatingWebhookConfigurations = []string{"not-yet-either"}
	opts.CRDs = []string{"gadgets.certs.test.sluice.dev"}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).Build()

	result, err := ensure(testContext(t), c, opts)
	if err != nil {
		t.Fatalf("Ensure with missing targets: %v", err)
	}
	if result.missingTargets != 3 {
		t.Errorf("missing targets = %d, want 3", result.missingTargets)
	}
	assertFilesHold(t, opts.CertDir, storedMaterial(t, c, opts))
}

func TestEnsureReportsTargetErrors(t *testing.T) {
	tests := []struct {
		name    string
		objects []client.Object
		funcs   interceptor.Funcs
		want    string
	}{
		{
			name:    "CRD without conversion webhook",
			objects: []client.Object{withoutConversion(newConversionCRD("widgets", "Widget", "https://127.0.0.1:9443"))},
			want:    "patch CA bundle into CRD widgets.certs.test.sluice.dev: CRD has no webhook conversion",
		},
		{
			name:    "forbidden",
			objects: []client.Object{newConversionCRD("widgets", "Widget", "https://127.0.0.1:9443")},
			funcs: interceptor.Funcs{Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "customresourcedefinitions"}, "widgets", errors.New("no RBAC"))
			}},
			want: "patch CA bundle into CRD widgets.certs.test.sluice.dev: customresourcedefinitions \"widgets\" is forbidden",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.CRDs = []string{"widgets.certs.test.sluice.dev"}
			c := interceptor.NewClient(fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tt.objects...).Build(), tt.funcs)
			err := Ensure(testContext(t), c, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func withoutConversion(crd *apiextensionsv1.CustomResourceDefinition) *apiextensionsv1.CustomResourceDefinition {
	crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter}
	return crd
}

func TestEnsureLeavesUnchangedFilesAlone(t *testing.T) {
	opts := testOptions(t)
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).Build()
	if err := Ensure(testContext(t), c, opts); err != nil {
		t.Fatal(err)
	}
	before := statFiles(t, opts.CertDir)
	if err := Ensure(testContext(t), c, opts); err != nil {
		t.Fatal(err)
	}
	for name, info := range statFiles(t, opts.CertDir) {
		if !os.SameFile(info, before[name]) {
			t.Errorf("%s was rewritten although unchanged", name)
		}
	}
	if info := before[KeyFileName]; info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
}

func statFiles(t *testing.T, dir string) map[string]os.FileInfo {
	t.Helper()
	infos := map[string]os.FileInfo{}
	for _, name := range []string{CertFileName, KeyFileName, CACertFileName} {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		infos[name] = info
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(infos) {
		t.Errorf("cert dir holds %d entries, want %d (temporary files left behind?)", len(entries), len(infos))
	}
	return infos
}

func TestRotatorWritesFilesAndStopsWithContext(t *testing.T) {
	opts := testOptions(t)
	r := &Rotator{Client: fake.NewClientBuilder().WithScheme(testScheme(t)).Build(), Options: opts, Interval: time.Millisecond}
	if r.NeedLeaderElection() {
		t.Error("NeedLeaderElection = true; every replica needs the files")
	}
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()

	gomega.NewWithT(t).Eventually(func() error {
		_, err := os.Stat(filepath.Join(opts.CertDir, CertFileName))
		return err
	}).WithTimeout(10*time.Second).WithPolling(10*time.Millisecond).Should(gomega.Succeed(), "Rotator writes the certificate files")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Start returned %v, want nil on cancellation", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return after its context was cancelled")
	}
}
