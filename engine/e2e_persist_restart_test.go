package engine

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// QoS 1 messages a persistent subscriber was sent and had not
// acknowledged when the broker went down come again with DUP set
// [MQTT-3.3.1-1], messages it was never sent without. QoS 1 entries keep
// no packet identifier in the store, so the session record says how far
// the client may have been sent its entries (store.Session.SentTo).

// snapshot copies what st holds now into a new store, as a crash would
// leave it: a broker started on the copy recovers from whatever was
// durable at that moment, while the old one runs on.
func snapshot(t *testing.T, st store.Store) *store.Memory {
	t.Helper()
	cp := store.NewMemory()
	t.Cleanup(func() { _ = cp.Close() })
	var b store.Batch
	var ids []string
	require.NoError(t, st.Sessions(func(s *store.Session) error {
		b.PutSession(s)
		ids = append(ids, s.ClientID)
		return nil
	}))
	for _, id := range ids {
		require.NoError(t, st.Entries(id, 0, 0, func(e *store.Entry) bool {
			b.PutEntry(id, e)
			return true
		}))
	}
	require.NoError(t, st.Inbound(func(id string, pid uint16) error {
		b.PutInbound(id, pid)
		return nil
	}))
	require.NoError(t, st.Retained(func(m *store.Message) error {
		b.PutRetained(m)
		return nil
	}))
	done := make(chan error, 1)
	cp.Commit(&b, func(err error) { done <- err })
	require.NoError(t, <-done)
	return cp
}

