package webhook

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/controller-runtime/pkg/webhook/conversion"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/dataplane"
)

// ValidatePath is where the API server sends DataplaneConfig admission
// reviews (controller-runtime derives it from the group, version and kind).
const ValidatePath = "/validate-dataplane-sluice-dev-v1-dataplaneconfig"

// +kubebuilder:webhook:path=/validate-dataplane-sluice-dev-v1-dataplaneconfig,mutating=false,failurePolicy=fail,sideEffects=None,groups=dataplane.sluice.dev,resources=dataplaneconfigs,verbs=create;update,versions=v1,name=vdataplaneconfig-v1.sluice.dev,admissionReviewVersions=v1,matchPolicy=Equivalent
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=servicecidrs,verbs=get;list;watch

// SetupDataplaneConfigWebhook registers the DataplaneConfig validating
// webhook and the v1alpha1 <-> v1 conversion webhook with mgr.
func SetupDataplaneConfigWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1.DataplaneConfig{}).
		WithValidator(&DataplaneConfigValidator{Reader: mgr.GetAPIReader()}).
		WithConverter(conversion.NewHubSpokeConverter(&v1.DataplaneConfig{},
			conversion.NewSpokeConverter(&v1alpha1.DataplaneConfig{},
				func(_ context.Context, hub *v1.DataplaneConfig, spoke *v1alpha1.DataplaneConfig) error {
					return v1alpha1.ConvertFromV1(hub, spoke)
				},
				func(_ context.Context, spoke *v1alpha1.DataplaneConfig, hub *v1.DataplaneConfig) error {
					return v1alpha1.ConvertToV1(spoke, hub)
				}))).
		Complete()
}

// DataplaneConfigValidator admits DataplaneConfigs. It reads through an
// uncached reader: admissions are rare, and a cache would make the operator
// watch every Node just for this.
type DataplaneConfigValidator struct {
	Reader client.Reader
}

var _ admission.Validator[*v1.DataplaneConfig] = &DataplaneConfigValidator{}

// ValidateCreate checks a new DataplaneConfig.
func (v *DataplaneConfigValidator) ValidateCreate(ctx context.Context, obj *v1.DataplaneConfig) (admission.Warnings, error) {
	return v.validate(ctx, nil, obj)
}

// ValidateUpdate checks a changed DataplaneConfig.
func (v *DataplaneConfigValidator) ValidateUpdate(ctx context.Context, oldObj, newObj *v1.DataplaneConfig) (admission.Warnings, error) {
	return v.validate(ctx, oldObj, newObj)
}

// ValidateDelete admits every delete.
func (v *DataplaneConfigValidator) ValidateDelete(context.Context, *v1.DataplaneConfig) (admission.Warnings, error) {
	return nil, nil
}

func (v *DataplaneConfigValidator) validate(ctx context.Context, oldObj, obj *v1.DataplaneConfig) (admission.Warnings, error) {
	var oldSpec *v1.DataplaneConfigSpec
	if oldObj != nil {
		oldSpec = &oldObj.Spec
	}
	warnings := dataplane.Warnings(oldSpec, &obj.Spec)
	if errs := slices.Concat(validateRouting(oldSpec, &obj.Spec), tunnelNotYetAvailable(&obj.Spec), validateAgent(obj.Spec.Agent)); len(errs) > 0 {
		return warnings, apierrors.NewInvalid(dataplaneConfigKind, obj.Name, errs)
	}

	// Only a podCIDR that is new or changed is checked against the cluster:
	// nodes that join later must not make an accepted object unchangeable.
	if obj.Spec.PodCIDR == "" || (oldSpec != nil && oldSpec.PodCIDR == obj.Spec.PodCIDR) {
		return warnings, nil
	}
	errs, err := v.checkPodCIDR(ctx, obj.Spec.PodCIDR)
	if err != nil {
		return warnings, apierrors.NewInternalError(fmt.Errorf("check podCIDR against the cluster: %w", err))
	}
	if len(errs) > 0 {
		return warnings, apierrors.NewInvalid(dataplaneConfigKind, obj.Name, errs)
	}
	return warnings, nil
}

var dataplaneConfigKind = v1.GroupVersion.WithKind("DataplaneConfig").GroupKind()

