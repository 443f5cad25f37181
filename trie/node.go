package trie

import "sync/atomic"

// node is one topic level. Every field a reader follows is an atomic pointer
// to immutable or append-only data, so readers never lock; writers hold the
// owning Trie's or Retained's mutex.
//
// The common node (one filter level with a few children and a few
// subscribers) is 48 bytes: children are a sibling list threaded through the
// children themselves and subscribers a list threaded through the entries.
// Everything rarer (wildcard children, large child or subscriber sets, shared
// groups) hangs off ext, allocated only for the nodes that need it.
type node[H any] struct {
	label   string                   // this level; immutable
	sibling atomic.Pointer[node[H]]  // next child of the parent while the parent keeps a list
	kids    atomic.Pointer[node[H]]  // literal children while few (see kidListMax)
	subs    atomic.Pointer[entry[H]] // entries while few (see entryListMax)
	ext     atomic.Pointer[nodeExt[H]]
}

// nodeExt holds what few nodes need. Once published, the ext of a node is
// replaced only by nil, when all of it is empty (see tidy).
type nodeExt[H any] struct {
	plus   atomic.Pointer[node[H]]       // the "+" child
	hash   atomic.Pointer[node[H]]       // the "#" child
	kids   atomic.Pointer[kidTable[H]]   // literal children once many; node.kids is nil then
	subs   atomic.Pointer[entryArray[H]] // entries once many; node.subs is nil then
	shared atomic.Pointer[[]*group[H]]   // shared subscription groups on this filter; immutable slice
}

// child returns the literal child labelled label, or nil. Safe for readers.
//
// It loads the list before ext: a writer moving children from the list to a
// table publishes the table before clearing the list, so a reader that finds
// the list empty finds the table.
func (n *node[H]) child(label string) *node[H] {
	if k := n.kids.Load(); k != nil {
		for ; k != nil; k = k.sibling.Load() {
			if k.label == label {
				return k
			}
		}
		return nil
	}
	if x := n.ext.Load(); x != nil {
		if t := x.kids.Load(); t != nil {
			return t.get(label)
		}
	}
	return nil
}

// filterChild returns the child that a filter level leads to: the "+" or "#"
// child for a wildcard, else the literal child. Safe for readers.
func (n *node[H]) filterChild(level string) *node[H] {
	switch level {
	case "+", "#":
		x := n.ext.Load()
		if x == nil {
			return nil
		}
		if level == "+" {
			return x.plus.Load()
		}
		return x.hash.Load()
	}
	return n.child(level)
}

// kidIter walks a node's literal children; the zero value is empty.
type kidIter[H any] struct {
	list *node[H]
	tab  *kidTable[H]
	i    int
}

// kidIter returns an iterator over n's literal children. Safe for readers;
// concurrent changes may or may not be seen, but no child is seen twice.
func (n *node[H]) kidIter() kidIter[H] {
	if k := n.kids.Load(); k != nil {
		return kidIter[H]{list: k}
	}
	if x := n.ext.Load(); x != nil {
		if t := x.kids.Load(); t != nil {
			return kidIter[H]{tab: t}
		}
	}
	return kidIter[H]{}
}

func (it *kidIter[H]) next() *node[H] {
	if c := it.list; c != nil {
		it.list = c.sibling.Load()
		return c
	}
	if t := it.tab; t != nil {
		for it.i < len(t.slots) {
			c := t.slots[it.i].node.Load()
			it.i++
			if c != nil && c != t.tomb {
				return c
			}
		}
	}
	return nil
}

// extOrCreate returns n's ext, creating it. Writer only.
func (n *node[H]) extOrCreate() *nodeExt[H] {
	x := n.ext.Load()
	if x == nil {
		x = new(nodeExt[H])
		n.ext.Store(x)
	}
	return x
}

// tidy drops the parts of n's ext that are empty, then ext itself if nothing
// is left in it. Writer only.
func (n *node[H]) tidy() {
	x := n.ext.Load()
	if x == nil {
		return
	}
	if t := x.kids.Load(); t != nil && t.live == 0 {
		x.kids.Store(nil)
	}
	if x.plus.Load() == nil && x.hash.Load() == nil && x.kids.Load() == nil &&
		x.subs.Load() == nil && x.shared.Load() == nil {
		n.ext.Store(nil)
	}
}

// empty reports whether n holds nothing and can be unlinked. Call after tidy.
// Writer only.
func (n *node[H]) empty() bool {
	return n.kids.Load() == nil && n.subs.Load() == nil && n.ext.Load() == nil
}

// How a node hangs off its parent.
const (
	viaLiteral byte = iota
	viaPlus
	viaHash
)

// tree is the node structure shared by Trie and Retained: a root and the
// tombstone its kid tables use. Its writer methods need the owner's mutex.
type tree[H any] struct {
	root *node[H]
	tomb *node[H]
}

func newTree[H any]() tree[H] {
	return tree[H]{root: new(node[H]), tomb: new(node[H])}
}

// leafBlock is a node allocated together with its first entry: a match that
// reaches the node finds the entry beside it instead of one more cache miss
// away, and the two cost one allocation. The entry is used through a pointer
// like any other; once replaced or removed, its space idles until the node
// goes, and so does its handle: a node kept by other subscriptions keeps
// the handle of the subscription it was created for reachable after that
// one left (at most one departed handle per such filter; the engine's
// ended session, without its queues). Giving the first entry an
// allocation of its own (tried, as retained messages have) fixed that but
// made BenchmarkMatch/region-fanout 27% slower: the entries of a fan-out
// lay further apart.
type leafBlock[H any] struct {
	n node[H]
	e entry[H]
}

