package engine

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pahov5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// End-to-end tests of authentication [MQTT 5.0 section 4.12]: plain CONNECT
// user names and passwords through Authenticator (3.1.1 and 5.0), and
// SCRAM-SHA-256 enhanced authentication (auth_scram_test.go) with
// paho.golang and with raw 5.0 packets for the error paths.

// authServer starts a broker whose authenticator knows alice/secret.
func authServer(t *testing.T, opts Options) (*Server, *scramServer) {
	t.Helper()
	ss, err := newScramServer(map[string]string{"alice": "secret"})
	require.NoError(t, err)
	opts.Authenticator = ss
	return startServer(t, opts), ss
}

// scramConnect returns a 5.0 CONNECT naming SCRAM-SHA-256 with the
// client-first-message of sc.
func scramConnect(id string, sc *scramClient) *codec.Connect {
	p := &codec.Connect{Version: codec.V5, ClientID: []byte(id), CleanStart: true, KeepAlive: 30}
	p.Properties.AuthMethod = []byte(scramMethod)
	p.Properties.AuthData = sc.start()
	return p
}

// authPacket returns an AUTH with method and data.
func authPacket(code codec.ReasonCode, method string, data []byte) *codec.Auth {
	a := &codec.Auth{ReasonCode: code}
	a.Properties.AuthMethod = []byte(method)
	a.Properties.AuthData = data
	return a
}

// expectAuth reads an AUTH and requires code and the SCRAM method
// [MQTT-4.12.0-5].
func (c *rawClient) expectAuth(code codec.ReasonCode) *codec.Auth {
	c.t.Helper()
	a := c.expect(codec.AUTH).(*codec.Auth)
	require.Equal(c.t, code, a.ReasonCode, "AUTH reason code")
	require.Equal(c.t, scramMethod, string(a.Properties.AuthMethod), "AUTH carries the CONNECT's method [MQTT-4.12.0-5]")
	return a
}

// expectRefused requires CONNACK with code, then the connection closed.
func (c *rawClient) expectRefused(code codec.ReasonCode) {
	c.t.Helper()
	ca := c.expect(codec.CONNACK).(*codec.Connack)
	require.Equal(c.t, code, ca.ReasonCode, "CONNACK code")
	require.Empty(c.t, ca.Properties.AuthMethod, "a refusal carries no method")
	require.Empty(c.t, c.expectClosed(e2eWait), "nothing after the refusing CONNACK")
}

// scramLogin runs a whole SCRAM exchange on c and returns the CONNACK.
func (c *rawClient) scramLogin(id string, sc *scramClient) *codec.Connack {
	c.t.Helper()
	return c.scramLoginWith(scramConnect(id, sc), sc)
}

