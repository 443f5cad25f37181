package engine

import (
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