// percentOneToHundred matches 1% to 100%.
var percentOneToHundred = regexp.MustCompile(`^([1-9][0-9]?|100)%$`)

// validateAgent checks the agent settings the schema can't.
func validateAgent(agent *v1.AgentSettings) field.ErrorList {
	if agent == nil {
		return nil
	}
	path := field.NewPath("spec", "agent")
	return slices.Concat(
		validateMaxUnavailable(path.Child("maxUnavailable"), agent.MaxUnavailable),
		validateRequest(path.Child("cpuRequest"), agent.CPURequest, `such as "100m" or "0.5"`),
		validateRequest(path.Child("memoryRequest"), agent.MemoryRequest, `such as "256Mi" or "1Gi"`),
	)
}

// validateMaxUnavailable is here rather than in the schema: maxUnavailable
// is an int-or-string, and a CEL rule on it has no length bound, so the
// API server refuses it as too costly.
func validateMaxUnavailable(path *field.Path, mu *intstr.IntOrString) field.ErrorList {
	if mu == nil {
		return nil
	}
	const want = `must be a whole number of at least 1 or a percentage from 1% to 100%, such as 1 or "10%" (a DaemonSet rollout that may take no agent down can never progress)`
	switch {
	case mu.Type == intstr.Int && mu.IntVal < 1:
		return field.ErrorList{field.Invalid(path, mu.IntVal, want)}
	case mu.Type == intstr.String && !percentOneToHundred.MatchString(mu.StrVal):
		return field.ErrorList{field.Invalid(path, mu.StrVal, want)}
	}
	return nil
}

// validateRequest refuses a negative resource request: the DaemonSet the
// operator would render from it is invalid, so the agent would never roll
// out. Zero is accepted, as Kubernetes accepts it: no reservation. (Like
// maxUnavailable, a quantity is an int-or-string in the schema, which CEL
// can't bound cheaply.)
func validateRequest(path *field.Path, q *resource.Quantity, examples string) field.ErrorList {
	if q == nil || q.Sign() >= 0 {
		return nil
	}
	return field.ErrorList{field.Invalid(path, q.String(), "must not be negative; use zero or more, "+examples)}
}

// checkPodCIDR refuses a pod CIDR that overlaps the cluster's service CIDRs
// or holds a node's address: either would route pod traffic to the wrong
// place. The CRD schema has already checked that it parses.
func (v *DataplaneConfigValidator) checkPodCIDR(ctx context.Context, podCIDR string) (field.ErrorList, error) {
	path := field.NewPath("spec", "podCIDR")
	pods, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		return field.ErrorList{field.Invalid(path, podCIDR, "must be in CIDR notation, for example 192.168.0.0/16")}, nil
	}
	var errs field.ErrorList

	var serviceCIDRs networkingv1.ServiceCIDRList
	switch err := v.Reader.List(ctx, &serviceCIDRs); {
	case meta.IsNoMatchError(err):
		// A cluster that doesn't serve ServiceCIDR has nothing to compare with.
	case err != nil:
		return nil, fmt.Errorf("list ServiceCIDRs: %w", err)
	}
	for _, sc := range serviceCIDRs.Items {
		for _, cidr := range sc.Spec.CIDRs {
			svc, err := netip.ParsePrefix(cidr)
			if err == nil && svc.Overlaps(pods) {
				errs = append(errs, field.Invalid(path, podCIDR, fmt.Sprintf(
					"overlaps the service CIDR %s (ServiceCIDR %s); pods and Services need separate ranges, choose a range such as 192.168.0.0/16 that no Service, node or network in the cluster uses",
					cidr, sc.Name)))
			}
		}
	}

	var nodes corev1.NodeList
	if err := v.Reader.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, node := range nodes.Items {
		for _, addr := range node.Status.Addresses {
			if addr.Type != corev1.NodeInternalIP && addr.Type != corev1.NodeExternalIP {
				continue
			}
			ip, err := netip.ParseAddr(addr.Address)
			if err == nil && pods.Contains(ip) {
				errs = append(errs, field.Invalid(path, podCIDR, fmt.Sprintf(
					"contains %s, the address of node %s; the pod CIDR must not overlap the network the nodes sit on",
					addr.Address, node.Name)))
			}
		}
	}
	return errs, nil
}
