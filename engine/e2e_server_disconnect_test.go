package engine

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2EV5KeepAliveTimeoutDisconnect: a 5.0 client silent for 1.5 times
// its keep alive [MQTT-3.1.2-22] is sent DISCONNECT 0x8D (Keep Alive
// timeout) and the connection is closed right after it [MQTT-3.14.4-1];
// its will is published.
func TestE2EV5KeepAliveTimeoutDisconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wills := willObserver(t, s, "ka5/will")
	c := connectRaw(t, s, withWill5(connect5("ka5-silent", true, 1, 0), "ka5/will", "timed out", 1, 0))
	start := time.Now()
	require.Equal(t, codec.KeepAliveTimeout, c.expectDisconnect(4*time.Second))
	require.GreaterOrEqual(t, time.Since(start), 1500*time.Millisecond, "closed before 1.5 x keep alive")
	require.Equal(t, "timed out", recv(t, wills, "will").payload)
}

// TestE2EV5ServerShuttingDownDisconnect: Stop sends every connected 5.0
// client DISCONNECT 0x8B (Server shutting down) before closing it; a
// 3.1.1 client, which has no such packet, is just closed; a connection
// still without CONNACK gets no DISCONNECT [MQTT-3.14.0-1].
func TestE2EV5ServerShuttingDownDisconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pc := connectPaho5(t, s, paho5Connect("stop-paho", true, nil))
	raw5 := connectRaw(t, s, connect5("stop-raw5", true, 0, 0))
	raw3 := connectRaw(t, s, connectPacket("stop-raw3", true, 0))
	pending := dialRaw(t, s)
	pending.ver = codec.V5
	// Wait until a loop has it: a connection dialed just before Stop can
	// stay open past it (seen before this change too, about 1 in 4 in a
	// dial-then-Stop loop), which is not what this test is about.
	require.Eventually(t, func() bool { return s.Stats().ConnectionsOpened >= 4 }, e2eWait, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	start := time.Now()
	require.NoError(t, s.Stop(ctx))
	require.Less(t, time.Since(start), 3*time.Second)

	require.Equal(t, byte(codec.ServerShuttingDown), pc.serverDisconnect(t), "paho.golang OnServerDisconnect")
	require.Equal(t, codec.ServerShuttingDown, raw5.expectDisconnect(e2eWait))
	require.Empty(t, raw3.expectClosed(e2eWait), "3.1.1 has no server DISCONNECT")
	require.Empty(t, pending.expectClosed(e2eWait), "no DISCONNECT before CONNACK")
}

// TestStopClosesConnectionsAcceptedWhileStopping: a connection the
// listener accepts while Stop runs is closed too (not yet always: see the
// bound below). gnet's acceptor hands a
// connection to a loop as a task in the loop's queue; one queued behind
// the loop's shutdown was never opened nor closed, and its client waited
// for a CONNACK that never came (third_party/gnet, LOOPMQ.md, change 4).
// Clients dial as fast as they can while the broker stops, as clients
// cut off by a restart do.
func TestStopClosesConnectionsAcceptedWhileStopping(t *testing.T) {
	t.Parallel()
	for round := range 4 {
		s := startServer(t, Options{Loops: 4})
		addr := s.Addr().String()
		var (
			mu    sync.Mutex
			conns []net.Conn
			wg    sync.WaitGroup
		)
		stop := make(chan struct{})
		// Connections made after Stop returned are not the broker's: its
		// port is free then, and another test's broker may listen on it.
		var stopped atomic.Bool
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.DialTimeout("tcp", addr, time.Second)
					if err != nil {
						time.Sleep(time.Millisecond)
						continue
					}
					if stopped.Load() {
						_ = c.Close()
						continue
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(10 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		require.NoError(t, s.Stop(ctx))
		stopped.Store(true)
		cancel()
		close(stop)
		wg.Wait()
		open := 0
		var buf [16]byte
		deadline := time.Now().Add(time.Second)
		for _, c := range conns {
			_ = c.SetReadDeadline(deadline)
			_, err := c.Read(buf[:])
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				open++
			}
			_ = c.Close()
		}
		// Not fixed whole: about one run in three still leaves a few open
		// (up to 4 of 390 seen), where before change 4 most were. The
		// bound keeps what change 4 gained; the rest is an open defect
		// (stop 24's note).
		t.Logf("round %d: of %d connections, %d still open a second after Stop returned", round, len(conns), open)
		require.LessOrEqual(t, open, len(conns)/20, "round %d: of %d connections, %d still open a second after Stop returned", round, len(conns), open)
	}
}

// TestE2E_MQTT_3_1_4_3_TakenOverDisconnect: when a second connection
// takes a 5.0 client's session, the first is sent DISCONNECT 0x8E
// (Session taken over) and closed [MQTT-3.1.4-3], as paho.golang reports.
func TestE2E_MQTT_3_1_4_3_TakenOverDisconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	first := connectPaho5(t, s, paho5Connect("taken", true, u32(60)))
	second := connectPaho5(t, s, paho5Connect("taken", false, u32(60)))
	require.True(t, second.ca.SessionPresent)
	require.Equal(t, byte(codec.SessionTakenOver), first.serverDisconnect(t))
	select {
	case <-first.Done():
	case <-time.After(e2eWait):
		t.Fatal("paho.golang still running after DISCONNECT 0x8E")
	}
	require.True(t, hasSession(s, "taken"))
}

