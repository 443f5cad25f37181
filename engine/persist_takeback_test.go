package engine

import (
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// countingGate is a gateStore that counts the entry puts and deletes of
// every batch it is handed, by sequence number.
type countingGate struct {
	*gateStore
	mu            sync.Mutex
	puts, deletes map[uint64]int
}

func newCountingGate() *countingGate {
	return &countingGate{gateStore: newGateStore(), puts: map[uint64]int{}, deletes: map[uint64]int{}}
}

// Commit implements store.Store.
func (g *countingGate) Commit(b *store.Batch, done func(error)) {
	g.mu.Lock()
	for _, op := range b.Ops() {
		switch op.Kind {
		case store.OpPutEntry:
			g.puts[op.Seq]++
		case store.OpDeleteEntry:
			g.deletes[op.Seq]++
		}
	}
	g.mu.Unlock()
	g.gateStore.Commit(b, done)
}

func (g *countingGate) counts() (puts, deletes map[uint64]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return clone(g.puts), clone(g.deletes)
}

func clone(m map[uint64]int) map[uint64]int {
	c := make(map[uint64]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// A QoS 1 delivery to a persistent session acknowledged while its entry's
// put still waits in the routing loop's open batch (the loop has a commit
// outstanding) is taken back: neither the put nor a delete reaches the
// store. One whose put was committed already is put and deleted. Across
// loops the subscriber's loop hands the acknowledgement to the routing
// loop, which takes the put back all the same, and deletes the entry
// itself once its put is durable (the watermark), as before: that delete
// finds nothing for the put taken back. Either way the store ends with no
// entry.
func TestE2EPersistAckedBeforeCommitNotWritten(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sameLoop      bool
		puts, deletes int
	}{
		{"same loop", true, 1, 1},
		{"across loops", false, 1, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newCountingGate()
			t.Cleanup(func() { _ = st.Close() })
			st.setOpen(true)
			s := startServer(t, Options{Store: st})
			sub := dialOnLoop(t, s, "tb-sub", false, 0)
			require.Equal(t, 1, int(sub.subscribe(1, "tb", 1)))
			pubLoop := 0
			if !tc.sameLoop {
				pubLoop = 1
			}
			pub := dialOnLoop(t, s, "tb-pub", true, pubLoop)
			require.Equal(t, pubLoop, sessionOwnerLoop(s, "tb-pub"))
			require.Equal(t, 0, sessionOwnerLoop(s, "tb-sub"))
			st.settle(t)

			st.setOpen(false)
			pub.publish("tb", "m1", 1, false, 1)
			p1 := sub.expectPublish() // sent before it is durable
			st.waitFor(t, 1)          // m1's batch is with the store
			pub.publish("tb", "m2", 1, false, 2)
			p2 := sub.expectPublish()
			sub.ack(codec.PUBACK, p2.PacketID)
			sub.ack(codec.PUBACK, p1.PacketID)
			sub.send(&codec.Pingreq{})
			sub.expect(codec.PINGRESP) // the broker has read both acks
			// Across loops the routing loop takes m2's put back when the
			// subscriber's loop hands it the acknowledgement.
			require.Eventually(t, func() bool { return s.Stats().StoreEntriesTakenBack == 1 },
				e2eWait, time.Millisecond, "m2's put taken back before its batch is committed")
			// Both were acknowledged by their only subscriber: their
			// PUBACKs go without waiting for the store (earlyack.go).
			pub.expectAck(codec.PUBACK, 1)
			pub.expectAck(codec.PUBACK, 2)
			require.Equal(t, uint64(2), s.Stats().StoreAcksEarly)

			st.setOpen(true)
			// Across loops the deletes wait for the watermark and follow
			// in a later commit of the subscriber's loop.
			n := func(m map[uint64]int) (sum int) {
				for _, v := range m {
					sum += v
				}
				return sum
			}
			require.Eventually(t, func() bool {
				st.settle(t)
				_, deletes := st.counts()
				return len(entryStates(st, "tb-sub")) == 0 && n(deletes) >= tc.deletes
			}, e2eWait, 5*time.Millisecond, "entries deleted")
			puts, deletes := st.counts()
			require.Equal(t, tc.puts, n(puts), "entry puts: %v", puts)
			require.Equal(t, tc.deletes, n(deletes), "entry deletes: %v", deletes)
			for seq := range puts {
				require.Equal(t, 1, deletes[seq], "each written put is deleted: %v %v", puts, deletes)
			}
			require.Equal(t, uint64(1), s.Stats().StoreEntriesTakenBack)
		})
	}
}

// Acknowledgements the broker has read are not forgotten by a graceful
// stop, whether their deletes went into a batch or waited for the
// watermark (subscriber and publisher on different loops): after a restart
// the persistent subscriber is owed nothing. Rounds, because the deletes
// race the stop.
func TestE2EPersistAcksSurviveStop(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st})
	for round := range 5 {
		sub := dialOnLoop(t, s, "hs-sub", false, 0)
		require.Equal(t, 1, int(sub.subscribe(1, "hs", 1)))
		pub := dialOnLoop(t, s, "hs-pub", true, 1)
		const n = 200
		for i := range n {
			pub.publish("hs", "m", 1, false, uint16(i+1))
		}
		for range n {
			p := sub.expectPublish()
			sub.ack(codec.PUBACK, p.PacketID)
		}
		sub.send(&codec.Pingreq{})
		sub.expect(codec.PINGRESP) // every ack read
		s = restart(t, s, st)
		require.Empty(t, entryStates(st, "hs-sub"), "round %d", round)
		sub = dialRaw(t, s)
		require.True(t, sub.mustConnect(connectPacket("hs-sub", false, 0)).SessionPresent)
		sub.expectNothing(e2eSilent)
		sub.disconnect()
	}
}

