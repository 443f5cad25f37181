package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// startServer runs a broker on a free loopback port for the test. The
// test fails if the broker recovers a panic (guard.go): give it a Logger to
// see the panic's stack.
func startServer(t testing.TB, opts Options) *Server {
	t.Helper()
	s := startServerPanicking(t, opts)
	t.Cleanup(func() {
		if n := s.Stats().Panics; n != 0 {
			t.Errorf("the broker recovered %d panics on its event loops", n)
		}
	})
	return s
}

// startServerPanicking is startServer for a test that makes the broker
// panic on purpose and counts the panics itself.
func startServerPanicking(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Loops == 0 {
		opts.Loops = 2
	}
	s := New(opts)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

var clientSeq atomic.Int64

// newPaho connects a Paho 3.1.1 client and fails the test on error.
func newPaho(t testing.TB, s *Server, configure func(*paho.ClientOptions)) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).
		SetClientID(fmt.Sprintf("t-%d", clientSeq.Add(1))).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	if configure != nil {
		configure(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "connect timeout")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	require.True(t, tok.WaitTimeout(5*time.Second), "timeout")
	require.NoError(t, tok.Error())
}

func TestPahoRoundTripQoS012(t *testing.T) {
	s := startServer(t, Options{})
	sub := newPaho(t, s, nil)
	pub := newPaho(t, s, nil)
	got := make(chan paho.Message, 10)
	wait(t, sub.Subscribe("a/+", 2, func(_ paho.Client, m paho.Message) { got <- m }))
	for q := byte(0); q <= 2; q++ {
		wait(t, pub.Publish("a/b", q, false, fmt.Sprintf("q%d", q)))
		select {
		case m := <-got:
			require.Equal(t, fmt.Sprintf("q%d", q), string(m.Payload()))
			require.Equal(t, q, m.Qos())
		case <-time.After(5 * time.Second):
			t.Fatalf("QoS %d not delivered", q)
		}
	}
}

// Once Stop has begun, a new connection is closed at once: it is not
// admitted while 5.0 clients are being told the server shuts down.
func TestNoNewConnectionsWhileStopping(t *testing.T) {
	s := startServer(t, Options{})
	s.stopped.Store(true) // what Stop does first
	c := dialRaw(t, s)
	_ = c.trySend(connectPacket("late", true, 0))
	c.expectClosed(e2eWait)
	s.stopped.Store(false) // so that the cleanup's Stop runs
}
