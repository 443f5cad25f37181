package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// startWithMemoryStore starts a server on a new store.Memory, closed when
// the test ends.
func startWithMemoryStore(t *testing.T) (*Server, *store.Memory) {
	t.Helper()
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	return startServer(t, Options{Store: st}), st
}

// restart stops s and starts a new server on the same store, as a broker
// restarted on its data directory.
func restart(t *testing.T, s *Server, st store.Store) *Server {
	t.Helper()
	return restartWith(t, s, st, Options{})
}

// restartWith is restart with the new server's options (Store set to st).
func restartWith(t *testing.T, s *Server, st store.Store, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	// What Stop committed is applied before the new server reads the
	// store (a store applies commits in order), as Close would ensure.
	commitDirect(t, st, new(store.Batch))
	opts.Store = st
	return startServer(t, opts)
}

// restartOnDisk stops s gracefully, closes its on-disk store st (as a
// real shutdown does: Close rewrites what it must), opens the store in dir
// again and starts a server on it with opts (Store set), which the test
// closes at its end.
func restartOnDisk(t *testing.T, s *Server, st *store.Pebble, dir string, opts Options) (*Server, *store.Pebble) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	require.NoError(t, st.Close(), "closing the store")
	st, err := store.OpenPebble(dir, store.PebbleOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	opts.Store = st
	return startServer(t, opts), st
}

