package engine

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2E_MQTT_3_1_2_23_SessionKeptForItsExpiryInterval: a 5.0 client with
// Clean Start = 1 and a Session Expiry Interval gets a fresh session
// [MQTT-3.1.2-4] that outlives its connection [MQTT-3.1.2-23]: reconnecting
// within the interval with Clean Start = 0 resumes it (Session Present = 1
// [MQTT-3.2.2-3]) with its subscription and the QoS 1 messages queued
// meanwhile, in order.
func TestE2E_MQTT_3_1_2_23_SessionKeptForItsExpiryInterval(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectPaho5(t, s, paho5Connect("exp-keep", true, u32(5)))
	require.False(t, sub.ca.SessionPresent, "Clean Start = 1 [MQTT-3.2.2-2]")
	sub.subscribe(t, "exp/keep", 1)
	require.NoError(t, sub.Disconnect(&paho5.Disconnect{}))
	waitClosed(t, s, 1)

	pub := newPaho(t, s, nil)
	for i := range 3 {
		wait(t, pub.Publish("exp/keep", 1, false, fmt.Sprintf("queued-%d", i)))
	}
	again := connectPaho5(t, s, paho5Connect("exp-keep", false, u32(5)))
	require.True(t, again.ca.SessionPresent, "session kept within its interval [MQTT-3.1.2-23]")
	for i := range 3 {
		p := again.recv(t, fmt.Sprintf("queued-%d", i))
		require.Equal(t, fmt.Sprintf("queued-%d", i), string(p.Payload))
		require.Equal(t, byte(1), p.QoS)
	}
	wait(t, pub.Publish("exp/keep", 1, false, "online"))
	require.Equal(t, "online", string(again.recv(t, "message after resuming").Payload), "subscription kept")
}

// TestE2E_MQTT_3_1_2_23_SessionEndsAfterItsExpiryInterval: once its
// interval has passed the session is gone: a reconnection with Clean
// Start = 0 gets Session Present = 0 and none of the messages published
// meanwhile, and the old subscription no longer receives.
func TestE2E_MQTT_3_1_2_23_SessionEndsAfterItsExpiryInterval(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectPaho5(t, s, paho5Connect("exp-end", true, u32(1)))
	sub.subscribe(t, "exp/end", 1)
	// The connection closes between these two instants: the session may
	// end 1 s after the first at the earliest, and must end within a sweep
	// or two of the second (more on a loaded machine).
	closing := time.Now()
	require.NoError(t, sub.Disconnect(&paho5.Disconnect{}))
	waitClosed(t, s, 1)
	closed := time.Now()
	pub := newPaho(t, s, nil)
	wait(t, pub.Publish("exp/end", 1, false, "queued"))

	time.Sleep(500 * time.Millisecond)
	if time.Since(closing) < 900*time.Millisecond {
		require.True(t, hasSession(s, "exp-end"), "session ended before its interval")
	}
	require.Eventually(t, func() bool { return !hasSession(s, "exp-end") }, e2eWait, 5*time.Millisecond,
		"session outlived its interval")
	require.GreaterOrEqual(t, time.Since(closing), time.Second, "session ended before its interval")
	require.Less(t, time.Since(closed), 6*time.Second, "interval 1 s, sweep every second")

	wait(t, pub.Publish("exp/end", 1, false, "after expiry"))
	again := connectPaho5(t, s, paho5Connect("exp-end", false, u32(1)))
	require.False(t, again.ca.SessionPresent, "expired session is not resumed")
	wait(t, pub.Publish("exp/end", 1, false, "after reconnect"))
	again.recvNone(t, e2eSilent) // neither the queued messages nor the old subscription
}

// TestE2EV5SessionExpiryDefaultsToZero: a 5.0 CONNECT without a Session
// Expiry Interval means 0: the session ends when the connection closes,
// at once, even with Clean Start = 0 (MQTT 5.0 section 3.1.2.11.2).
func TestE2EV5SessionExpiryDefaultsToZero(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectPaho5(t, s, paho5Connect("exp-zero", false, nil))
	sub.subscribe(t, "exp/zero", 1)
	require.NoError(t, sub.Disconnect(&paho5.Disconnect{}))
	require.Eventually(t, func() bool { return !hasSession(s, "exp-zero") }, 500*time.Millisecond, 2*time.Millisecond,
		"a session with interval 0 ends with its connection, not at a sweep")
	again := connectPaho5(t, s, paho5Connect("exp-zero", false, nil))
	require.False(t, again.ca.SessionPresent)
}

