package engine

import (
	"context"
	"net"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// Helpers for the session-lifecycle tests (expiry, will delay, server
// DISCONNECT, server keep alive): a paho.golang MQTT 5.0 client and raw
// 5.0 CONNECT packets.

// paho5Client is a connected paho.golang (MQTT 5.0) client. Every PUBLISH
// it receives lands in msgs (acknowledged by paho), a DISCONNECT from the
// broker in disc.
type paho5Client struct {
	*paho5.Client
	ca   *paho5.Connack
	msgs chan *paho5.Publish
	disc chan *paho5.Disconnect
}

// connectPaho5 connects a paho.golang client with CONNECT cp and requires
// success; the test's cleanup disconnects it.
func connectPaho5(t testing.TB, s *Server, cp *paho5.Connect) *paho5Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr().String(), e2eWait)
	require.NoError(t, err)
	pc := &paho5Client{msgs: make(chan *paho5.Publish, 1024), disc: make(chan *paho5.Disconnect, 1)}
	pc.Client = paho5.NewClient(paho5.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho5.PublishReceived) (bool, error){
			func(pr paho5.PublishReceived) (bool, error) {
				pc.msgs <- pr.Packet
				return true, nil
			},
		},
		OnServerDisconnect: func(d *paho5.Disconnect) {
			select {
			case pc.disc <- d:
			default:
			}
		},
		OnClientError: func(error) {},
		PacketTimeout: e2eWait,
	})
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ca, err := pc.Connect(ctx, cp)
	require.NoError(t, err, "paho.golang connect")
	pc.ca = ca
	t.Cleanup(func() { _ = pc.Disconnect(&paho5.Disconnect{}) })
	return pc
}

// paho5Connect returns a paho.golang CONNECT for id with a Session Expiry
// Interval (nil: absent).
func paho5Connect(id string, cleanStart bool, expiry *uint32) *paho5.Connect {
	return &paho5.Connect{ClientID: id, CleanStart: cleanStart, KeepAlive: 30,
		Properties: &paho5.ConnectProperties{SessionExpiryInterval: expiry}}
}

func u32(v uint32) *uint32 { return &v }

func u16(v uint16) *uint16 { return &v }

// subscribe subscribes at qos and requires it granted.
func (pc *paho5Client) subscribe(t testing.TB, filter string, qos byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := pc.Subscribe(ctx, &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: filter, QoS: qos}}})
	require.NoError(t, err)
	require.Equal(t, []byte{qos}, sa.Reasons)
}

// recv waits for the next PUBLISH.
func (pc *paho5Client) recv(t testing.TB, what string) *paho5.Publish {
	t.Helper()
	select {
	case p := <-pc.msgs:
		return p
	case <-time.After(e2eWait):
		t.Fatalf("timeout waiting for %s", what)
		return nil
	}
}

// recvNone requires that no PUBLISH arrives for d.
func (pc *paho5Client) recvNone(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case p := <-pc.msgs:
		t.Fatalf("unexpected PUBLISH %q: %q", p.Topic, p.Payload)
	case <-time.After(d):
	}
}

// serverDisconnect waits for a DISCONNECT from the broker and returns its
// reason code.
func (pc *paho5Client) serverDisconnect(t testing.TB) byte {
	t.Helper()
	select {
	case d := <-pc.disc:
		return d.ReasonCode
	case <-time.After(e2eWait):
		t.Fatal("no DISCONNECT from the broker")
		return 0
	}
}

// connect5 returns a raw 5.0 CONNECT; expiry 0 leaves the Session Expiry
// Interval out (which means 0).
func connect5(id string, cleanStart bool, keepAlive uint16, expiry uint32) *codec.Connect {
	p := &codec.Connect{Version: codec.V5, ClientID: []byte(id), CleanStart: cleanStart, KeepAlive: keepAlive}
	p.Properties.SessionExpiry = expiry
	return p
}

// withWill5 adds a 5.0 will with a Will Delay Interval (seconds) to p.
func withWill5(p *codec.Connect, topic, payload string, qos byte, delay uint32) *codec.Connect {
	withWill(p, topic, payload, qos, false)
	p.Will.Properties.WillDelay = delay
	return p
}

// expectDisconnect reads packets until a DISCONNECT and returns its reason
// code; the connection must close right after it [MQTT-3.14.4-1].
func (c *rawClient) expectDisconnect(timeout time.Duration) codec.ReasonCode {
	c.t.Helper()
	got := c.expectClosed(timeout)
	require.NotEmpty(c.t, got, "closed without DISCONNECT")
	last := got[len(got)-1]
	require.Equal(c.t, codec.DISCONNECT, last.Type(), "last packet before the close: %+v", last)
	return last.(*codec.Disconnect).ReasonCode
}

// hasSession reports whether the broker holds a session for id.
func hasSession(s *Server, id string) bool { return sessionOwnerLoop(s, id) >= 0 }

// connectOnLoop connects p until the connection (and its session) lands on
// loop want. Connections that land elsewhere are closed (clean sessions
// only, or the test must not care).
func connectOnLoop(t *testing.T, s *Server, p *codec.Connect, want int) *rawClient {
	t.Helper()
	for range 20 {
		c := dialRaw(t, s)
		c.mustConnect(p)
		if sessionOwnerLoop(s, string(p.ClientID)) == want {
			return c
		}
		c.disconnect()
		require.Eventually(t, func() bool { return !hasSession(s, string(p.ClientID)) || !p.CleanStart }, e2eWait, time.Millisecond)
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("could not place %s on loop %d", p.ClientID, want)
	return nil
}

// freezeLoop blocks loop idx inside a task until the returned function is
// called; it returns once the loop is blocked.
func freezeLoop(s *Server, idx int) (unfreeze func()) {
	in, out := make(chan struct{}), make(chan struct{})
	s.loopAt(idx).post(task{kind: taskFunc, fn: func(*loop) {
		close(in)
		<-out
	}})
	<-in
	return func() { close(out) }
}
