package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRetainedExpiryHeap: one entry per topic, moved when its message is
// replaced, gone when the new one has no expiry; popDue returns deadlines
// in order and only those due.
func TestRetainedExpiryHeap(t *testing.T) {
	var x retainedExpiry
	msg := func(at int64) *message { return &message{expiry: at} }
	want := map[string]int64{}
	for i := range 200 {
		topic := fmt.Sprint("t/", rand.IntN(50))
		switch rand.IntN(4) {
		case 0:
			x.set(topic, msg(0)) // replaced by one without expiry
			delete(want, topic)
		default:
			at := int64(1 + rand.IntN(1000))
			x.set(topic, msg(at))
			want[topic] = at
		}
		require.Equal(t, int64(len(want)), x.n.Load(), "step %d", i)
		require.Len(t, x.at, len(want))
	}
	_, ok := x.popDue(0)
	require.False(t, ok, "nothing due at 0")
	last := int64(0)
	for range want {
		d, ok := x.popDue(1 << 40)
		require.True(t, ok)
		require.GreaterOrEqual(t, d.at, last)
		require.Equal(t, want[d.topic], d.at)
		last = d.at
	}
	_, ok = x.popDue(1 << 40)
	require.False(t, ok)
	require.Zero(t, x.n.Load())
}