// TestE2EV5SessionNeverExpires: 0xFFFFFFFF keeps the session however many
// sweeps pass (MQTT 5.0 section 3.1.2.11.2); without MaxSessionExpiry
// CONNACK repeats no interval.
func TestE2EV5SessionNeverExpires(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectPaho5(t, s, paho5Connect("exp-never", true, u32(expiryNever)))
	require.Nil(t, sub.ca.Properties.SessionExpiryInterval, "the client's interval stands")
	sub.subscribe(t, "exp/never", 1)
	require.NoError(t, sub.Disconnect(&paho5.Disconnect{}))
	waitClosed(t, s, 1)
	pub := newPaho(t, s, nil)
	wait(t, pub.Publish("exp/never", 1, false, "kept"))
	time.Sleep(2200 * time.Millisecond) // two sweeps
	again := connectPaho5(t, s, paho5Connect("exp-never", false, u32(expiryNever)))
	require.True(t, again.ca.SessionPresent)
	require.Equal(t, "kept", string(again.recv(t, "queued message").Payload))
}

// TestE2EMaxSessionExpiryCaps: Options.MaxSessionExpiry caps every
// session. A 5.0 client that asked for more is told the interval in force
// in CONNACK (MQTT 5.0 section 3.2.2.3.2), one that asked for less or 0
// gets no such property; a 3.1.1 Clean Session = 0 session, which
// otherwise never expires, ends after the cap.
func TestE2EMaxSessionExpiryCaps(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxSessionExpiry: 1500 * time.Millisecond}) // rounded up: 2 s
	for _, tc := range []struct {
		ask  *uint32
		want *uint32
	}{
		{u32(expiryNever), u32(2)},
		{u32(3600), u32(2)},
		{u32(2), nil},
		{u32(1), nil},
		{nil, nil},
	} {
		c := connectPaho5(t, s, paho5Connect("cap-ask", true, tc.ask))
		require.Equal(t, tc.want, c.ca.Properties.SessionExpiryInterval, "asked for %v", tc.ask)
		require.NoError(t, c.Disconnect(&paho5.Disconnect{}))
	}

	c3 := connectRaw(t, s, connectPacket("cap-311", false, 0))
	require.Equal(t, byte(1), c3.subscribe(1, "cap/311", 1))
	v5 := connectPaho5(t, s, paho5Connect("cap-v5", true, u32(expiryNever)))
	v5.subscribe(t, "cap/v5", 1)
	c3.disconnect()
	require.NoError(t, v5.Disconnect(&paho5.Disconnect{}))
	start := time.Now()
	require.Eventually(t, func() bool { return !hasSession(s, "cap-311") && !hasSession(s, "cap-v5") }, e2eWait,
		5*time.Millisecond, "capped sessions outlived MaxSessionExpiry")
	require.GreaterOrEqual(t, time.Since(start), time.Second, "capped sessions ended early")
	again := dialRaw(t, s)
	require.False(t, again.mustConnect(connectPacket("cap-311", false, 0)).SessionPresent)
}

// TestE2EV5DisconnectChangesSessionExpiry: DISCONNECT may change the
// interval (MQTT 5.0 section 3.14.2.2.2): to 0 ends the session with the
// connection, to 1 s ends it a second later; from 0 in CONNECT to
// non-zero is a Protocol Error, answered with DISCONNECT 0x82, after
// which the will is published as for any abnormal close.
func TestE2EV5DisconnectChangesSessionExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})

	t.Run("to zero", func(t *testing.T) {
		c := connectPaho5(t, s, paho5Connect("dx-zero", true, u32(3600)))
		c.subscribe(t, "dx/zero", 1)
		require.NoError(t, c.Disconnect(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(0)}}))
		require.Eventually(t, func() bool { return !hasSession(s, "dx-zero") }, 500*time.Millisecond, 2*time.Millisecond)
	})

	t.Run("shorter", func(t *testing.T) {
		c := connectPaho5(t, s, paho5Connect("dx-short", true, u32(expiryNever)))
		c.subscribe(t, "dx/short", 1)
		require.NoError(t, c.Disconnect(&paho5.Disconnect{Properties: &paho5.DisconnectProperties{SessionExpiryInterval: u32(1)}}))
		time.Sleep(300 * time.Millisecond)
		require.True(t, hasSession(s, "dx-short"))
		require.Eventually(t, func() bool { return !hasSession(s, "dx-short") }, e2eWait, 5*time.Millisecond)
	})

	t.Run("zero to non-zero", func(t *testing.T) {
		h, got := collect(4)
		observer := newPaho(t, s, nil)
		wait(t, observer.Subscribe("dx/will", 1, h))
		c := connectRaw(t, s, withWill(connect5("dx-bad", true, 0, 0), "dx/will", "protocol error", 1, false))
		d := &codec.Disconnect{}
		d.Properties.SessionExpiry = 10
		c.send(d)
		require.Equal(t, codec.ProtocolError, c.expectDisconnect(e2eWait))
		require.Equal(t, "protocol error", recv(t, got, "will after a refused DISCONNECT").payload)
		require.Eventually(t, func() bool { return !hasSession(s, "dx-bad") }, e2eWait, 2*time.Millisecond,
			"the session still ends with the connection")
	})
}