// A QoS 1 PUBLISH that every persistent session it reached has
// acknowledged has its PUBACK sent at once rather than after the fsync
// (earlyack.go): a crash can lose it for none of them. That holds when the
// acknowledgement comes from another loop, and when the message's batch
// was committed already. A PUBLISH that also wrote something else (a
// retained message) waits for its batch, and so does every later one of
// that publisher; so does one that reached an offline persistent session.
func TestE2EPersistEarlyAck(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	off := dialOnLoop(t, s, "ea-off", false, 1)
	require.Equal(t, 1, int(off.subscribe(1, "ea/off", 1)))
	off.disconnect()
	sub := dialOnLoop(t, s, "ea-sub", false, 0)
	require.Equal(t, 1, int(sub.subscribe(1, "ea/#", 1)))
	far := dialOnLoop(t, s, "ea-far", false, 1)
	require.Equal(t, 1, int(far.subscribe(1, "ea/both", 1)))
	pub := dialOnLoop(t, s, "ea-pub", true, 0)
	first := dialOnLoop(t, s, "ea-first", true, 0)
	third := dialOnLoop(t, s, "ea-third", true, 1)
	for id, want := range map[string]int{"ea-sub": 0, "ea-far": 1, "ea-pub": 0, "ea-first": 0, "ea-third": 1} {
		require.Equal(t, want, sessionOwnerLoop(s, id), id)
	}
	st.settle(t)

	st.setOpen(false)
	first.publish("ea/one", "m1", 1, false, 1)
	p1 := sub.expectPublish()
	st.waitFor(t, 1) // m1's batch is with the store: loop 0's next batch stays open

	pub.publish("ea/one", "m2", 1, false, 1)
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
	pub.expectAck(codec.PUBACK, 1) // no fsync yet

	pub.publish("ea/both", "m3", 1, false, 2)
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
	far.ack(codec.PUBACK, far.expectPublish().PacketID) // read on loop 1
	pub.expectAck(codec.PUBACK, 2)                      // no fsync yet either

	sub.ack(codec.PUBACK, p1.PacketID)
	first.expectAck(codec.PUBACK, 1) // its batch is still with the store

	pub.publish("ea/one", "m4", 1, true, 3) // retained: written whatever the subscriber does
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
	pub.publish("ea/one", "m5", 1, false, 4) // acknowledged, but its PUBACK follows m4's
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
	third.publish("ea/off", "m6", 1, false, 1) // ea-off is offline
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
	sub.send(&codec.Pingreq{})
	sub.expect(codec.PINGRESP) // the broker has read every acknowledgement
	pub.expectNothing(100 * time.Millisecond)
	third.expectNothing(10 * time.Millisecond)
	require.Equal(t, uint64(3), s.Stats().StoreAcksEarly)
	require.Equal(t, 2, st.waiting(), "m1's batch on loop 0 and m6's on loop 1 were committed")

	st.setOpen(true)
	pub.expectAck(codec.PUBACK, 3)
	pub.expectAck(codec.PUBACK, 4)
	third.expectAck(codec.PUBACK, 1)
	var retained []string
	require.NoError(t, st.Retained(func(m *store.Message) error {
		retained = append(retained, string(m.Topic))
		return nil
	}))
	require.Equal(t, []string{"ea/one"}, retained, "the retained message is stored")
	require.Eventually(t, func() bool {
		st.settle(t)
		return len(entryStates(st, "ea-sub")) == 0 && len(entryStates(st, "ea-far")) == 0 &&
			len(entryStates(st, "ea-off")) == 1
	}, e2eWait, 5*time.Millisecond, "acknowledged entries deleted, the offline one kept")
}

