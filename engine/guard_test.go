package engine

import (
	"crypto/tls"
	"log/slog"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// Panic containment (guard.go): a panic in a hook the broker calls on an
// event loop closes the connection it came from; every other connection,
// on that loop too, goes on, and the panic is logged with its stack and
// counted.

// panicky is an Authenticator and an Authorizer that panic for the user
// name, topics and reader named "boom"; everything else is allowed.
type panicky struct{}

func (panicky) Authenticate(info ConnectInfo) codec.ReasonCode {
	if string(info.Username) == "boom" {
		panic("authenticator fails for boom")
	}
	return codec.Success
}

func (panicky) Authorize(id Identity, topic string, acc Access) bool {
	switch {
	case acc == Write && topic == "boom/w":
		panic("authorizer fails to decide a publish")
	case acc == Read && topic == "boom/r" && id.ClientID == "victim":
		panic("authorizer fails to decide a delivery")
	}
	return true
}

// startPanicky starts a broker with the panicky hooks and a log to read.
func startPanicky(t *testing.T) (*Server, *syncBuffer) {
	logs := new(syncBuffer)
	s := startServerPanicking(t, Options{Authenticator: panicky{}, Authorizer: panicky{},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))})
	return s, logs
}

// requirePanicLogged checks that the broker counted want panics and
// logged one with the hook's message and a stack through this file.
func requirePanicLogged(t *testing.T, s *Server, logs *syncBuffer, want uint64, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Stats().Panics == want }, e2eWait, time.Millisecond)
	out := logs.String()
	require.Contains(t, out, "recovered a panic")
	require.Contains(t, out, msg)
	require.Contains(t, out, "guard_test.go", "the log carries the panic's stack")
}

// TestPanicInPublishHookClosesOnlyThatConnection: the Authorizer panics
// deciding a PUBLISH. Its client is closed; a subscriber and a publisher
// on the same loop go on, and so does the panicking client's next
// connection.
func TestPanicInPublishHookClosesOnlyThatConnection(t *testing.T) {
	s, logs := startPanicky(t)
	sub := connectOnLoop(t, s, connectPacket("sub", true, 0), 0)
	require.Equal(t, byte(1), sub.subscribe(1, "#", 1))
	other := connectOnLoop(t, s, connectPacket("other", true, 0), 0)
	bad := connectOnLoop(t, s, connectPacket("bad", false, 0), 0)

	bad.publish("ok/1", "before", 1, false, 1)
	bad.expectAck(codec.PUBACK, 1)
	require.Equal(t, "before", string(sub.expectPublish().Payload))

	bad.publish("boom/w", "x", 1, false, 2)
	bad.expectClosed(e2eWait)
	requirePanicLogged(t, s, logs, 1, "authorizer fails to decide a publish")

	other.publish("ok/2", "after", 1, false, 1)
	other.expectAck(codec.PUBACK, 1)
	p := sub.expectPublish()
	require.Equal(t, "after", string(p.Payload))
	sub.ack(codec.PUBACK, p.PacketID)

	// The client comes back to its session, and a real client goes on.
	again := dialRaw(t, s)
	require.True(t, again.mustConnect(connectPacket("bad", false, 0)).SessionPresent)
	again.publish("ok/3", "back", 0, false, 0)
	require.Equal(t, "back", string(sub.expectPublish().Payload))
	pc := newPaho(t, s, nil)
	wait(t, pc.Publish("ok/4", 0, false, "paho"))
	require.Equal(t, "paho", string(sub.expectPublish().Payload))
	require.Equal(t, uint64(1), s.Stats().Panics)
}

// TestPanicInConnectHookClosesOnlyThatConnection: the Authenticator panics
// on a CONNECT. That client gets no CONNACK and is closed; the others go
// on, and so do later CONNECTs.
func TestPanicInConnectHookClosesOnlyThatConnection(t *testing.T) {
	s, logs := startPanicky(t)
	sub := newPaho(t, s, nil)
	got := make(chan string, 4)
	wait(t, sub.Subscribe("ok/#", 0, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))

	bad := dialRaw(t, s)
	p := connectPacket("bad", true, 0)
	p.UsernameFlag, p.Username = true, []byte("boom")
	bad.send(p)
	require.Empty(t, bad.expectClosed(e2eWait), "no CONNACK")
	requirePanicLogged(t, s, logs, 1, "authenticator fails for boom")

	pub := newPaho(t, s, func(o *paho.ClientOptions) { o.SetUsername("fine") })
	wait(t, pub.Publish("ok/1", 0, false, "after"))
	select {
	case m := <-got:
		require.Equal(t, "after", m)
	case <-time.After(e2eWait):
		t.Fatal("the subscriber got nothing after the panic")
	}
}