// TestE2EV5SessionExpiryMosquittoSub: mosquitto_sub -V 5 -c -x 2 resumes
// its session within 2 s and gets what was published between its runs;
// the broker ends the session 2 s after the last run.
func TestE2EV5SessionExpiryMosquittoSub(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	pub := newPaho(t, s, nil)
	args := []string{"-V", "5", "-c", "-x", "2", "-i", "mosq-exp", "-q", "1", "-t", "mx/#", "-W", "10"}
	first := startMosquittoSub(t, s, append(args, "-C", "1")...)
	wait(t, pub.Publish("mx/a", 1, false, "online"))
	msgs, err := first.wait(t)
	require.NoError(t, err, first.log())
	require.Equal(t, []mosqMsg{{qos: 1, topic: "mx/a", payload: "online"}}, msgs)
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= 1 }, e2eWait, 5*time.Millisecond)

	for i := range 2 {
		wait(t, pub.Publish("mx/b", 1, false, fmt.Sprintf("queued-%d", i)))
	}
	second := startMosquittoSub(t, s, append(args, "-C", "2")...)
	msgs, err = second.wait(t)
	require.NoError(t, err, second.log())
	require.Equal(t, []mosqMsg{{qos: 1, topic: "mx/b", payload: "queued-0"}, {qos: 1, topic: "mx/b", payload: "queued-1"}}, msgs)
	require.Eventually(t, func() bool { return !hasSession(s, "mosq-exp") }, e2eWait, 10*time.Millisecond,
		"session outlived its 2 s")
}

// TestE2ESessionExpiryFreesMemory: 2,000 sessions with a 4 s interval
// (long enough for the messages to reach all of them on a loaded machine),
// each with subscriptions and queued QoS 1 messages, are ended by the
// sweep after their clients left: Stats().Sessions is back to 0 and the
// heap (after GC) back near where it started. Not parallel: it measures
// the process heap.
func TestE2ESessionExpiryFreesMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 connections")
	}
	s := startServer(t, Options{})
	const n = 2000
	heap := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC() // the second one empties sync.Pool's victim cache
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	openSessions := func(prefix string, expiry uint32) {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					if err := openSession(s, fmt.Sprintf("%s-%d", prefix, i), expiry); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	// Warm up gnet, pools and maps with a first round, so the baseline
	// includes what the broker keeps once it has served that many clients.
	openSessions("warm", 1)
	require.Eventually(t, func() bool { return s.Stats().Sessions == 0 }, 10*time.Second, 10*time.Millisecond)
	base := heap()

	openSessions("mem", 4)
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= 2*n }, 10*time.Second, 5*time.Millisecond)
	pub := connectRaw(t, s, connectPacket("mem-pub", true, 0))
	payload := string(make([]byte, 512))
	for i := range 4 { // queued in every session
		pub.publish("mem/all", payload, 1, false, uint16(i+1))
		pub.expectAck(codec.PUBACK, uint16(i+1))
	}
	for i := range n { // one message of its own for each session
		pub.publish(fmt.Sprintf("mem/mem-%d", i), payload[:256], 1, false, uint16(100+i))
	}
	for i := range n {
		pub.expectAck(codec.PUBACK, uint16(100+i))
	}
	require.GreaterOrEqual(t, s.Stats().Sessions, n)
	peak := heap()
	t.Logf("heap: baseline %d KiB, with %d offline sessions %d KiB", base>>10, n, peak>>10)
	require.Greater(t, peak, base+n*1024, "the sessions should hold at least 1 KiB each")

	pub.disconnect() // a clean session: it ends at once
	require.Eventually(t, func() bool { return s.Stats().Sessions == 0 }, 15*time.Second, 10*time.Millisecond,
		"sessions left: %d", s.Stats().Sessions)
	after := heap()
	t.Logf("heap after expiry: %d KiB", after>>10)
	require.Less(t, after, base+(peak-base)/5, "memory of expired sessions not freed")
}

