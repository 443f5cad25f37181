package engine

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// willObserver subscribes a 3.1.1 Paho client to filter and returns the
// channel its messages arrive on.
func willObserver(t *testing.T, s *Server, filter string) <-chan pahoMsg {
	t.Helper()
	h, got := collect(16)
	observer := newPaho(t, s, nil)
	wait(t, observer.Subscribe(filter, 1, h))
	return got
}

// TestE2E_MQTT_3_1_2_8_WillAfterItsDelay: a will with a Will Delay
// Interval is published when the delay has elapsed after the connection
// closed, not before [MQTT-3.1.2-8].
func TestE2E_MQTT_3_1_2_8_WillAfterItsDelay(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wills := willObserver(t, s, "wd/after")
	c := connectRaw(t, s, withWill5(connect5("wd-after", true, 0, 60), "wd/after", "late", 1, 1))
	// The clock starts before the close: the broker sees it after kill,
	// and waitClosed returns some time after that.
	closed := time.Now()
	c.kill()
	waitClosed(t, s, 1)
	recvNone(t, wills, 700*time.Millisecond)
	require.Equal(t, pahoMsg{topic: "wd/after", payload: "late", qos: 1}, recv(t, wills, "delayed will"))
	waited := time.Since(closed)
	require.GreaterOrEqual(t, waited, time.Second, "will before its delay")
	require.Less(t, waited, 4*time.Second, "delay 1 s, sweep every second")
	require.True(t, hasSession(s, "wd-after"), "the session outlives the will")
}

// TestE2E_MQTT_3_1_3_9_WillCancelledByReconnect: a connection that resumes
// the session before the Will Delay Interval has passed cancels the will
// [MQTT-3.1.3-9]; so does a takeover of the session by Clean Start = 0,
// whose old connection is told 0x8E [MQTT-3.1.4-3].
func TestE2E_MQTT_3_1_3_9_WillCancelledByReconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wills := willObserver(t, s, "wd/cancel/#")

	c := connectRaw(t, s, withWill5(connect5("wd-cancel", true, 0, 60), "wd/cancel/reconnect", "should not", 1, 1))
	c.kill()
	waitClosed(t, s, 1)
	again := dialRaw(t, s)
	require.True(t, again.mustConnect(connect5("wd-cancel", false, 0, 60)).SessionPresent)

	old := connectRaw(t, s, withWill5(connect5("wd-take", true, 0, 60), "wd/cancel/takeover", "should not", 1, 1))
	nc := dialRaw(t, s)
	require.True(t, nc.mustConnect(connect5("wd-take", false, 0, 60)).SessionPresent)
	require.Equal(t, codec.SessionTakenOver, old.expectDisconnect(e2eWait))

	recvNone(t, wills, 2500*time.Millisecond) // past the delay and two sweeps

	// Nor does the cancelled will come back when the resumed session ends.
	for _, c := range []*rawClient{again, nc} {
		d := &codec.Disconnect{}
		d.Properties.Present.Add(codec.PropSessionExpiry) // 0: the session ends now
		c.send(d)
	}
	require.Eventually(t, func() bool { return !hasSession(s, "wd-cancel") && !hasSession(s, "wd-take") },
		e2eWait, 5*time.Millisecond)
	recvNone(t, wills, e2eSilent)
}

// TestE2E_MQTT_3_1_2_8_WillWhenSessionEndsFirst: with a Session Expiry
// Interval shorter than the Will Delay Interval, the will is published
// when the session ends [MQTT-3.1.2-8]; a takeover with Clean Start = 1
// ends the old session, so its delayed will goes out at once.
func TestE2E_MQTT_3_1_2_8_WillWhenSessionEndsFirst(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wills := willObserver(t, s, "wd/end/#")

	c := connectRaw(t, s, withWill5(connect5("wd-end", true, 0, 1), "wd/end/expiry", "session over", 1, 3600))
	// Measured from before the connection goes: the session's second starts
	// when the broker sees it close, which waitClosed notices only up to a
	// poll later (measured from after it, the will once came 995 ms on).
	closed := time.Now()
	c.kill()
	waitClosed(t, s, 1)
	require.Equal(t, "session over", recv(t, wills, "will at session end").payload)
	require.GreaterOrEqual(t, time.Since(closed), time.Second, "will before the session ended")
	require.False(t, hasSession(s, "wd-end"))

	old := connectRaw(t, s, withWill5(connect5("wd-clean", true, 0, 60), "wd/end/clean-start", "replaced", 1, 3600))
	nc := dialRaw(t, s)
	require.False(t, nc.mustConnect(connect5("wd-clean", true, 0, 60)).SessionPresent)
	require.Equal(t, codec.SessionTakenOver, old.expectDisconnect(e2eWait))
	require.Equal(t, "replaced", recv(t, wills, "will of the discarded session").payload)

	// Session Expiry Interval 0: the session ends with the connection,
	// and the will with it, whatever its delay.
	z := connectRaw(t, s, withWill5(connect5("wd-zero", true, 0, 0), "wd/end/zero", "at once", 1, 3600))
	z.kill()
	require.Equal(t, "at once", recv(t, wills, "will of a session without expiry").payload)
}