// A persistent QoS 1 subscriber that is offline while messages are
// published gets all of them after the broker restarted, in order; the
// store holds nothing once they are acknowledged.
func TestE2EPersistQueueSurvivesRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)

	sub := connectRaw(t, s, connectPacket("sub", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "p/#", 1))
	sub.disconnect()

	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	const n = 200
	for i := 1; i <= n; i++ {
		pub.publish(fmt.Sprintf("p/%d", i%3), fmt.Sprintf("m%d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	pub.disconnect()

	s = restart(t, s, st)
	sub = dialRaw(t, s)
	ca := sub.mustConnect(connectPacket("sub", false, 0))
	require.True(t, ca.SessionPresent, "the session came back")
	for i := 1; i <= n; i++ {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.Equal(t, byte(1), p.QoS)
		sub.ack(codec.PUBACK, p.PacketID)
	}
	sub.expectNothing(e2eSilent)
	require.Eventually(t, func() bool {
		n := 0
		_ = st.Entries("sub", 0, 0, func(*store.Entry) bool { n++; return true })
		return n == 0
	}, e2eWait, 10*time.Millisecond, "acknowledged entries are deleted")

	// The subscription itself survived too: a new message reaches it.
	pub = connectRaw(t, s, connectPacket("pub", true, 0))
	pub.publish("p/x", "after", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	p := sub.expectPublish()
	require.Equal(t, "after", string(p.Payload))
}

// Retained messages survive a restart; clearing one survives too.
func TestE2EPersistRetained(t *testing.T) {
	s, st := startWithMemoryStore(t)
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	pub.publish("r/a", "A", 1, true, 1)
	pub.expectAck(codec.PUBACK, 1)
	pub.publish("r/b", "B", 0, true, 0)
	pub.publish("r/c", "C", 1, true, 2)
	pub.expectAck(codec.PUBACK, 2)
	pub.publish("r/c", "", 1, true, 3) // clears r/c
	pub.expectAck(codec.PUBACK, 3)
	pub.disconnect()

	s = restart(t, s, st)
	sub := connectRaw(t, s, connectPacket("sub", true, 0))
	sub.subscribe(1, "r/#", 1)
	got := map[string]string{}
	for range 2 {
		p := sub.expectPublish()
		require.True(t, p.Retain)
		got[string(p.Topic)] = string(p.Payload)
		if p.QoS > 0 {
			sub.ack(codec.PUBACK, p.PacketID)
		}
	}
	require.Equal(t, map[string]string{"r/a": "A", "r/b": "B"}, got)
	sub.expectNothing(e2eSilent)
}

// A clean session is never written; a persistent one that ends (Clean
// Start) leaves nothing behind.
func TestE2EPersistCleanSessionsNotStored(t *testing.T) {
	s, st := startWithMemoryStore(t)
	c := connectRaw(t, s, connectPacket("clean", true, 0))
	c.subscribe(1, "a", 1)
	c.disconnect()

	p := connectRaw(t, s, connectPacket("persist", false, 0))
	p.subscribe(1, "a", 1)
	p.disconnect()
	countSessions := func() int {
		n := 0
		_ = st.Sessions(func(*store.Session) error { n++; return nil })
		return n
	}
	require.Eventually(t, func() bool { return countSessions() == 1 }, e2eWait, 10*time.Millisecond)

	p = dialRaw(t, s)
	p.mustConnect(connectPacket("persist", true, 0)) // discards the old session
	p.disconnect()
	require.Eventually(t, func() bool { return countSessions() == 0 }, e2eWait, 10*time.Millisecond)
}

// QoS 2 exactly once across a restart: a message the subscriber received
// (PUBREC sent) gets PUBREL after the restart, not the message again; one
// it had not received is sent with its packet identifier and DUP.
func TestE2EPersistQoS2AcrossRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	sub := connectRaw(t, s, connectPacket("sub2", false, 0))
	sub.subscribe(1, "q2", 2)

	pub := connectRaw(t, s, connectPacket("pub2", false, 0))
	pub.publish("q2", "one", 2, false, 7)
	pub.expectAck(codec.PUBREC, 7)
	pub.publish("q2", "two", 2, false, 8)
	pub.expectAck(codec.PUBREC, 8)

	first := sub.expectPublish()
	require.Equal(t, "one", string(first.Payload))
	second := sub.expectPublish()
	require.Equal(t, "two", string(second.Payload))
	sub.ack(codec.PUBREC, first.PacketID)
	sub.expectAck(codec.PUBREL, first.PacketID)
	// The broker stops with "one" awaiting PUBCOMP and "two" awaiting
	// PUBREC, and the publisher's 7 and 8 awaiting PUBREL.
	time.Sleep(100 * time.Millisecond) // let the PUBREC's write reach the store
	s = restart(t, s, st)

	sub = connectRaw(t, s, connectPacket("sub2", false, 0))
	seen := map[codec.Type]bool{}
	for range 2 {
		pk, err := sub.next(e2eWait)
		require.NoError(t, err)
		switch p := pk.(type) {
		case *codec.Ack:
			require.Equal(t, codec.PUBREL, p.PacketType)
			require.Equal(t, first.PacketID, p.PacketID)
			seen[codec.PUBREL] = true
		case *codec.Publish:
			require.Equal(t, "two", string(p.Payload))
			require.Equal(t, second.PacketID, p.PacketID, "same packet identifier")
			require.True(t, p.Dup)
			seen[codec.PUBLISH] = true
		default:
			t.Fatalf("unexpected %T", pk)
		}
	}
	require.Len(t, seen, 2)

	// The publisher's re-sent PUBLISH 8 (DUP) is not delivered again.
	pub = connectRaw(t, s, connectPacket("pub2", false, 0))
	pub.send(&codec.Publish{Topic: []byte("q2"), Payload: []byte("two"), QoS: 2, PacketID: 8, Dup: true})
	pub.expectAck(codec.PUBREC, 8)
	pub.ack(codec.PUBREL, 8)
	pub.expectAck(codec.PUBCOMP, 8)
	sub.expectNothing(e2eSilent)
}

// queueOffline gives client id a persistent QoS 1 subscription to topic,
// disconnects it, and publishes n messages to it (publishFromTwo).
func queueOffline(t *testing.T, s *Server, id, topic string, n int) {
	t.Helper()
	sub := connectRaw(t, s, connectPacket(id, false, 0))
	sub.subscribe(1, topic, 1)
	sub.disconnect()
	publishFromTwo(t, s, topic, n)
}

// publishFromTwo publishes n QoS 1 messages alternately from two
// publishers (on different loops with two loops) and waits for every
// PUBACK. Payloads are "<publisher>-<i>".
func publishFromTwo(t *testing.T, s *Server, topic string, n int) {
	t.Helper()
	a, b := dialRaw(t, s), dialRaw(t, s)
	a.mustConnect(connectPacket("pa", true, 0))
	b.mustConnect(connectPacket("pb", true, 0))
	for i := 1; i <= n; i++ {
		c, name := a, "pa"
		if i%2 == 0 {
			c, name = b, "pb"
		}
		c.publish(topic, fmt.Sprintf("%s-%d", name, i), 1, false, uint16(i))
		c.expectAck(codec.PUBACK, uint16(i))
	}
	a.disconnect()
	b.disconnect()
}

// receiveAll reads n QoS 1 messages, acknowledging each, and checks that
// none repeats and each publisher's arrive in order.
func receiveAll(t *testing.T, c *rawClient, n int) {
	t.Helper()
	seen := map[string]bool{}
	lastOf := map[string]int{}
	for range n {
		p := c.expectPublish()
		c.ack(codec.PUBACK, p.PacketID)
		var name string
		var i int
		_, err := fmt.Sscanf(string(p.Payload), "p%1s-%d", &name, &i)
		require.NoError(t, err, "payload %q", p.Payload)
		require.False(t, seen[string(p.Payload)], "duplicate %s", p.Payload)
		seen[string(p.Payload)] = true
		require.Greater(t, i, lastOf[name], "order of publisher %s", name)
		lastOf[name] = i
	}
	c.expectNothing(e2eSilent)
}

// An offline persistent session keeps MaxQueuedInMemory messages in
// memory and the rest on disk; its client gets all of them, in order per
// publisher, none twice.
func TestE2EPersistSpilledQueue(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 10})
	const n = 600
	queueOffline(t, s, "spill", "sp", n)
	require.Equal(t, 10, queuedInMemory(t, s, "spill"), "the rest is on disk only")

	sub := connectRaw(t, s, connectPacket("spill", false, 0))
	receiveAll(t, sub, n)
}