// openSession connects a 5.0 client id with Clean Start = 1 and the given
// Session Expiry Interval, subscribes it to mem/all and mem/<id> at QoS 1,
// and disconnects, leaving its session offline. A bare connection and a
// small buffer: 2,000 rawClients would hold 64 KiB each.
func openSession(s *Server, id string, expiry uint32) error {
	conn, err := net.DialTimeout("tcp", s.Addr().String(), e2eWait)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * e2eWait))
	out := connect5(id, true, 0, expiry).AppendTo(nil, codec.V5)
	sub := codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{
		{Filter: []byte("mem/all"), QoS: 1}, {Filter: []byte("mem/" + id), QoS: 1}}}
	out = sub.AppendTo(out, codec.V5)
	if _, err := conn.Write(out); err != nil {
		return err
	}
	var buf []byte
	tmp := make([]byte, 512)
	for seen := 0; seen < 2; {
		h, m, err := codec.Split(buf, 0)
		if err != nil {
			return err
		}
		if m == 0 {
			k, err := conn.Read(tmp)
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			buf = append(buf, tmp[:k]...)
			continue
		}
		if h.Type != codec.CONNACK && h.Type != codec.SUBACK {
			return fmt.Errorf("%s: unexpected %v", id, h.Type)
		}
		buf = buf[m:]
		seen++
	}
	_, err = conn.Write((&codec.Disconnect{}).AppendTo(nil, codec.V5))
	return err
}

// TestE2EExpiredQueuedMessagesMakeRoom: an offline session's queue full of
// messages whose Message Expiry Interval has passed takes a live message
// (DropNewest): the expired ones are dropped to make room [MQTT-3.3.2-5].
// They kept their places, and the live one was refused: the client, back,
// got nothing at all.
func TestE2EExpiredQueuedMessagesMakeRoom(t *testing.T) {
	s := startServer(t, Options{MaxQueued: 4, QueueOverflow: DropNewest, Loops: 1})
	sub := dialRaw(t, s)
	sub.mustConnect(connect5("sub", true, 0, 300))
	require.Equal(t, byte(1), sub.subscribe(1, "q/#", 1))
	sub.disconnect()
	require.Eventually(t, func() bool { return hasSession(s, "sub") }, e2eWait, 10*time.Millisecond)

	pub := dialRaw(t, s)
	pub.mustConnect(connect5("pub", true, 0, 0))
	for i := range 4 {
		p := &codec.Publish{Topic: []byte("q/old"), Payload: []byte(fmt.Sprint("old", i)), QoS: 1, PacketID: uint16(i + 1)}
		p.Properties.MessageExpiry = 1
		pub.send(p)
		pub.expect(codec.PUBACK)
	}
	time.Sleep(2100 * time.Millisecond) // every queued message is expired now
	pub.send(&codec.Publish{Topic: []byte("q/live"), Payload: []byte("live"), QoS: 1, PacketID: 9})
	pub.expect(codec.PUBACK)

	sub2 := dialRaw(t, s)
	sub2.mustConnect(connect5("sub", false, 0, 300))
	p, err := sub2.next(2 * time.Second)
	require.NoError(t, err, "the live message, published after the others expired, is delivered")
	require.Equal(t, "q/live", string(p.(*codec.Publish).Topic))
}

// Retained messages whose Message Expiry Interval has passed leave the
// retained index (retainexp.go), whether or not a subscription meets them.
// They were only skipped: retained messages published with an expiry to
// ever-new topics grew the index without bound, and Stats.Retained counted
// the dead ones.
func TestE2EExpiredRetainedMessagesLeaveTheIndex(t *testing.T) {
	s := startServer(t, Options{Loops: 1})
	pub := dialRaw(t, s)
	pub.mustConnect(connect5("pub", true, 0, 0))
	for i := range 50 {
		p := &codec.Publish{Topic: []byte(fmt.Sprint("req/", i)), Payload: []byte("x"), QoS: 1, Retain: true, PacketID: uint16(i + 1)}
		p.Properties.MessageExpiry = 1
		pub.send(p)
		pub.expect(codec.PUBACK)
	}
	require.Equal(t, 50, s.Stats().Retained)
	time.Sleep(2100 * time.Millisecond) // all expired
	sub := dialRaw(t, s)
	sub.mustConnect(connect5("sub", true, 0, 0))
	require.Equal(t, byte(0), sub.subscribe(1, "req/#", 0)) // finds only expired ones
	_, err := sub.next(300 * time.Millisecond)
	require.Error(t, err, "expired retained messages are not delivered")
	require.Eventually(t, func() bool { return s.Stats().Retained == 0 }, 3*time.Second, 50*time.Millisecond,
		"expired retained messages still in the index: %d", s.Stats().Retained)
}
