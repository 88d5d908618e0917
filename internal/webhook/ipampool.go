package webhook

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

// +kubebuilder:webhook:path=/validate-dataplane-sluice-dev-v1-ipampool,mutating=false,failurePolicy=fail,sideEffects=None,groups=dataplane.sluice.dev,resources=ipampools,verbs=create;update;delete,versions=v1,name=vipampool-v1.sluice.dev,admissionReviewVersions=v1,matchPolicy=Equivalent
// +kubebuilder:rbac:groups=dataplane.sluice.dev,resources=ipampools;ipamblocks,verbs=get;list;watch

// SetupIPAMPoolWebhook registers the IPAMPool validating webhook with mgr.
func SetupIPAMPoolWebhook(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1.IPAMPool{}).
		WithValidator(&IPAMPoolValidator{Reader: mgr.GetAPIReader()}).
		Complete()
}

// IPAMPoolValidator admits IPAMPools: the rules about one pool that CEL
// can't express, and the rules that need other objects (other pools,
// ServiceCIDRs, nodes, the blocks nodes hold). It reads uncached, like
// the DataplaneConfig validator.
type IPAMPoolValidator struct {
	Reader client.Reader
}

var (
	_            admission.Validator[*v1.IPAMPool] = &IPAMPoolValidator{}
	ipamPoolKind                                   = v1.GroupVersion.WithKind("IPAMPool").GroupKind()
)

// ValidateCreate checks a new pool.
func (v *IPAMPoolValidator) ValidateCreate(ctx context.Context, pool *v1.IPAMPool) (admission.Warnings, error) {
	return nil, v.validate(ctx, nil, pool)
}

// ValidateUpdate checks a changed pool.
func (v *IPAMPoolValidator) ValidateUpdate(ctx context.Context, old, pool *v1.IPAMPool) (admission.Warnings, error) {
	return nil, v.validate(ctx, old, pool)
}

// ValidateDelete refuses to delete a pool whose addresses nodes still hold:
// their pods would keep addresses that nothing accounts for.
func (v *IPAMPoolValidator) ValidateDelete(ctx context.Context, pool *v1.IPAMPool) (admission.Warnings, error) {
	blocks, err := v.blocksOf(ctx, pool.Name)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if len(blocks) == 0 {
		return nil, nil
	}
	return nil, apierrors.NewForbidden(v1.GroupVersion.WithResource("ipampools").GroupResource(), pool.Name, fmt.Errorf(
		"nodes %s still hold addresses from this pool; move those nodes to another pool (change their labels or this pool's nodeSelector) or delete them first",
		summarizeNodes(blocks)))
}

func (v *IPAMPoolValidator) validate(ctx context.Context, old, pool *v1.IPAMPool) error {
	cidrsPath := field.NewPath("spec", "cidrs")
	params, err := ipampool.FromSpec(&pool.Spec)
	if err != nil {
		// The schema refused what doesn't parse; this is a safety net.
		return apierrors.NewInvalid(ipamPoolKind, pool.Name, field.ErrorList{field.Invalid(field.NewPath("spec"), pool.Spec.CIDRs, err.Error())})
	}
	var errs field.ErrorList
	for _, problem := range params.Validate() {
		errs = append(errs, field.Invalid(field.NewPath("spec"), pool.Name, problem))
	}

	if old != nil {
		removed, err := v.checkRemovedCIDRs(ctx, pool, params)
		if err != nil {
			return apierrors.NewInternalError(err)
		}
		errs = append(errs, removed...)
	}

	clusterErrs, err := v.checkAgainstCluster(ctx, pool, params, cidrsPath)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	errs = append(errs, clusterErrs...)
	if len(errs) > 0 {
		return apierrors.NewInvalid(ipamPoolKind, pool.Name, errs)
	}
	return nil
}

// checkRemovedCIDRs refuses to shrink or remove a range that blocks held by
// nodes come from.
func (v *IPAMPoolValidator) checkRemovedCIDRs(ctx context.Context, pool *v1.IPAMPool, params ipampool.Params) (field.ErrorList, error) {
	blocks, err := v.blocksOf(ctx, pool.Name)
	if err != nil {
		return nil, err
	}
	var orphaned []v1.IPAMBlock
	for _, b := range blocks {
		prefix, err := netip.ParsePrefix(string(b.Spec.CIDR))
		if err != nil {
			continue
		}
		if !slices.ContainsFunc(params.CIDRs, func(c netip.Prefix) bool { return c.Bits() <= prefix.Bits() && c.Contains(prefix.Addr()) }) {
			orphaned = append(orphaned, b)
		}
	}
	if len(orphaned) == 0 {
		return nil, nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("spec", "cidrs"), fmt.Sprintf(
		"the change removes or shrinks a range that nodes hold addresses from (%s); keep that range until those nodes have moved or gone",
		summarizeBlocks(orphaned)))}, nil
}

// checkAgainstCluster refuses ranges that overlap another pool, a Service
// CIDR or a node's address, and selectors that pick a node another pool
// already picks.
func (v *IPAMPoolValidator) checkAgainstCluster(ctx context.Context, pool *v1.IPAMPool, params ipampool.Params, path *field.Path) (field.ErrorList, error) {
	var pools v1.IPAMPoolList
	if err := v.Reader.List(ctx, &pools); err != nil {
		return nil, fmt.Errorf("list IPAMPools: %w", err)
	}
	others := slices.DeleteFunc(pools.Items, func(p v1.IPAMPool) bool { return p.Name == pool.Name })
	errs := otherPoolErrors(others, params.CIDRs, path)

	serviceErrs, err := v.serviceCIDRErrors(ctx, params.CIDRs, path)
	if err != nil {
		return nil, err
	}
	errs = append(errs, serviceErrs...)

	nodeErrs, err := v.nodeErrors(ctx, pool, others, params.CIDRs, path)
	if err != nil {
		return nil, err
	}
	return append(errs, nodeErrs...), nil
}

