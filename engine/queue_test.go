package engine

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestQueueTakeExpired: takeExpired removes exactly the expired messages,
// keeps the others in order, and walks the queue only once one may have
// expired (soonest, which pops may leave early but never late).
func TestQueueTakeExpired(t *testing.T) {
	var q msgQueue
	msg := func(expiry int64, payload string) outMsg {
		return outMsg{msg: &message{expiry: expiry, payload: []byte(payload)}}
	}
	for _, m := range []outMsg{msg(0, "a"), msg(30, "b"), msg(10, "c"), msg(0, "d"), msg(20, "e")} {
		require.True(t, q.push(m, math.MaxInt, math.MaxInt))
	}
	require.Equal(t, int64(10), q.soonest)
	require.Empty(t, q.takeExpired(9, nil), "nothing expired yet")
	got := q.takeExpired(20, nil)
	require.Len(t, got, 2)
	require.Equal(t, "c", string(got[0].msg.payload))
	require.Equal(t, "e", string(got[1].msg.payload))
	require.Equal(t, int64(30), q.soonest, "set right by the walk")
	var order string
	for q.len() > 0 {
		order += string(q.pop().msg.payload)
	}
	require.Equal(t, "abd", order)
	require.Zero(t, q.soonest, "an empty queue expects nothing")
	require.Equal(t, 0, q.bytes)
}
