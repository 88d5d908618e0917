package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestFreshMaterialVerifiesForEveryNameAndIP(t *testing.T) {
	opts := testOptions(t)
	m, plan := mustReconcile(t, keyMaterial{}, opts, t0)
	if !plan.CA || !plan.Serving {
		t.Fatalf("empty material: plan = %+v, want a new CA and serving certificate", plan)
	}

	hosts := append(opts.servingDNSNames(), "127.0.0.1")
	for _, want := range []string{"sluice-webhook", "sluice-webhook.sluice-system", "sluice-webhook.sluice-system.svc",
		"sluice-webhook.sluice-system.svc.cluster.local", "localhost", "127.0.0.1"} {
		if !slices.Contains(hosts, want) {
			t.Errorf("serving names %v lack %q", hosts, want)
		}
	}
	for _, host := range hosts {
		if err := verifyServing(t, m, m.CABundle, host, t0); err != nil {
			t.Errorf("serving certificate does not verify for %s: %v", host, err)
		}
	}
	if err := verifyServing(t, m, m.CABundle, "other.example", t0); err == nil {
		t.Error("serving certificate verifies for a name it should not cover")
	}

	for name, pemBytes := range map[string][]byte{"CA": m.CABundle, "serving": m.Cert} {
		key, ok := parseCert(t, pemBytes).PublicKey.(*ecdsa.PublicKey)
		if !ok || key.Curve != elliptic.P256() {
			t.Errorf("%s key is %T, want ECDSA P-256", name, parseCert(t, pemBytes).PublicKey)
		}
	}
	if got := parseCert(t, m.CABundle).NotAfter; !got.Equal(t0.Add(DefaultCAValidity)) {
		t.Errorf("CA NotAfter = %s, want %s", got, t0.Add(DefaultCAValidity))
	}
	if got := parseCert(t, m.Cert).NotAfter; !got.Equal(t0.Add(DefaultCertValidity)) {
		t.Errorf("serving NotAfter = %s, want %s", got, t0.Add(DefaultCertValidity))
	}
}

// TestServesTLSOnLoopback is the local demo's case: a client that trusts the
// bundle reaches a server on 127.0.0.1 with the generated pair.
func TestServesTLSOnLoopback(t *testing.T) {
	m, _ := mustReconcile(t, keyMaterial{}, testOptions(t), time.Now())
	pair, err := tls.X509KeyPair(m.Cert, m.Key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer func() { _ = conn.Close() }()
		_ = conn.(*tls.Conn).Handshake()
	}()

	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: poolOf(t, m.CABundle)})
	if err != nil {
		t.Fatalf("TLS handshake with 127.0.0.1: %v", err)
	}
	_ = conn.Close()
}

func TestRotationDecision(t *testing.T) {
	base := testOptions(t)
	issued, _ := mustReconcile(t, keyMaterial{}, base, t0)
	other, _ := mustReconcile(t, keyMaterial{}, base, t0)

	tests := []struct {
		name   string
		at     time.Time
		mutate func(m *keyMaterial, opts *Options)
		want   renewal // only CA and Serving are compared
	}{
		{name: "valid material is kept", at: t0.Add(100 * day)},
		{name: "serving certificate just before its last third", at: t0.Add(240 * day)},
		{name: "serving certificate in its last third", at: t0.Add(250 * day), want: renewal{Serving: true}},
		{name: "serving certificate expired", at: t0.Add(400 * day), want: renewal{Serving: true}},
		{
			name: "DNS name missing from serving certificate", at: t0.Add(day),
			mutate: func(_ *keyMaterial, o *Options) { o.DNSNames = append(o.DNSNames, "sluice.example.test") },
			want:   renewal{Serving: true},
		},
		{
			name: "serving certificate covers a name no longer wanted", at: t0.Add(day),
			mutate: func(_ *keyMaterial, o *Options) { o.DNSNames = nil },
			want:   renewal{Serving: true},
		},
		{
			name: "IP address changed", at: t0.Add(day),
			mutate: func(_ *keyMaterial, o *Options) { o.IPAddresses = []net.IP{net.ParseIP("::1")} },
			want:   renewal{Serving: true},
		},
		{
			name: "serving key does not match certificate", at: t0.Add(day),
			mutate: func(m *keyMaterial, _ *Options) { m.Key = other.Key },
			want:   renewal{Serving: true},
		},
		{
			name: "serving certificate from another CA", at: t0.Add(day),
			mutate: func(m *keyMaterial, _ *Options) { m.Cert, m.Key = other.Cert, other.Key },
			want:   renewal{Serving: true},
		},
		{name: "CA in its last third", at: t0.Add(7 * 365 * day), want: renewal{CA: true, Serving: true}},
		{
			name: "CA key does not match CA certificate", at: t0.Add(day),
			mutate: func(m *keyMaterial, _ *Options) { m.CAKey = other.CAKey },
			want:   renewal{CA: true, Serving: true},
		},
		{
			name: "garbage", at: t0.Add(day),
			mutate: func(m *keyMaterial, _ *Options) { *m = keyMaterial{[]byte("x"), []byte("y"), []byte("z"), nil} },
			want:   renewal{CA: true, Serving: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, opts := issued, base
			if tt.mutate != nil {
				tt.mutate(&m, &opts)
			}
			out, plan := mustReconcile(t, m, opts, tt.at)
			if plan.CA != tt.want.CA || plan.Serving != tt.want.Serving {
				t.Fatalf("plan = %+v, want CA=%v Serving=%v", plan, tt.want.CA, tt.want.Serving)
			}
			assertRenewed(t, m, out, plan)
			if _, again := mustReconcile(t, out, opts, tt.at); again.needed() {
				t.Errorf("renewed material is not settled: %s", again.Reason)
			}
		})
	}
}