// TestPanicInDeliveryTaskClosesTheRecipient: the Authorizer panics deciding
// whether a subscriber on the other loop may read a message, inside the
// task that loop runs for the delivery. The subscriber is closed; the
// publisher, and a subscriber of the same message on that loop whose
// delivery is in the same batch of tasks, go on.
func TestPanicInDeliveryTaskClosesTheRecipient(t *testing.T) {
	s, logs := startPanicky(t)
	victim := connectOnLoop(t, s, connectPacket("victim", true, 0), 1)
	require.Equal(t, byte(0), victim.subscribe(1, "boom/r", 0))
	peer := connectOnLoop(t, s, connectPacket("peer", true, 0), 1)
	require.Equal(t, byte(0), peer.subscribe(1, "boom/r", 0))
	pub := connectOnLoop(t, s, connectPacket("pub", true, 0), 0)

	pub.publish("boom/r", "m1", 0, false, 0)
	victim.expectClosed(e2eWait)
	requirePanicLogged(t, s, logs, 1, "authorizer fails to decide a delivery")
	require.Equal(t, "m1", string(peer.expectPublish().Payload))

	pub.publish("boom/r", "m2", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	require.Equal(t, "m2", string(peer.expectPublish().Payload))
	require.True(t, strings.Count(logs.String(), "recovered a panic") == 1)
}

// TestPanicInTLSHandshakeClosesOnlyThatConnection: the caller's TLS
// configuration panics choosing a configuration for one client, on that
// connection's handshake goroutine. That connection is closed; TLS and TCP
// clients go on.
func TestPanicInTLSHandshakeClosesOnlyThatConnection(t *testing.T) {
	pki := newTestPKI(t)
	cfg := pki.serverConfig(t, tls.NoClientCert)
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if hello.ServerName == "boom" {
			panic("tls configuration fails for boom")
		}
		return nil, nil
	}
	logs := new(syncBuffer)
	s := startServerPanicking(t, Options{TLSListen: "127.0.0.1:0", TLSConfig: cfg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelError}))})

	msgs, ch := collect(2)
	sub := newPahoAt(t, "tls://"+s.TLSAddr().String(), pki.clientConfig(), nil)
	wait(t, sub.Subscribe("tls/+", 1, msgs))

	cc := pki.clientConfig()
	cc.ServerName = "boom"
	_, err := tls.Dial("tcp", s.TLSAddr().String(), cc)
	require.Error(t, err, "the handshake must fail")
	requirePanicLogged(t, s, logs, 1, "tls configuration fails for boom")

	pub := newPahoAt(t, "tls://"+s.TLSAddr().String(), pki.clientConfig(), nil)
	wait(t, pub.Publish("tls/after", 1, false, "over TLS"))
	require.Equal(t, "over TLS", recv(t, ch, "TLS after the panic").payload)
	wait(t, newPaho(t, s, nil).Publish("tls/tcp", 1, false, "over TCP"))
	require.Equal(t, "over TCP", recv(t, ch, "TCP after the panic").payload)
}

// TestPanicInCloseHandler: a client's will is routed from OnClose when its
// connection drops, and the Authorizer panics deciding whether a
// subscriber on the same loop may read it: a panic inside OnClose. No
// connection is blamed (the closing one is gone already); the panic is
// logged and counted, and the loop goes on serving its clients, the one
// the hook failed for included.
func TestPanicInCloseHandler(t *testing.T) {
	s, logs := startPanicky(t)
	victim := connectOnLoop(t, s, connectPacket("victim", true, 0), 0)
	require.Equal(t, byte(0), victim.subscribe(1, "boom/r", 0))
	require.Equal(t, byte(0), victim.subscribe(2, "ok/#", 0))
	dying := connectOnLoop(t, s, withWill(connectPacket("dying", true, 0), "boom/r", "will", 0, false), 0)

	dying.kill()
	requirePanicLogged(t, s, logs, 1, "authorizer fails to decide a delivery")
	require.Contains(t, logs.String(), "event=close")

	pub := connectOnLoop(t, s, connectPacket("pub", true, 0), 0)
	pub.publish("ok/1", "after", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	require.Equal(t, "after", string(victim.expectPublish().Payload), "the loop serves the client the hook failed for")
	require.Equal(t, uint64(1), s.Stats().Panics)
}
