package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// A broker restarted on a store with 100,000 persistent sessions holding
// 1,000,000 queued messages (written directly through the store) comes
// back with every session, and a client that returns gets its queue. The
// time recovery takes is logged (docs/benchmarks.md). Under the race
// detector the sizes are a tenth.
func TestRecoverManySessions(t *testing.T) {
	sessions, perSession := 100_000, 10
	if raceEnabled || testing.Short() {
		sessions = 10_000
	}
	dir := t.TempDir()
	st, err := store.OpenPebble(dir, store.PebbleOptions{Sync: store.SyncNone})
	require.NoError(t, err)
	payload := make([]byte, 100)
	seq := uint64(0)
	var b store.Batch
	commit := func() {
		done := make(chan error, 1)
		st.Commit(&b, func(err error) { done <- err })
		require.NoError(t, <-done)
		b.Reset()
	}
	for i := range sessions {
		id := fmt.Sprintf("dev-%06d", i)
		b.PutSession(&store.Session{ClientID: id, Version: 4, Expiry: expiryNever, DisconnectedAt: time.Now().UnixNano(),
			Subs: []store.Subscription{{Filter: "devices/" + id + "/cmd", QoS: 1}}})
		for j := range perSession {
			seq++
			copy(payload, fmt.Sprintf("%s-%d", id, j))
			b.PutEntry(id, &store.Entry{Seq: seq, QoS: 1, Msg: store.Message{Topic: []byte("devices/" + id + "/cmd"), Payload: payload, QoS: 1}})
		}
		if b.Len() > 10_000 {
			commit()
		}
	}
	commit()
	require.NoError(t, st.Close())

	st, err = store.OpenPebble(dir, store.PebbleOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	begin := time.Now()
	s := startServer(t, Options{Store: st})
	took := time.Since(begin)
	t.Logf("recovered %d sessions with %d queued messages in %v", sessions, sessions*perSession, took)
	require.Equal(t, sessions, s.Stats().Sessions)

	for _, i := range []int{0, sessions / 2, sessions - 1} {
		id := fmt.Sprintf("dev-%06d", i)
		c := dialRaw(t, s)
		ca := c.mustConnect(connectPacket(id, false, 0))
		require.True(t, ca.SessionPresent)
		for j := range perSession {
			p := c.expectPublish()
			require.Equal(t, fmt.Sprintf("%s-%d", id, j), string(p.Payload[:len(id)+2]))
			c.ack(codec.PUBACK, p.PacketID)
		}
		c.expectNothing(e2eSilent)
	}
}

// Sessions whose expiry passed while the broker was down end at the first
// sweep after the restart, and stored messages past their expiry are not
// delivered [MQTT-3.3.2-5].
func TestRecoverDropsExpired(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	long := time.Now().Add(-time.Hour).UnixNano()
	var b store.Batch
	b.PutSession(&store.Session{ClientID: "gone", Version: 5, Expiry: 60, DisconnectedAt: long})
	b.PutSession(&store.Session{ClientID: "kept", Version: 5, Expiry: 7200, DisconnectedAt: long})
	b.PutEntry("kept", &store.Entry{Seq: 1, QoS: 1, Msg: store.Message{Topic: []byte("t"), Payload: []byte("stale"), QoS: 1,
		Expiry: time.Now().Add(-time.Minute).UnixNano()}})
	b.PutEntry("kept", &store.Entry{Seq: 2, QoS: 1, Msg: store.Message{Topic: []byte("t"), Payload: []byte("fresh"), QoS: 1,
		Expiry: time.Now().Add(time.Hour).UnixNano()}})
	done := make(chan error, 1)
	st.Commit(&b, func(err error) { done <- err })
	require.NoError(t, <-done)

	s := startServer(t, Options{Store: st})
	// Not Stats().Sessions == 2: a loop may adopt the restored sessions and
	// end the expired one at once (discoverLoop), before this looks.
	sh := s.reg.shard("kept")
	sh.mu.Lock()
	kept := sh.m["kept"] != nil
	sh.mu.Unlock()
	require.True(t, kept, "the session within its expiry is restored")
	dialRaw(t, s).mustConnect(connectPacket("", true, 0)) // a loop exists to sweep
	require.Eventually(t, func() bool { return s.Stats().Sessions == 2 && !hasSession(s, "gone") }, 5*time.Second, 50*time.Millisecond,
		"the expired session ends")
	c := dialRaw(t, s)
	c.ver = codec.V5
	ca := c.mustConnect(connect5("kept", false, 0, 7200))
	require.True(t, ca.SessionPresent)
	p := c.expectPublish()
	require.Equal(t, "fresh", string(p.Payload))
	require.NotZero(t, p.Properties.MessageExpiry, "the remaining interval is sent")
	c.ack(codec.PUBACK, p.PacketID)
	c.expectNothing(e2eSilent)
}

// Sequence numbers handed out after a restart follow every stored entry,
// queued ones included, even when the wall clock is behind the one that
// numbered them (a clock stepped back, a device that booted before its
// clock was set): the stored queue is delivered, then what came after,
// in that order.
func TestRecoverSeqPastQueuedEntries(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	ahead := uint64(time.Now().Add(time.Hour).UnixNano())
	var b store.Batch
	b.PutSession(&store.Session{ClientID: "dev", Version: 4, Expiry: expiryNever, DisconnectedAt: time.Now().UnixNano(),
		Subs: []store.Subscription{{Filter: "t", QoS: 1}}})
	for i := range uint64(2) {
		b.PutEntry("dev", &store.Entry{Seq: ahead + i, QoS: 1,
			Msg: store.Message{Topic: []byte("t"), Payload: fmt.Appendf(nil, "old-%d", i), QoS: 1}})
	}
	done := make(chan error, 1)
	st.Commit(&b, func(err error) { done <- err })
	require.NoError(t, <-done)

	s := startServer(t, Options{Store: st})
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	pub.publish("t", "new", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	c := connectRaw(t, s, connectPacket("dev", false, 0))
	for _, want := range []string{"old-0", "old-1", "new"} {
		p := c.expectPublish()
		require.Equal(t, want, string(p.Payload))
		c.ack(codec.PUBACK, p.PacketID)
	}
	c.expectNothing(e2eSilent)
}

// On the on-disk store, a burst of QoS 1 messages to a persistent
// subscriber is stored as one group of entries (store/groups.go), whose
// deletes are kept in memory until the group is gone: after a graceful
// stop and a restart the subscriber gets exactly those it had not
// acknowledged, sent again with DUP [MQTT-3.3.1-1], and no acknowledged
// one comes back.
func TestE2EPersistGroupedAcksSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenPebble(dir, store.PebbleOptions{Sync: store.SyncNone})
	require.NoError(t, err)
	s := startServer(t, Options{Store: st})
	sub := connectRaw(t, s, connectPacket("g-sub", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "g", 1))
	pub := connectRaw(t, s, connectPacket("g-pub", true, 0))
	const n, acked = 50, 20
	var burst []byte
	for i := 1; i <= n; i++ {
		p := codec.Publish{Topic: []byte("g"), Payload: fmt.Appendf(nil, "m%d", i), QoS: 1, PacketID: uint16(i)}
		burst = p.AppendTo(burst, codec.V311)
	}
	pub.sendBytes(burst) // one read: one batch, one group
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		if i <= acked {
			sub.ack(codec.PUBACK, p.PacketID)
		}
	}
	for i := 1; i <= n; i++ {
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	sub.send(&codec.Pingreq{})
	sub.expect(codec.PINGRESP) // every ack read
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	require.NoError(t, st.Close())
	rep, err := store.Check(dir)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Groups, "the burst was stored as one group")
	require.Equal(t, n-acked, rep.GroupedEntries, "Close kept only the live entries")

	st, err = store.OpenPebble(dir, store.PebbleOptions{Sync: store.SyncNone})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	s = startServer(t, Options{Store: st})
	sub = connectRaw(t, s, connectPacket("g-sub", false, 0))
	for i := acked + 1; i <= n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.True(t, p.Dup, "m%d was sent before", i)
		sub.ack(codec.PUBACK, p.PacketID)
	}
	sub.expectNothing(e2eSilent)
}

