package engine

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// Recovery with in-flight entries whose slots collide in a smaller window
// (MaxInflight lowered between runs: packet ids 1 and 3 share slot 0 of a
// window of 2) queues the second one instead of panicking on a session no
// loop owns yet; the client gets both.
func TestRecoverInflightSlotTakenNoPanic(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	var b store.Batch
	b.PutSession(&store.Session{ClientID: "w", Version: 4, Expiry: expiryNever, DisconnectedAt: time.Now().UnixNano(),
		Subs: []store.Subscription{{Filter: "w", QoS: 1}}})
	for i, pid := range []uint16{1, 3} {
		b.PutEntry("w", &store.Entry{Seq: uint64(10 + i), State: store.EntryAwaitAck, PacketID: pid, QoS: 1,
			Msg: store.Message{Topic: []byte("w"), Payload: []byte{'a' + byte(i)}, QoS: 1}})
	}
	commitDirect(t, st, &b)

	s := startServer(t, Options{Store: st, MaxInflight: 2})
	c := dialRaw(t, s)
	require.True(t, c.mustConnect(connectPacket("w", false, 0)).SessionPresent)
	got := ""
	for range 2 {
		p := c.expectPublish()
		require.True(t, p.Dup)
		got += string(p.Payload)
		c.ack(codec.PUBACK, p.PacketID)
	}
	require.Equal(t, "ab", got)
	c.expectNothing(e2eSilent)
	require.Eventually(t, func() bool { st := s.Stats(); return st.Inflight == 0 && st.Queued == 0 && st.Subscriptions == 1 }, e2eWait, 10*time.Millisecond,
		"gauges back to 0: %+v", s.Stats())
}

// storeHas waits until id's entries in st have the given states.
func storeHas(t *testing.T, st store.Store, id string, states ...byte) {
	t.Helper()
	require.Eventually(t, func() bool {
		var got []byte
		_ = st.Entries(id, 0, 0, func(e *store.Entry) bool { got = append(got, e.State); return true })
		return string(got) == string(states)
	}, e2eWait, 5*time.Millisecond, "states %v", states)
}

// A QoS 2 message in flight behind a QoS 1 one (whose entry stays Queued
// while in flight) comes back after a restart as what it was: PUBREL for
// one the client had received, the message with its packet id and DUP for
// one it had not; never the message under a new packet id (the client
// would deliver it twice) nor an empty PUBLISH from the released entry.
func TestE2EPersistQoS2InflightBehindQoS1AcrossRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	sub := connectRaw(t, s, connectPacket("mix", false, 0))
	sub.subscribe(1, "mix/#", 2)
	pub := connectRaw(t, s, connectPacket("mixpub", true, 0))
	pub.publish("mix/1", "one", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	pub.publish("mix/2", "two", 2, false, 2)
	pub.expectAck(codec.PUBREC, 2)
	pub.ack(codec.PUBREL, 2)
	pub.expectAck(codec.PUBCOMP, 2)
	pub.publish("mix/3", "three", 2, false, 3)
	pub.expectAck(codec.PUBREC, 3)
	pub.ack(codec.PUBREL, 3)
	pub.expectAck(codec.PUBCOMP, 3)

	one, two, three := sub.expectPublish(), sub.expectPublish(), sub.expectPublish()
	require.Equal(t, []string{"one", "two", "three"}, []string{string(one.Payload), string(two.Payload), string(three.Payload)})
	sub.ack(codec.PUBREC, two.PacketID) // "two" reached the client's application
	sub.expectAck(codec.PUBREL, two.PacketID)
	storeHas(t, st, "mix", store.EntryQueued, store.EntryAwaitComp, store.EntryAwaitRec)
	s = restart(t, s, st)

	sub = dialRaw(t, s)
	require.True(t, sub.mustConnect(connectPacket("mix", false, 0)).SessionPresent)
	var rel, pubs []string
	for {
		pk, err := sub.next(e2eSilent)
		if err != nil {
			break
		}
		switch p := pk.(type) {
		case *codec.Ack:
			switch {
			case p.PacketType == codec.PUBREL && p.PacketID == two.PacketID:
				rel = append(rel, "two")
			case p.PacketType == codec.PUBREL && p.PacketID == three.PacketID:
				rel = append(rel, "three")
			default:
				t.Fatalf("unexpected %+v", p)
			}
			sub.ack(codec.PUBCOMP, p.PacketID)
		case *codec.Publish:
			pubs = append(pubs, string(p.Payload))
			switch string(p.Payload) {
			case "one":
				sub.ack(codec.PUBACK, p.PacketID)
			case "three":
				require.Equal(t, three.PacketID, p.PacketID, "same packet identifier")
				require.True(t, p.Dup)
				sub.ack(codec.PUBREC, p.PacketID)
			default:
				t.Fatalf("unexpected PUBLISH %q on %q", p.Payload, p.Topic)
			}
		}
	}
	require.Equal(t, []string{"two", "three"}, rel)
	require.ElementsMatch(t, []string{"one", "three"}, pubs)
	storeHas(t, st, "mix")
}

