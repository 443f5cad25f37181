package engine

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// smallRcvbuf shrinks a dialled socket's receive buffer so that a client
// that stops reading stalls the broker's writes quickly.
func smallRcvbuf(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
}

// stalledBridgedSubscriber connects an MQTT client over ws:// (or tls://)
// with keep alive 1 s, subscribes to "stall/#" and returns it; the caller
// stops reading from it.
func stalledBridgedSubscriber(t *testing.T, s *Server, overWS bool, pki *testPKI) *rawClient {
	d := net.Dialer{Timeout: e2eWait, Control: smallRcvbuf}
	var conn net.Conn
	if overWS {
		nc, err := d.Dial("tcp", s.WSAddr().String())
		require.NoError(t, err)
		wd := ws.Dialer{Protocols: []string{"mqtt"}, NetDial: func(context.Context, string, string) (net.Conn, error) { return nc, nil }}
		ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
		defer cancel()
		c, br, _, err := wd.Dial(ctx, "ws://"+s.WSAddr().String()+"/mqtt")
		require.NoError(t, err)
		require.Nil(t, br)
		conn = &wsStream{Conn: c, rd: wsutil.NewClientSideReader(c)}
	} else {
		nc, err := d.Dial("tcp", s.TLSAddr().String())
		require.NoError(t, err)
		cfg := pki.clientConfig()
		cfg.ServerName = "127.0.0.1"
		tc := tls.Client(nc, cfg)
		require.NoError(t, tc.Handshake())
		conn = tc
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := &rawClient{t: t, conn: conn, ver: codec.V311, tmp: make([]byte, 64<<10)}
	c.mustConnect(connectPacket("stalled", true, 1))
	require.Equal(t, byte(0), c.subscribe(1, "stall/#", 0))
	return c
}

func outerCount(s *Server) int {
	s.bridge.mu.Lock()
	defer s.bridge.mu.Unlock()
	return len(s.bridge.outer)
}

// TestE2EBridgeStalledReaderClosed: a TLS or WebSocket client that stops
// reading while the broker writes to it, and that the engine then closes
// (keep alive 1 s passes with nothing from the client), loses its
// connection within bridgeDrain. The proxy's outbound goroutine was
// blocked in a write to the client and its inbound one in a read: neither
// noticed, so the connection, both goroutines and a 32 KiB chunk stayed
// until the client went away, forever for one keeping its window at zero.
func TestE2EBridgeStalledReaderClosed(t *testing.T) {
	for _, overWS := range []bool{false, true} {
		name := "tls"
		if overWS {
			name = "ws"
		}
		t.Run(name, func(t *testing.T) {
			pki := newTestPKI(t)
			s := startWS(t, pki, Options{TLSListen: "127.0.0.1:0"})
			_ = stalledBridgedSubscriber(t, s, overWS, pki)
			pub := dialRaw(t, s)
			pub.mustConnect(connectPacket("pub", true, 0))
			payload := strings.Repeat("x", 60<<10)
			for range 200 { // 12 MB: more than every buffer on the way
				pub.publish("stall/a", payload, 0, false, 0)
			}
			require.Equal(t, 1, outerCount(s))
			// The engine ends the stalled client after 1.5 s of silence.
			require.Eventually(t, func() bool { return !hasSession(s, "stalled") }, e2eWait, 50*time.Millisecond)
			time.Sleep(3 * time.Second)
			require.Equal(t, 0, outerCount(s), "the engine closed the connection 3 s ago, the bridged client's connection is still open")
		})
	}
}

// TestE2EBridgeStopWithStalledWSClient: Stop with a deadline returns by
// that deadline even when a WebSocket client stopped reading. It never
// returned: wsConn.Close (called by bridge.wait, under bridge.mu) took
// wmu, which writeChunk held across a write to that client.
func TestE2EBridgeStopWithStalledWSClient(t *testing.T) {
	pki := newTestPKI(t)
	opts := Options{Listen: "127.0.0.1:0", Loops: 2, WSListen: "127.0.0.1:0", TLSConfig: pki.serverConfig(t, tls.NoClientCert)}
	opts.Logger = startServerLogger()
	s := New(opts)
	require.NoError(t, s.Start())
	_ = stalledBridgedSubscriber(t, s, true, pki)
	pub := dialRaw(t, s)
	pub.mustConnect(connectPacket("pub", true, 0))
	payload := strings.Repeat("x", 60<<10)
	for range 200 {
		pub.publish("stall/a", payload, 0, false, 0)
	}
	time.Sleep(500 * time.Millisecond)
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		stopped <- s.Stop(ctx)
	}()
	select {
	case <-stopped:
	case <-time.After(8 * time.Second):
		t.Fatal("Stop with a 1 s deadline has not returned after 8 s (a stalled WebSocket client holds it)")
	}
}

func startServerLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
