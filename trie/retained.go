package trie

import (
	"sync"
	"sync/atomic"
)

// Retained is the index of retained messages: one value per topic, kept in a
// topic tree so that a new subscription's filter visits only the branches
// that can match it rather than every retained message.
//
// V is the engine's reference to a retained message (typically a pointer);
// the index stores it and hands it back. Get, Match and Count take no lock
// and are safe concurrently with each other and with Set and Delete, which
// serialize on one mutex. The index keeps the topic strings it is given.
type Retained[V any] struct {
	mu    sync.Mutex // serializes writers; readers never take it
	tree  tree[V]
	count atomic.Int64
}

// NewRetained returns an empty index.
func NewRetained[V any]() *Retained[V] {
	return &Retained[V]{tree: newTree[V]()}
}

// Set stores v as topic's retained message, replacing any previous one, and
// reports whether there was one. Topic levels are taken literally.
func (r *Retained[V]) Set(topic string, v V) (replaced bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	parent, level := r.tree.root, ""
	for start := 0; ; {
		l, next, last := nextLevel(topic, start)
		if last {
			level = l
			break
		}
		parent, _ = r.tree.descend(parent, l, false, true, nil)
		start = next
	}
	// The entry is an allocation of its own, not in one block with a new
	// node (as Trie does for subscriptions): the node outlives its first
	// message when it is replaced or deleted while topics below it hold
	// messages, and a block would keep that message, payload and all.
	e := &entry[V]{key: topic, val: v}
	n, _ := r.tree.descend(parent, level, false, true, nil)
	old := n.subs.Load()
	n.subs.Store(e)
	if old == nil {
		r.count.Add(1)
	}
	return old != nil
}

// Get returns topic's retained message. Safe for concurrent use.
func (r *Retained[V]) Get(topic string) (v V, ok bool) {
	n := r.tree.root
	for start, last := 0, false; !last; {
		var level string
		level, start, last = nextLevel(topic, start)
		if n = n.child(level); n == nil {
			return v, false
		}
	}
	if e := n.subs.Load(); e != nil {
		return e.val, true
	}
	return v, false
}

// Delete removes topic's retained message (the engine calls it for a
// retained PUBLISH with an empty payload) and reports whether there was one.
func (r *Retained[V]) Delete(topic string) bool { return r.DeleteIf(topic, nil) }

// DeleteIf removes topic's retained message if is reports true for it (nil:
// whatever it is), and reports whether it removed one. The check and the
// removal are one step for writers: a message set meanwhile is never
// removed by a check made on the one it replaced.
func (r *Retained[V]) DeleteIf(topic string, is func(V) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	var stack [16]step[V]
	path := stack[:0]
	n := r.tree.root
	for start, last := 0, false; !last; {
		var level string
		level, start, last = nextLevel(topic, start)
		c := n.child(level)
		if c == nil {
			return false
		}
		path = append(path, step[V]{parent: n, n: c, via: viaLiteral})
		n = c
	}
	e := n.subs.Load()
	if e == nil || is != nil && !is(e.val) {
		return false
	}
	n.subs.Store(nil)
	r.count.Add(-1)
	r.tree.prune(path)
	return true
}

// Count returns the number of retained messages. Safe for concurrent use.
func (r *Retained[V]) Count() int {
	return int(r.count.Load())
}

// Match calls visit for each retained message whose topic matches filter,
// in no particular order, until visit returns false. Filters starting with a
// wildcard do not match topics starting with '$' [MQTT-4.7.2-1].
//
// Match streams from the tree without building a result, takes no lock and
// is safe concurrently with Set and Delete: a message present throughout is
// visited, one set or deleted meanwhile may or may not be. visit may itself
// call Set or Delete, since writers never wait for readers. Because nothing
// is locked, visit (like Get) can be handed a value that a concurrent Set or
// Delete has just replaced: an engine that reference-counts its values must
// take its reference in a way that fails on a released value.
//
// Match keeps no reference to filter once it returns.
func (r *Retained[V]) Match(filter string, visit func(topic string, v V) bool) {
	r.match(r.tree.root, filter, 0, true, visit)
}

// match matches the levels of filter from byte start under n and reports
// whether to go on.
func (r *Retained[V]) match(n *node[V], filter string, start int, root bool, visit func(string, V) bool) bool {
	level, next, last := nextLevel(filter, start)
	switch level {
	case "#":
		// "#" matches the parent level too (section 4.7.1.2), and every
		// level below. A "#" that is not last is malformed; it is treated as
		// if it were, rather than panicking.
		if !root && !visitEntry(n, visit) {
			return false
		}
		return visitTree(n, root, visit)
	case "+":
		it := n.kidIter()
		for c := it.next(); c != nil; c = it.next() {
			if root && isDollar(c.label) { // [MQTT-4.7.2-1]
				continue
			}
			if last {
				if !visitEntry(c, visit) {
					return false
				}
			} else if !r.match(c, filter, next, false, visit) {
				return false
			}
		}
		return true
	}
	c := n.child(level)
	if c == nil {
		return true
	}
	if last {
		return visitEntry(c, visit)
	}
	return r.match(c, filter, next, false, visit)
}

func visitEntry[V any](n *node[V], visit func(string, V) bool) bool {
	if e := n.subs.Load(); e != nil {
		return visit(e.key, e.val)
	}
	return true
}

// visitTree visits every message below n; at the root it skips topics that
// start with '$' [MQTT-4.7.2-1].
func visitTree[V any](n *node[V], root bool, visit func(string, V) bool) bool {
	it := n.kidIter()
	for c := it.next(); c != nil; c = it.next() {
		if root && isDollar(c.label) {
			continue
		}
		if !visitEntry(c, visit) || !visitTree(c, false, visit) {
			return false
		}
	}
	return true
}

// nodeCount is the number of nodes in the index, root included. For tests.
func (r *Retained[V]) nodeCount() int { return r.tree.nodeCount() }