// The same across a restart: the recovered session reads its queue from
// disk a chunk at a time.
func TestE2EPersistSpilledQueueAcrossRestart(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 10})
	const n = 600
	queueOffline(t, s, "spill", "sp", n)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	s = startServer(t, Options{Store: st, MaxQueuedInMemory: 10})
	require.Equal(t, 0, queuedInMemory(t, s, "spill"), "queues stay on disk after a restart")
	sub := connectRaw(t, s, connectPacket("spill", false, 0))
	receiveAll(t, sub, n)
}

// MaxQueued bounds memory and disk together; past it new messages are
// dropped and counted.
func TestE2EPersistSpillBound(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 10, MaxQueued: 100})
	queueOffline(t, s, "bound", "b", 150)
	require.Equal(t, uint64(50), s.Stats().DroppedQueueFull)
	sub := connectRaw(t, s, connectPacket("bound", false, 0))
	receiveAll(t, sub, 100)
}

// queuedInMemory returns the length of id's in-memory queue, read on its
// owner loop.
func queuedInMemory(t *testing.T, s *Server, id string) int {
	t.Helper()
	var sess *session
	s.reg.swap(id, func(o *session) *session { sess = o; return o })
	require.NotNil(t, sess)
	dialRaw(t, s).mustConnect(connectPacket("", true, 0)) // a loop exists
	got := make(chan int, 1)
	var l *loop
	for _, lx := range s.loopsSnapshot() {
		l = lx
	}
	require.NotNil(t, l)
	l.post(task{kind: taskFunc, fn: func(l *loop) {
		s.onOwner(l, sess, func(_ *loop, s *session) {
			if s.q == nil {
				got <- 0
				return
			}
			got <- s.q.queue.len()
		})
	}})
	select {
	case n := <-got:
		return n
	case <-time.After(e2eWait):
		t.Fatal("owner loop did not answer")
		return 0
	}
}

// fullStore reports a size past any bound.
type fullStore struct{ *store.Memory }

func (f fullStore) Stats() store.Stats {
	st := f.Memory.Stats()
	st.DiskBytes = 1 << 40
	return st
}