// After a restart, the messages that were in flight are sent again in the
// order they were first sent [MQTT-4.6.0-1], also when their packet
// identifiers wrapped around the window.
func TestE2EPersistInflightResendOrderAcrossRestart(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxInflight: 4})
	sub := connectRaw(t, s, connectPacket("ord", false, 0))
	sub.subscribe(1, "ord", 2)
	pub := connectRaw(t, s, connectPacket("ordpub", true, 0))
	for i := 1; i <= 6; i++ {
		pub.publish("ord", string(rune('0'+i)), 2, false, uint16(i))
		pub.expectAck(codec.PUBREC, uint16(i))
		pub.ack(codec.PUBREL, uint16(i))
		pub.expectAck(codec.PUBCOMP, uint16(i))
	}
	// Ids 1 and 2 are completed; 3 and 4 stay in slots 2 and 3, 5 and
	// 6 wrap around to slots 0 and 1.
	for i := 1; i <= 4; i++ {
		require.Equal(t, uint16(i), sub.expectPublish().PacketID)
	}
	sub.ack(codec.PUBREC, 1)
	sub.ack(codec.PUBREC, 2)
	sub.expectAck(codec.PUBREL, 1)
	sub.expectAck(codec.PUBREL, 2)
	sub.ack(codec.PUBCOMP, 1)
	sub.ack(codec.PUBCOMP, 2)
	for i := 5; i <= 6; i++ {
		require.Equal(t, uint16(i), sub.expectPublish().PacketID)
	}
	storeHas(t, st, "ord", store.EntryAwaitRec, store.EntryAwaitRec, store.EntryAwaitRec, store.EntryAwaitRec)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	s = startServer(t, Options{Store: st, MaxInflight: 4})

	sub = connectRaw(t, s, connectPacket("ord", false, 0))
	var got []uint16
	for range 4 {
		p := sub.expectPublish()
		require.True(t, p.Dup)
		got = append(got, p.PacketID)
	}
	require.Equal(t, []uint16{3, 4, 5, 6}, got)
}

