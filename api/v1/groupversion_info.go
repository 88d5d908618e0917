// Package v1 is the storage and hub version of the dataplane.sluice.dev API.
//
// Every other served version converts to and from this one. Only
// apimachinery is imported here, so the API can be vendored by clients
// without pulling in the operator.
//
// +kubebuilder:object:generate=true
// +groupName=dataplane.sluice.dev
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the objects in this package.
	GroupVersion = schema.GroupVersion{Group: "dataplane.sluice.dev", Version: "v1"}

	// SchemeBuilder registers the types of this package with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(scheme *runtime.Scheme) error {
	scheme.AddKnownTypes(GroupVersion,
		&DataplaneConfig{}, &DataplaneConfigList{},
		&IPAMPool{}, &IPAMPoolList{},
		&NodeNetwork{}, &NodeNetworkList{},
		&IPAMBlock{}, &IPAMBlockList{},
		&DataplaneNode{}, &DataplaneNodeList{},
	)
	metav1.AddToGroupVersion(scheme, GroupVersion)
	return nil
}