// Past MaxStoreBytes new messages to persistent sessions are not written
// (counted) but still delivered from memory.
func TestE2EPersistDiskBound(t *testing.T) {
	st := fullStore{store.NewMemory()}
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxStoreBytes: 1 << 30})
	sub := connectRaw(t, s, connectPacket("full", false, 0))
	sub.subscribe(1, "f", 1)
	require.Eventually(t, func() bool { return s.ps.full.Load() }, 3*time.Second, 10*time.Millisecond, "the ticker sees the size")
	pub := connectRaw(t, s, connectPacket("", true, 0))
	pub.publish("f", "x", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	p := sub.expectPublish()
	require.Equal(t, "x", string(p.Payload))
	require.Equal(t, uint64(1), s.Stats().NotStoredDiskFull)
	n := 0
	_ = st.Entries("full", 0, 0, func(*store.Entry) bool { n++; return true })
	require.Zero(t, n)
}

// A retained QoS 1 PUBLISH that reaches a persistent session is numbered
// for the store (persistDelivery writes m.seq) after route put it in the
// retained index, while SUBSCRIBEs on another loop send it from there: they
// send a copy and never read the number (run with -race).
func TestE2EPersistRetainedNumberedWhileSubscribing(t *testing.T) {
	s, _ := startWithMemoryStore(t)
	ps := connectOnLoop(t, s, connectPacket("ps", false, 0), 0)
	require.Equal(t, byte(1), ps.subscribe(1, "r/#", 1))
	pub := connectOnLoop(t, s, connectPacket("pub", true, 0), 0)
	sub := connectOnLoop(t, s, connectPacket("sub", true, 0), 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= 200; i++ {
			pub.publish("r/x", fmt.Sprintf("m%d", i), 1, true, uint16(i))
		}
	}()
	for i := 1; i <= 200; i++ {
		sub.send(&codec.Subscribe{PacketID: uint16(i), Subscriptions: []codec.Subscription{{Filter: []byte("r/x"), QoS: 0}}})
	}
	<-done
	time.Sleep(200 * time.Millisecond)
}

