package lab

import (
	"path/filepath"
	"testing"
)

func TestReadManifests(t *testing.T) {
	const base = "https://127.0.0.1:9443"
	root := filepath.Join("..", "..")

	crds, err := readCRDs(filepath.Join(root, "config", "crd", "bases"), base)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, crd := range crds {
		if crd.Name != "dataplaneconfigs.dataplane.sluice.dev" {
			continue
		}
		found = true
		conv := crd.Spec.Conversion
		if conv == nil || conv.Strategy != "Webhook" || conv.Webhook == nil || conv.Webhook.ClientConfig == nil {
			t.Fatalf("conversion = %+v; want a webhook", conv)
		}
		cc := conv.Webhook.ClientConfig
		if cc.URL == nil || *cc.URL != base+"/convert" || cc.Service != nil || len(cc.CABundle) != 0 {
			t.Errorf("conversion clientConfig = %+v; want url %s/convert, no service, no caBundle", cc, base)
		}
		if got := conv.Webhook.ConversionReviewVersions; len(got) != 1 || got[0] != "v1" {
			t.Errorf("conversionReviewVersions = %v; want [v1]", got)
		}
	}
	if !found {
		t.Fatal("CRD dataplaneconfigs.dataplane.sluice.dev not read")
	}

	vwc, err := readValidatingWebhooks(filepath.Join(root, "config", "webhook", "manifests.yaml"), base)
	if err != nil {
		t.Fatal(err)
	}
	if vwc.Name != ValidatingWebhookConfiguration {
		t.Errorf("name = %q; want %q", vwc.Name, ValidatingWebhookConfiguration)
	}
	if len(vwc.Webhooks) == 0 {
		t.Fatal("no webhooks")
	}
	wantURL := map[string]string{
		"vdataplaneconfig-v1.sluice.dev": base + "/validate-dataplane-sluice-dev-v1-dataplaneconfig",
		"vipampool-v1.sluice.dev":        base + "/validate-dataplane-sluice-dev-v1-ipampool",
	}
	if len(vwc.Webhooks) != len(wantURL) {
		t.Errorf("%d webhooks; want %d", len(vwc.Webhooks), len(wantURL))
	}
	for _, wh := range vwc.Webhooks {
		cc := wh.ClientConfig
		if cc.URL == nil || *cc.URL != wantURL[wh.Name] || cc.Service != nil || len(cc.CABundle) != 0 {
			t.Errorf("webhook %s clientConfig = %+v; want the loopback URL, no service, no caBundle", wh.Name, cc)
		}
	}
}

func TestSplitYAML(t *testing.T) {
	docs, err := splitYAML([]byte("# comment only\n---\na: 1\n---\n\n---\nb: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d documents %q; want 2", len(docs), docs)
	}
}