// A persistent member of a shared group that disconnects hands its
// unacknowledged message to a member whose session is not stored; its
// own entry goes, so the message does not come back to it after a
// restart.
func TestE2EPersistSharedHandOverForgetsEntry(t *testing.T) {
	s, st := startWithMemoryStore(t)
	m1 := connectRaw(t, s, connectPacket("m1", false, 0))
	m1.subscribe(1, "$share/g/sh", 1)
	pub := connectRaw(t, s, connectPacket("shpub", true, 0))
	pub.publish("sh", "x", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	require.Equal(t, "x", string(m1.expectPublish().Payload)) // not acknowledged
	m2 := connectRaw(t, s, connectPacket("m2", true, 0))
	m2.subscribe(1, "$share/g/sh", 1)
	m1.kill()
	p := m2.expectPublish()
	require.Equal(t, "x", string(p.Payload))
	m2.ack(codec.PUBACK, p.PacketID)
	storeHas(t, st, "m1")

	s = restart(t, s, st)
	m1 = dialRaw(t, s)
	require.True(t, m1.mustConnect(connectPacket("m1", false, 0)).SessionPresent)
	m1.expectNothing(e2eSilent)
}

// A persistent session resumed by another user gets none of the messages
// queued for the first one, also those that spilled to disk; and what was
// discarded does not come back after a restart.
func TestE2EPersistSpilledQueueCheckedForNewIdentity(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	rt := &ruleTable{rules: authzRules}
	opts := Options{Store: st, MaxQueuedInMemory: 2, Authorizer: rt}
	s := startServer(t, opts)
	p := userConnect("dev", "alice")
	p.CleanStart = false
	d := connectRaw(t, s, p)
	require.Equal(t, byte(1), d.subscribe(1, "private/t", 1))
	d.disconnect()
	pub := connectRaw(t, s, userConnect("pub", "alice"))
	for i := 1; i <= 6; i++ {
		pub.publish("private/t", fmt.Sprint(i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	require.Equal(t, 2, queuedInMemory(t, s, "dev"), "the rest is on disk only")

	p = userConnect("dev", "bob")
	p.CleanStart = false
	d = dialRaw(t, s)
	require.True(t, d.mustConnect(p).SessionPresent)
	d.expectNothing(e2eSilent)
	d.disconnect()
	storeHas(t, st, "dev")

	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	s = startServer(t, opts)
	d = dialRaw(t, s)
	require.True(t, d.mustConnect(p).SessionPresent)
	d.expectNothing(e2eSilent)
}

// A QoS 2 PUBLISH that a persistent publisher sends again after
// reconnecting (its PUBREC was still held for the store) is acknowledged
// only once the first one's message is durable: a PUBREC sent earlier
// would let the publisher release a message a crash can still lose.
func TestE2EPersistResentQoS2AckWaitsForStore(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	sub := connectRaw(t, s, connectPacket("rs-sub", false, 0))
	sub.subscribe(1, "rs", 2)
	disconnectStored(t, st, sub, "rs-sub")
	pub := connectRaw(t, s, connectPacket("rs-pub", false, 0))
	st.settle(t)

	st.setOpen(false)
	pub.publish("rs", "x", 2, false, 7)
	pub.expectNothing(e2eSilent) // held until the entry is durable
	pub.kill()
	pub = dialRaw(t, s)
	require.True(t, pub.mustConnect(connectPacket("rs-pub", false, 0)).SessionPresent)
	pub.send(&codec.Publish{Topic: []byte("rs"), Payload: []byte("x"), QoS: 2, PacketID: 7, Dup: true})
	pub.expectNothing(e2eSilent)
	require.Empty(t, entryStates(st, "rs-sub"), "nothing is durable yet")

	st.setOpen(true)
	pub.expectAck(codec.PUBREC, 7)
	require.Len(t, entryStates(st, "rs-sub"), 1)
	pub.ack(codec.PUBREL, 7)
	pub.expectAck(codec.PUBCOMP, 7)
}

// A QoS 2 message routed by one loop to a session owned by another: the
// owner marks the entry sent (AwaitRec, with its packet identifier) in
// its own batch, which can reach the store before the routing loop's
// batch that creates the entry (that loop had a commit outstanding). The
// mark must survive: after a restart the message is sent again with its
// packet identifier and DUP, so the client does not deliver it twice.
func TestE2EPersistQoS2MarkNotOverwrittenByLaterPut(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	other := connectRaw(t, s, connectPacket("ow-other", false, 0))
	other.subscribe(1, "ow/other", 1)
	disconnectStored(t, st, other, "ow-other")
	sub := connectRaw(t, s, connectPacket("ow-sub", false, 0))
	sub.subscribe(1, "ow/b", 2)
	pub := dialOnLoop(t, s, "ow-pub", true, 1-sessionOwnerLoop(s, "ow-sub"))
	require.NotEqual(t, sessionOwnerLoop(s, "ow-sub"), sessionOwnerLoop(s, "ow-pub"))
	st.settle(t)

	st.setOpen(false)
	pub.publish("ow/other", "first", 1, false, 1) // the publisher's loop has a commit outstanding
	st.waitFor(t, 1)
	pub.publish("ow/b", "x", 2, false, 2) // its entry waits in that loop's open batch
	// The PUBLISH waits for its mark, which waits for the entry's put.
	sub.expectNothing(e2eSilent)
	// Give the owner the time to commit a batch with the mark (before
	// the fix it did, and that batch reached the store first).
	require.Never(t, func() bool { return st.waiting() > 2 }, 100*time.Millisecond, time.Millisecond)
	st.setOpen(true)
	pub.expectAck(codec.PUBACK, 1)
	pub.expectAck(codec.PUBREC, 2)
	p := sub.expectPublish()
	require.Equal(t, "x", string(p.Payload))
	// The mark waits for the entry's put to be durable, then for the
	// owner's next commit (at the latest its sweep, once a second).
	var got store.Entry
	require.Eventually(t, func() bool {
		_ = st.Entries("ow-sub", 0, 0, func(e *store.Entry) bool { got = *e; return false })
		return got.State == store.EntryAwaitRec
	}, e2eWait, 5*time.Millisecond, "the entry is marked sent")
	require.Equal(t, p.PacketID, got.PacketID)
	time.Sleep(100 * time.Millisecond) // nothing overwrites it
	_ = st.Entries("ow-sub", 0, 0, func(e *store.Entry) bool { got = *e; return false })
	require.Equal(t, store.EntryAwaitRec, got.State)

	s = restart(t, s, st)
	sub = connectRaw(t, s, connectPacket("ow-sub", false, 0))
	again := sub.expectPublish()
	require.Equal(t, "x", string(again.Payload))
	require.Equal(t, p.PacketID, again.PacketID)
	require.True(t, again.Dup)
}

// The same when the client reconnects on the publisher's loop before the
// mark could be written: the mark moves with the session and stays ahead
// of the new owner's writes (release, delete), so the completed message
// does not come back.
func TestE2EPersistQoS2MarkMovesWithSession(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	other := connectRaw(t, s, connectPacket("mv-other", false, 0))
	other.subscribe(1, "mv/other", 1)
	disconnectStored(t, st, other, "mv-other")
	sub := connectRaw(t, s, connectPacket("mv-sub", false, 0))
	sub.subscribe(1, "mv/b", 2)
	owner := sessionOwnerLoop(s, "mv-sub")
	pub := dialOnLoop(t, s, "mv-pub", true, 1-owner)
	st.settle(t)

	st.setOpen(false)
	pub.publish("mv/other", "first", 1, false, 1)
	st.waitFor(t, 1)
	pub.publish("mv/b", "x", 2, false, 2)
	sub.expectNothing(e2eSilent) // held: its mark waits for the entry's put
	sub.kill()
	sub = dialOnLoop(t, s, "mv-sub", false, 1-owner) // takes the session over, with the waiting mark
	require.Equal(t, 1-owner, sessionOwnerLoop(s, "mv-sub"))
	st.setOpen(true)
	pub.expectAck(codec.PUBACK, 1)
	pub.expectAck(codec.PUBREC, 2)
	again := sub.expectPublish()
	require.Equal(t, "x", string(again.Payload))
	sub.ack(codec.PUBREC, again.PacketID)
	sub.expectAck(codec.PUBREL, again.PacketID)
	sub.ack(codec.PUBCOMP, again.PacketID)
	sub.expectNothing(e2eSilent)
	storeHas(t, st, "mv-sub")
	require.Never(t, func() bool { return len(entryStates(st, "mv-sub")) > 0 }, 1500*time.Millisecond, 10*time.Millisecond,
		"the completed message's entry came back")
}

// A message the client acknowledged just before it went offline, while
// its entry's put was not durable yet (the delete waits for it), is not
// read back from disk when the client returns and its spilled queue is
// read: the delete may still be waiting then.
func TestE2EPersistSpillSkipsEntryAckedBeforeSpill(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 2})
	other := connectRaw(t, s, connectPacket("ak-other", false, 0))
	other.subscribe(1, "ak/other", 1)
	disconnectStored(t, st, other, "ak-other")
	sub := connectRaw(t, s, connectPacket("ak-sub", false, 0))
	sub.subscribe(1, "ak", 1)
	owner := sessionOwnerLoop(s, "ak-sub")
	pub := dialOnLoop(t, s, "ak-pub", true, 1-owner)
	st.settle(t)

	st.setOpen(false)
	pub.publish("ak/other", "first", 1, false, 1) // the publisher's loop has a commit outstanding
	st.waitFor(t, 1)
	pub.publish("ak", "m1", 1, false, 2) // its entry waits in that loop's open batch
	p := sub.expectPublish()
	require.Equal(t, "m1", string(p.Payload))
	sub.ack(codec.PUBACK, p.PacketID) // the delete waits for the put
	sub.disconnect()
	st.waitFor(t, 2) // the owner's batch: the session went offline
	for i := 2; i <= 4; i++ {
		pub.publish("ak", fmt.Sprintf("m%d", i), 1, false, uint16(i+1)) // m4 spills
	}
	time.Sleep(50 * time.Millisecond)
	st.release(2)
	st.waitFor(t, 1) // the publisher's loop commits the batch with m1..m4
	sub = dialOnLoop(t, s, "ak-sub", false, owner)
	st.waitFor(t, 2) // the owner's batch of the reconnection
	st.release(1)    // m1..m4 are durable: the watermark passes them
	time.Sleep(50 * time.Millisecond)
	st.release(1) // the reconnection's batch is durable; the delete of m1 is committed now, not durable
	time.Sleep(50 * time.Millisecond)
	var got []string
	for range 2 {
		p := sub.expectPublish()
		got = append(got, string(p.Payload))
		sub.ack(codec.PUBACK, p.PacketID) // the queue empties: the spill is read back
	}
	for {
		p, err := sub.next(e2eSilent)
		if err != nil {
			break
		}
		got = append(got, string(p.(*codec.Publish).Payload))
		sub.ack(codec.PUBACK, p.(*codec.Publish).PacketID)
	}
	st.setOpen(true)
	require.Equal(t, []string{"m2", "m3", "m4"}, got)
}

// A persistent session whose spilled queue was read back still gets the
// retained message when it subscribes again, although the message was
// numbered for the store before the read (it was queued for it too).
func TestE2EPersistRetainedOnSubscribeAfterSpill(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 2})
	sub := connectRaw(t, s, connectPacket("rs", false, 0))
	sub.subscribe(1, "rt", 1)
	sub.disconnect()
	pub := connectRaw(t, s, connectPacket("rspub", true, 0))
	for i := 1; i <= 4; i++ {
		pub.publish("rt", fmt.Sprint(i), 1, i == 4, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	sub = connectRaw(t, s, connectPacket("rs", false, 0))
	for i := 1; i <= 4; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprint(i), string(p.Payload))
		sub.ack(codec.PUBACK, p.PacketID)
	}
	sub.expectNothing(e2eSilent)

	sub.send(&codec.Subscribe{PacketID: 2, Subscriptions: []codec.Subscription{{Filter: []byte("rt"), QoS: 1}}})
	sub.expect(codec.SUBACK)
	p := sub.expectPublish()
	require.Equal(t, "4", string(p.Payload))
	require.True(t, p.Retain)
}