// The overflow policy holds for an offline persistent session whose queue
// spilled to disk (with the defaults, every one past 16 messages): with
// DropOldest the oldest go, first the in-memory part, then entries on
// disk (dropOldestQueued). Drop-newest was applied instead: 1,100 messages
// to an offline `mosquitto_sub -c` gave m1..m1000 on return.
func TestE2EPersistSpilledQueueDropsOldest(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 10, MaxQueued: 50, QueueOverflow: DropOldest})
	sub := connectRaw(t, s, connectPacket("spill-ovf", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "spill/ovf", 1))
	sub.disconnect()
	waitClosed(t, s, 1) // offline before the first message: none goes in flight
	pub := connectRaw(t, s, connectPacket("spill-ovf-pub", true, 0))
	for i := 1; i <= 100; i++ {
		pub.publish("spill/ovf", fmt.Sprintf("m%d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	sub = connectRaw(t, s, connectPacket("spill-ovf", false, 0))
	var got []string
	for range 50 {
		p := sub.expectPublish()
		sub.ack(codec.PUBACK, p.PacketID)
		got = append(got, string(p.Payload))
	}
	sub.expectNothing(e2eSilent)
	require.Equal(t, "m100", got[len(got)-1], "the newest message must be kept with QueueOverflow oldest; got %v", got)
	require.Equal(t, "m51", got[0], "the oldest messages are the ones dropped; got %v", got)
}

// MaxQueuedBytes bounds the part of an offline persistent session's queue
// that spilled to disk too (spillState.bytes). Only messages were counted:
// 16 small messages and 60 of 512 KiB to an offline subscriber were all
// kept, 31 MB past the 16 MiB default.
func TestE2EPersistSpilledQueueBytesBound(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 4, MaxQueued: 1000, MaxQueuedBytes: 1000})
	sub := connectRaw(t, s, connectPacket("spill-qb", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "spill/qb", 1))
	sub.disconnect()
	waitClosed(t, s, 1) // offline before the first message: none goes in flight
	pub := connectRaw(t, s, connectPacket("spill-qb-pub", true, 0))
	for i := 1; i <= 30; i++ {
		pub.publish("spill/qb", fmt.Sprintf("%-100d", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	sub = connectRaw(t, s, connectPacket("spill-qb", false, 0))
	n, bytes := 0, 0
	for {
		p, err := sub.next(e2eSilent)
		if err != nil {
			break
		}
		pp := p.(*codec.Publish)
		sub.ack(codec.PUBACK, pp.PacketID)
		n++
		bytes += len(pp.Payload)
	}
	require.LessOrEqual(t, bytes, 1000, "an offline persistent session held %d messages, %d payload bytes, past MaxQueuedBytes 1000", n, bytes)
}

// The messages an offline persistent session has on disk count towards
// MaxQueued and MaxQueuedBytes after a restart (recovery counts them):
// each restart let another MaxQueued in.
func TestE2EPersistQueueBoundAcrossRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	opts := Options{MaxQueued: 10}
	s = restartWith(t, s, st, opts)
	sub := connectRaw(t, s, connectPacket("spill-rq", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "spill/rq", 1))
	sub.disconnect()
	for round := range 2 {
		pub := connectRaw(t, s, connectPacket("spill-rq-pub", true, 0))
		for i := 1; i <= 10; i++ {
			pub.publish("spill/rq", fmt.Sprintf("r%d-%d", round, i), 1, false, uint16(i))
			pub.expectAck(codec.PUBACK, uint16(i))
		}
		pub.disconnect()
		s = restartWith(t, s, st, opts)
	}
	sub = connectRaw(t, s, connectPacket("spill-rq", false, 0))
	var got []string
	for {
		p, err := sub.next(e2eSilent)
		if err != nil {
			break
		}
		pp := p.(*codec.Publish)
		sub.ack(codec.PUBACK, pp.PacketID)
		got = append(got, string(pp.Payload))
	}
	require.LessOrEqual(t, len(got), 10, "MaxQueued 10, got %d after a restart: %v", len(got), got)
}

// Stats.Queued (loopmq_messages_queued) counts an offline persistent
// session's messages on disk as well as in memory, and goes back to zero
// once they are read back and delivered. It counted the in-memory part
// only: 16 while 1,000 were queued.
func TestE2EPersistQueuedGaugeCountsSpilled(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st, MaxQueuedInMemory: 4, Loops: 1})
	sub := connectRaw(t, s, connectPacket("gauge", false, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "gauge/t", 1))
	sub.disconnect()
	waitClosed(t, s, 1)
	pub := connectRaw(t, s, connectPacket("gauge-pub", true, 0))
	for i := 1; i <= 30; i++ {
		pub.publish("gauge/t", fmt.Sprint("m", i), 1, false, uint16(i))
		pub.expectAck(codec.PUBACK, uint16(i))
	}
	require.Eventually(t, func() bool { return s.Stats().Queued == 30 }, e2eWait, 20*time.Millisecond,
		"queued %d, want 30 (4 in memory, 26 on disk)", s.Stats().Queued)
	sub = connectRaw(t, s, connectPacket("gauge", false, 0))
	for range 30 {
		p := sub.expectPublish()
		sub.ack(codec.PUBACK, p.PacketID)
	}
	require.Eventually(t, func() bool { return s.Stats().Queued == 0 && s.Stats().Inflight == 0 }, e2eWait, 20*time.Millisecond,
		"queued %d, in flight %d after everything was delivered", s.Stats().Queued, s.Stats().Inflight)
}

