package loadgen

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tlsProxy terminates TLS with a fresh self-signed certificate and forwards
// the plain stream to backend. It returns its address and the PEM file of
// the certificate (its own CA).
func tlsProxy(t *testing.T, backend string) (addr, caFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loadgen test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	require.NoError(t, err)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { _, _ = io.Copy(b, c); _ = b.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, b)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), caFile
}

func TestTLS(t *testing.T) {
	t.Parallel()
	addr, ca := tlsProxy(t, startEngine(t))
	base := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 2, QoS: 1, Rate: 200, TLS: true,
		Duration: time.Second, Drain: time.Second, ConnectTimeout: 3 * time.Second, SetupTimeout: 5 * time.Second}

	cfg := base
	cfg.CAFile = ca
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	checkCounts(t, cfg, res)

	cfg = base
	cfg.Insecure = true
	res, err = Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, int64(4), res.Connections.Up)

	cfg = base // the system's CAs do not know the test certificate
	res, err = Run(context.Background(), cfg)
	require.ErrorIs(t, err, ErrNoConnections)
	require.Equal(t, int64(4), errorCount(res, "tls handshake failed"), "%+v", res.Errors)
}