// Real clients (Paho 3.1.1) on the on-disk store: three persistent QoS 1
// subscribers are offline while a publisher sends a burst to all of them,
// which the store keeps as groups sharing message records
// (store/groups.go); after a graceful restart each gets every message, in
// order [MQTT-4.6.0-6], and acknowledges it; nothing comes back after a
// second restart.
func TestE2EPersistFanOutPahoAcrossRestart(t *testing.T) {
	st, err := store.OpenPebble(t.TempDir(), store.PebbleOptions{Sync: store.SyncAlways})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st})
	ids := []string{"fo-0", "fo-1", "fo-2"}
	persistent := func(id string, h paho.MessageHandler) func(*paho.ClientOptions) {
		return func(o *paho.ClientOptions) {
			o.SetClientID(id).SetCleanSession(false)
			if h != nil {
				o.SetDefaultPublishHandler(h)
			}
		}
	}
	for _, id := range ids {
		c, _ := connectPaho(t, s, persistent(id, nil))
		tok := c.Subscribe("fo/t", 1, nil)
		require.True(t, tok.WaitTimeout(e2eWait))
		require.NoError(t, tok.Error())
		c.Disconnect(50)
	}
	pub, _ := connectPaho(t, s, nil)
	const n = 60
	toks := make([]paho.Token, 0, n)
	for i := range n {
		toks = append(toks, pub.Publish("fo/t", 1, false, fmt.Sprintf("m%d", i)))
	}
	require.NoError(t, waitAll(toks, time.Now().Add(e2eWait)))
	pub.Disconnect(50)

	s = restart(t, s, st)
	for _, id := range ids {
		h, msgs := collect(n)
		_, present := connectPaho(t, s, persistent(id, h))
		require.True(t, present, "%s: session present", id)
		for i := range n {
			m := recv(t, msgs, fmt.Sprintf("%s: m%d", id, i))
			require.Equal(t, fmt.Sprintf("m%d", i), m.payload, id)
		}
		recvNone(t, msgs, e2eSilent)
	}

	s = restart(t, s, st)
	for _, id := range ids {
		h, msgs := collect(n)
		connectPaho(t, s, persistent(id, h))
		recvNone(t, msgs, e2eSilent)
	}
}
