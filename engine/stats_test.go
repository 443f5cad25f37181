package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

func TestEventBucket(t *testing.T) {
	f := func(ns int64, want int) {
		t.Helper()
		require.Equal(t, want, eventBucket(ns), "%d ns", ns)
		if want < EventBuckets-1 {
			require.Less(t, ns, int64(EventBucketBound(want)), "below its bucket's bound")
		}
		if want > 0 {
			require.GreaterOrEqual(t, ns, int64(EventBucketBound(want-1)), "not below the previous bound")
		}
	}
	f(0, 0)
	f(1023, 0)
	f(1024, 1)
	f(4095, 1)
	f(4096, 2)
	f(16383, 2)
	f(16384, 3)
	f(int64(time.Second), 10)
	f(int64(time.Hour), EventBuckets-1)
}

// TestStatsCounts drives a subscriber and a publisher by hand and checks
// every counter the metrics and $SYS read against what was sent.
func TestStatsCounts(t *testing.T) {
	s := startServer(t, Options{MaxInflight: 2})
	sub := connectRaw(t, s, connectPacket("stats-sub", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "s/#", 1))
	require.Equal(t, byte(0), sub.subscribe(2, "z", 0))
	pub := connectRaw(t, s, connectPacket("stats-pub", true, 0))

	pub.publish("s/0", "abc", 0, false, 0)
	pub.publish("s/1", "defg", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	pub.publish("s/2", "hi", 2, false, 2)
	pub.expect(codec.PUBREC)
	pub.ack(codec.PUBREL, 2)
	pub.expect(codec.PUBCOMP)
	// The subscriber acknowledges nothing: two messages in flight
	// (MaxInflight 2), then one more queued.
	pub.publish("s/3", "j", 1, false, 3)
	pub.expectAck(codec.PUBACK, 3)
	for range 3 {
		sub.expectPublish()
	}

	// A busy loop publishes its per-message counters every millisecond,
	// an idle one within a second (its sweep): wait for both loops'.
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		st := s.Stats()
		assert.Equal(ct, int64(2), st.Inflight)
		assert.Equal(ct, int64(1), st.Queued)
		assert.Equal(ct, [3]uint64{1, 2, 1}, st.MessagesInByQoS)
		assert.Equal(ct, uint64(4), st.MessagesIn)
		assert.Equal(ct, [3]uint64{3, 5, 2}, st.PayloadBytesIn)
		assert.Equal(ct, [3]uint64{1, 2, 0}, st.MessagesOutByQoS, "QoS 2 is delivered at the granted QoS 1")
		assert.Equal(ct, int64(2), st.Connected)
		assert.Equal(ct, int64(2), st.Connections)
		assert.Equal(ct, uint64(2), st.Connects)
		assert.Equal(ct, int64(2), st.Subscriptions)
		assert.Equal(ct, 2, st.Sessions)
		assert.NotZero(ct, st.BytesIn)
		assert.NotZero(ct, st.BytesOut)
		// In: 2 CONNECT, 2 SUBSCRIBE, 4 PUBLISH, 1 PUBREL.
		assert.Equal(ct, uint64(9), st.PacketsIn)
	}, e2eWait, 5*time.Millisecond)

	sub.ack(codec.PUBACK, 1)
	sub.expectPublish() // the queued one moves into the window
	sub.ack(codec.PUBACK, 2)
	sub.ack(codec.PUBACK, 3)
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Inflight == 0 && st.Queued == 0
	}, e2eWait, time.Millisecond)

	// Unsubscribing and the end of a clean session take subscriptions
	// and the connected count down.
	sub.send(&codec.Unsubscribe{PacketID: 9, Filters: [][]byte{[]byte("z")}})
	sub.expect(codec.UNSUBACK)
	require.Eventually(t, func() bool { return s.Stats().Subscriptions == 1 }, e2eWait, time.Millisecond)
	pub.disconnect()
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Connected == 1 && st.Connections == 1
	}, e2eWait, time.Millisecond)

	// A persistent session going offline keeps its subscription; its
	// messages queue and count as queued.
	sub.kill()
	require.Eventually(t, func() bool { return s.Stats().Connected == 0 }, e2eWait, time.Millisecond)
	p2 := connectRaw(t, s, connectPacket("stats-pub2", true, 0))
	p2.publish("s/q", "x", 1, false, 1)
	p2.expectAck(codec.PUBACK, 1)
	require.Eventually(t, func() bool { return s.Stats().Queued == 1 }, e2eWait, time.Millisecond)
	st := s.Stats()
	require.Equal(t, int64(1), st.Subscriptions)
	require.Equal(t, int64(0), st.Inflight)

	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		loops := s.LoopStats()
		assert.NotEmpty(ct, loops)
		var traffic, events uint64
		for _, ls := range loops {
			traffic += ls.TrafficEvents
			for _, n := range ls.EventBuckets {
				events += n
			}
		}
		assert.NotZero(ct, traffic)
		assert.GreaterOrEqual(ct, events, traffic, "every traffic event is in the histogram")
	}, e2eWait, 5*time.Millisecond)
}

