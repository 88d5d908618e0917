package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// clockSkew backdates NotBefore so that a replica whose clock runs a little
// behind the issuer's does not see a fresh certificate as not yet valid and
// replace it.
const clockSkew = time.Hour

// maxBundledCAs bounds the bundle: the current CA plus previous ones still
// valid. Under the rotation rule only one previous CA is ever valid, so the
// bound only matters if something rotates the CA far too often.
const maxBundledCAs = 3

// authority is a parsed CA able to sign serving certificates.
type authority struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
	keyPEM  []byte
}

// newAuthority issues a self-signed CA valid for opts.CAValidity from now.
func newAuthority(opts Options, now time.Time) (*authority, error) {
	key, keyPEM, err := newPrivateKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerialNumber()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// A timestamp in the name tells successive CAs apart in logs and in
		// `openssl x509` output.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s-ca@%d", opts.ServiceName, now.Unix())},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(opts.CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// It signs leaf certificates only.
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	return &authority{cert: cert, key: key, certPEM: encodeCertificate(der), keyPEM: keyPEM}, nil
}

// issueServing signs a serving certificate for the names in opts. It never
// outlives the CA, since clients would reject it past the CA's expiry anyway.
func (ca *authority) issueServing(opts Options, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newPrivateKey()
	if err != nil {
		return nil, nil, err
	}
	serial, err := newSerialNumber()
	if err != nil {
		return nil, nil, err
	}
	dnsNames := opts.servingDNSNames()
	notAfter := now.Add(opts.CertValidity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: dnsNames[2]}, // <svc>.<ns>.svc, what the API server dials
		DNSNames:     dnsNames,
		IPAddresses:  opts.servingIPs(),
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		// ECDSA keys sign the handshake; there is no key encipherment.
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	return encodeCertificate(der), keyPEM, nil
}

// parseAuthority reads the current CA: the first certificate of the bundle
// and its key, which must belong together.
func parseAuthority(bundle, keyPEM []byte) (*authority, error) {
	block, _ := pem.Decode(bundle)
	if block == nil || block.Type != pemTypeCertificate {
		return nil, errors.New("no CA certificate in PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("CA certificate may not sign certificates")
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA key: %w", err)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("CA key does not match CA certificate")
	}
	return &authority{cert: cert, key: key, certPEM: pem.EncodeToMemory(block), keyPEM: keyPEM}, nil
}

// parseServing reads the serving pair; tls.X509KeyPair also checks that the
// key belongs to the certificate.
func parseServing(certPEM, keyPEM []byte) (*x509.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("parse serving key pair: %w", err)
	}
	if pair.Leaf != nil {
		return pair.Leaf, nil
	}
	return x509.ParseCertificate(pair.Certificate[0])
}

// bundleCAs returns the CA certificates of a PEM bundle; blocks that do not
// parse are skipped, because an unreadable bundle entry is of no use to any
// client and must not stop a repair.
func bundleCAs(bundle []byte) []*x509.Certificate {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, bundle = pem.Decode(bundle)
		if block == nil {
			return certs
		}
		if block.Type != pemTypeCertificate {
			continue
		}
		if cert, err := x509.ParseCertificate(block.Bytes); err == nil && cert.IsCA {
			certs = append(certs, cert)
		}
	}
}

// buildBundle puts current first, then the CAs of the old bundle that are
// still valid at now, in their old order so that an unchanged input yields
// byte-identical output.
func buildBundle(current *authority, oldBundle []byte, now time.Time) []byte {
	out := bytes.Clone(current.certPEM)
	kept := 1
	for _, ca := range bundleCAs(oldBundle) {
		if kept == maxBundledCAs {
			break
		}
		if ca.Equal(current.cert) || !now.Before(ca.NotAfter) {
			continue
		}
		out = append(out, encodeCertificate(ca.Raw)...)
		kept++
	}
	return out
}

// dueForRenewal reports whether less than a third of cert's lifetime
// remains at now (which includes having expired).
func dueForRenewal(cert *x509.Certificate, now time.Time) bool {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < lifetime/3
}

func newPrivateKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ECDSA key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal ECDSA key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("no private key in PEM")
	}
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", key)
	}
	return signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	eq, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(b)
}

// newSerialNumber returns a random 128-bit serial; RFC 5280 asks for unique
// serials per CA, and randomness gives that without bookkeeping.
func newSerialNumber() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}

func encodeCertificate(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCertificate, Bytes: der})
}

// sameIPs reports whether a and b hold the same addresses, in any order.
func sameIPs(a, b []net.IP) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(ip net.IP) bool {
		return !slices.ContainsFunc(b, ip.Equal)
	})
}

// pemTypeCertificate is the PEM block type of an X.509 certificate.
const pemTypeCertificate = "CERTIFICATE"
