package testenv

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestWriteCounterCountsWritesOnly(t *testing.T) {
	ctx := context.Background()
	var w WriteCounter
	c := w.Wrap(fake.NewClientBuilder().WithScheme(scheme.Scheme).WithStatusSubresource(&corev1.Pod{}).Build())
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}

	steps := []struct {
		name  string
		do    func() error
		write bool
	}{
		{"create", func() error { return c.Create(ctx, pod) }, true},
		{"get", func() error { return c.Get(ctx, client.ObjectKeyFromObject(pod), pod) }, false},
		{"list", func() error { return c.List(ctx, &corev1.PodList{}) }, false},
		{"update", func() error { pod.Labels = map[string]string{"a": "b"}; return c.Update(ctx, pod) }, true},
		{"patch", func() error {
			return c.Patch(ctx, pod, client.RawPatch("application/merge-patch+json", []byte(`{"metadata":{"labels":{"a":"c"}}}`)))
		}, true},
		{"status update", func() error { pod.Status.Phase = corev1.PodRunning; return c.Status().Update(ctx, pod) }, true},
		{"status patch", func() error {
			return c.Status().Patch(ctx, pod, client.RawPatch("application/merge-patch+json", []byte(`{"status":{"phase":"Succeeded"}}`)))
		}, true},
		{"delete", func() error { return c.Delete(ctx, pod) }, true},
		{"delete all", func() error { return c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace("ns")) }, true},
	}
	want := 0
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if s.write {
			want++
		}
		if got := w.Count(); got != want {
			t.Fatalf("after %s: Count() = %d, want %d", s.name, got, want)
		}
	}
	w.Reset()
	if w.Count() != 0 {
		t.Errorf("Count() after Reset = %d, want 0", w.Count())
	}
}