// TestE2EV5DisconnectWithWillKeepsDelay: DISCONNECT 0x04 asks for the will,
// which still waits for its delay; DISCONNECT 0x00 discards it, also when
// the session ends later [MQTT-3.14.4-3] [MQTT-3.1.2-10].
func TestE2EV5DisconnectWithWillKeepsDelay(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wills := willObserver(t, s, "wd/disc/#")

	c := connectRaw(t, s, withWill5(connect5("wd-04", true, 0, 60), "wd/disc/with-will", "asked for", 1, 1))
	c.send(&codec.Disconnect{ReasonCode: codec.DisconnectWithWill})
	waitClosed(t, s, 1)
	closed := time.Now()
	require.Equal(t, "asked for", recv(t, wills, "will after DISCONNECT 0x04").payload)
	require.GreaterOrEqual(t, time.Since(closed), 900*time.Millisecond, "will before its delay")

	n := connectRaw(t, s, withWill5(connect5("wd-00", true, 0, 1), "wd/disc/normal", "should not", 1, 1))
	n.disconnect()
	require.Eventually(t, func() bool { return !hasSession(s, "wd-00") }, e2eWait, 5*time.Millisecond)
	recvNone(t, wills, e2eSilent)
}

// TestE2EV5WillDelayMosquittoSub: mosquitto_sub -V 5 with a will delay of
// 1 s, killed, has its will published a second later.
func TestE2EV5WillDelayMosquittoSub(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	wills := willObserver(t, s, "mwd/will")
	ms := startMosquittoSub(t, s, "-V", "5", "-i", "mosq-wd", "-t", "mwd/data", "-C", "1", "-W", "15",
		"-x", "60", "--will-topic", "mwd/will", "--will-payload", "crashed", "--will-qos", "1",
		"-D", "will", "will-delay-interval", "1")
	require.NoError(t, ms.cmd.Process.Signal(syscall.SIGKILL))
	waitClosed(t, s, 1)
	closed := time.Now()
	require.Equal(t, pahoMsg{topic: "mwd/will", payload: "crashed", qos: 1}, recv(t, wills, "mosquitto_sub's delayed will"))
	require.GreaterOrEqual(t, time.Since(closed), 900*time.Millisecond, "will before its delay")
}

// dialAwayFrom dials s until a connection lands on a loop other than
// frozen, which freezeLoop holds: a connection given to it is not even
// opened (OnOpen) until it thaws.
func dialAwayFrom(t *testing.T, s *Server) *rawClient {
	t.Helper()
	for range 10 {
		before := s.Stats().ConnectionsOpened
		c := dialRaw(t, s)
		deadline := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(deadline) {
			if s.Stats().ConnectionsOpened > before {
				return c
			}
			time.Sleep(time.Millisecond)
		}
		c.kill() // on the frozen loop
	}
	t.Fatal("every connection landed on the frozen loop")
	return nil
}

// TestE2E_MQTT_3_1_2_8_WillDelayedWhenClosedDuringHandover: a connection
// that closes while the session it connected to is still on its way to
// its loop — taken over from the loop that owns it (Clean Start 0), or
// ended there to be replaced (Clean Start 1) — keeps its Will Delay
// Interval: the will goes out once the delay has passed after the close,
// not at the close [MQTT-3.1.2-8] [MQTT-3.1.3-9]; the session stays for
// its expiry. (QA: OnClose found no session bound yet and published the
// will at once.)
func TestE2E_MQTT_3_1_2_8_WillDelayedWhenClosedDuringHandover(t *testing.T) {
	t.Parallel()
	for _, cleanStart := range []bool{false, true} {
		s := startServer(t, Options{Loops: 2})
		wills := willObserver(t, s, "wd/move")
		connectRaw(t, s, connect5("wd-move", true, 0, 60)) // owns the session on its loop
		unfreeze := freezeLoop(s, sessionOwnerLoop(s, "wd-move"))
		c := dialAwayFrom(t, s)
		closedBefore := s.Stats().ConnectionsClosed
		c.sendBytes(withWill5(connect5("wd-move", cleanStart, 0, 60), "wd/move", "late", 1, 2).AppendTo(nil, codec.V5))
		closed := time.Now()
		c.kill()
		// Its loop sees CONNECT, asks the frozen owner for the session,
		// and sees the connection close before the answer.
		require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed > closedBefore }, e2eWait, time.Millisecond)
		time.Sleep(50 * time.Millisecond)
		unfreeze()

		recvNone(t, wills, time.Until(closed.Add(1500*time.Millisecond)))
		require.Equal(t, pahoMsg{topic: "wd/move", payload: "late", qos: 1}, recv(t, wills, "delayed will"),
			"clean start %v", cleanStart)
		waited := time.Since(closed)
		require.GreaterOrEqual(t, waited, 2*time.Second, "will before its delay")
		require.Less(t, waited, 4*time.Second, "delay 2 s, ticks every 250 ms")
		require.True(t, hasSession(s, "wd-move"), "the session outlives the connection")
	}
}
