package trie

import "sync/atomic"

// entry is one member of an entry set: a subscription (key = client
// identifier) in the subscription trie, or a retained message (key = topic)
// in the retained index. An entry is immutable once published; a change of
// options or value publishes a new entry in its place, so a reader always
// sees one consistent version.
type entry[H any] struct {
	key  string
	val  H
	opts Options
	hash uint64                   // xxhash of key; subscription sets only
	next atomic.Pointer[entry[H]] // next entry while the set is a list
}

// An entry set has two shapes. Up to entryListMax entries it is a linked list
// (one pointer in the owner, no extra allocation: most filters have one
// subscriber). Past that it becomes an entryArray: a dense array readers scan
// and a writer-only hash index on xxhash(key) that keeps subscribe and
// unsubscribe O(1) however many entries share the filter.
//
// Readers decide the shape by loading the list head first: non-nil means list,
// nil means look at the array. A writer converting list to array publishes the
// array before clearing the head, and never changes the old list's entries
// afterwards, so a reader that still holds the head sees a frozen, complete
// snapshot.
const entryListMax = 8

// minEntryArray is the smallest array capacity; below a quarter full an array
// shrinks by half, never under this.
const minEntryArray = 16

// entryArray is the large shape of an entry set.
//
// Writers remove by moving the last entry into the hole, storing it there
// before clearing the last slot. Readers scan from the top down; with that
// order a reader sees every entry that stays in the set for the whole scan
// (an entry only ever moves to a lower slot, into the part not yet read), at
// the price of possibly seeing a moved entry twice. The match code drops that
// duplicate (see Result.add).
type entryArray[H any] struct {
	n     atomic.Int32
	slots []atomic.Pointer[entry[H]]

	// idx is an open-addressing table of position+1 (0 = empty), probed
	// linearly from hash&mask. Writer-only: readers never touch it.
	idx []int32
}

// newEntryArray returns an array with room for capacity entries (a power of
// two) holding copies of items.
func newEntryArray[H any](capacity int, items []*entry[H]) *entryArray[H] {
	a := &entryArray[H]{
		slots: make([]atomic.Pointer[entry[H]], capacity),
		idx:   make([]int32, capacity*2),
	}
	// Fresh copies of the entries, allocated one after the other: the
	// allocator puts them mostly side by side, so a fan-out to thousands of
	// subscribers reads them in order instead of chasing one cache miss per
	// entry. Readers still holding the originals see the same contents.
	//
	// Each copy is an allocation of its own, not an element of one chunk:
	// a chunk stays reachable while any of its entries is in the array, and
	// with it the handles of the entries removed or replaced since. Nor
	// are the originals kept: one from a list may point to another, whose
	// handle it would keep after that subscription leaves.
	for i, old := range items {
		e := &entry[H]{key: old.key, val: old.val, opts: old.opts, hash: old.hash}
		a.slots[i].Store(e)
		s, _ := a.find(e.key, e.hash)
		a.idx[s] = int32(i + 1)
	}
	a.n.Store(int32(len(items)))
	return a
}

// find returns the index slot for key and its position in slots, or the empty
// index slot where it would go and -1. Writer only.
func (a *entryArray[H]) find(key string, h uint64) (slot, pos int) {
	mask := uint64(len(a.idx) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		p := a.idx[i]
		if p == 0 {
			return int(i), -1
		}
		if e := a.slots[p-1].Load(); e.hash == h && e.key == key {
			return int(i), int(p - 1)
		}
	}
}

// unindex empties index slot i, shifting later entries of its probe run back
// so that lookups need no tombstones. Writer only.
func (a *entryArray[H]) unindex(i int) {
	mask := len(a.idx) - 1
	for j := i; ; {
		j = (j + 1) & mask
		p := a.idx[j]
		if p == 0 {
			break
		}
		home := int(a.slots[p-1].Load().hash & uint64(mask))
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if (i <= j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			a.idx[i] = p
			i = j
		}
	}
	a.idx[i] = 0
}

// items returns the live entries in slot order. Writer only.
func (a *entryArray[H]) items() []*entry[H] {
	n := int(a.n.Load())
	out := make([]*entry[H], n)
	for i := range out {
		out[i] = a.slots[i].Load()
	}
	return out
}

