package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// errNoConversionWebhook marks a named CRD that has no webhook conversion to
// publish the bundle to: a deployment mistake, not a transient state.
var errNoConversionWebhook = errors.New("CRD has no webhook conversion clientConfig")

// caBundleTarget is one object that carries the CA bundle.
type caBundleTarget struct {
	kind string // for messages
	name string
	// newObject returns an empty object of the target's type.
	newObject func() client.Object
	// setBundle sets bundle wherever obj carries it and reports whether
	// anything changed.
	setBundle func(obj client.Object, bundle []byte) (changed bool, err error)
	// newPatch computes the patch from the object as read.
	newPatch func(orig client.Object) client.Patch
}

// publishCABundle puts bundle into every named target, returning how many
// targets do not exist yet: at bootstrap the manager may start before its
// webhook configurations or CRDs are applied, and a later pass patches them.
func publishCABundle(ctx context.Context, c client.Client, opts Options, bundle []byte) (missing int, err error) {
	for _, t := range caBundleTargets(opts) {
		found, err := patchCABundle(ctx, c, t, bundle)
		if err != nil {
			return missing, fmt.Errorf("patch CA bundle into %s %s: %w", t.kind, t.name, err)
		}
		if !found {
			ctrl.LoggerFrom(ctx).V(1).Info("CA bundle target does not exist yet; will patch it on a later pass", "kind", t.kind, "name", t.name)
			missing++
		}
	}
	return missing, nil
}

// patchCABundle reads the target and patches it when its bundle differs, so
// that a settled system sees no writes. The patch carries the
// resourceVersion read: if the object changed meanwhile, the patch fails with
// Conflict and is recomputed from a fresh read rather than overwriting.
func patchCABundle(ctx context.Context, c client.Client, t caBundleTarget, bundle []byte) (found bool, err error) {
	found = true
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		obj := t.newObject()
		if err := c.Get(ctx, client.ObjectKey{Name: t.name}, obj); err != nil {
			if apierrors.IsNotFound(err) {
				found = false
				return nil
			}
			return err
		}
		orig := obj.DeepCopyObject().(client.Object)
		changed, err := t.setBundle(obj, bundle)
		if err != nil || !changed {
			return err
		}
		if err := c.Patch(ctx, obj, t.newPatch(orig)); err != nil {
			return err
		}
		ctrl.LoggerFrom(ctx).Info("published webhook CA bundle", "kind", t.kind, "name", t.name)
		return nil
	})
	return found, err
}

func caBundleTargets(opts Options) []caBundleTarget {
	targets := make([]caBundleTarget, 0,
		len(opts.ValidatingWebhookConfigurations)+len(opts.MutatingWebhookConfigurations)+len(opts.CRDs))
	for _, name := range opts.ValidatingWebhookConfigurations {
		targets = append(targets, validatingWebhookTarget(name))
	}
	for _, name := range opts.MutatingWebhookConfigurations {
		targets = append(targets, mutatingWebhookTarget(name))
	}
	for _, name := range opts.CRDs {
		targets = append(targets, crdConversionTarget(name))
	}
	return targets
}

// Webhook entries are a list merged by name under strategic merge patch, so
// the patch touches only each entry's caBundle. A JSON merge patch would
// replace the whole list with what this client's types know of it.
func strategicPatch(orig client.Object) client.Patch {
	return client.StrategicMergeFrom(orig, client.MergeFromWithOptimisticLock{})
}

func validatingWebhookTarget(name string) caBundleTarget {
	return caBundleTarget{
		kind:      "ValidatingWebhookConfiguration",
		name:      name,
		newObject: func() client.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
		setBundle: func(obj client.Object, bundle []byte) (bool, error) {
			cfg := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			changed := false
			for i := range cfg.Webhooks {
				changed = setBytes(&cfg.Webhooks[i].ClientConfig.CABundle, bundle) || changed
			}
			return changed, nil
		},
		newPatch: strategicPatch,
	}
}

func mutatingWebhookTarget(name string) caBundleTarget {
	return caBundleTarget{
		kind:      "MutatingWebhookConfiguration",
		name:      name,
		newObject: func() client.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
		setBundle: func(obj client.Object, bundle []byte) (bool, error) {
			cfg := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			changed := false
			for i := range cfg.Webhooks {
				changed = setBytes(&cfg.Webhooks[i].ClientConfig.CABundle, bundle) || changed
			}
			return changed, nil
		},
		newPatch: strategicPatch,
	}
}

func crdConversionTarget(name string) caBundleTarget {
	return caBundleTarget{
		kind:      "CRD",
		name:      name,
		newObject: func() client.Object { return &apiextensionsv1.CustomResourceDefinition{} },
		setBundle: func(obj client.Object, bundle []byte) (bool, error) {
			conv := obj.(*apiextensionsv1.CustomResourceDefinition).Spec.Conversion
			if conv == nil || conv.Strategy != apiextensionsv1.WebhookConverter ||
				conv.Webhook == nil || conv.Webhook.ClientConfig == nil {
				return false, errNoConversionWebhook
			}
			return setBytes(&conv.Webhook.ClientConfig.CABundle, bundle), nil
		},
		// Only nested objects lie on the path to caBundle, so a JSON merge
		// patch is as narrow as a strategic one.
		newPatch: func(orig client.Object) client.Patch {
			return client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})
		},
	}
}

// setBytes sets *dst to src unless equal, reporting whether it changed.
func setBytes(dst *[]byte, src []byte) bool {
	if bytes.Equal(*dst, src) {
		return false
	}
	*dst = bytes.Clone(src)
	return true
}