// The same for a shared message handed over by a member that disconnects
// to a persistent member whose spilled queue was read back since the
// message was numbered: it is delivered, not dropped as read back.
func TestE2EPersistSharedHandOverToMemberAfterSpill(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 2})
	m2 := connectRaw(t, s, connectPacket("hm2", false, 0))
	m2.subscribe(1, "$share/g/ht", 1)
	m2.subscribe(2, "own", 1)
	m2.disconnect()
	m1 := connectRaw(t, s, connectPacket("hm1", false, 0))
	m1.subscribe(1, "$share/g/ht", 1)
	pub := connectRaw(t, s, connectPacket("hmpub", true, 0))
	pub.publish("ht", "shared", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	require.Equal(t, "shared", string(m1.expectPublish().Payload)) // not acknowledged
	for i := 1; i <= 4; i++ {
		pub.publish("own", fmt.Sprint(i), 1, false, uint16(i+1))
		pub.expectAck(codec.PUBACK, uint16(i+1))
	}
	m2 = connectRaw(t, s, connectPacket("hm2", false, 0))
	for i := 1; i <= 4; i++ {
		p := m2.expectPublish()
		require.Equal(t, fmt.Sprint(i), string(p.Payload))
		m2.ack(codec.PUBACK, p.PacketID)
	}
	m2.expectNothing(e2eSilent)

	m1.kill()
	p := m2.expectPublish()
	require.Equal(t, "shared", string(p.Payload))
	m2.ack(codec.PUBACK, p.PacketID)
	storeHas(t, st, "hm1")
	storeHas(t, st, "hm2")
}