// TestE2EPersistHeldPublishWaitsForNewReceiveMaximum: QoS 2 PUBLISHes to
// a persistent session wait, before they are written, for their packet
// identifiers to be durable. A client that comes back on a new connection
// with a smaller Receive Maximum before that must get them within it: the
// broker sent all five of them to a client that allowed two at once, once
// the store caught up [MQTT-3.3.4-9]. Nothing is lost: all five arrive as
// the client completes the flows.
func TestE2EPersistHeldPublishWaitsForNewReceiveMaximum(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st, Loops: 1})
	sub := dialRaw(t, s)
	sub.ver = codec.V5
	cp := connect5("sub", false, 0, 60)
	cp.Properties.ReceiveMaximum = 8
	sub.mustConnect(cp)
	require.Equal(t, byte(2), sub.subscribe(1, "t", 2))
	st.settle(t)

	st.setOpen(false) // every write from here on waits
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	for i := range 5 {
		pub.publish("t", fmt.Sprint("m", i), 2, false, uint16(i+1))
	}
	st.waitFor(t, 1)
	sub.expectNothing(e2eSilent) // held until their identifiers are durable
	sub.kill()

	sub = dialRaw(t, s)
	sub.ver = codec.V5
	cp.Properties.ReceiveMaximum = 2
	require.True(t, sub.mustConnect(cp).SessionPresent)
	st.setOpen(true)

	// PUBRECs wait until two flows are open (or the last message came) and
	// the broker has been silent a while: a third PUBLISH would show in
	// that wait. A PUBREL of an earlier flow may arrive in it (it waits for
	// its release to be durable); it is answered, and completes that flow.
	out := map[uint16]bool{}
	var waiting []uint16
	var got []string
	for len(got) < 5 || len(out) > 0 {
		wait := e2eWait
		quiet := len(waiting) > 0 && (len(out) == 2 || len(got) == 5)
		if quiet {
			wait = e2eSilent
		}
		p, err := sub.next(wait)
		if ne := (net.Error)(nil); quiet && errors.As(err, &ne) && ne.Timeout() {
			for _, id := range waiting {
				sub.ack(codec.PUBREC, id)
			}
			waiting = waiting[:0]
			continue
		}
		require.NoError(t, err, "received %v", got)
		switch p := p.(type) {
		case *codec.Publish:
			require.False(t, out[p.PacketID], "packet identifier %d in use", p.PacketID)
			out[p.PacketID] = true
			require.LessOrEqual(t, len(out), 2, "QoS 2 flows open towards a client with Receive Maximum 2 [MQTT-3.3.4-9]")
			got = append(got, string(p.Payload))
			waiting = append(waiting, p.PacketID)
		case *codec.Ack:
			require.Equal(t, codec.PUBREL, p.PacketType)
			delete(out, p.PacketID)
			sub.ack(codec.PUBCOMP, p.PacketID)
		}
	}
	require.Equal(t, []string{"m0", "m1", "m2", "m3", "m4"}, got)
}

// TestE2EPersistResumedHeldPublishStaysAhead: QoS 2 PUBLISHes held for
// the store when their session is resumed are pending on the new
// connection until their packet identifiers are durable. A message
// published after the resume, with room in the window, used to take a
// free slot and overtake the held ones still pending (m0, m2, m1): a topic
// out of order [MQTT-4.6.0-6], as the churn audit saw (84 before 83). Now
// nothing newer goes out while a slot is pending (8507c9a).
func TestE2EPersistResumedHeldPublishStaysAhead(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st, Loops: 1})
	sub := dialRaw(t, s)
	sub.ver = codec.V5
	cp := connect5("sub", false, 0, 60)
	sub.mustConnect(cp)
	require.Equal(t, byte(2), sub.subscribe(1, "t", 2))
	st.settle(t)

	st.setOpen(false)
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	pub.publish("t", "m0", 2, false, 1)
	pub.publish("t", "m1", 2, false, 2)
	st.waitFor(t, 1)
	sub.expectNothing(e2eSilent) // held until their identifiers are durable
	sub.kill()

	sub = dialRaw(t, s)
	sub.ver = codec.V5
	require.True(t, sub.mustConnect(cp).SessionPresent)
	pub.publish("t", "m2", 2, false, 3)
	pub.send(&codec.Pingreq{})
	pub.expect(codec.PINGRESP) // m2 was routed (one loop, in order)
	st.setOpen(true)
	require.Equal(t, []string{"m0", "m1", "m2"}, sub.receiveQoS2(3), "order of one publisher's QoS 2 messages on one topic [MQTT-4.6.0-6]")
}