// scramReauth re-authenticates c as sc's user (AUTH 0x19, then the
// exchange) and returns the server's AUTH 0x00.
func (c *rawClient) scramReauth(sc *scramClient) *codec.Auth {
	c.t.Helper()
	c.send(authPacket(codec.ReAuthenticate, scramMethod, sc.start()))
	first := c.expectAuth(codec.ContinueAuthentication)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(c.t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	return c.expectAuth(codec.Success)
}

// scramLoginWith is scramLogin with cp, a scramConnect the test changed.
func (c *rawClient) scramLoginWith(cp *codec.Connect, sc *scramClient) *codec.Connack {
	c.t.Helper()
	c.ver = codec.V5
	c.send(cp)
	first := c.expectAuth(codec.ContinueAuthentication)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(c.t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	ca := c.expect(codec.CONNACK).(*codec.Connack)
	require.Equal(c.t, codec.Success, ca.ReasonCode, "CONNACK code")
	return ca
}

// pahoV5 dials s and connects a paho.golang client with cp; the client is
// disconnected at cleanup if it connected.
func pahoV5(t *testing.T, s *Server, auther pahov5.Auther, cp *pahov5.Connect) (*pahov5.Client, *pahov5.Connack, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), e2eWait)
	require.NoError(t, err)
	cl := pahov5.NewClient(pahov5.ClientConfig{Conn: conn, AuthHandler: auther, PacketTimeout: e2eWait,
		OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ca, err := cl.Connect(ctx, cp)
	if err == nil {
		t.Cleanup(func() { _ = cl.Disconnect(&pahov5.Disconnect{}) })
	} else {
		_ = conn.Close()
	}
	return cl, ca, err
}

// pahoV5Subscribe requires a SUBACK granting QoS 1: packets flow.
func pahoV5Subscribe(t *testing.T, cl *pahov5.Client, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := cl.Subscribe(ctx, &pahov5.Subscribe{Subscriptions: []pahov5.SubscribeOptions{{Topic: topic, QoS: 1}}})
	require.NoError(t, err)
	require.Equal(t, []byte{1}, sa.Reasons)
}

// TestEnhancedAuthPahoSCRAMSucceeds checks a whole SCRAM-SHA-256 exchange
// with paho.golang: AUTH 0x18 both ways [MQTT-4.12.0-2] [MQTT-4.12.0-3],
// then a successful CONNACK carrying the method and the server-final data
// that proves the server knew the credentials [MQTT-4.12.0-5].
func TestEnhancedAuthPahoSCRAMSucceeds(t *testing.T) {
	s, ss := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "secret"}
	cl, ca, err := pahoV5(t, s, sc, &pahov5.Connect{ClientID: "scram-paho", CleanStart: true, KeepAlive: 30,
		Properties: &pahov5.ConnectProperties{AuthMethod: scramMethod, AuthData: sc.start()}})
	require.NoError(t, err, "scram client error: %v", sc.err)
	require.Equal(t, byte(0), ca.ReasonCode)
	require.NotNil(t, ca.Properties)
	require.Equal(t, scramMethod, ca.Properties.AuthMethod)
	require.NoError(t, sc.verify(ca.Properties.AuthData))
	pahoV5Subscribe(t, cl, "auth/ok")

	starts := ss.started()
	require.Len(t, starts, 1)
	require.Equal(t, "scram-paho", starts[0].ClientID)
	require.Equal(t, codec.V5, starts[0].Version)
	require.NotNil(t, starts[0].Remote)
	require.False(t, starts[0].ReAuth)
}

// TestEnhancedAuthRawExchangeCarriesMethodEverywhere checks the packets of
// a successful exchange byte for byte: every AUTH and the CONNACK carry
// the CONNECT's Authentication Method [MQTT-4.12.0-5], the CONNACK the
// final Authentication Data [MQTT 5.0 section 3.2.2.3.18], and the
// session is usable afterwards.
func TestEnhancedAuthRawExchangeCarriesMethodEverywhere(t *testing.T) {
	s, _ := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "secret"}
	c := dialRaw(t, s)
	ca := c.scramLogin("scram-raw", sc)
	require.Equal(t, scramMethod, string(ca.Properties.AuthMethod), "CONNACK method [MQTT-4.12.0-5]")
	require.NoError(t, sc.verify(ca.Properties.AuthData))
	require.Equal(t, byte(1), c.subscribe(1, "auth/raw", 1))
}

// TestEnhancedAuthWrongProofGetsConnack0x87 checks that a failed exchange
// ends with CONNACK 0x87 and a closed connection [MQTT-4.12.0-4].
func TestEnhancedAuthWrongProofGetsConnack0x87(t *testing.T) {
	s, _ := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "wrong"}
	c := dialRaw(t, s)
	c.ver = codec.V5
	c.send(scramConnect("scram-bad", sc))
	first := c.expectAuth(codec.ContinueAuthentication)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	c.expectRefused(codec.NotAuthorized)
}

