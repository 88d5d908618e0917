// Package v1alpha1 is the first shape of the dataplane.sluice.dev API. It
// models the managed-cluster API versions 2022-09-02-preview to
// 2023-01-02-preview, where the eBPF dataplane was switched on by
// ebpfDataplane: cilium and the legacy dataplane was the absence of that
// field. It is still served; objects are stored as v1 and converted on read
// and write (see conversion.go). Only apimachinery and the hub version are
// imported here.
//
// +kubebuilder:object:generate=true
// +groupName=dataplane.sluice.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "dataplane.sluice.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion, &DataplaneConfig{}, &DataplaneConfigList{})
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