// sentButUnacked connects a persistent QoS 1 subscriber to topic,
// publishes n messages and reads them without acknowledging any.
func sentButUnacked(t *testing.T, s *Server, id, topic string, n int) *rawClient {
	t.Helper()
	sub := connectRaw(t, s, connectPacket(id, false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, topic, 1))
	pub := connectRaw(t, s, connectPacket(id+"-pub", true, 0))
	for i := 1; i <= n; i++ {
		pub.publish(topic, fmt.Sprintf("m%d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	pub.disconnect()
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.False(t, p.Dup, "first delivery")
	}
	return sub
}

// expectResent reads n messages m1..mn, each with DUP, acknowledging
// them, then checks that a new message comes without DUP.
func expectResent(t *testing.T, s *Server, sub *rawClient, topic string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.True(t, p.Dup, "message %d was sent before the restart: DUP [MQTT-3.3.1-1]", i)
		sub.ack(codec.PUBACK, p.PacketID)
	}
	sub.expectNothing(e2eSilent)
	pub := connectRaw(t, s, connectPacket("late-pub", true, 0))
	pub.publish(topic, "new", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	p := sub.expectPublish()
	require.Equal(t, "new", string(p.Payload))
	require.False(t, p.Dup, "a first delivery has DUP 0")
}

// The broker stops, gracefully (the record written as the subscriber's
// connection closes says what it was sent) or by a crash while the
// subscriber is connected (its record was written while it was online,
// so every recovered entry may have been sent), while the subscriber holds
// unacknowledged messages.
func TestE2EPersistResendHasDup(t *testing.T) {
	for _, tc := range []struct {
		name string
		next func(t *testing.T, s *Server, st store.Store) *Server
	}{
		{"restart", restart},
		{"crash", func(t *testing.T, _ *Server, st store.Store) *Server {
			return startServer(t, Options{Store: snapshot(t, st)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := store.NewMemory()
			t.Cleanup(func() { _ = st.Close() })
			s := startServer(t, Options{Store: st})
			const n = 5
			id, topic := "dup-"+tc.name, "dup/"+tc.name
			sentButUnacked(t, s, id, topic, n)

			s = tc.next(t, s, st)
			sub := dialRaw(t, s)
			require.True(t, sub.mustConnect(connectPacket(id, false, 0)).SessionPresent)
			expectResent(t, s, sub, topic, n)
		})
	}
}

// The subscriber disconnects holding unacknowledged messages, more are
// queued for it, then the broker crashes: the ones it was sent come with
// DUP, the ones queued after it left without.
func TestE2EPersistResendAfterCrashOfflineSession(t *testing.T) {
	s, st := startWithMemoryStore(t)
	const n = 3
	sub := sentButUnacked(t, s, "dup3", "dup/3", n)
	sub.disconnect()
	pub := connectRaw(t, s, connectPacket("dup3-pub2", true, 0))
	for i := n + 1; i <= 2*n; i++ {
		pub.publish("dup/3", fmt.Sprintf("m%d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	var rec *store.Session
	require.Eventually(t, func() bool {
		_ = st.Sessions(func(r *store.Session) error {
			if r.ClientID == "dup3" && r.DisconnectedAt != 0 {
				c := *r
				rec = &c
			}
			return nil
		})
		return rec != nil
	}, e2eWait, 10*time.Millisecond, "the record of the offline session")
	require.NotZero(t, rec.SentTo)

	s2 := startServer(t, Options{Store: snapshot(t, st)})
	sub = dialRaw(t, s2)
	require.True(t, sub.mustConnect(connectPacket("dup3", false, 0)).SessionPresent)
	for i := 1; i <= 2*n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.Equal(t, i <= n, p.Dup, "message %d: DUP only on those sent before", i)
		sub.ack(codec.PUBACK, p.PacketID)
	}
	sub.expectNothing(e2eSilent)
}

// A delayed will's Message Expiry Interval survives a restart: the will
// is published after it with the interval, counted from its publication
// [MQTT-3.1.3-9 will properties, MQTT-3.3.2-6].
func TestE2EPersistWillExpiryAcrossRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	c := dialRaw(t, s)
	p := withWill5(connect5("wexp", false, 0, 600), "wexp/w", "bye", 1, 1)
	p.Will.Properties.MessageExpiry = 60
	c.mustConnect(p)
	c.kill()
	waitOfflineWillRecord(t, st, "wexp")

	s = restart(t, s, st)
	obs := connectRaw(t, s, connect5("wexp-obs", true, 0, 0))
	require.Equal(t, byte(1), obs.subscribe(1, "wexp/w", 1))
	w := obs.expectPublish()
	require.Equal(t, "bye", string(w.Payload))
	require.True(t, w.Properties.Has(codec.PropMessageExpiry), "the will keeps its Message Expiry Interval")
	require.InDelta(t, 60, int(w.Properties.MessageExpiry), 2)
}

// After a restart, QoS 1 messages a persistent subscriber was sent and had
// not acknowledged when its connection closed go out again with DUP and
// their original packet identifiers [MQTT-4.4.0-1], as QoS 2 ones do; a
// new message then gets an identifier none of them has. (Found by
// exploratory QA: they came back with new identifiers. A crash while the
// client is connected still gives new ones: the session record written
// at the disconnect is what keeps them, docs/persistence.md.)
func TestE2EPersistResendKeepsPacketIdentifiers(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st})

	const id, topic = "qa-pid", "qa/pid"
	sub := connectRaw(t, s, connectPacket(id, false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, topic, 1))
	pub := connectRaw(t, s, connectPacket(id+"-pub", true, 0))
	// Two messages delivered and acknowledged, so the identifiers of the
	// unacknowledged ones do not start at 1.
	for i := 1; i <= 2; i++ {
		pub.publish(topic, fmt.Sprintf("acked%d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
		p := sub.expectPublish()
		sub.ack(codec.PUBACK, p.PacketID)
	}
	const n = 3
	sent := map[string]uint16{}
	for i := 1; i <= n; i++ {
		pub.publish(topic, fmt.Sprintf("m%d", i), 1, false, uint16(10+i))
		pub.expectAck(codec.PUBACK, uint16(10+i))
	}
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		sent[string(p.Payload)] = p.PacketID
	}
	pub.disconnect()

	s = restart(t, s, st)
	sub = dialRaw(t, s)
	require.True(t, sub.mustConnect(connectPacket(id, false, 0)).SessionPresent)
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		require.True(t, p.Dup, "re-sent with DUP")
		require.Equal(t, sent[string(p.Payload)], p.PacketID,
			"%s was sent with packet identifier %d before the restart: it must be re-sent with it [MQTT-4.4.0-1]",
			p.Payload, sent[string(p.Payload)])
		sub.ack(codec.PUBACK, p.PacketID)
	}
	pub = connectRaw(t, s, connectPacket(id+"-pub", true, 0))
	pub.publish(topic, "after", 1, false, 20)
	pub.expectAck(codec.PUBACK, 20)
	p := sub.expectPublish()
	require.Equal(t, "after", string(p.Payload))
	require.False(t, p.Dup)
	for _, old := range sent {
		require.NotEqual(t, old, p.PacketID, "a new identifier")
	}
}

// A retained will restored from the store and published after the
// restart stays the topic's retained message: a subscriber that comes
// after its publication gets it whole, after other messages have been
// through the pool it would have been recycled into. (Found by the engine
// fuzz target: restored wills were not pinned, so a retained one went back
// to the message pool while the retained index held it, and later
// subscribers got a PUBLISH with an empty topic.)
func TestE2EPersistRetainedWillAcrossRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	c := dialRaw(t, s)
	p := withWill5(connect5("wret", false, 0, 600), "wret/w", "bye", 0, 1)
	p.Will.Retain = true
	c.mustConnect(p)
	c.kill()
	waitOfflineWillRecord(t, st, "wret")

	s = restart(t, s, st)
	live := connectRaw(t, s, connectPacket("wret-live", true, 0))
	require.Equal(t, byte(0), live.subscribe(1, "wret/w", 0))
	require.Equal(t, "bye", string(live.expectPublish().Payload), "the will, published after its delay")
	for i := 0; i < 100; i++ { // recycle messages through the pool
		require.NoError(t, s.Publish("wret/other", []byte("x"), 0, false))
	}
	for i := 0; i < 3; i++ {
		obs := connectRaw(t, s, connectPacket(fmt.Sprintf("wret-obs%d", i), true, 0))
		require.Equal(t, byte(0), obs.subscribe(1, "wret/w", 0))
		w := obs.expectPublish()
		require.Equal(t, "wret/w", string(w.Topic))
		require.Equal(t, "bye", string(w.Payload))
		require.True(t, w.Retain)
		obs.disconnect()
	}
}

// waitOfflineWillRecord waits until st holds client id's session record
// written at its disconnect, with its will.
func waitOfflineWillRecord(t *testing.T, st store.Store, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		ok := false
		_ = st.Sessions(func(r *store.Session) error {
			ok = ok || (r.ClientID == id && r.DisconnectedAt != 0 && r.Will != nil)
			return nil
		})
		return ok
	}, e2eWait, 10*time.Millisecond, "the offline session's record with its will")
}

