package engine

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestInflightWiden: widening keeps every identifier in use at its own
// slot, at the smallest larger size that separates them all from the new
// one, and ends for any identifiers (at 65535 each has its own slot).
func TestInflightWiden(t *testing.T) {
	for _, tc := range []struct {
		size int
		ids  []uint16 // in use, then the one to add
		want int
	}{
		{5, []uint16{2, 7}, 6},
		{5, []uint16{2, 3, 7, 8}, 7},
		{1, []uint16{1, 2}, 2},
		{32, []uint16{1, 65505}, 33},
		{4, []uint16{1, 65533}, 5},
		{3, []uint16{10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150}, 0}, // any that separates them
	} {
		t.Run(fmt.Sprint(tc.size, tc.ids), func(t *testing.T) {
			w := newInflight(tc.size)
			for _, id := range tc.ids {
				if sl := &w.slots[w.index(id)]; sl.state != slotFree {
					w.widen(id)
				}
				sl := &w.slots[w.index(id)]
				require.Equal(t, slotFree, sl.state, "id %d: slot taken after widening to %d", id, len(w.slots))
				*sl = slot{id: id, state: slotAwaitAck}
				w.used++
			}
			if tc.want != 0 {
				require.Len(t, w.slots, tc.want)
			}
			for _, id := range tc.ids {
				require.NotNil(t, w.at(id), "id %d lost", id)
			}
		})
	}
}