// A session that ends (here: replaced by a Clean Start) while a message
// routed to it by another loop has not reached the store leaves no entry
// behind: a later session with the same client identifier never gets it.
func TestE2EPersistEndedSessionLeavesNoEntry(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	other := connectRaw(t, s, connectPacket("es-other", false, 0))
	other.subscribe(1, "es/other", 1)
	disconnectStored(t, st, other, "es-other")
	sub := connectRaw(t, s, connectPacket("es-sub", false, 0))
	sub.subscribe(1, "es", 1)
	owner := sessionOwnerLoop(s, "es-sub")
	disconnectStored(t, st, sub, "es-sub")
	pub := dialOnLoop(t, s, "es-pub", true, 1-owner)
	st.settle(t)

	st.setOpen(false)
	pub.publish("es/other", "first", 1, false, 1) // the publisher's loop has a commit outstanding
	st.waitFor(t, 1)
	pub.publish("es", "old", 1, false, 2) // its entry waits in that loop's open batch
	time.Sleep(50 * time.Millisecond)     // queued in the offline session
	c := dialRaw(t, s)
	require.False(t, c.mustConnect(connect5("es-sub", true, 0, 300)).SessionPresent) // a new persistent session
	c.disconnect()
	st.setOpen(true)
	pub.expectAck(codec.PUBACK, 1)
	pub.expectAck(codec.PUBACK, 2)
	st.settle(t)
	time.Sleep(1500 * time.Millisecond) // every loop swept its deferred writes
	require.Empty(t, entryStates(st, "es-sub"))

	s = restart(t, s, st)
	c = dialRaw(t, s)
	require.True(t, c.mustConnect(connect5("es-sub", false, 0, 300)).SessionPresent)
	c.expectNothing(e2eSilent)
}

