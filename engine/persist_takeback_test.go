package engine

import (
	"context"
	"sync"
	"testing"
	"time"

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
// store. One whose put was committed already is put and deleted. The same
// across loops: the subscriber's loop hands the acknowledgement to the
// routing loop. Either way the store ends with no entry and the publisher
// gets its PUBACKs once the batches are durable.
func TestE2EPersistAckedBeforeCommitNotWritten(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sameLoop bool
	}{
		{"same loop", true},
		{"across loops", false},
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
			require.Eventually(t, func() bool { return s.Stats().StoreEntriesTakenBack == 1 },
				e2eWait, time.Millisecond, "m2's put taken back")

			st.setOpen(true)
			pub.expectAck(codec.PUBACK, 1)
			pub.expectAck(codec.PUBACK, 2)
			st.settle(t)
			require.Empty(t, entryStates(st, "tb-sub"))
			puts, deletes := st.counts()
			n := func(m map[uint64]int) (sum int) {
				for _, v := range m {
					sum += v
				}
				return sum
			}
			require.Equal(t, 1, n(puts), "entry puts: %v", puts)
			require.Equal(t, 1, n(deletes), "entry deletes: %v", deletes)
			require.Equal(t, puts, deletes, "each written put is deleted")
			require.Equal(t, uint64(1), s.Stats().StoreEntriesTakenBack)
		})
	}
}

// Acknowledgements the broker has read are not forgotten by a graceful
// stop, even when the subscriber's loop handed them to the routing loop
// and the stop came first: after a restart the persistent subscriber is
// owed nothing. Rounds, because the hand-off races the stop.
func TestE2EPersistAcksHandedOffSurviveStop(t *testing.T) {
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

// Stop writes the deletes of acknowledgements handed to a loop that did
// not run them before it ended: those left in its inbox and those posted
// after it ended (loop.lateForgets).
func TestStopWritesHandedOffForgets(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	var b store.Batch
	b.PutSession(&store.Session{ClientID: "lf", Expiry: 3600})
	for seq := uint64(5); seq <= 7; seq++ {
		b.PutEntry("lf", &store.Entry{Seq: seq, State: store.EntryQueued, QoS: 1,
			Msg: store.Message{Topic: []byte("t"), Payload: []byte("p"), QoS: 1}})
	}
	commitDirect(t, st, &b)
	s := startServer(t, Options{Store: st})
	c := dialRaw(t, s)
	c.mustConnect(connectPacket("other", true, 0)) // the loops exist once a client came
	c.disconnect()
	l := s.loopsSnapshot()[0]
	ghost := &session{id: "lf"}
	l.inboxMu.Lock()
	l.inbox = append(l.inbox, task{kind: taskForget, sess: ghost, seq: 5})
	l.lateForgets = append(l.lateForgets, task{kind: taskForget, sess: ghost, seq: 6})
	l.inboxMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	commitDirect(t, st, new(store.Batch)) // applied after what Stop committed
	require.Equal(t, map[uint64]byte{7: store.EntryQueued}, entryStates(st, "lf"))
}