// step is one edge of a path from the root, kept by writers for pruning.
type step[H any] struct {
	parent, n *node[H]
	via       byte
}

// descend returns the child that level leads to, creating it if create is
// set, and how it hangs off n. A created child is fresh if that is not nil,
// else a new node. With wild unset every level is a literal (the retained
// index stores topics, which have no wildcards). Writer only.
func (t *tree[H]) descend(n *node[H], level string, wild, create bool, fresh *node[H]) (*node[H], byte) {
	if wild && (level == "+" || level == "#") {
		via := viaPlus
		if level == "#" {
			via = viaHash
		}
		x := n.ext.Load()
		if x == nil {
			if !create {
				return nil, via
			}
			x = n.extOrCreate()
		}
		p := &x.plus
		if via == viaHash {
			p = &x.hash
		}
		c := p.Load()
		if c == nil && create {
			if c = fresh; c == nil {
				c = new(node[H])
			}
			c.label = level
			p.Store(c)
		}
		return c, via
	}
	c := n.child(level)
	if c == nil && create {
		if c = fresh; c == nil {
			c = new(node[H])
		}
		c.label = level
		t.addKid(n, c)
	}
	return c, viaLiteral
}

// addKid links the new literal child c under n. Writer only.
func (t *tree[H]) addKid(n, c *node[H]) {
	if x := n.ext.Load(); x != nil {
		if tab := x.kids.Load(); tab != nil {
			if tab.full() {
				tab = tab.rebuilt(tab.live + 1)
				x.kids.Store(tab)
			}
			tab.insert(c)
			return
		}
	}
	count := 0
	for k := n.kids.Load(); k != nil; k = k.sibling.Load() {
		count++
	}
	if count < kidListMax {
		c.sibling.Store(n.kids.Load())
		n.kids.Store(c)
		return
	}
	tab := newKidTable(t.tomb, kidTableCap(count+1))
	for k := n.kids.Load(); k != nil; k = k.sibling.Load() {
		tab.insert(k)
	}
	tab.insert(c)
	n.extOrCreate().kids.Store(tab)
	// Clear the list only after the table is visible (see child). The old
	// list's sibling pointers stay as they are for readers still on it.
	n.kids.Store(nil)
}

// detach unlinks c from its parent n. Writer only.
func (t *tree[H]) detach(n, c *node[H], via byte) {
	x := n.ext.Load()
	switch via {
	case viaPlus:
		x.plus.Store(nil)
		return
	case viaHash:
		x.hash.Store(nil)
		return
	}
	if x != nil {
		if tab := x.kids.Load(); tab != nil {
			tab.remove(c)
			if tab.live > 0 && tab.live*8 < len(tab.slots) && len(tab.slots) > minKidTable {
				x.kids.Store(tab.rebuilt(tab.live))
			}
			return
		}
	}
	var prev *node[H]
	for k := n.kids.Load(); k != nil; prev, k = k, k.sibling.Load() {
		if k != c {
			continue
		}
		// c keeps its sibling pointer, so a reader standing on it walks on.
		if prev == nil {
			n.kids.Store(k.sibling.Load())
		} else {
			prev.sibling.Store(k.sibling.Load())
		}
		return
	}
}

// prune unlinks the nodes of path (which is not empty) that have become
// empty, deepest first, so that the tree never keeps a node with nothing
// under it. Writer only.
func (t *tree[H]) prune(path []step[H]) {
	for i := len(path) - 1; i >= 0; i-- {
		s := path[i]
		s.n.tidy()
		if !s.n.empty() {
			return
		}
		t.detach(s.parent, s.n, s.via)
	}
	path[0].parent.tidy()
}

// nodeCount counts the nodes reachable from the root, the root included.
// For tests: after every subscription is gone it must be back to 1.
func (t *tree[H]) nodeCount() int {
	return countNodes(t.root)
}

func countNodes[H any](n *node[H]) int {
	total := 1
	it := n.kidIter()
	for c := it.next(); c != nil; c = it.next() {
		total += countNodes(c)
	}
	if x := n.ext.Load(); x != nil {
		if c := x.plus.Load(); c != nil {
			total += countNodes(c)
		}
		if c := x.hash.Load(); c != nil {
			total += countNodes(c)
		}
	}
	return total
}

// emptyNodes counts reachable nodes other than the root that hold nothing.
// For tests: pruning must keep it at 0.
func (t *tree[H]) emptyNodes() int {
	return countEmpty(t.root, true)
}

func countEmpty[H any](n *node[H], root bool) int {
	total := 0
	if !root && n.subs.Load() == nil && n.kids.Load() == nil {
		x := n.ext.Load()
		if x == nil || (x.plus.Load() == nil && x.hash.Load() == nil &&
			(x.kids.Load() == nil || x.kids.Load().live == 0) &&
			x.subs.Load() == nil && (x.shared.Load() == nil || len(*x.shared.Load()) == 0)) {
			total++
		}
	}
	it := n.kidIter()
	for c := it.next(); c != nil; c = it.next() {
		total += countEmpty(c, false)
	}
	if x := n.ext.Load(); x != nil {
		if c := x.plus.Load(); c != nil {
			total += countEmpty(c, false)
		}
		if c := x.hash.Load(); c != nil {
			total += countEmpty(c, false)
		}
	}
	return total
}
