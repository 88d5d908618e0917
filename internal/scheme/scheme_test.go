package scheme

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/api/v1alpha1"
)

func TestNewKnowsWhatSluiceReadsAndWrites(t *testing.T) {
	s := New()
	for _, obj := range []runtime.Object{
		&corev1.Node{}, &corev1.ConfigMap{}, &appsv1.DaemonSet{},
		&apiextensionsv1.CustomResourceDefinition{},
		&v1.DataplaneConfig{}, &v1.IPAMPool{}, &v1.IPAMBlock{}, &v1.NodeNetwork{}, &v1.DataplaneNode{},
		&v1alpha1.DataplaneConfig{},
	} {
		if _, _, err := s.ObjectKinds(obj); err != nil {
			t.Errorf("%T: %v", obj, err)
		}
	}
}

func TestNewReturnsIndependentSchemes(t *testing.T) {
	a, b := New(), New()
	extra := schema.GroupVersionKind{Group: "test.sluice.dev", Version: "v1", Kind: "Extra"}
	a.AddKnownTypeWithName(extra, &corev1.ConfigMap{})
	if b.Recognizes(extra) {
		t.Error("a type added to one scheme from New is known to another; callers that add types would affect each other")
	}
}
