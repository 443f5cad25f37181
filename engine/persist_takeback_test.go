package engine

import (
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
// store. One whose put was committed already is put and deleted. Across
// loops nothing is taken back: the subscriber's loop deletes the entry
// once its put is durable (the watermark), as before. Either way the store
// ends with no entry and the publisher gets its PUBACKs once the batches
// are durable.
func TestE2EPersistAckedBeforeCommitNotWritten(t *testing.T) {
	for _, tc := range []struct {
		name          string
		sameLoop      bool
		puts, deletes int
	}{
		{"same loop", true, 1, 1},
		{"across loops", false, 2, 2},
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

			st.setOpen(true)
			pub.expectAck(codec.PUBACK, 1)
			pub.expectAck(codec.PUBACK, 2)
			// Across loops the deletes wait for the watermark and follow
			// in a later commit of the subscriber's loop.
			require.Eventually(t, func() bool {
				st.settle(t)
				return len(entryStates(st, "tb-sub")) == 0
			}, e2eWait, 5*time.Millisecond, "entries deleted")
			puts, deletes := st.counts()
			n := func(m map[uint64]int) (sum int) {
				for _, v := range m {
					sum += v
				}
				return sum
			}
			require.Equal(t, tc.puts, n(puts), "entry puts: %v", puts)
			require.Equal(t, tc.deletes, n(deletes), "entry deletes: %v", deletes)
			require.Equal(t, puts, deletes, "each written put is deleted")
			require.Equal(t, uint64(2-tc.puts), s.Stats().StoreEntriesTakenBack)
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
