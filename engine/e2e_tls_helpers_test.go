package engine

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// testPKI is a throw-away CA that issues a server certificate for
// 127.0.0.1 and client certificates, all generated in the test.
type testPKI struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	pool   *x509.CertPool
	dir    string
	serial int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "loopmq test CA", Organization: []string{"loopmq"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &testPKI{ca: ca, caKey: key, pool: x509.NewCertPool(), dir: t.TempDir(), serial: 1,
		caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	p.pool.AddCert(ca)
	return p
}

// issue returns a certificate signed by the CA: for the server at
// 127.0.0.1 (and localhost) when server is set, else a client
// certificate whose subject is subj.
func (p *testPKI) issue(t testing.TB, subj pkix.Name, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      subj,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// write stores c as name.crt and name.key in the PKI's directory and
// returns their paths.
func (p *testPKI) write(t testing.TB, c tls.Certificate, name string) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

// caFile writes the CA certificate and returns its path.
func (p *testPKI) caFile(t testing.TB) string {
	t.Helper()
	f := filepath.Join(p.dir, "ca.crt")
	require.NoError(t, os.WriteFile(f, p.caPEM, 0o600))
	return f
}

// serverConfig is a TLS configuration with a fresh server certificate
// and client certificates verified against the CA as auth says.
func (p *testPKI) serverConfig(t testing.TB, auth tls.ClientAuthType) *tls.Config {
	t.Helper()
	return &tls.Config{Certificates: []tls.Certificate{p.issue(t, pkix.Name{CommonName: "127.0.0.1"}, true)},
		ClientAuth: auth, ClientCAs: p.pool}
}

// clientConfig trusts the CA and presents certs.
func (p *testPKI) clientConfig(certs ...tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: p.pool, Certificates: certs, MinVersion: tls.VersionTLS12}
}

// newPahoAt connects a Paho 3.1.1 client to broker (a tls://, ws:// or
// wss:// URL) and fails the test on error.
func newPahoAt(t testing.TB, broker string, tc *tls.Config, configure func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	c, err := connectPahoAt(t, broker, tc, configure)
	require.NoError(t, err)
	return c
}

// connectPahoAt is newPahoAt returning the connection error.
func connectPahoAt(t testing.TB, broker string, tc *tls.Config, configure func(*paho.ClientOptions)) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(broker).
		SetClientID(fmt.Sprintf("t-%d", clientSeq.Add(1))).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(true).SetConnectTimeout(e2eWait)
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	if configure != nil {
		configure(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(e2eWait) {
		return nil, fmt.Errorf("connect timeout")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

// recordingAuth admits every client and keeps a copy of what it was told.
type recordingAuth struct {
	mu    sync.Mutex
	infos []ConnectInfo
}

func (a *recordingAuth) Authenticate(info ConnectInfo) codec.ReasonCode {
	a.mu.Lock()
	defer a.mu.Unlock()
	info.Username = append([]byte(nil), info.Username...)
	if info.Password != nil {
		info.Password = append([]byte(nil), info.Password...)
	}
	a.infos = append(a.infos, info)
	return codec.Success
}

func (a *recordingAuth) last(t testing.TB) ConnectInfo {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	require.NotEmpty(t, a.infos, "the Authenticator was not called")
	return a.infos[len(a.infos)-1]
}

func (a *recordingAuth) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.infos)
}