// TestEnhancedAuthPahoWrongPasswordIsRefused is the same failure through
// paho.golang.
func TestEnhancedAuthPahoWrongPasswordIsRefused(t *testing.T) {
	s, _ := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "wrong"}
	_, ca, err := pahoV5(t, s, sc, &pahov5.Connect{ClientID: "scram-paho-bad", CleanStart: true,
		Properties: &pahov5.ConnectProperties{AuthMethod: scramMethod, AuthData: sc.start()}})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(codec.NotAuthorized), ca.ReasonCode)
}

// TestEnhancedAuthUnknownMethodGetsConnack0x8C checks that a method no
// authenticator supports is refused with 0x8C and the connection closed
// [MQTT-4.12.0-1], with an enhanced authenticator and without any.
func TestEnhancedAuthUnknownMethodGetsConnack0x8C(t *testing.T) {
	withAuth, _ := authServer(t, Options{})
	for name, s := range map[string]*Server{"enhanced authenticator": withAuth, "no authenticator": startServer(t, Options{})} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, s)
			p := &codec.Connect{Version: codec.V5, ClientID: []byte("gss"), CleanStart: true}
			p.Properties.AuthMethod = []byte("GS2-KRB5")
			c.ver = codec.V5
			c.send(p)
			c.expectRefused(codec.BadAuthenticationMethod)
		})
	}
}

// TestEnhancedAuthOtherPacketBeforeConnackIsProtocolError checks that a
// client that named a method sends only AUTH or DISCONNECT until CONNACK
// [MQTT-3.1.2-30]: a SUBSCRIBE gets CONNACK 0x82 (no DISCONNECT before
// CONNACK [MQTT-3.14.0-1]) and the connection closed.
func TestEnhancedAuthOtherPacketBeforeConnackIsProtocolError(t *testing.T) {
	s, _ := authServer(t, Options{})
	c := dialRaw(t, s)
	c.ver = codec.V5
	c.send(scramConnect("early", &scramClient{user: "alice", password: "secret"}))
	c.expectAuth(codec.ContinueAuthentication)
	c.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("x"), QoS: 0}}})
	c.expectRefused(codec.ProtocolError)
}

// TestEnhancedAuthDifferentMethodIsProtocolError checks that an AUTH
// naming another method during the exchange is a protocol error
// [MQTT-4.12.0-5], as is an AUTH 0x19 before CONNACK [MQTT-4.12.0-3].
func TestEnhancedAuthDifferentMethodIsProtocolError(t *testing.T) {
	s, _ := authServer(t, Options{})
	for name, a := range map[string]*codec.Auth{
		"other method":     authPacket(codec.ContinueAuthentication, "SCRAM-SHA-1", []byte("x")),
		"re-authenticate":  authPacket(codec.ReAuthenticate, scramMethod, []byte("x")),
		"no method at all": {ReasonCode: codec.ContinueAuthentication},
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.ver = codec.V5
			c.send(scramConnect("other-method", &scramClient{user: "alice", password: "secret"}))
			c.expectAuth(codec.ContinueAuthentication)
			c.send(a)
			c.expectRefused(codec.ProtocolError)
		})
	}
}

// TestEnhancedAuthFailureKeepsExistingSession checks that the session is
// looked up only after authentication succeeded: a connection that fails
// to authenticate with a connected client's identifier does not take the
// session over (the takeover of [MQTT-3.1.4-2] is for authenticated
// clients only), and the connected client keeps working.
func TestEnhancedAuthFailureKeepsExistingSession(t *testing.T) {
	s, _ := authServer(t, Options{})
	owner := dialRaw(t, s)
	owner.scramLogin("shared-id", &scramClient{user: "alice", password: "secret"})

	intruder := dialRaw(t, s)
	intruder.ver = codec.V5
	sc := &scramClient{user: "alice", password: "guess"}
	intruder.send(scramConnect("shared-id", sc))
	first := intruder.expectAuth(codec.ContinueAuthentication)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(t, err)
	intruder.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	intruder.expectRefused(codec.NotAuthorized)

	owner.send(&codec.Pingreq{})
	owner.expect(codec.PINGRESP)
}

