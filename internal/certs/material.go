package certs

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
)

// keyMaterial is what the Secret stores. The serving pair and the bundle are
// also what CertDir receives.
type keyMaterial struct {
	// CABundle is PEM: the current CA first, then previous CAs that are
	// still valid, so clients trust certificates issued by either.
	CABundle []byte
	// CAKey is the PEM private key of the current (first) CA.
	CAKey []byte
	// Cert and Key are the PEM serving certificate and its private key.
	Cert []byte
	Key  []byte
}

func materialFromSecret(s *corev1.Secret) keyMaterial {
	return keyMaterial{
		CABundle: s.Data[CACertFileName],
		CAKey:    s.Data[caKeyName],
		Cert:     s.Data[CertFileName],
		Key:      s.Data[KeyFileName],
	}
}

// applyTo writes m into s, leaving any other keys in s alone.
func (m keyMaterial) applyTo(s *corev1.Secret) {
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[CACertFileName] = m.CABundle
	s.Data[caKeyName] = m.CAKey
	s.Data[CertFileName] = m.Cert
	s.Data[KeyFileName] = m.Key
}

func (m keyMaterial) equal(o keyMaterial) bool {
	return bytes.Equal(m.CABundle, o.CABundle) &&
		bytes.Equal(m.CAKey, o.CAKey) &&
		bytes.Equal(m.Cert, o.Cert) &&
		bytes.Equal(m.Key, o.Key)
}

// files maps CertDir file names to their content. The CA key is not among
// them: the webhook server only needs to serve, not to issue.
func (m keyMaterial) files() map[string][]byte {
	return map[string][]byte{
		CertFileName:   m.Cert,
		KeyFileName:    m.Key,
		CACertFileName: m.CABundle,
	}
}
