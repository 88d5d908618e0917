package lab

import (
	"fmt"
	"os"
	"path/filepath"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// ConversionPath is where the operator's webhook server serves CRD
// conversion reviews.
const ConversionPath = "/convert"

// readCRDs reads every CRD in dir/*.yaml and points the conversion of the
// ones that serve more than one version at webhookURL/convert, with no
// caBundle: the operator injects it.
func readCRDs(dir, webhookURL string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRDs in %s; is the repository root right?", dir)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	for _, file := range files {
		docs, err := readDocs(file)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.UnmarshalStrict(doc, crd); err != nil {
				return nil, fmt.Errorf("parse CRD in %s: %w", file, err)
			}
			if crd.Kind != "CustomResourceDefinition" {
				return nil, fmt.Errorf("%s: kind %q, want CustomResourceDefinition", file, crd.Kind)
			}
			if len(crd.Spec.Versions) > 1 {
				url := webhookURL + ConversionPath
				crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
					Strategy: apiextensionsv1.WebhookConverter,
					Webhook: &apiextensionsv1.WebhookConversion{
						ClientConfig:             &apiextensionsv1.WebhookClientConfig{URL: &url},
						ConversionReviewVersions: []string{"v1"},
					},
				}
			}
			crds = append(crds, crd)
		}
	}
	return crds, nil
}

// readValidatingWebhooks reads the ValidatingWebhookConfiguration that
// controller-gen writes to config/webhook/manifests.yaml, names it as a
// deployment does, and points every webhook at webhookURL plus the path of
// its Service reference, with no caBundle: the operator injects it.
func readValidatingWebhooks(file, webhookURL string) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	docs, err := readDocs(file)
	if err != nil {
		return nil, err
	}
	var found *admissionregistrationv1.ValidatingWebhookConfiguration
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("parse %s: %w", file, err)
		}
		// A mutating configuration would need the operator to inject its CA
		// bundle there too (cmd/manager lists the configurations it
		// patches), so the lab refuses to guess.
		if tm.Kind != "ValidatingWebhookConfiguration" {
			return nil, fmt.Errorf("%s: the lab installs only a ValidatingWebhookConfiguration, found kind %q; teach internal/lab about it", file, tm.Kind)
		}
		if found != nil {
			return nil, fmt.Errorf("%s: more than one ValidatingWebhookConfiguration", file)
		}
		found = &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := yaml.UnmarshalStrict(doc, found); err != nil {
			return nil, fmt.Errorf("parse ValidatingWebhookConfiguration in %s: %w", file, err)
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%s: no ValidatingWebhookConfiguration", file)
	}
	found.ObjectMeta = metav1.ObjectMeta{Name: ValidatingWebhookConfiguration, Labels: found.Labels, Annotations: found.Annotations}
	for i := range found.Webhooks {
		wh := &found.Webhooks[i]
		path := ""
		if wh.ClientConfig.Service != nil && wh.ClientConfig.Service.Path != nil {
			path = *wh.ClientConfig.Service.Path
		}
		url := webhookURL + path
		wh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url}
	}
	return found, nil
}

func readDocs(file string) ([][]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	docs, err := splitYAML(data)
	if err != nil {
		return nil, fmt.Errorf("split %s into YAML documents: %w", file, err)
	}
	return docs, nil
}
