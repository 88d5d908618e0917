package certs

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Names of the files written to Options.CertDir. The webhook server reads
// tls.crt and tls.key by default; ca.crt holds the published CA bundle for
// clients (e.g. a local demo calling the webhook directly).
const (
	CertFileName   = "tls.crt"
	KeyFileName    = "tls.key"
	CACertFileName = "ca.crt"
)

// caKeyName is the Secret key of the CA's private key; it is never written
// to CertDir because the webhook server has no use for it.
const caKeyName = "ca.key"

const (
	// DefaultCAValidity is the CA lifetime when Options.CAValidity is zero.
	DefaultCAValidity = 10 * 365 * 24 * time.Hour
	// DefaultCertValidity is the serving certificate lifetime when
	// Options.CertValidity is zero.
	DefaultCertValidity = 365 * 24 * time.Hour
)

// Options say which Secret holds the material, which names the serving
// certificate must cover, where the files go and where the CA bundle is
// published.
//
// Rotation rule: a certificate (CA or serving) is renewed when less than a
// third of its lifetime remains, or when it is unusable; the serving
// certificate also when its DNS names or IP addresses differ from the ones
// wanted. A renewed CA always brings a renewed serving certificate.
type Options struct {
	// Namespace and SecretName locate the Secret holding the CA and the
	// serving certificate. Namespace is also part of the DNS names.
	Namespace  string
	SecretName string

	// ServiceName is the webhook Service; the certificate covers
	// <svc>, <svc>.<ns>, <svc>.<ns>.svc and <svc>.<ns>.svc.cluster.local.
	ServiceName string
	// DNSNames and IPAddresses are covered in addition (e.g. 127.0.0.1 for a
	// webhook served on loopback in a local demo).
	DNSNames    []string
	IPAddresses []net.IP

	// CertDir receives tls.crt, tls.key and ca.crt; it is the webhook
	// server's CertDir.
	CertDir string

	// Names of the webhook configurations whose every webhook entry gets the
	// CA bundle, and of the CRDs whose conversion webhook gets it. Any of
	// them may be empty.
	ValidatingWebhookConfigurations []string
	MutatingWebhookConfigurations   []string
	CRDs                            []string

	// CAValidity and CertValidity are the lifetimes of newly issued
	// certificates; zero means DefaultCAValidity and DefaultCertValidity.
	CAValidity   time.Duration
	CertValidity time.Duration

	// now is the clock; tests set it to move through a certificate's
	// lifetime without sleeping. Nil means time.Now.
	now func() time.Time
}

// withDefaults returns a copy of o with zero values replaced by defaults, or
// an error naming the first required field that is missing.
func (o Options) withDefaults() (Options, error) {
	var missing []error
	for _, f := range []struct{ name, value string }{
		{"namespace", o.Namespace},
		{"secret name", o.SecretName},
		{"service name", o.ServiceName},
		{"cert dir", o.CertDir},
	} {
		if f.value == "" {
			missing = append(missing, fmt.Errorf("%s is required", f.name))
		}
	}
	if o.CAValidity < 0 || o.CertValidity < 0 {
		missing = append(missing, errors.New("validity must not be negative"))
	}
	if err := errors.Join(missing...); err != nil {
		return o, fmt.Errorf("invalid certs options: %w", err)
	}
	if o.CAValidity == 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity == 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.now == nil {
		o.now = time.Now
	}
	return o, nil
}

// servingDNSNames lists the names the serving certificate must cover, the
// in-cluster Service names first, without duplicates.
func (o Options) servingDNSNames() []string {
	svc, ns := o.ServiceName, o.Namespace
	names := []string{
		svc,
		svc + "." + ns,
		svc + "." + ns + ".svc",
		svc + "." + ns + ".svc.cluster.local",
	}
	for _, n := range o.DNSNames {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// servingIPs lists the IP addresses the serving certificate must cover,
// without duplicates.
func (o Options) servingIPs() []net.IP {
	var ips []net.IP
	for _, ip := range o.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	return ips
}
