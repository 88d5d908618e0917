// Package certs owns the TLS material of the manager's webhook server: the
// validating admission webhook and the CRD conversion webhook.
//
// The manager runs without cert-manager. It keeps a self-signed CA and a
// serving certificate signed by it in one Secret, writes the serving pair
// and the CA bundle to the directory the controller-runtime webhook server
// reads (its certwatcher reloads changed files), and publishes the CA bundle
// into the named ValidatingWebhookConfigurations,
// MutatingWebhookConfigurations and the CRDs' conversion webhook
// clientConfig.
//
// Trade-off: a CA whose private key lives in a Secret is only as safe as
// read access to that Secret, and nothing outside the cluster vouches for it.
// In exchange the operator installs with no other dependency, and the only
// parties that must trust the CA are the API server and whatever reads the
// caBundle fields this package writes.
//
// Rotation happens when less than a third of a certificate's lifetime
// remains, not at expiry: the margin leaves many rotation passes (and
// restarts, and outages of this process) in which a failed renewal can be
// retried before anything breaks. A new CA always brings a new serving
// certificate. For as long as the previous CA is still valid it stays in the
// published bundle after the new one, so a client holding the new bundle
// still accepts a replica that has not yet picked up the new serving
// certificate.
//
// Every replica runs the same logic, since every replica serves webhooks and
// needs the files. The Secret is the single source of truth and replicas race
// through the API server's optimistic concurrency: a Create that hits
// AlreadyExists or an Update that hits Conflict re-reads the Secret and
// re-evaluates it, and so adopts whatever the winning replica stored.
//
// Ensure does all of this once and makes no API writes when everything is
// already in place; Rotator runs Ensure periodically inside the manager.
package certs

// The manager reads and writes its Secret, and reads and patches the webhook
// configurations and CRDs it publishes the CA bundle to.
// +kubebuilder:rbac:groups="",namespace=sluice-system,resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=sluice-validating-webhook-configuration,verbs=get;patch
// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,resourceNames=dataplaneconfigs.dataplane.sluice.dev,verbs=get;patch