func TestStatsRefused(t *testing.T) {
	f := false
	s := startServer(t, Options{AllowAnonymous: &f})
	c := dialRaw(t, s)
	ca := c.connect(connectPacket("anon", true, 0))
	require.Equal(t, codec.ReasonCode(5), ca.ReasonCode) // 3.1.1 Not Authorized
	c2 := dialRaw(t, s)
	cp := connectPacket("", false, 0)
	cp.UsernameFlag, cp.Username = true, []byte("u")
	ca = c2.connect(cp)
	require.Equal(t, codec.ReasonCode(2), ca.ReasonCode) // 3.1.1 Identifier Rejected
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Refused[RefusedNotAuthorized] == 1 && st.Refused[RefusedClientID] == 1
	}, e2eWait, time.Millisecond)
	require.Zero(t, s.Stats().Connected)
	require.Equal(t, "not_authorized", RefusedNotAuthorized.String())
}

// TestServerPublish: the broker's own messages reach subscribers and the
// retained index like a client's, before and after the first connection.
func TestServerPublish(t *testing.T) {
	s := startServer(t, Options{})
	require.NoError(t, s.Publish("$SYS/early", []byte("1"), 0, true)) // no loop exists yet
	require.Error(t, s.Publish("a/+", nil, 0, false))
	require.Error(t, s.Publish("a", nil, 3, false))

	c := connectRaw(t, s, connectPacket("sys-reader", true, 0))
	c.subscribe(1, "$SYS/#", 1)
	p := c.expectPublish()
	require.Equal(t, "$SYS/early", string(p.Topic))
	require.True(t, p.Retain)

	require.NoError(t, s.Publish("$SYS/live", []byte("2"), 1, true))
	p = c.expectPublish()
	require.Equal(t, "$SYS/live", string(p.Topic))
	require.Equal(t, "2", string(p.Payload))
	require.Equal(t, byte(1), p.QoS)
	require.False(t, p.Retain, "retain is 0 towards an established subscription [MQTT-3.3.1-9]")
	c.ack(codec.PUBACK, p.PacketID)
	require.Equal(t, 2, s.Stats().Retained)
	require.Zero(t, s.Stats().MessagesIn)
}