// assertRenewed checks that exactly what the plan names changed.
func assertRenewed(t *testing.T, before, after keyMaterial, plan renewal) {
	t.Helper()
	if !plan.needed() && !after.equal(before) {
		t.Error("material was changed although nothing was due")
	}
	if caChanged := !bytes.Equal(before.CAKey, after.CAKey); caChanged != plan.CA {
		t.Errorf("CA key changed = %v, want %v", caChanged, plan.CA)
	}
	if certChanged := !bytes.Equal(before.Cert, after.Cert); certChanged != plan.needed() {
		t.Errorf("serving certificate changed = %v, want %v", certChanged, plan.needed())
	}
	if keyChanged := !bytes.Equal(before.Key, after.Key); keyChanged != plan.needed() {
		t.Errorf("serving key changed = %v, want %v", keyChanged, plan.needed())
	}
}

// TestCARotationBundlesOldCAUntilItExpires follows one CA rotation: clients
// holding the new bundle must accept a serving certificate of the old CA (a
// replica that has not reloaded yet) until the old CA expires.
func TestCARotationBundlesOldCAUntilItExpires(t *testing.T) {
	opts := testOptions(t)
	first, _ := mustReconcile(t, keyMaterial{}, opts, t0)
	// Late in the first CA's life its serving certificate is renewed from it.
	lateOld, plan := mustReconcile(t, first, opts, t0.Add(6*365*day))
	if plan.CA || !plan.Serving {
		t.Fatalf("at 6 years: plan = %+v, want only a serving renewal", plan)
	}

	rotation := t0.Add(7 * 365 * day)
	rotated, plan := mustReconcile(t, lateOld, opts, rotation)
	if !plan.CA {
		t.Fatalf("at 7 years: plan = %+v, want a CA renewal", plan)
	}
	if !bytes.HasSuffix(rotated.CABundle, first.CABundle) || bytes.Equal(rotated.CABundle, first.CABundle) {
		t.Fatal("rotated bundle is not new CA followed by old CA")
	}
	if got := strings.Count(string(rotated.CABundle), "BEGIN CERTIFICATE"); got != 2 {
		t.Fatalf("rotated bundle holds %d CAs, want 2", got)
	}
	if err := verifyServing(t, lateOld, rotated.CABundle, "sluice-webhook.sluice-system.svc", rotation); err != nil {
		t.Errorf("old CA's serving certificate rejected by the new bundle: %v", err)
	}
	if err := verifyServing(t, rotated, rotated.CABundle, "sluice-webhook.sluice-system.svc", rotation); err != nil {
		t.Errorf("new serving certificate rejected by the new bundle: %v", err)
	}
	if err := verifyServing(t, rotated, first.CABundle, "sluice-webhook.sluice-system.svc", rotation); err == nil {
		t.Error("new serving certificate verifies against the old CA alone")
	}

	// Once the old CA has expired it leaves the bundle; nothing else changes.
	rotated.Cert, rotated.Key, _ = mustAuthority(t, rotated).issueServing(mustDefaults(t, opts), t0.Add(10*365*day))
	pruned, plan := mustReconcile(t, rotated, opts, t0.Add(10*365*day+day))
	if plan.needed() {
		t.Fatalf("after the old CA expired: plan = %+v, want none", plan)
	}
	if got := strings.Count(string(pruned.CABundle), "BEGIN CERTIFICATE"); got != 1 {
		t.Errorf("bundle after the old CA expired holds %d CAs, want 1", got)
	}
	if !bytes.Equal(pruned.Cert, rotated.Cert) || !bytes.Equal(pruned.CAKey, rotated.CAKey) {
		t.Error("pruning the bundle changed the certificates")
	}
}

func TestServingCertificateNeverOutlivesCA(t *testing.T) {
	opts := testOptions(t)
	opts.CAValidity = 90 * day
	opts.CertValidity = 365 * day
	m, _ := mustReconcile(t, keyMaterial{}, opts, t0)
	if ca, cert := parseCert(t, m.CABundle), parseCert(t, m.Cert); cert.NotAfter.After(ca.NotAfter) {
		t.Errorf("serving certificate expires %s, after its CA (%s)", cert.NotAfter, ca.NotAfter)
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := (Options{}).withDefaults(); err == nil || !strings.Contains(err.Error(), "namespace is required") {
		t.Errorf("empty options: err = %v, want a missing namespace", err)
	}
	opts, err := testOptions(t).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if opts.CAValidity != DefaultCAValidity || opts.CertValidity != DefaultCertValidity || opts.now == nil {
		t.Errorf("defaults not applied: %+v", opts)
	}
}

func mustDefaults(t *testing.T, opts Options) Options {
	t.Helper()
	opts, err := opts.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return opts
}

func mustAuthority(t *testing.T, m keyMaterial) *authority {
	t.Helper()
	ca, err := parseAuthority(m.CABundle, m.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}