// A 5.0 client that resumes its session with a Session Expiry Interval of
// 0 (the session ends with this connection) still gets every message the
// session holds, also those that spilled to disk.
func TestE2EPersistResumeWithExpiryZeroGetsSpilled(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 2})
	c := connectRaw(t, s, connect5("z0", true, 0, 300))
	c.subscribe(1, "z0", 1)
	c.disconnect()
	pub := connectRaw(t, s, connectPacket("z0pub", true, 0))
	for i := 1; i <= 5; i++ {
		pub.publish("z0", fmt.Sprint(i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	c = dialRaw(t, s)
	require.True(t, c.mustConnect(connect5("z0", false, 0, 0)).SessionPresent)
	for i := 1; i <= 5; i++ {
		p := c.expectPublish()
		require.Equal(t, fmt.Sprint(i), string(p.Payload))
		c.ack(codec.PUBACK, p.PacketID)
	}
	c.expectNothing(e2eSilent)
	c.disconnect()
	require.Eventually(t, func() bool {
		n := 0
		_ = st.Sessions(func(*store.Session) error { n++; return nil })
		return n == 0 && len(entryStates(st, "z0")) == 0
	}, e2eWait, 10*time.Millisecond, "the session ended with its connection")
}

// Stop hands the store what its loops had not committed yet: the open
// batches (kept while a commit was outstanding) and the writes waiting
// for the watermark. A QoS 2 message the client had received (PUBREC)
// gets PUBREL after the restart, not the message again.
func TestE2EPersistStopCommitsWhatWaits(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	sub := connectRaw(t, s, connectPacket("stop-sub", false, 0))
	sub.subscribe(1, "stop", 2)
	pub := connectRaw(t, s, connectPacket("stop-pub", true, 0))
	pub.publish("stop", "x", 2, false, 1)
	pub.expectAck(codec.PUBREC, 1)
	p := sub.expectPublish()
	storeHas(t, st, "stop-sub", store.EntryAwaitRec)

	st.setOpen(false)
	sub.subscribe(2, "other", 1) // the owner has a commit outstanding
	st.waitFor(t, 1)
	sub.ack(codec.PUBREC, p.PacketID)
	// The mark waits in the owner's open batch, and the PUBREL for it.
	sub.expectNothing(e2eSilent)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	st.setOpen(true)
	st.settle(t)
	storeHas(t, st, "stop-sub", store.EntryAwaitComp)

	s = startServer(t, Options{Store: st})
	sub = connectRaw(t, s, connectPacket("stop-sub", false, 0))
	sub.expectAck(codec.PUBREL, p.PacketID)
	sub.ack(codec.PUBCOMP, p.PacketID)
	sub.expectNothing(e2eSilent)
}

// PUBCOMP to a persistent publisher waits until the forgetting of its
// QoS 2 packet identifier is durable: sent earlier, a crash could bring the
// identifier back while the publisher, told the flow is complete, reuses
// it for a new message, which the broker would then take for the old one
// sent again and not deliver.
func TestE2EPersistPubcompWaitsForStore(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	sub := connectRaw(t, s, connectPacket("pc-sub", false, 0))
	sub.subscribe(1, "pc", 1)
	pub := connectRaw(t, s, connectPacket("pc-pub", false, 0))
	pub.publish("pc", "a", 2, false, 1)
	pub.expectAck(codec.PUBREC, 1)
	p := sub.expectPublish()
	sub.ack(codec.PUBACK, p.PacketID)
	st.settle(t)

	st.setOpen(false)
	pub.ack(codec.PUBREL, 1)
	pub.expectNothing(e2eSilent)
	st.setOpen(true)
	pub.expectAck(codec.PUBCOMP, 1)
	pub.publish("pc", "b", 2, false, 1) // the identifier is free again
	pub.expectAck(codec.PUBREC, 1)
	require.Equal(t, "b", string(sub.expectPublish().Payload))
}

// TestE2EPersistStrayEntryDeleted replays the race of a route with an
// owner that makes its session end with the connection (here a CONNECT
// resuming it with a Session Expiry Interval of 0): the routing loop read
// the session's flags as storing, wrote its entry, and numbered the
// message after forgetSession took its bound. The test holds the owner
// loop and shows the routing loop the flags from before, which is the
// route's view in the race. The owner then deletes the entry itself
// (forgetStray); without that it stays in the store for good.
func TestE2EPersistStrayEntryDeleted(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	c := dialRaw(t, s)
	c.mustConnect(connect5("sd-sub", true, 0, 300))
	c.subscribe(1, "sd", 1)
	disconnectStored(t, st, c, "sd-sub")
	c = dialRaw(t, s)
	require.True(t, c.mustConnect(connect5("sd-sub", false, 0, 0)).SessionPresent) // ends with this connection
	owner := sessionOwnerLoop(s, "sd-sub")
	pub := dialOnLoop(t, s, "sd-pub", true, 1-owner)
	require.Eventually(t, func() bool {
		n := 0
		_ = st.Sessions(func(*store.Session) error { n++; return nil })
		return n == 0
	}, e2eWait, time.Millisecond, "session deleted from the store")

	var sess *session
	s.reg.swap("sd-sub", func(o *session) *session { sess = o; return o })
	held, release := make(chan struct{}), make(chan struct{})
	sess.owner.Load().post(task{kind: taskFunc, fn: func(*loop) {
		sess.setFlag(flagClean, false) // what the routing loop sees in the race
		close(held)
		<-release
		sess.setFlag(flagClean, true)
	}})
	<-held
	pub.publish("sd", "stray", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1) // after the entry's batch is durable
	require.Len(t, entryStates(st, "sd-sub"), 1)
	close(release)

	p := c.expectPublish()
	require.Equal(t, "stray", string(p.Payload))
	c.ack(codec.PUBACK, p.PacketID)
	require.Eventually(t, func() bool { return len(entryStates(st, "sd-sub")) == 0 },
		e2eWait, 10*time.Millisecond, "stray entry deleted")
}

// TestE2EPersistQoS2HeldStaysInOrder: a QoS 2 message routed by another
// loop waits on the subscriber's owner for its mark, which waits for the
// routing loop's put (markEntry: deferred). A later message of the same
// publisher, reconnected onto the owner's loop, is routed there: its mark
// goes straight into the owner's open batch. Its PUBLISH went out as soon
// as that batch was durable, ahead of the earlier one still waiting: out
// of order [MQTT-4.6.0-6] (the churn audit: 596–599 after 601). Now a
// held PUBLISH waits for the held ones of its session before it.
func TestE2EPersistQoS2HeldStaysInOrder(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st, Loops: 2})
	other := connectRaw(t, s, connectPacket("oo-other", false, 0))
	other.subscribe(1, "oo/other", 1)
	disconnectStored(t, st, other, "oo-other")
	sub := connectRaw(t, s, connectPacket("oo-sub", false, 0))
	sub.subscribe(1, "oo/b", 2)
	owner := sessionOwnerLoop(s, "oo-sub")
	pub := dialOnLoop(t, s, "oo-pub", true, 1-owner)
	require.Equal(t, 1-owner, sessionOwnerLoop(s, "oo-pub"))
	st.settle(t)

	st.setOpen(false)
	pub.publish("oo/other", "first", 1, false, 1) // the publisher's loop has a commit outstanding
	st.waitFor(t, 1)
	pub.publish("oo/b", "m1", 2, false, 2) // its entry waits in that loop's open batch
	sub.expectNothing(e2eSilent)           // held: its mark waits for the entry's put
	pub.kill()

	pub = dialOnLoop(t, s, "oo-pub", true, owner)
	require.Equal(t, owner, sessionOwnerLoop(s, "oo-pub"))
	pub.publish("oo/b", "m2", 2, false, 1) // routed on the owner: its mark is written at once
	st.waitFor(t, 2)
	st.setOpen(true)
	pub.expectAck(codec.PUBREC, 1)
	require.Equal(t, []string{"m1", "m2"}, sub.receiveQoS2(2), "one publisher's QoS 2 messages on one topic [MQTT-4.6.0-6]")
}
