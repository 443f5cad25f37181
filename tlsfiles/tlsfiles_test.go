package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writePair writes a self-signed certificate for cn and its key into dir
// and returns their paths.
func writePair(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func cn(t *testing.T, r *Reloader) string {
	t.Helper()
	c, err := r.GetCertificate(nil)
	require.NoError(t, err)
	return c.Leaf.Subject.CommonName
}

func TestReloaderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "one")
	r, err := NewReloader(certFile, keyFile, nil)
	require.NoError(t, err)
	require.Equal(t, "one", cn(t, r))

	r.check() // unchanged files: nothing to do
	require.Equal(t, "one", cn(t, r))

	// A half-written pair (new certificate, old key) does not load: the
	// previous certificate stays until the key follows.
	old, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	writePair(t, dir, "two")
	two, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, old, 0o600))
	r.check()
	require.Equal(t, "one", cn(t, r))
	require.NoError(t, os.WriteFile(keyFile, two, 0o600))
	r.check()
	require.Equal(t, "two", cn(t, r))

	require.NoError(t, os.Remove(keyFile))
	require.Error(t, r.Reload(), "a missing key is an error")
	require.Equal(t, "two", cn(t, r), "and keeps the certificate in use")
}

func TestClientAuth(t *testing.T) {
	f := func(mode string, want tls.ClientAuthType) {
		t.Helper()
		got, err := ClientAuth(mode)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	f("", tls.NoClientCert)
	f("none", tls.NoClientCert)
	f("optional", tls.VerifyClientCertIfGiven)
	f("required", tls.RequireAndVerifyClientCert)
	_, err := ClientAuth("sometimes")
	require.Error(t, err)
}

func TestServerConfigNeedsCAForClientCertificates(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "srv")
	r, err := NewReloader(certFile, keyFile, nil)
	require.NoError(t, err)
	_, _, err = ServerConfig(r, "", tls.RequireAndVerifyClientCert)
	require.Error(t, err)
	cfg, ca, err := ServerConfig(r, certFile, tls.RequireAndVerifyClientCert) // the self-signed certificate as CA
	require.NoError(t, err)
	require.NotNil(t, cfg.ClientCAs)
	require.Equal(t, 1, ca.Certificates())
	_, _, err = ServerConfig(r, keyFile, tls.VerifyClientCertIfGiven)
	require.Error(t, err, "a CA file without a certificate")
}

// A reloaded CA file applies to the next handshakes; a bad one keeps the
// previous CAs.
func TestCAReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "srv")
	otherCert, _ := writePair(t, t.TempDir(), "other")
	r, err := NewReloader(certFile, keyFile, nil)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.pem")
	copyFile(t, certFile, caFile)
	cfg, ca, err := ServerConfig(r, caFile, tls.RequireAndVerifyClientCert)
	require.NoError(t, err)
	first, err := cfg.GetConfigForClient(nil)
	require.NoError(t, err)

	both := append(readFile(t, certFile), readFile(t, otherCert)...)
	require.NoError(t, os.WriteFile(caFile, both, 0o600))
	require.NoError(t, ca.Reload())
	require.Equal(t, 2, ca.Certificates())
	second, err := cfg.GetConfigForClient(nil)
	require.NoError(t, err)
	require.NotSame(t, first.ClientCAs, second.ClientCAs)
	require.Equal(t, tls.RequireAndVerifyClientCert, second.ClientAuth)
	require.NotNil(t, second.GetCertificate)

	require.NoError(t, os.WriteFile(caFile, []byte("not PEM"), 0o600))
	require.Error(t, ca.Reload())
	third, err := cfg.GetConfigForClient(nil)
	require.NoError(t, err)
	require.Same(t, second, third, "a bad file keeps the previous CAs")
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	return b
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.WriteFile(to, readFile(t, from), 0o600))
}
