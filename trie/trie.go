package trie

import (
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Trie is the subscription index: topic filters, each with the clients
// subscribed to it, matched against the topic of every PUBLISH.
//
// H is the engine's per-subscription handle (typically a pointer to the
// session); the trie stores it and hands it back, nothing more.
//
// Match is safe to call from any number of goroutines at once, and takes no
// lock. Subscribe and Unsubscribe are safe to call concurrently with each
// other and with Match; they serialize on one mutex.
//
// The trie keeps the filter and client identifier strings it is given. Pass
// strings that own their memory, not unsafe views of a reused buffer.
type Trie[H any] struct {
	mu   sync.Mutex // serializes writers; readers never take it
	tree tree[H]    // filters with a wildcard level, one node per level
	// exact holds the filters without wildcards, one child per filter,
	// labelled with the whole filter: a topic finds its exact subscribers
	// with one hash probe instead of a walk down its levels, and a filter
	// costs one node instead of one per level.
	exact    *node[H]
	count    atomic.Int64
	strategy ShareStrategy
}

// New returns an empty Trie.
func New[H any](opts ...Option) *Trie[H] {
	c := config{strategy: RoundRobin{}}
	for _, o := range opts {
		o(&c)
	}
	return &Trie[H]{tree: newTree[H](), exact: new(node[H]), strategy: c.strategy}
}

// isExact reports whether filter has no wildcard level. ("a+" is a literal
// level: the codec rejects it [MQTT-4.7.1-3], and the trie, not validating,
// takes it literally.)
func isExact(filter string) bool {
	if !strings.ContainsAny(filter, "+#") {
		return true
	}
	for start, last := 0, false; !last; {
		var level string
		level, start, last = nextLevel(filter, start)
		if level == "+" || level == "#" {
			return false
		}
	}
	return true
}

// Subscribe adds clientID's subscription to filter with handle h and options
// o. A filter of the form $share/{ShareName}/{filter} joins the shared
// subscription group ShareName on filter.
//
// If clientID already has a subscription to filter, it is replaced (new
// handle and options) and existed is true [MQTT-3.8.4-3]; the engine needs to
// know for Retain Handling 1.
func (t *Trie[H]) Subscribe(filter, clientID string, h H, o Options) (existed bool) {
	share, f := splitShare(filter)
	hash := xxhash.Sum64String(clientID)

	t.mu.Lock()
	defer t.mu.Unlock()
	// Find the parent of the filter's node, creating the levels above it.
	parent, level, wild := t.exact, f, false
	if !isExact(f) {
		parent, wild = t.tree.root, true
		for start := 0; ; {
			l, next, last := nextLevel(f, start)
			if last {
				level = l
				break
			}
			parent, _ = t.tree.descend(parent, l, true, true, nil)
			start = next
		}
	}
	var e *entry[H]
	n, _ := t.tree.descend(parent, level, wild, false, nil)
	if n == nil {
		// A new filter: its node and first subscription in one block.
		blk := &leafBlock[H]{e: entry[H]{key: clientID, val: h, opts: o, hash: hash}}
		e = &blk.e
		n, _ = t.tree.descend(parent, level, wild, true, &blk.n)
	} else {
		e = &entry[H]{key: clientID, val: h, opts: o, hash: hash}
	}
	var old *entry[H]
	if share != "" {
		old = n.upsertShared(share, filter, e)
	} else {
		old = n.upsertSub(e)
	}
	if old == nil {
		t.count.Add(1)
	}
	return old != nil
}

// upsertSub adds or replaces e among n's ordinary subscriptions. Writer only.
func (n *node[H]) upsertSub(e *entry[H]) *entry[H] {
	x := n.ext.Load()
	if x == nil && listLen(&n.subs) >= entryListMax {
		if _, cur := listFind(&n.subs, e.key, e.hash); cur == nil {
			x = n.extOrCreate() // the list is full: e goes to an array in ext
		}
	}
	var big *atomic.Pointer[entryArray[H]]
	if x != nil {
		big = &x.subs
	}
	return upsertEntry(&n.subs, big, e)
}

// Unsubscribe removes clientID's subscription to filter (which may be a
// $share/ filter) and reports whether there was one. Nodes left empty are
// removed, so that a trie whose subscriptions are all gone is as small as a
// new one.
func (t *Trie[H]) Unsubscribe(filter, clientID string) (existed bool) {
	share, f := splitShare(filter)
	h := xxhash.Sum64String(clientID)

	t.mu.Lock()
	defer t.mu.Unlock()
	var stack [16]step[H]
	path := stack[:0]
	var n *node[H]
	if isExact(f) {
		if n = t.exact.child(f); n == nil {
			return false
		}
		path = append(path, step[H]{parent: t.exact, n: n, via: viaLiteral})
	} else {
		n = t.tree.root
		for start, last := 0, false; !last; {
			var level string
			level, start, last = nextLevel(f, start)
			c, via := t.tree.descend(n, level, true, false, nil)
			if c == nil {
				return false
			}
			path = append(path, step[H]{parent: n, n: c, via: via})
			n = c
		}
	}
	var old *entry[H]
	if share != "" {
		old = n.removeShared(share, clientID, h)
	} else {
		var big *atomic.Pointer[entryArray[H]]
		if x := n.ext.Load(); x != nil {
			big = &x.subs
		}
		old = removeEntry(&n.subs, big, clientID, h)
	}
	if old == nil {
		return false
	}
	t.count.Add(-1)
	t.tree.prune(path)
	return true
}

// Count returns the number of subscriptions, shared group memberships
// included. Safe for concurrent use.
func (t *Trie[H]) Count() int {
	return int(t.count.Load())
}

// Member is one member of a shared subscription group.
type Member[H any] struct {
	ClientID string
	Handle   H
	Options  Options
}

// PickShared chooses a member of the shared subscription shareFilter
// ($share/{ShareName}/{filter}) the way Match would, skipping members that
// eligible rejects. The engine calls it to hand a QoS 1 or 2 message whose
// chosen member went away to another member (MQTT 5.0 section 4.8.2). ok is
// false when the group does not exist or eligible rejects every member.
// Safe for concurrent use; takes no lock.
func (t *Trie[H]) PickShared(shareFilter, publisherID string, eligible func(H) bool) (m Member[H], ok bool) {
	share, f := splitShare(shareFilter)
	if share == "" {
		return m, false
	}
	var n *node[H]
	if isExact(f) {
		n = t.exact.child(f)
	} else {
		n = t.tree.root
		for start, last := 0, false; !last && n != nil; {
			var level string
			level, start, last = nextLevel(f, start)
			n = n.filterChild(level)
		}
	}
	if n == nil {
		return m, false
	}
	x := n.ext.Load()
	if x == nil {
		return m, false
	}
	p := x.shared.Load()
	if p == nil {
		return m, false
	}
	for _, g := range *p {
		if g.name != share {
			continue
		}
		e, unavailable := g.pick(t.strategy, publisherID, eligible)
		if e == nil || unavailable {
			return m, false
		}
		return Member[H]{ClientID: e.key, Handle: e.val, Options: e.opts}, true
	}
	return m, false
}

// nodeCount is the number of nodes in the trie, root included (the exact
// filters' parent is not counted): 1 when empty. For tests.
func (t *Trie[H]) nodeCount() int { return t.tree.nodeCount() + countNodes(t.exact) - 1 }

// emptyNodes counts nodes that hold nothing but were not pruned. For tests.
func (t *Trie[H]) emptyNodes() int { return t.tree.emptyNodes() + countEmpty(t.exact, true) }
