package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

type applyResult int

const (
	applyUnchanged applyResult = iota
	applyCreated
	applyUpdated
)

// applyOwned makes the live object match desired and be controlled by
// owner. It creates desired when absent; otherwise mutate copies what
// differs onto live and reports whether it changed anything, and the live
// object is updated only then. Read-compare-write instead of server-side
// apply because an apply is a write even when nothing changes, and a
// settled reconcile must make none. Conflicts surface as errors and the
// reconcile is retried on a fresh read.
func applyOwned[T client.Object](ctx context.Context, c client.Client, owner client.Object, desired, live T, mutate func(desired, live T) bool) (T, applyResult, error) {
	if err := controllerutil.SetControllerReference(owner, desired, c.Scheme()); err != nil {
		return live, applyUnchanged, fmt.Errorf("set owner of %s: %w", klog.KObj(desired), err)
	}
	err := c.Get(ctx, client.ObjectKeyFromObject(desired), live)
	if apierrors.IsNotFound(err) {
		if err := c.Create(ctx, desired); err != nil {
			return live, applyUnchanged, fmt.Errorf("create %s: %w", klog.KObj(desired), err)
		}
		return desired, applyCreated, nil
	}
	if err != nil {
		return live, applyUnchanged, fmt.Errorf("get %s: %w", klog.KObj(desired), err)
	}

	changed := mutate(desired, live)
	if addMissing(live, desired.GetLabels()) {
		changed = true
	}
	if !metav1.IsControlledBy(live, owner) {
		if err := controllerutil.SetControllerReference(owner, live, c.Scheme()); err != nil {
			return live, applyUnchanged, fmt.Errorf("set owner of %s: %w", klog.KObj(live), err)
		}
		changed = true
	}
	if !changed {
		return live, applyUnchanged, nil
	}
	if err := c.Update(ctx, live); err != nil {
		return live, applyUnchanged, fmt.Errorf("update %s: %w", klog.KObj(live), err)
	}
	return live, applyUpdated, nil
}

// addMissing sets on obj every label of want that it lacks or has with
// another value, leaving labels others added alone. It reports a change.
func addMissing(obj client.Object, want map[string]string) bool {
	labels := obj.GetLabels()
	changed := false
	for k, v := range want {
		if got, ok := labels[k]; ok && got == v {
			continue
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
		changed = true
	}
	obj.SetLabels(labels)
	return changed
}