// TestE2EPersistResumedWithExpiryZeroLeavesNoEntry: a persistent session
// whose QoS 2 PUBLISH waits for its packet identifier to be durable is
// resumed by a connection with a Session Expiry Interval of 0, which ends
// its life in the store at once. The waiting PUBLISH used to be marked
// again for the new connection after that, writing the entry back: it
// outlived the session, was read back (with no message: an empty PUBLISH)
// by the next persistent session of the client id, and came back after
// every restart. Now the message is sent at once and nothing of the
// session stays in the store.
func TestE2EPersistResumedWithExpiryZeroLeavesNoEntry(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st, Loops: 1})
	sub := dialRaw(t, s)
	sub.ver = codec.V5
	sub.mustConnect(connect5("sub", false, 0, 60))
	require.Equal(t, byte(2), sub.subscribe(1, "t", 2))
	st.settle(t)

	st.setOpen(false)
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	pub.publish("t", "m", 2, false, 1)
	st.waitFor(t, 1)
	sub.expectNothing(e2eSilent) // held until its packet identifier is durable
	sub.kill()

	sub = dialRaw(t, s)
	sub.ver = codec.V5
	require.True(t, sub.mustConnect(connect5("sub", false, 0, 0)).SessionPresent)
	st.setOpen(true)
	p := sub.expectPublish()
	require.Equal(t, "m", string(p.Payload))
	sub.ack(codec.PUBREC, p.PacketID)
	sub.expectAck(codec.PUBREL, p.PacketID)
	sub.ack(codec.PUBCOMP, p.PacketID)
	sub.disconnect()
	require.Eventually(t, func() bool { return !hasSession(s, "sub") }, e2eWait, time.Millisecond)
	st.settle(t)
	require.Empty(t, entryStates(st, "sub"), "entries of an ended session left in the store")
}

// TestE2EPersistSharedAndOwnSubscriptionKeepBothDeliveries: a persistent
// session subscribed to a topic both through a shared group and on its own
// gets a message twice, and owes each delivery separately. Both used to be
// stored under one key (the session and the message's number): the
// acknowledgement of one deleted the other's entry, so after a restart the
// unacknowledged one was lost, and two entries of one number in one group
// record made the record undecodable (closing the store failed with "bad
// group entry seq: not ascending"). Now the second delivery is a copy
// with a number of its own.
func TestE2EPersistSharedAndOwnSubscriptionKeepBothDeliveries(t *testing.T) {
	for _, ack := range []int{-1, 0, 1} { // which delivery is acknowledged before the restart, -1: none
		t.Run(fmt.Sprint("ack", ack), func(t *testing.T) {
			dir := t.TempDir()
			st, err := store.OpenPebble(dir, store.PebbleOptions{})
			require.NoError(t, err)
			s := startServer(t, Options{Store: st, Loops: 1})
			sub := connectRaw(t, s, connectPacket("sub", false, 0))
			require.Equal(t, byte(1), sub.subscribe(1, "$share/g/t", 1))
			require.Equal(t, byte(1), sub.subscribe(2, "t", 1))
			pub := connectRaw(t, s, connectPacket("pub", true, 0))
			pub.publish("t", "m", 1, false, 1)
			pub.expectAck(codec.PUBACK, 1)
			got := []*codec.Publish{sub.expectPublish(), sub.expectPublish()}
			if ack >= 0 {
				sub.ack(codec.PUBACK, got[ack].PacketID)
			}
			sub.disconnect()
			require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, time.Millisecond)
			s, _ = restartOnDisk(t, s, st, dir, Options{Loops: 1})
			sub = dialRaw(t, s)
			require.True(t, sub.mustConnect(connectPacket("sub", false, 0)).SessionPresent)
			owed := 2
			if ack >= 0 {
				owed = 1
			}
			for range owed {
				p := sub.expectPublish()
				require.Equal(t, "m", string(p.Payload))
				require.True(t, p.Dup, "sent before the restart [MQTT-4.4.0-1]")
				sub.ack(codec.PUBACK, p.PacketID)
			}
			sub.expectNothing(e2eSilent)
		})
	}
}
