package trie

import (
	"math/rand/v2"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// ShareStrategy chooses which member of a shared subscription group is
// offered a message first (MQTT 5.0 section 4.8.2). The trie walks on from that member,
// wrapping around, past members the Result's Eligible predicate rejects.
//
// Start must be safe for concurrent use: every event loop that matches calls
// it. It returns an index in [0, members); other values are taken modulo
// members.
type ShareStrategy interface {
	Start(c *Cursor, publisherID string, members int) int
}

// Cursor is the per-group state a ShareStrategy may keep: one counter, on a
// cache line of its own so that loops advancing it do not also slow readers
// of the group's member list.
type Cursor struct {
	_    [64]byte
	next atomic.Uint64
	_    [56]byte
}

// Next returns the counter's value and advances it.
func (c *Cursor) Next() uint64 {
	return c.next.Add(1) - 1
}

// RoundRobin offers each message to the next member in turn. It is the
// default. Loops publishing to one group share its counter, so at very high
// rates on one group Random scales better.
type RoundRobin struct{}

// Start implements ShareStrategy.
func (RoundRobin) Start(c *Cursor, _ string, members int) int {
	return int(c.Next() % uint64(members))
}

// Random offers each message to a uniformly random member. It keeps no
// shared state.
type Random struct{}

// Start implements ShareStrategy.
func (Random) Start(_ *Cursor, _ string, members int) int {
	return rand.IntN(members)
}

// Sticky sends every message from one publisher to the same member while the
// group's membership is unchanged (a hash of the publisher's client
// identifier), which keeps one publisher's messages in order at one consumer.
type Sticky struct{}

// Start implements ShareStrategy.
func (Sticky) Start(_ *Cursor, publisherID string, members int) int {
	return int(xxhash.Sum64String(publisherID) % uint64(members))
}

// group is one shared subscription: a share name on one filter. Its members
// are an entry set like a node's subscribers.
type group[H any] struct {
	name   string
	filter string // as subscribed: "$share/{name}/{filter}"
	head   atomic.Pointer[entry[H]]
	big    atomic.Pointer[entryArray[H]]
	cursor Cursor
}

// empty reports whether the group has no members. Writer only.
func (g *group[H]) empty() bool {
	return g.head.Load() == nil && g.big.Load() == nil
}

// pick returns the member to deliver to: the strategy's choice, or the next
// member after it that eligible accepts. If eligible accepts none, pick
// returns the strategy's choice with unavailable set, for the engine to queue
// or drop. It returns nil only for a group that has just lost its last member.
// Safe for readers.
func (g *group[H]) pick(s ShareStrategy, publisherID string, eligible func(H) bool) (e *entry[H], unavailable bool) {
	if h := g.head.Load(); h != nil {
		var members [entryListMax]*entry[H]
		n := 0
		for x := h; x != nil && n < len(members); x = x.next.Load() {
			members[n] = x
			n++
		}
		start := startIndex(s, &g.cursor, publisherID, n)
		var first *entry[H]
		for k := range n {
			i := start + k
			if i >= n {
				i -= n
			}
			m := members[i]
			if eligible == nil || eligible(m.val) {
				return m, false
			}
			if first == nil {
				first = m
			}
		}
		return first, first != nil
	}
	a := g.big.Load()
	if a == nil {
		return nil, false
	}
	n := int(a.n.Load())
	if n == 0 {
		return nil, false
	}
	start := startIndex(s, &g.cursor, publisherID, n)
	var first *entry[H]
	gap := false
	for k := range n {
		i := start + k
		if i >= n {
			i -= n
		}
		m := a.slots[i].Load()
		if m == nil { // removed while we looked
			gap = true
			continue
		}
		if eligible == nil || eligible(m.val) {
			return m, false
		}
		if first == nil {
			first = m
		}
	}
	if eligible != nil && (gap || int(a.n.Load()) != n) {
		// A removal meanwhile moves the last member down into its slot,
		// which this scan may have passed already: look again top-down,
		// the order in which every member present throughout is seen
		// (entry.go).
		for i := int(a.n.Load()) - 1; i >= 0; i-- {
			if m := a.slots[i].Load(); m != nil && eligible(m.val) {
				return m, false
			}
		}
	}
	return first, first != nil
}

func startIndex(s ShareStrategy, c *Cursor, publisherID string, n int) int {
	i := s.Start(c, publisherID, n) % n
	if i < 0 {
		i += n
	}
	return i
}

// upsertShared adds e to the group named share on n (subscribed as
// filter), creating the group, and returns the entry it replaced. Writer
// only.
func (n *node[H]) upsertShared(share, filter string, e *entry[H]) *entry[H] {
	x := n.extOrCreate()
	var groups []*group[H]
	if p := x.shared.Load(); p != nil {
		groups = *p
	}
	for _, g := range groups {
		if g.name == share {
			return upsertEntry(&g.head, &g.big, e)
		}
	}
	g := &group[H]{name: share, filter: filter}
	upsertEntry(&g.head, &g.big, e)
	// A new slice: readers may be ranging over the old one.
	next := make([]*group[H], len(groups), len(groups)+1)
	copy(next, groups)
	next = append(next, g)
	x.shared.Store(&next)
	return nil
}

// removeShared removes key from the group named share on n, dropping the
// group when it empties, and returns the removed entry. Writer only.
func (n *node[H]) removeShared(share, key string, h uint64) *entry[H] {
	x := n.ext.Load()
	if x == nil {
		return nil
	}
	p := x.shared.Load()
	if p == nil {
		return nil
	}
	groups := *p
	for i, g := range groups {
		if g.name != share {
			continue
		}
		old := removeEntry(&g.head, &g.big, key, h)
		if old != nil && g.empty() {
			if len(groups) == 1 {
				x.shared.Store(nil)
			} else {
				next := make([]*group[H], 0, len(groups)-1)
				next = append(next, groups[:i]...)
				next = append(next, groups[i+1:]...)
				x.shared.Store(&next)
			}
		}
		return old
	}
	return nil
}