// TestE2E_MQTT_3_2_2_21_ServerKeepAlive: with Options.MaxKeepAlive, a
// client asking for a keep alive of 0 or more than the cap gets the cap,
// which a 5.0 client is told in CONNACK's Server Keep Alive and must use
// [MQTT-3.2.2-21]; a client asking for less keeps its own, and CONNACK
// carries none [MQTT-3.2.2-22]. The broker enforces the value it chose:
// silent 5.0 and 3.1.1 clients that asked for 0 or 60 s are closed after
// 1.5 s (5.0: DISCONNECT 0x8D), while paho.golang, which pings at the
// server's keep alive, stays connected.
func TestE2E_MQTT_3_2_2_21_ServerKeepAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxKeepAlive: time.Second})
	for _, tc := range []struct {
		ask  uint16
		want *uint16
	}{
		{0, u16(1)},
		{60, u16(1)},
		{1, nil},
	} {
		c := dialRaw(t, s)
		ca := c.mustConnect(connect5("ska", true, tc.ask, 0))
		if tc.want == nil {
			require.False(t, ca.Properties.Has(codec.PropServerKeepAlive), "asked for %d", tc.ask)
		} else {
			require.True(t, ca.Properties.Has(codec.PropServerKeepAlive), "asked for %d", tc.ask)
			require.Equal(t, *tc.want, ca.Properties.ServerKeepAlive, "asked for %d", tc.ask)
		}
		c.disconnect()
	}

	pc := connectPaho5(t, s, &paho5.Connect{ClientID: "ska-paho", CleanStart: true, KeepAlive: 60})
	require.NotNil(t, pc.ca.Properties.ServerKeepAlive)
	require.Equal(t, uint16(1), *pc.ca.Properties.ServerKeepAlive)

	silent5 := connectRaw(t, s, connect5("ska-silent5", true, 60, 0))
	silent3 := connectRaw(t, s, connectPacket("ska-silent3", true, 1)) // within the cap: accepted, held to it
	start := time.Now()
	require.Equal(t, codec.KeepAliveTimeout, silent5.expectDisconnect(4*time.Second))
	require.Empty(t, silent3.expectClosed(4*time.Second))
	require.GreaterOrEqual(t, time.Since(start), 1400*time.Millisecond, "closed before 1.5 x keep alive")

	time.Sleep(time.Second) // paho.golang has now been pinging for over 2.5 s
	select {
	case d := <-pc.disc:
		t.Fatalf("paho.golang disconnected by the broker: %#x", d.ReasonCode)
	case <-pc.Done():
		t.Fatal("paho.golang lost its connection")
	default:
	}
}

// A 3.x client cannot be told the broker's maximum keep alive: one asking
// for more, or for none (0), is refused with CONNACK return code 2
// (identifier rejected, as Mosquitto 2.0.12 and later answer). It was
// accepted and then cut off after 1.5 times the broker's value while it
// pinged as it had said it would, and reconnected to be cut off again.
func TestE2EMaxKeepAliveRefuses3xClientsAbove(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxKeepAlive: 2 * time.Second})
	for _, ka := range []uint16{0, 5} {
		c := dialRaw(t, s)
		ca := c.connect(connectPacket(fmt.Sprintf("ka3-%d", ka), true, ka))
		require.Equal(t, codec.ReasonCode(codec.ConnRefusedIdentifier), ca.ReasonCode, "keep alive %d", ka)
		require.Empty(t, c.expectClosed(time.Second))
	}
	c := dialRaw(t, s)
	require.Equal(t, codec.Success, c.connect(connectPacket("ka3-ok", true, 2)).ReasonCode)
}
