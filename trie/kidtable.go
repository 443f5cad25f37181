package trie

import (
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// kidListMax is how many literal children a node keeps as a sibling list
// before it moves them into a kidTable. A list costs nothing beyond the
// sibling pointer in each child; a table pays off once a scan would chase
// more pointers than a hash probe.
const kidListMax = 8

// minKidTable is the smallest kidTable capacity.
const minKidTable = 32

// kidTable is a node's literal children once there are many of them (the
// `devices` level of a fleet has one per device). Open addressing with linear
// probing, keyed by xxhash of the label.
//
// Readers probe without locks: a slot is written tag first, then node, and
// once a node is in a slot the tag never changes; deleting stores the tomb
// sentinel and the slot is not reused until the table is rebuilt. A writer
// that needs more room (or much less) builds a new table and publishes it;
// readers still on the old table see it as it was, never half-built.
type kidTable[H any] struct {
	slots []kidSlot[H]
	tomb  *node[H] // the owning tree's deleted-slot marker

	live, used int // writer-only: live nodes; live plus tombstones
}

type kidSlot[H any] struct {
	tag  atomic.Uint32
	node atomic.Pointer[node[H]]
}

// labelHash returns the hash of a label and its nonzero tag.
func labelHash(label string) (uint64, uint32) {
	h := xxhash.Sum64String(label)
	return h, uint32(h>>32) | 1
}

// kidTableCap returns the capacity of a table built for n children: a power
// of two at least twice n, so a fresh table is at most half full.
func kidTableCap(n int) int {
	c := minKidTable
	for c < 2*n {
		c *= 2
	}
	return c
}

func newKidTable[H any](tomb *node[H], capacity int) *kidTable[H] {
	return &kidTable[H]{slots: make([]kidSlot[H], capacity), tomb: tomb}
}

// get returns the child labelled label, or nil. Safe for concurrent readers.
func (t *kidTable[H]) get(label string) *node[H] {
	h, tag := labelHash(label)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		n := s.node.Load()
		if n == nil {
			return nil
		}
		if s.tag.Load() == tag && n != t.tomb && n.label == label {
			return n
		}
	}
}

// full reports whether inserting one more node needs a rebuilt table: the
// table stays at most three quarters used so every probe ends on a nil slot.
func (t *kidTable[H]) full() bool {
	return (t.used+1)*4 > len(t.slots)*3
}

// insert adds c, which must be absent, into a table that is not full.
// Writer only.
func (t *kidTable[H]) insert(c *node[H]) {
	h, tag := labelHash(c.label)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.node.Load() == nil {
			s.tag.Store(tag)
			s.node.Store(c)
			t.live++
			t.used++
			return
		}
	}
}

// remove replaces c's slot with a tombstone. Writer only.
func (t *kidTable[H]) remove(c *node[H]) bool {
	h, tag := labelHash(c.label)
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		n := s.node.Load()
		if n == nil {
			return false
		}
		if n == c && s.tag.Load() == tag {
			s.node.Store(t.tomb)
			t.live--
			return true
		}
	}
}

// rebuilt returns a new table sized for n children holding t's live ones.
// Writer only.
func (t *kidTable[H]) rebuilt(n int) *kidTable[H] {
	nt := newKidTable(t.tomb, kidTableCap(n))
	for i := range t.slots {
		if c := t.slots[i].node.Load(); c != nil && c != t.tomb {
			nt.insert(c)
		}
	}
	return nt
}