// TestEnhancedAuthUnfinishedExchangeTimesOut checks that a client that
// stops answering during the exchange is closed after ConnectTimeout.
func TestEnhancedAuthUnfinishedExchangeTimesOut(t *testing.T) {
	s, _ := authServer(t, Options{ConnectTimeout: 200 * time.Millisecond})
	c := dialRaw(t, s)
	c.ver = codec.V5
	c.send(scramConnect("silent", &scramClient{user: "alice", password: "secret"}))
	c.expectAuth(codec.ContinueAuthentication)
	require.Empty(t, c.expectClosed(e2eWait), "closed without CONNACK")
}

// TestReauthPahoSucceedsAndFails checks re-authentication with paho.golang
// [MQTT-4.12.1-1]: AUTH 0x19 with the same method, the exchange continues
// with 0x18 and ends with AUTH 0x00 while the connection keeps working;
// with a wrong password the server sends DISCONNECT 0x87 and closes
// [MQTT-4.12.1-2].
func TestReauthPahoSucceedsAndFails(t *testing.T) {
	s, ss := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "secret"}
	cl, _, err := pahoV5(t, s, sc, &pahov5.Connect{ClientID: "reauth-paho", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "alice",
		Properties: &pahov5.ConnectProperties{AuthMethod: scramMethod, AuthData: sc.start()}})
	require.NoError(t, err)

	reauth := func() *pahov5.AuthResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		resp, err := cl.Authenticate(ctx, &pahov5.Auth{ReasonCode: byte(codec.ReAuthenticate),
			Properties: &pahov5.AuthProperties{AuthMethod: scramMethod, AuthData: sc.start()}})
		require.NoError(t, err)
		return resp
	}
	resp := reauth()
	require.True(t, resp.Success, "re-authentication: reason 0x%02x, scram client error %v", resp.ReasonCode, sc.err)
	require.Equal(t, byte(codec.Success), resp.ReasonCode)
	pahoV5Subscribe(t, cl, "reauth/ok")

	starts := ss.started()
	require.Len(t, starts, 2)
	require.True(t, starts[1].ReAuth)
	require.Equal(t, "reauth-paho", starts[1].ClientID)
	require.Equal(t, "alice", string(starts[1].Username), "re-authentication sees the CONNECT's user name")
	require.Nil(t, starts[1].Password, "the broker keeps no password")

	sc.setPassword("expired")
	resp = reauth()
	require.False(t, resp.Success)
	require.Equal(t, byte(codec.NotAuthorized), resp.ReasonCode)
}

// TestReauthRawAuth0x00CarriesMethodAndData checks the packets of a
// re-authentication: AUTH 0x18 and the closing AUTH 0x00 carry the method
// [MQTT-4.12.0-5], AUTH 0x00 the server-final data, and packets of the
// session keep flowing in between [MQTT 5.0 section 4.12.1].
func TestReauthRawAuth0x00CarriesMethodAndData(t *testing.T) {
	s, _ := authServer(t, Options{})
	sc := &scramClient{user: "alice", password: "secret"}
	c := dialRaw(t, s)
	c.scramLogin("reauth-raw", sc)

	c.send(authPacket(codec.ReAuthenticate, scramMethod, sc.start()))
	first := c.expectAuth(codec.ContinueAuthentication)
	c.send(&codec.Pingreq{}) // other traffic continues during re-authentication
	c.expect(codec.PINGRESP)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	done := c.expectAuth(codec.Success)
	require.NoError(t, sc.verify(done.Properties.AuthData))
	require.Equal(t, byte(1), c.subscribe(1, "reauth/raw", 1))
}