func otherPoolErrors(others []v1.IPAMPool, cidrs []netip.Prefix, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, other := range others {
		for _, theirs := range other.Spec.CIDRs {
			theirPrefix, err := netip.ParsePrefix(string(theirs))
			if err != nil {
				continue
			}
			for _, ours := range cidrs {
				if ours.Overlaps(theirPrefix) {
					errs = append(errs, field.Invalid(path, ours.String(), fmt.Sprintf(
						"overlaps %s of IPAMPool %s; pools must not share addresses", theirs, other.Name)))
				}
			}
		}
	}
	return errs
}

func (v *IPAMPoolValidator) serviceCIDRErrors(ctx context.Context, cidrs []netip.Prefix, path *field.Path) (field.ErrorList, error) {
	var serviceCIDRs networkingv1.ServiceCIDRList
	if err := v.Reader.List(ctx, &serviceCIDRs); err != nil && !meta.IsNoMatchError(err) {
		return nil, fmt.Errorf("list ServiceCIDRs: %w", err)
	}
	var errs field.ErrorList
	for _, sc := range serviceCIDRs.Items {
		for _, cidr := range sc.Spec.CIDRs {
			svc, err := netip.ParsePrefix(cidr)
			if err != nil {
				continue
			}
			for _, ours := range cidrs {
				if ours.Overlaps(svc) {
					errs = append(errs, field.Invalid(path, ours.String(), fmt.Sprintf(
						"overlaps the service CIDR %s (ServiceCIDR %s); pod and Service addresses must differ", cidr, sc.Name)))
				}
			}
		}
	}
	return errs, nil
}

// nodeErrors refuses ranges holding a node's address and a selector that
// picks a node another pool picks.
func (v *IPAMPoolValidator) nodeErrors(ctx context.Context, pool *v1.IPAMPool, others []v1.IPAMPool, cidrs []netip.Prefix, path *field.Path) (field.ErrorList, error) {
	ourSelector, err := selectorOf(pool)
	if err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "nodeSelector"), pool.Spec.NodeSelector, err.Error())}, nil
	}
	var nodes corev1.NodeList
	if err := v.Reader.List(ctx, &nodes); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var errs field.ErrorList
	for _, node := range nodes.Items {
		errs = append(errs, nodeAddressErrors(node, cidrs, path)...)
		if !ourSelector.Matches(labels.Set(node.Labels)) {
			continue
		}
		for _, other := range others {
			theirSelector, err := selectorOf(&other)
			if err == nil && theirSelector.Matches(labels.Set(node.Labels)) {
				errs = append(errs, field.Invalid(field.NewPath("spec", "nodeSelector"), pool.Spec.NodeSelector, fmt.Sprintf(
					"selects node %s, which IPAMPool %s already selects; a node draws from exactly one pool, so make the selectors exclusive",
					node.Name, other.Name)))
			}
		}
	}
	return errs, nil
}

func nodeAddressErrors(node corev1.Node, cidrs []netip.Prefix, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for _, addr := range node.Status.Addresses {
		if addr.Type != corev1.NodeInternalIP && addr.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(addr.Address)
		if err != nil {
			continue
		}
		for _, ours := range cidrs {
			if ours.Contains(ip) {
				errs = append(errs, field.Invalid(path, ours.String(), fmt.Sprintf(
					"contains %s, the address of node %s; pod ranges must not overlap the node network", addr.Address, node.Name)))
			}
		}
	}
	return errs
}

// selectorOf is the pool's node selector; no selector selects every node.
func selectorOf(pool *v1.IPAMPool) (labels.Selector, error) {
	if pool.Spec.NodeSelector == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(pool.Spec.NodeSelector)
}

func (v *IPAMPoolValidator) blocksOf(ctx context.Context, pool string) ([]v1.IPAMBlock, error) {
	var blocks v1.IPAMBlockList
	if err := v.Reader.List(ctx, &blocks, client.MatchingLabels{v1.LabelPool: pool}); err != nil {
		return nil, fmt.Errorf("list IPAMBlocks of pool %s: %w", pool, err)
	}
	return blocks.Items, nil
}

// summarizeBlocks names up to five blocks and their nodes.
func summarizeBlocks(blocks []v1.IPAMBlock) string {
	var parts []string
	for i, b := range blocks {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(blocks)-5))
			break
		}
		parts = append(parts, fmt.Sprintf("%s on node %s", b.Spec.CIDR, b.Spec.Node))
	}
	return strings.Join(parts, ", ")
}

// summarizeNodes names up to five distinct nodes.
func summarizeNodes(blocks []v1.IPAMBlock) string {
	var nodes []string
	for _, b := range blocks {
		if !slices.Contains(nodes, b.Spec.Node) {
			nodes = append(nodes, b.Spec.Node)
		}
	}
	slices.Sort(nodes)
	if len(nodes) > 5 {
		return strings.Join(nodes[:5], ", ") + fmt.Sprintf(" and %d more", len(nodes)-5)
	}
	return strings.Join(nodes, ", ")
}
