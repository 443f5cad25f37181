package engine

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/tlsfiles"
)

// startTLS starts a server with a TLS listener configured by cfg.
func startTLS(t testing.TB, cfg *tls.Config, opts Options) *Server {
	t.Helper()
	opts.TLSListen = "127.0.0.1:0"
	opts.TLSConfig = cfg
	return startServer(t, opts)
}

func TestTLSPahoRoundTripWithTCPClient(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{})
	msgs, ch := collect(10)
	sub := newPahoAt(t, "tls://"+s.TLSAddr().String(), pki.clientConfig(), nil)
	wait(t, sub.Subscribe("tls/+", 1, msgs))
	tcp := newPaho(t, s, nil)
	tlsPub := newPahoAt(t, "tls://"+s.TLSAddr().String(), pki.clientConfig(), nil)
	wait(t, tcp.Publish("tls/from-tcp", 1, false, "over TCP"))
	require.Equal(t, "over TCP", recv(t, ch, "TCP → TLS").payload)
	wait(t, tlsPub.Publish("tls/from-tls", 0, false, strings.Repeat("x", 100<<10)))
	m := recv(t, ch, "TLS → TLS, 100 KiB")
	require.Equal(t, "tls/from-tls", m.topic)
	require.Len(t, m.payload, 100<<10)
}

func TestTLSRemoteAddressReachesAuthenticator(t *testing.T) {
	pki := newTestPKI(t)
	auth := &recordingAuth{}
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{Authenticator: auth})
	c := newPahoAt(t, "tls://"+s.TLSAddr().String(), pki.clientConfig(), func(o *paho.ClientOptions) {
		o.SetUsername("u").SetPassword("p")
	})
	info := auth.last(t)
	require.Equal(t, "u", string(info.Username), "without TLSIdentity CONNECT's user name is kept")
	require.Equal(t, "p", string(info.Password))
	ta, ok := info.Remote.(*net.TCPAddr)
	require.True(t, ok, "Remote is the client's TCP address, got %T %v", info.Remote, info.Remote)
	require.Equal(t, "127.0.0.1", ta.IP.String())
	wait(t, c.Subscribe("remote", 0, nil))
}

func TestTLSMosquittoClients(t *testing.T) {
	needMosquitto(t)
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{})
	ca := pki.caFile(t)
	_, port, err := net.SplitHostPort(s.TLSAddr().String())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pub := exec.CommandContext(ctx, "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "--cafile", ca,
		"-t", "mosq/tls", "-m", "hello over TLS", "-r", "-q", "1")
	out, err := pub.CombinedOutput()
	require.NoError(t, err, "mosquitto_pub: %s", out)
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", port, "--cafile", ca,
		"-t", "mosq/tls", "-C", "1", "-W", "10")
	out, err = sub.CombinedOutput()
	require.NoError(t, err, "mosquitto_sub: %s", out)
	require.Equal(t, "hello over TLS", strings.TrimSpace(string(out)))
}

func TestMutualTLSRequired(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.RequireAndVerifyClientCert), Options{})
	url := "tls://" + s.TLSAddr().String()

	_, err := connectPahoAt(t, url, pki.clientConfig(), nil)
	require.Error(t, err, "a client without a certificate is refused")

	other := newTestPKI(t) // a certificate from a CA the broker does not trust
	_, err = connectPahoAt(t, url, pki.clientConfig(other.issue(t, pkix.Name{CommonName: "eve"}, false)), nil)
	require.Error(t, err, "a client certificate from another CA is refused")

	c := newPahoAt(t, url, pki.clientConfig(pki.issue(t, pkix.Name{CommonName: "alice"}, false)), nil)
	wait(t, c.Subscribe("m/tls", 0, nil))
}

func TestTLSIdentityAsUsername(t *testing.T) {
	pki := newTestPKI(t)
	subj := pkix.Name{CommonName: "alice", Organization: []string{"Acme"}}
	f := func(mode CertIdentity, want string) {
		t.Helper()
		auth := &recordingAuth{}
		s := startTLS(t, pki.serverConfig(t, tls.VerifyClientCertIfGiven), Options{Authenticator: auth, TLSIdentity: mode})
		url := "tls://" + s.TLSAddr().String()
		newPahoAt(t, url, pki.clientConfig(pki.issue(t, subj, false)), func(o *paho.ClientOptions) {
			o.SetUsername("mallory").SetPassword("secret")
		})
		info := auth.last(t)
		require.Equal(t, want, string(info.Username), "the certificate's identity replaces CONNECT's user name")
		require.Nil(t, info.Password, "and the password is dropped")

		// Optional certificates: a client without one has no identity
		// and is refused before the Authenticator is asked.
		calls := auth.count()
		_, err := connectPahoAt(t, url, pki.clientConfig(), func(o *paho.ClientOptions) { o.SetUsername("alice") })
		require.Error(t, err)
		require.Contains(t, err.Error(), "bad user name or password")
		require.Equal(t, calls, auth.count())
	}
	f(IdentityCommonName, "alice")
	f(IdentitySubject, "CN=alice,O=Acme")
}