// upsert adds e or replaces the entry with its key, returning the replaced
// one. A full array is replaced by one twice the size, published through big.
func (a *entryArray[H]) upsert(big *atomic.Pointer[entryArray[H]], e *entry[H]) *entry[H] {
	s, pos := a.find(e.key, e.hash)
	if pos >= 0 {
		old := a.slots[pos].Load()
		a.slots[pos].Store(e)
		return old
	}
	n := int(a.n.Load())
	if n == len(a.slots) {
		big.Store(newEntryArray(2*len(a.slots), append(a.items(), e)))
		return nil
	}
	a.slots[n].Store(e)
	a.idx[s] = int32(n + 1)
	a.n.Store(int32(n + 1))
	return nil
}

// remove deletes the entry with key, returning it, or nil if absent. An array
// that empties is dropped (the set goes back to an empty list); one under a
// quarter full is replaced by a smaller one.
func (a *entryArray[H]) remove(big *atomic.Pointer[entryArray[H]], key string, h uint64) *entry[H] {
	s, pos := a.find(key, h)
	if pos < 0 {
		return nil
	}
	old := a.slots[pos].Load()
	a.unindex(s)
	last := int(a.n.Load()) - 1
	if pos != last {
		moved := a.slots[last].Load()
		a.slots[pos].Store(moved) // before clearing last: see entryArray
		ms, _ := a.find(moved.key, moved.hash)
		a.idx[ms] = int32(pos + 1)
	}
	a.slots[last].Store(nil)
	a.n.Store(int32(last))
	switch {
	case last == 0:
		big.Store(nil)
	case last < len(a.slots)/4 && len(a.slots) > minEntryArray:
		big.Store(newEntryArray(len(a.slots)/2, a.items()))
	}
	return old
}

// listFind returns the list entry with key and its predecessor.
func listFind[H any](head *atomic.Pointer[entry[H]], key string, h uint64) (prev, cur *entry[H]) {
	for cur = head.Load(); cur != nil; prev, cur = cur, cur.next.Load() {
		if cur.hash == h && cur.key == key {
			return prev, cur
		}
	}
	return nil, nil
}

// listLen counts a list; lists are at most entryListMax long.
func listLen[H any](head *atomic.Pointer[entry[H]]) int {
	n := 0
	for e := head.Load(); e != nil; e = e.next.Load() {
		n++
	}
	return n
}

// listLink makes prev (or head, if prev is nil) point at e.
func listLink[H any](head *atomic.Pointer[entry[H]], prev, e *entry[H]) {
	if prev == nil {
		head.Store(e)
	} else {
		prev.next.Store(e)
	}
}

// upsertEntry adds e to the set made of the list at head and the array at big,
// or replaces the entry with e's key, and returns the replaced entry. big may
// be nil only when the list is not full or already holds e's key. Writer only.
func upsertEntry[H any](head *atomic.Pointer[entry[H]], big *atomic.Pointer[entryArray[H]], e *entry[H]) *entry[H] {
	if big != nil {
		if a := big.Load(); a != nil {
			return a.upsert(big, e)
		}
	}
	prev, cur := listFind(head, e.key, e.hash)
	if cur != nil {
		e.next.Store(cur.next.Load())
		listLink(head, prev, e)
		return cur
	}
	n := listLen(head)
	if n < entryListMax {
		e.next.Store(head.Load())
		head.Store(e)
		return nil
	}
	items := make([]*entry[H], 0, n+1)
	for x := head.Load(); x != nil; x = x.next.Load() {
		items = append(items, x)
	}
	big.Store(newEntryArray(minEntryArray, append(items, e)))
	head.Store(nil) // after publishing the array: see entryListMax
	return nil
}

// removeEntry deletes the entry with key from the set at head and big (big
// may be nil), returning it, or nil if absent. Writer only.
func removeEntry[H any](head *atomic.Pointer[entry[H]], big *atomic.Pointer[entryArray[H]], key string, h uint64) *entry[H] {
	if big != nil {
		if a := big.Load(); a != nil {
			return a.remove(big, key, h)
		}
	}
	prev, cur := listFind(head, key, h)
	if cur == nil {
		return nil
	}
	// cur keeps its next pointer, so a reader standing on it walks on.
	listLink(head, prev, cur.next.Load())
	return cur
}