// While a commit is outstanding, acknowledgements going early let their
// publisher keep filling the open batch, which keeps what was taken back
// until it is committed. Past earlyMaxBytes copied, acknowledgements wait
// for the batch again, so the publisher stops at its window.
func TestE2EPersistEarlyAckBounded(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	sub := dialOnLoop(t, s, "eb-sub", false, 0)
	require.Equal(t, 1, int(sub.subscribe(1, "eb/#", 1)))
	pub := dialOnLoop(t, s, "eb-pub", true, 0)
	first := dialOnLoop(t, s, "eb-first", true, 0)
	st.settle(t)

	st.setOpen(false)
	first.publish("eb/x", "m1", 1, false, 1)
	sub.ack(codec.PUBACK, sub.expectPublish().PacketID) // m1's PUBACK goes early, its batch stays with the store
	st.waitFor(t, 1)
	first.expectAck(codec.PUBACK, 1)

	payload := strings.Repeat("p", 4096)
	const most = earlyMaxBytes/4096 + 1
	id := uint16(0)
	for {
		id++
		require.LessOrEqual(t, int(id), most+1, "acknowledgements went early past the bound")
		pub.publish("eb/x", payload, 1, false, id)
		sub.ack(codec.PUBACK, sub.expectPublish().PacketID)
		if p, err := pub.next(200 * time.Millisecond); err != nil {
			break // held: the open batch is past the bound
		} else {
			a, ok := p.(*codec.Ack)
			require.True(t, ok && a.PacketType == codec.PUBACK && a.PacketID == id, "got %+v", p)
		}
	}
	require.Greater(t, int(id), most/2, "acknowledgements went early until the bound")
	require.Equal(t, uint64(id), s.Stats().StoreAcksEarly, "m1's and all but the last")
	require.Equal(t, 1, st.waiting(), "only m1's batch was committed")

	st.setOpen(true)
	pub.expectAck(codec.PUBACK, id)
}

// Real clients: a Paho publisher's QoS 1 PUBLISH completes while the store
// holds every commit, once both Paho persistent subscribers have
// acknowledged it (Paho acknowledges after its handler returns); a
// retained one completes only when the store lets its batch through.
func TestE2EPersistEarlyAckPaho(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	var subs []chan pahoMsg
	for _, id := range []string{"eap-0", "eap-1"} {
		h, msgs := collect(4)
		c, _ := connectPaho(t, s, func(o *paho.ClientOptions) {
			o.SetClientID(id).SetCleanSession(false).SetDefaultPublishHandler(h)
		})
		tok := c.Subscribe("eap/t", 1, nil)
		require.True(t, tok.WaitTimeout(e2eWait))
		require.NoError(t, tok.Error())
		subs = append(subs, msgs)
	}
	pub, _ := connectPaho(t, s, nil)
	st.settle(t)

	st.setOpen(false)
	tok := pub.Publish("eap/t", 1, false, "early")
	for _, msgs := range subs {
		require.Equal(t, "early", recv(t, msgs, "early").payload)
	}
	require.True(t, tok.WaitTimeout(e2eWait), "PUBACK while the store holds the batch")
	require.NoError(t, tok.Error())
	require.Positive(t, st.waiting(), "its batch is still with the store")

	ret := pub.Publish("eap/t", 1, true, "retained")
	for _, msgs := range subs {
		require.Equal(t, "retained", recv(t, msgs, "retained").payload)
	}
	require.False(t, ret.WaitTimeout(200*time.Millisecond), "a retained message waits for its batch")
	st.setOpen(true)
	require.True(t, ret.WaitTimeout(e2eWait))
	require.NoError(t, ret.Error())
	require.Equal(t, uint64(1), s.Stats().StoreAcksEarly)
}
