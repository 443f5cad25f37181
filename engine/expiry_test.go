package engine

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestExpiryHeapKeepsOrderAndPositions drives a loop's expiry heap with
// random pushes, removals from anywhere (a session resumed or ended) and
// pops of the earliest deadline, and checks after every step that each
// session knows its place and that pops come out in deadline order.
func TestExpiryHeapKeepsOrderAndPositions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h expiryHeap
	in := map[*session]int64{}
	check := func(step int) {
		if len(h) != len(in) {
			t.Fatalf("step %d: %d entries, want %d", step, len(h), len(in))
		}
		for i, e := range h {
			if e.s.expIdx != int32(i+1) || in[e.s] != e.at {
				t.Fatalf("step %d: entry %d has expIdx %d, deadline %d (want %d)", step, i, e.s.expIdx, e.at, in[e.s])
			}
			if i > 0 && h[(i-1)/2].at > e.at {
				t.Fatalf("step %d: heap order broken at %d", step, i)
			}
		}
	}
	for step := range 5000 {
		switch op := rng.IntN(10); {
		case op < 5 || len(h) == 0:
			s := &session{}
			at := rng.Int64N(1000)
			h.push(s, at)
			in[s] = at
		case op < 8:
			i := rng.IntN(len(h))
			s := h[i].s
			h.remove(int(s.expIdx - 1))
			require.Zero(t, s.expIdx)
			delete(in, s)
		default:
			s, at := h[0].s, h[0].at
			for _, e := range h {
				require.LessOrEqual(t, at, e.at, "step %d: the root is not the earliest", step)
			}
			h.remove(0)
			delete(in, s)
		}
		check(step)
	}
	last := int64(-1)
	for len(h) > 0 { // draining pops in order
		at := h[0].at
		require.GreaterOrEqual(t, at, last)
		last = at
		h.remove(0)
	}
}

// TestOptionsCapSessionExpiryAndKeepAlive: MaxSessionExpiry rounds up to
// whole seconds and never turns an interval into 0 or into "never";
// MaxKeepAlive rounds down to whole seconds, at least 1, at most 65535.
// Out-of-range durations do not wrap.
func TestOptionsCapSessionExpiryAndKeepAlive(t *testing.T) {
	f := func(limit time.Duration, ask, want uint32) {
		o := Options{MaxSessionExpiry: limit}
		require.Equal(t, want, o.capExpiry(ask), "cap %v, asked for %d", limit, ask)
	}
	f(0, expiryNever, expiryNever)
	f(-time.Hour, 7, 7)
	f(time.Hour, 0, 0)
	f(time.Millisecond, 5, 1)
	f(1500*time.Millisecond, expiryNever, 2)
	f(time.Hour, 60, 60)
	f(math.MaxInt64, expiryNever, expiryNever-1)

	k := func(limit time.Duration, want uint16) {
		o := Options{MaxKeepAlive: limit}
		require.Equal(t, want, o.maxKeepAliveSecs(), "cap %v", limit)
	}
	k(0, 0)
	k(-time.Second, 0)
	k(500*time.Millisecond, 1)
	k(90*time.Second, 90)
	k(math.MaxInt64, 65535)
}