// TestReauthFailureDisconnectsWithWill checks that a failed
// re-authentication ends with DISCONNECT 0x87 and a closed connection
// [MQTT-4.12.1-2], and that the will is published as for any connection
// the server closes.
func TestReauthFailureDisconnectsWithWill(t *testing.T) {
	s, _ := authServer(t, Options{})
	watcher := dialRaw(t, s)
	watcher.scramLogin("watcher", &scramClient{user: "alice", password: "secret"})
	require.Equal(t, byte(0), watcher.subscribe(1, "wills/#", 0))

	sc := &scramClient{user: "alice", password: "secret"}
	c := dialRaw(t, s)
	c.ver = codec.V5
	p := scramConnect("reauth-fail", sc)
	withWill(p, "wills/reauth-fail", "gone", 0, false)
	c.send(p)
	first := c.expectAuth(codec.ContinueAuthentication)
	final, err := sc.final(first.Properties.AuthData)
	require.NoError(t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	require.Equal(t, codec.Success, c.expect(codec.CONNACK).(*codec.Connack).ReasonCode)

	sc.setPassword("revoked")
	c.send(authPacket(codec.ReAuthenticate, scramMethod, sc.start()))
	first = c.expectAuth(codec.ContinueAuthentication)
	final, err = sc.final(first.Properties.AuthData)
	require.NoError(t, err)
	c.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
	d := c.expect(codec.DISCONNECT).(*codec.Disconnect)
	require.Equal(t, codec.NotAuthorized, d.ReasonCode)
	require.Empty(t, c.expectClosed(e2eWait))

	will := watcher.expectPublish()
	require.Equal(t, "wills/reauth-fail", string(will.Topic))
}

// TestReauthProtocolErrors checks AUTH misuse after CONNACK: another method
// [MQTT-4.12.1-1], AUTH 0x18 with no exchange running, and AUTH 0x00
// (sent only by the server) each get DISCONNECT 0x82 and a closed
// connection.
func TestReauthProtocolErrors(t *testing.T) {
	s, _ := authServer(t, Options{})
	for name, a := range map[string]*codec.Auth{
		"other method":     authPacket(codec.ReAuthenticate, "SCRAM-SHA-1", []byte("n,,n=alice,r=x")),
		"continue unasked": authPacket(codec.ContinueAuthentication, scramMethod, []byte("x")),
		"success":          authPacket(codec.Success, scramMethod, nil),
	} {
		t.Run(name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.scramLogin("reauth-bad-"+name, &scramClient{user: "alice", password: "secret"})
			c.send(a)
			d := c.expect(codec.DISCONNECT).(*codec.Disconnect)
			require.Equal(t, codec.ProtocolError, d.ReasonCode)
			require.Empty(t, c.expectClosed(e2eWait))
		})
	}
}

// TestAuthFromClientWithoutMethodIsProtocolError checks that a client that
// named no method gets no method in CONNACK [MQTT-4.12.0-6] and that an
// AUTH from it is a protocol error [MQTT-4.12.0-7].
func TestAuthFromClientWithoutMethodIsProtocolError(t *testing.T) {
	s := startServer(t, Options{})
	c := dialRaw(t, s)
	p := &codec.Connect{Version: codec.V5, ClientID: []byte("plain"), CleanStart: true}
	ca := c.mustConnect(p)
	require.Empty(t, ca.Properties.AuthMethod, "no method in CONNACK [MQTT-4.12.0-6]")
	c.send(authPacket(codec.ReAuthenticate, scramMethod, []byte("n,,n=alice,r=x")))
	d := c.expect(codec.DISCONNECT).(*codec.Disconnect)
	require.Equal(t, codec.ProtocolError, d.ReasonCode)
	require.Empty(t, c.expectClosed(e2eWait))
}

// authFunc adapts a function to Authenticator (plain CONNECT only).
type authFunc func(ConnectInfo) codec.ReasonCode

func (f authFunc) Authenticate(info ConnectInfo) codec.ReasonCode { return f(info) }

