package certs

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const day = 24 * time.Hour

// t0 is an arbitrary fixed start of the tests' clock.
var t0 = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// testOptions covers the in-cluster names plus a loopback address, as the
// local demo needs.
func testOptions(t *testing.T) Options {
	t.Helper()
	return Options{
		Namespace:   "sluice-system",
		SecretName:  "sluice-webhook-certs",
		ServiceName: "sluice-webhook",
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		CertDir:     t.TempDir(),
	}
}

// at returns opts with a clock stopped at now.
func at(opts Options, now time.Time) Options {
	opts.now = func() time.Time { return now }
	return opts
}

// mustReconcile runs reconcileMaterial with defaults applied.
func mustReconcile(t *testing.T, m keyMaterial, opts Options, now time.Time) (keyMaterial, renewal) {
	t.Helper()
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	out, plan, err := reconcileMaterial(m, opts, now)
	if err != nil {
		t.Fatalf("reconcile material: %v", err)
	}
	return out, plan
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block in certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func poolOf(t *testing.T, bundle []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("no certificates in CA bundle")
	}
	return pool
}

// verifyServing checks the serving certificate chains to the bundle for host
// at now, as a TLS client of the webhook would.
func verifyServing(t *testing.T, m keyMaterial, bundle []byte, host string, now time.Time) error {
	t.Helper()
	_, err := parseCert(t, m.Cert).Verify(x509.VerifyOptions{
		Roots:       poolOf(t, bundle),
		DNSName:     host,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

func newValidatingWebhookConfiguration(name, url string) *admissionregistrationv1.ValidatingWebhookConfiguration {
	none := admissionregistrationv1.SideEffectClassNone
	webhook := func(webhookName, path string) admissionregistrationv1.ValidatingWebhook {
		return admissionregistrationv1.ValidatingWebhook{
			Name:                    webhookName,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(url + path)},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			// Ignore: nothing serves this URL in most tests, and the
			// webhook must not get in the way of the writes under test.
			FailurePolicy: ptr.To(admissionregistrationv1.Ignore),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{"certs.test.sluice.dev"},
					APIVersions: []string{"*"},
					Resources:   []string{"widgets"},
				},
			}},
		}
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{
			webhook("widgets.certs.test.sluice.dev", "/validate"),
			webhook("gadgets.certs.test.sluice.dev", "/validate-gadget"),
		},
	}
}

// newConversionCRD is a small CRD with two versions converted by a webhook
// at url. kind names it in the group certs.test.sluice.dev.
func newConversionCRD(plural, kind, url string) *apiextensionsv1.CustomResourceDefinition {
	schema := &apiextensionsv1.CustomResourceValidation{
		OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
			Type:                   "object",
			XPreserveUnknownFields: ptr.To(true),
		},
	}
	return &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: plural + ".certs.test.sluice.dev"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "certs.test.sluice.dev",
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural:   plural,
				Singular: strings.ToLower(kind),
				Kind:     kind,
				ListKind: kind + "List",
			},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{
				{Name: "v1alpha1", Served: true, Storage: false, Schema: schema},
				{Name: "v1", Served: true, Storage: true, Schema: schema},
			},
			Conversion: &apiextensionsv1.CustomResourceConversion{
				Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{
					ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: ptr.To(url + "/convert")},
					ConversionReviewVersions: []string{"v1"},
				},
			},
		},
	}
}
