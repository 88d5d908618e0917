// Package scheme is the one runtime.Scheme Sluice's processes use: the
// built-in Kubernetes types, CRDs (the operator patches its own CRD's
// conversion webhook) and every served version of Sluice's API. The
// operator, its tests and the node agent all build clients from it, so a
// type registered for one is registered for all.
//
// Trade-off: the node agent carries apiextensions and v1alpha1 types it
// never reads. They cost a few map entries; a second, narrower scheme
// would be a second list to keep in step.
package scheme

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/api/v1alpha1"
)

// New returns a new scheme that knows the built-in types, CRDs and every
// version of Sluice's API. Each call builds its own, so a caller may add
// types without affecting others.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(v1.AddToScheme(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}