// TestPlainAuthSeesConnectInfo checks what Authenticate is given: client
// identifier, user name, password, protocol level and peer address.
func TestPlainAuthSeesConnectInfo(t *testing.T) {
	var mu sync.Mutex
	var got []ConnectInfo
	s := startServer(t, Options{Authenticator: authFunc(func(info ConnectInfo) codec.ReasonCode {
		mu.Lock()
		defer mu.Unlock()
		info.Username, info.Password = append([]byte(nil), info.Username...), append([]byte(nil), info.Password...)
		got = append(got, info)
		return codec.Success
	})})
	c := dialRaw(t, s)
	p := connectPacket("info", true, 0)
	p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, []byte("bob"), true, []byte("pw")
	c.mustConnect(p)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	require.Equal(t, "info", got[0].ClientID)
	require.Equal(t, "bob", string(got[0].Username))
	require.Equal(t, "pw", string(got[0].Password))
	require.Equal(t, codec.V311, got[0].Version)
	require.Equal(t, c.conn.LocalAddr().String(), got[0].Remote.String())
	require.False(t, got[0].ReAuth)
}

// TestPlainAuth311PahoAllowAndDeny checks user name and password checks for
// 3.1.1 clients with paho.mqtt.golang: the right password connects, a
// wrong one gets return code 0x04 and a refusal with NotAuthorized 0x05
// [MQTT 3.1.1 section 3.2.2.3].
func TestPlainAuth311PahoAllowAndDeny(t *testing.T) {
	s, _ := authServer(t, Options{})
	connect := func(user, pw string) (paho.Client, paho.Token) {
		o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).
			SetClientID(fmt.Sprintf("t-%d", clientSeq.Add(1))).SetAutoReconnect(false).
			SetConnectRetry(false).SetConnectTimeout(e2eWait).SetProtocolVersion(4).
			SetUsername(user).SetPassword(pw)
		cl := paho.NewClient(o)
		tok := cl.Connect()
		require.True(t, tok.WaitTimeout(e2eWait), "CONNECT did not complete")
		return cl, tok
	}
	cl, tok := connect("alice", "secret")
	require.NoError(t, tok.Error())
	require.True(t, cl.IsConnected())
	cl.Disconnect(100)

	cl, tok = connect("alice", "nope")
	require.Error(t, tok.Error())
	require.Equal(t, codec.ConnRefusedBadCredentials, tok.(*paho.ConnectToken).ReturnCode())
	require.False(t, cl.IsConnected())

	denyAll := startServer(t, Options{Authenticator: authFunc(func(ConnectInfo) codec.ReasonCode { return codec.NotAuthorized })})
	c := dialRaw(t, denyAll)
	ca := c.connect(connectPacket("denied", true, 0))
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedNotAuthorized), ca.ReasonCode)
	require.Empty(t, c.expectClosed(e2eWait))
}

// TestPlainAuthV5PahoAllowAndDeny checks user name and password checks for
// 5.0 clients with paho.golang: the right password connects (and the
// CONNACK names no method [MQTT-4.12.0-6]), a wrong one gets CONNACK 0x86.
func TestPlainAuthV5PahoAllowAndDeny(t *testing.T) {
	s, _ := authServer(t, Options{})
	cl, ca, err := pahoV5(t, s, nil, &pahov5.Connect{ClientID: "plain5", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("secret")})
	require.NoError(t, err)
	require.Equal(t, byte(0), ca.ReasonCode)
	if ca.Properties != nil {
		require.Empty(t, ca.Properties.AuthMethod)
	}
	pahoV5Subscribe(t, cl, "plain/ok")

	_, ca, err = pahoV5(t, s, nil, &pahov5.Connect{ClientID: "plain5-bad", CleanStart: true,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("secreT")})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(codec.BadUserNameOrPassword), ca.ReasonCode)

	c := dialRaw(t, s)
	ca5 := c.connect(&codec.Connect{Version: codec.V5, ClientID: []byte("anon"), CleanStart: true})
	require.Equal(t, codec.BadUserNameOrPassword, ca5.ReasonCode, "no user name: refused")
	require.Empty(t, c.expectClosed(e2eWait))
}
