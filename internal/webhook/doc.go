// Package webhook holds the admission and conversion webhooks of the
// dataplane.sluice.dev API.
//
// Validation is split on purpose: every rule about one object lives in the
// CRD schema as a CEL rule (it runs in the API server, even when the webhook
// is down), and this package keeps only what CEL can't do: rules that read
// other objects (the cluster's ServiceCIDRs and node addresses) and warnings,
// which CRD validation can't return. Conversion between v1alpha1 and the v1
// hub is the pure code in api/v1alpha1; this package only registers it.
package webhook