// TestTLSIdentityWithoutAuthenticator: the identity is the user name even
// when nobody checks it (ACLs see it); 5.0 over TLS with paho.golang.
func TestTLSIdentityPaho5(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.RequireAndVerifyClientCert), Options{TLSIdentity: IdentityCommonName})
	tc, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientConfig(pki.issue(t, pkix.Name{CommonName: "bob"}, false)))
	require.NoError(t, err)
	pc := paho5.NewClient(paho5.ClientConfig{Conn: tc, OnClientError: func(error) {}, PacketTimeout: e2eWait})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ca, err := pc.Connect(ctx, &paho5.Connect{ClientID: "p5-tls", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)
	require.Equal(t, byte(0), ca.ReasonCode)
	_ = pc.Disconnect(&paho5.Disconnect{})
}

func TestTLSCertificateReload(t *testing.T) {
	pki := newTestPKI(t)
	first := pki.issue(t, pkix.Name{CommonName: "first"}, true)
	certFile, keyFile := pki.write(t, first, "server")
	r, err := tlsfiles.NewReloader(certFile, keyFile, nil)
	require.NoError(t, err)
	cfg, _, err := tlsfiles.ServerConfig(r, "", tls.NoClientCert)
	require.NoError(t, err)
	ctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go r.Watch(ctx, 20*time.Millisecond)
	s := startTLS(t, cfg, Options{})
	url := "tls://" + s.TLSAddr().String()

	seen := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientConfig())
		require.NoError(t, err)
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	require.Equal(t, "first", seen())
	msgs, ch := collect(10)
	old := newPahoAt(t, url, pki.clientConfig(), nil)
	wait(t, old.Subscribe("reload", 0, msgs))

	second := pki.issue(t, pkix.Name{CommonName: "second"}, true)
	time.Sleep(10 * time.Millisecond) // a new modification time even on coarse clocks
	pki.write(t, second, "server")
	require.Eventually(t, func() bool { return seen() == "second" }, e2eWait, 20*time.Millisecond,
		"a new connection sees the new certificate")

	pub := newPahoAt(t, url, pki.clientConfig(), nil)
	wait(t, pub.Publish("reload", 0, false, "after reload"))
	require.Equal(t, "after reload", recv(t, ch, "the connection made before the reload").payload)
	require.True(t, old.IsConnectionOpen())
}

func TestTLSStopSendsServerShuttingDown(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{})
	tc, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientConfig())
	require.NoError(t, err)
	c := &rawClient{t: t, conn: tc, ver: codec.V5, tmp: make([]byte, 64<<10)}
	t.Cleanup(func() { _ = tc.Close() })
	cp := connectPacket("stop-tls", true, 30)
	cp.Version = codec.V5
	c.mustConnect(cp)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	}()
	d, ok := c.expect(codec.DISCONNECT).(*codec.Disconnect)
	require.True(t, ok)
	require.Equal(t, codec.ServerShuttingDown, d.ReasonCode)
	c.expectClosed(e2eWait)
}

// TestBridgeSocketRefusesStrangers: a connection to the engine's bridge
// socket that no proxy announced is closed before it is served.
func TestBridgeSocketRefusesStrangers(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{})
	conn, err := net.Dial("unix", s.bridge.sock)
	require.NoError(t, err)
	c := &rawClient{t: t, conn: conn, ver: codec.V311, tmp: make([]byte, 4096)}
	t.Cleanup(func() { _ = conn.Close() })
	_ = c.trySend(connectPacket("stranger", true, 30))
	pkts := c.expectClosed(e2eWait)
	require.Empty(t, pkts, "no CONNACK for a stranger")
}

// TestTLSKeepAliveAndTakeover: the engine's own rules apply to bridged
// clients: a TLS client that stays silent past 1.5 × its keep alive is
// closed (its TLS connection too), and a TLS connection takes over the
// session of a TCP one with the same client id.
func TestTLSKeepAliveAndTakeover(t *testing.T) {
	pki := newTestPKI(t)
	s := startTLS(t, pki.serverConfig(t, tls.NoClientCert), Options{})
	dialTLS := func() *rawClient {
		tc, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientConfig())
		require.NoError(t, err)
		t.Cleanup(func() { _ = tc.Close() })
		return &rawClient{t: t, conn: tc, ver: codec.V311, tmp: make([]byte, 4096)}
	}

	silent := dialTLS()
	silent.mustConnect(connectPacket("tls-ka", true, 1))
	start := time.Now()
	silent.expectClosed(5 * time.Second)
	require.Less(t, time.Since(start), 4*time.Second)

	tcp := connectRaw(t, s, connectPacket("tls-takeover", false, 30))
	tcp.subscribe(1, "takeover/t", 1)
	overTLS := dialTLS()
	ca := overTLS.mustConnect(connectPacket("tls-takeover", false, 30))
	require.True(t, ca.SessionPresent, "the TLS connection resumes the TCP one's session")
	tcp.expectClosed(e2eWait)
	pub := connectRaw(t, s, connectPacket("tls-takeover-pub", true, 30))
	pub.publish("takeover/t", "to the new connection", 0, false, 0)
	require.Equal(t, "to the new connection", string(overTLS.expectPublish().Payload))
}
