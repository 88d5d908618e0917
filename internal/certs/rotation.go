package certs

import (
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// renewal says what the stored material needs, and why.
type renewal struct {
	CA      bool // a new CA, and so a new serving certificate
	Serving bool // a new serving certificate from the current CA
	Reason  string
}

func (r renewal) needed() bool { return r.CA || r.Serving }

// planRenewal applies the rotation rule to the stored material at now.
func planRenewal(m keyMaterial, opts Options, now time.Time) renewal {
	ca, err := parseAuthority(m.CABundle, m.CAKey)
	if err != nil {
		return renewal{CA: true, Serving: true, Reason: fmt.Sprintf("CA unusable: %v", err)}
	}
	if dueForRenewal(ca.cert, now) {
		return renewal{CA: true, Serving: true, Reason: fmt.Sprintf("CA expires at %s", ca.cert.NotAfter.UTC().Format(time.RFC3339))}
	}
	if reason := servingProblem(m, ca, opts, now); reason != "" {
		return renewal{Serving: true, Reason: reason}
	}
	return renewal{}
}

// servingProblem says why the stored serving certificate cannot stay, or ""
// if it can.
func servingProblem(m keyMaterial, ca *authority, opts Options, now time.Time) string {
	cert, err := parseServing(m.Cert, m.Key)
	if err != nil {
		return fmt.Sprintf("serving certificate unusable: %v", err)
	}
	if !sameNames(cert.DNSNames, opts.servingDNSNames()) || !sameIPs(cert.IPAddresses, opts.servingIPs()) {
		return fmt.Sprintf("serving certificate covers %v %v, want %v %v",
			cert.DNSNames, cert.IPAddresses, opts.servingDNSNames(), opts.servingIPs())
	}
	if dueForRenewal(cert, now) {
		return fmt.Sprintf("serving certificate expires at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	// Only the current CA counts: a certificate from a previous CA must be
	// replaced before that CA drops out of the bundle.
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Sprintf("serving certificate does not verify against the current CA: %v", err)
	}
	return ""
}

// reconcileMaterial returns the material that should be stored at now: m
// itself, byte for byte, when it passes the rotation rule, otherwise m with
// what is due replaced. It also drops expired CAs from the bundle.
func reconcileMaterial(m keyMaterial, opts Options, now time.Time) (keyMaterial, renewal, error) {
	plan := planRenewal(m, opts, now)
	var (
		ca  *authority
		err error
	)
	if plan.CA {
		ca, err = newAuthority(opts, now)
	} else {
		ca, err = parseAuthority(m.CABundle, m.CAKey)
	}
	if err != nil {
		return m, plan, err
	}
	out := keyMaterial{
		CABundle: buildBundle(ca, m.CABundle, now),
		CAKey:    ca.keyPEM,
		Cert:     m.Cert,
		Key:      m.Key,
	}
	if plan.needed() {
		out.Cert, out.Key, err = ca.issueServing(opts, now)
		if err != nil {
			return m, plan, err
		}
	}
	return out, plan, nil
}

func sameNames(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(n string) bool {
		return !slices.Contains(b, n)
	})
}