// TestStatsPayloadBytes: the payload byte gauges behind
// $SYS/broker/store/messages/bytes and loopmq_*_payload_bytes follow what
// is held: QueuedBytes the queued messages, in memory and spilled to disk;
// InflightBytes those in flight until acknowledged (a QoS 2 one's until
// its PUBREC: then only its packet identifier is kept, though it counts
// in Inflight until PUBCOMP); RetainedBytes the retained messages as they
// are replaced, deleted and expire; and after a restart what was
// restored. (QA: $SYS had no store/messages/bytes; the engine counted no
// bytes.)
func TestStatsPayloadBytes(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	opts := Options{Loops: 1, MaxQueuedInMemory: 2, MaxInflight: 2}
	o := opts
	o.Store = st
	s := startServer(t, o)
	gauges := func(s *Server, inflight, inflightBytes, queued, queuedBytes int64, retainedBytes int64) {
		t.Helper()
		require.EventuallyWithT(t, func(ct *assert.CollectT) {
			st := s.Stats()
			assert.Equal(ct, [5]int64{inflight, inflightBytes, queued, queuedBytes, retainedBytes},
				[5]int64{st.Inflight, st.InflightBytes, st.Queued, st.QueuedBytes, st.RetainedBytes},
				"in flight, its bytes, queued, its bytes, retained bytes")
		}, e2eWait, 10*time.Millisecond)
	}
	sub := connectRaw(t, s, connectPacket("bytes-sub", false, 0))
	require.Equal(t, byte(2), sub.subscribe(1, "b/#", 2))
	sub.disconnect()
	waitClosed(t, s, 1)

	pub := dialRaw(t, s)
	pub.mustConnect(connect5("bytes-pub", true, 0, 0))
	id := uint16(0)
	publish := func(topic, payload string, qos byte, retain bool, expiry uint32) {
		t.Helper()
		id++
		p := &codec.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: id}
		if qos == 0 {
			p.PacketID = 0
		}
		if expiry != 0 {
			p.Properties.MessageExpiry = expiry
		}
		pub.send(p)
		switch qos {
		case 1:
			pub.expect(codec.PUBACK)
		case 2:
			pub.expect(codec.PUBREC)
			pub.ack(codec.PUBREL, id)
			pub.expect(codec.PUBCOMP)
		}
	}
	for range 5 {
		publish("b/q", "0123456789", 1, false, 0) // 2 in memory, 3 on disk
	}
	gauges(s, 0, 0, 5, 50, 0)

	publish("r/1", "aaaa", 1, true, 0)
	gauges(s, 0, 0, 5, 50, 4)
	publish("r/1", "bb", 1, true, 0) // replaces
	publish("r/2", "ccc", 1, true, 0)
	gauges(s, 0, 0, 5, 50, 5)
	publish("r/1", "", 1, true, 0) // deletes
	gauges(s, 0, 0, 5, 50, 3)
	publish("r/3", "dddd", 1, true, 1) // expires within a second and a sweep
	gauges(s, 0, 0, 5, 50, 7)
	gauges(s, 0, 0, 5, 50, 3)

	s = restartWith(t, s, st, opts) // restores the queue (counted once a loop adopts the session) and r/2
	gauges(s, 0, 0, 5, 50, 3)

	sub = dialRaw(t, s)
	sub.mustConnect(connectPacket("bytes-sub", false, 0))
	var ids []uint16
	for range 2 {
		ids = append(ids, sub.expectPublish().PacketID)
	}
	gauges(s, 2, 20, 3, 30, 3)
	for range 3 {
		sub.ack(codec.PUBACK, ids[0])
		ids = append(ids[1:], sub.expectPublish().PacketID)
	}
	gauges(s, 2, 20, 0, 0, 3)
	for _, id := range ids {
		sub.ack(codec.PUBACK, id)
	}
	gauges(s, 0, 0, 0, 0, 3)

	pub = dialRaw(t, s)
	pub.mustConnect(connect5("bytes-pub", true, 0, 0))
	publish("b/2", "0123456", 2, false, 0)
	p := sub.expectPublish()
	gauges(s, 1, 7, 0, 0, 3)
	sub.ack(codec.PUBREC, p.PacketID)
	sub.expectAck(codec.PUBREL, p.PacketID)
	gauges(s, 1, 0, 0, 0, 3)
	sub.ack(codec.PUBCOMP, p.PacketID)
	gauges(s, 0, 0, 0, 0, 3)
}