// registered reports whether the broker's registry holds a session for id
// (owned by a loop or not yet adopted after a restart).
func registered(s *Server, id string) bool {
	sh := s.reg.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.m[id] != nil // session.end removes it, under the same lock
}

// A session whose Session Expiry Interval passed while the broker was
// down is not resumed by a client that reconnects at once after the
// restart: it ends (takeOver checks the deadline) rather than wait for a
// sweep that would have ended it a moment later. Whether it survived
// depended on that race. (MQTT 5.0 section 3.1.2.11.2 allows a late
// deletion while the server is down, non-normatively; Mosquitto 2.0.11
// resumes such a session. The defect was the inconsistency.)
func TestE2EPersistSessionExpiredWhileDownNotResumed(t *testing.T) {
	s, st := startWithMemoryStore(t)
	sub := connectRaw(t, s, connect5("exp-down", true, 0, 1))
	require.Equal(t, byte(1), sub.subscribe(1, "exp/down", 1))
	sub.disconnect()
	pub := connectRaw(t, s, connect5("exp-down-pub", true, 0, 0))
	pub.publish("exp/down", "queued", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	pub.disconnect()
	waitClosed(t, s, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	commitDirect(t, st, new(store.Batch))
	time.Sleep(1500 * time.Millisecond) // down for longer than its 1 s
	s = startServer(t, Options{Store: st})

	again := dialRaw(t, s)
	ca := again.mustConnect(connect5("exp-down", false, 0, 0))
	require.False(t, ca.SessionPresent, "a session expired before the restart was resumed [MQTT-3.1.2-23]")
	again.expectNothing(e2eSilent)
}

// A broker restarted with sessions that nobody connects to still ends them
// when they expire: Start makes a loop known (discoverLoop) whose sweep
// adopts them. They stayed, with their subscriptions and queues, until a
// first client connected.
func TestE2EPersistRestoredSessionExpiresOnIdleBroker(t *testing.T) {
	s, st := startWithMemoryStore(t)
	sub := connectRaw(t, s, connect5("exp-idle", true, 0, 2))
	require.Equal(t, byte(1), sub.subscribe(1, "exp/idle", 1))
	sub.disconnect()
	waitClosed(t, s, 1)

	s = restart(t, s, st)
	require.True(t, registered(s, "exp-idle"), "the session is restored")
	// Expires at most 2 s after the restart; allow a few sweeps.
	require.Eventually(t, func() bool { return !registered(s, "exp-idle") }, 6*time.Second, 50*time.Millisecond,
		"a restored session past its expiry is still held while no client connects")
}

// The will of a session that expired while the broker was down is
// published after the restart, whether the sweep or the client's return
// ends the session first [MQTT-3.1.2-8]. The client's quick return
// resumed the session instead, which cancelled the will.
func TestE2EPersistWillOfSessionExpiredWhileDown(t *testing.T) {
	s, st := startWithMemoryStore(t)
	obs := connectRaw(t, s, connect5("wexp-obs", true, 0, 300))
	require.Equal(t, byte(1), obs.subscribe(1, "wexp/t", 1))
	obs.disconnect()
	c := dialRaw(t, s)
	c.mustConnect(withWill5(connect5("wexp", true, 0, 1), "wexp/t", "bye", 1, 100))
	c.kill()
	waitOfflineWillRecord(t, st, "wexp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	commitDirect(t, st, new(store.Batch))
	time.Sleep(1500 * time.Millisecond)
	s = startServer(t, Options{Store: st})

	again := dialRaw(t, s)
	ca := again.mustConnect(connect5("wexp", false, 0, 0))
	require.False(t, ca.SessionPresent, "a session expired before the restart was resumed [MQTT-3.1.2-23]")
	obs = dialRaw(t, s)
	require.True(t, obs.mustConnect(connect5("wexp-obs", false, 0, 300)).SessionPresent)
	p := obs.expectPublish()
	require.Equal(t, "bye", string(p.Payload), "the will of the session that ended [MQTT-3.1.2-8]")
}

// TestRecoveredFlowsKeepIdentifiersInSmallerWindow: a broker restarted
// with a smaller MaxInflight recovers QoS 2 flows whose packet identifiers
// share a slot of the smaller window. They used to be dropped (a release:
// the client kept its identifier awaiting PUBREL, and would have
// acknowledged without delivering the next message sent under it) or
// queued (a PUBLISH: sent again under a new identifier, which the client
// delivers a second time). Now the window widens and every flow goes on
// under its own identifier [MQTT-4.4.0-1]; the queued message follows.
// A release's entry that is never put back in the window (two entries
// under one identifier) must still not be read back as a PUBLISH with no
// topic, as it once was.
func TestRecoveredFlowsKeepIdentifiersInSmallerWindow(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	var b store.Batch
	b.PutSession(&store.Session{ClientID: "shrunk", Version: 4, Expiry: 300, DisconnectedAt: time.Now().UnixNano(),
		Subs: []store.Subscription{{Filter: "shrunk/#", QoS: 2}}})
	// In flight in a window of 32; in one of 5, 2 and 7 share a slot, and
	// so do 3 and 8. 9 is a second release under 2's identifier.
	b.PutEntry("shrunk", &store.Entry{Seq: 1, State: store.EntryAwaitComp, PacketID: 2, QoS: 2})
	b.PutEntry("shrunk", &store.Entry{Seq: 2, State: store.EntryAwaitRec, PacketID: 3, QoS: 2,
		Msg: store.Message{Topic: []byte("shrunk/a"), Payload: []byte("m2"), QoS: 2}})
	b.PutEntry("shrunk", &store.Entry{Seq: 4, State: store.EntryAwaitComp, PacketID: 7, QoS: 2})
	b.PutEntry("shrunk", &store.Entry{Seq: 5, State: store.EntryAwaitRec, PacketID: 8, QoS: 2,
		Msg: store.Message{Topic: []byte("shrunk/a"), Payload: []byte("m5"), QoS: 2}})
	b.PutEntry("shrunk", &store.Entry{Seq: 6, State: store.EntryAwaitComp, PacketID: 2, QoS: 2})
	b.PutEntry("shrunk", &store.Entry{Seq: 7, State: store.EntryQueued, QoS: 1,
		Msg: store.Message{Topic: []byte("shrunk/a"), Payload: []byte("m7"), QoS: 1}})
	done := make(chan error, 1)
	st.Commit(&b, func(err error) { done <- err })
	require.NoError(t, <-done)

	s := startServer(t, Options{Store: st, MaxInflight: 5})
	c := dialRaw(t, s)
	ca := c.mustConnect(connectPacket("shrunk", false, 0))
	require.True(t, ca.SessionPresent)
	var got []string
	for {
		p, err := c.next(500 * time.Millisecond)
		if err != nil {
			require.ErrorIs(t, err, os.ErrDeadlineExceeded, "after %v", got)
			break
		}
		switch p := p.(type) {
		case *codec.Publish:
			if p.QoS == 1 {
				got = append(got, fmt.Sprintf("PUBLISH %q", p.Payload))
				c.ack(codec.PUBACK, p.PacketID)
				continue
			}
			got = append(got, fmt.Sprintf("PUBLISH %q %d dup=%v", p.Payload, p.PacketID, p.Dup))
			c.ack(codec.PUBREC, p.PacketID)
		case *codec.Ack:
			got = append(got, fmt.Sprintf("%v %d", p.PacketType, p.PacketID))
			if p.PacketType == codec.PUBREL {
				c.ack(codec.PUBCOMP, p.PacketID)
			}
		}
	}
	// Releases first, then the PUBLISHes, each in the order they were sent
	// [MQTT-4.6.0-1]; then, in an order the store's writes decide, the
	// queued message and the releases of the two PUBLISHes.
	require.Len(t, got, 7, "%v", got)
	require.Equal(t, []string{"PUBREL 2", "PUBREL 7", `PUBLISH "m2" 3 dup=true`, `PUBLISH "m5" 8 dup=true`}, got[:4])
	require.ElementsMatch(t, []string{"PUBREL 3", "PUBREL 8", `PUBLISH "m7"`}, got[4:])
	// Everything completed, the dropped release included.
	require.Eventually(t, func() bool {
		n := 0
		require.NoError(t, st.Entries("shrunk", 0, 0, func(*store.Entry) bool { n++; return true }))
		return n == 0
	}, e2eWait, 10*time.Millisecond, "entries left in the store")
}
