package engine

import (
	"bytes"

	"github.com/cespare/xxhash/v2"

	"github.com/loopmq/loopmq/codec"
)

// Topic aliases [MQTT 5.0 section 3.3.2.3.4]. Each direction of a network
// connection has its own mapping, which ends with the connection
// [MQTT-3.3.2-7]; both are owned by the client's loop and allocated on
// first use, so a client that uses no aliases pays one pointer each way.

// resolveTopicAlias applies an inbound PUBLISH's Topic Alias: with a topic
// it (re)defines the alias, without one it looks the alias up. The returned
// topic is valid until the client's next PUBLISH.
func (c *client) resolveTopicAlias(topic []byte, alias uint16) ([]byte, error) {
	max := c.loop.srv.opts.TopicAliasMaximum
	if alias == 0 || int(alias) > max {
		// [MQTT-3.3.2-8] 0 is not an alias; [MQTT-3.3.2-9] none beyond
		// the Topic Alias Maximum the server sent in CONNACK.
		return nil, &codec.Error{Code: codec.TopicAliasInvalid, Packet: codec.PUBLISH,
			Reason: "topic alias 0 or above the server's Topic Alias Maximum [MQTT-3.3.2-8/9]"}
	}
	a := &c.extras().aliases
	if a.in == nil {
		a.in = make([][]byte, max)
	}
	slot := &a.in[alias-1]
	if len(topic) > 0 {
		*slot = append((*slot)[:0], topic...) // reuses the alias's previous storage
		return *slot, nil
	}
	if len(*slot) == 0 {
		return nil, &codec.Error{Code: codec.ProtocolError, Packet: codec.PUBLISH,
			Reason: "topic alias not defined on this connection (MQTT 5.0 section 3.3.4)"}
	}
	return *slot, nil
}

// topicAliases are a connection's aliases both ways.
type topicAliases struct {
	// in: the topics the client's aliases stand for, alias-1 → topic, each
	// in storage of its own that a redefinition reuses.
	in  [][]byte
	out *aliasesOut // nil when the client accepts no aliases
}

// aliasesOut returns the broker's aliases towards c, nil for none.
func (c *client) aliasesOut() *aliasesOut {
	if c.extra == nil {
		return nil
	}
	return c.extra.aliases.out
}

// aliasesOut are the topic aliases the broker uses towards one 5.0 client,
// at most the Topic Alias Maximum it sent in CONNECT [MQTT-3.3.2-10]. When
// all are in use, the least recently used one is given to the new topic,
// unless admission is closed (below).
//
// Topics are found by their xxhash; each alias keeps its topic in storage
// it reuses when reassigned, so a subscriber cycling through more topics
// than it has aliases costs a copy of the topic per message, not an
// allocation. Two topics with the same hash share one alias, each taking
// it over from the other (a redefinition, still correct).
//
// Admission: an alias is optional [MQTT 5.0 section 3.3.2.3.4], and
// reassigning one pays only if the client hears the new topic again before
// it is evicted in turn. A subscriber that cycles through more topics than
// it has aliases (plain LRU misses on every message then) would get every
// PUBLISH with topic and alias, and cost the broker an eviction each. So
// the broker counts, over windows of aliasWindow(max) lookups, hits and
// evictions: a window with more than two evictions per hit closes
// admission. While it is closed a topic without an alias is sent with its
// topic and no alias, aliases already assigned keep being used (and kept
// in LRU order), and no alias is reassigned, so what the client knows never
// changes. Admission opens again after closedFor lookups (4 windows at
// first); a window that thrashes right after it opened doubles that, up to
// 1,024 windows, and one that does not thrash resets it.
//
// An aliasesOut belongs to its client's loop, like the rest of the client.
type aliasesOut struct {
	head, tail uint16
	// closed: admission is closed until hits+misses reaches closedFor.
	// probation: it has been opened again and the current window decides
	// whether the next closed period is twice as long.
	closed, probation bool
	// Counts since the window (or the closed period) began: hits, and
	// misses (evictions while open, topics sent without an alias while
	// closed).
	hits, misses uint64
	closedFor    uint64 // lookups the next closed period lasts
	byHash       map[uint64]uint16
	topics       [][]byte // alias-1 → topic
	hashes       []uint64 // alias-1 → xxhash of the topic
	// LRU list over aliases (1-based; 0 ends the list): head is the most
	// recently used, tail the next to be reassigned.
	prev, next []uint16
}

// aliasWindow is the number of lookups over which aliasesOut judges
// whether its reassignments pay: a few times the table, so that a window
// sees each alias reassigned several times over.
func aliasWindow(n int) uint64 { return uint64(4 * max(n, 16)) }

func newAliasesOut(max int) *aliasesOut {
	return &aliasesOut{byHash: make(map[uint64]uint16, max), topics: make([][]byte, 0, max),
		hashes: make([]uint64, max), prev: make([]uint16, max+1), next: make([]uint16, max+1),
		closedFor: 4 * aliasWindow(max)}
}

// alias returns the alias to send with topic and whether the client knows
// it already (then the PUBLISH may carry an empty topic [MQTT-3.3.2-12]).
// Alias 0 means none: the PUBLISH carries the topic and no Topic Alias
// (admission is closed, see aliasesOut).
func (a *aliasesOut) alias(topic []byte) (alias uint16, known bool) {
	// The most recently used alias first: a subscriber of one topic, or
	// the next message of a burst on one topic, costs a comparison instead
	// of a hash and a map lookup (BenchmarkAliasesOutSame). The head needs
	// no touch.
	if id := a.head; id != 0 && bytes.Equal(a.topics[id-1], topic) {
		a.hits++
		return id, true
	}
	h := xxhash.Sum64(topic)
	id, ok := a.byHash[h]
	if ok && bytes.Equal(a.topics[id-1], topic) {
		a.hits++
		a.touch(id)
		return id, true
	}
	if !a.admit() {
		return 0, false
	}
	switch {
	case ok: // another topic with this hash: take its alias over
	case len(a.topics) < cap(a.topics):
		a.topics = append(a.topics, nil)
		id = uint16(len(a.topics))
		a.pushFront(id)
	default:
		id = a.tail // least recently used: redefine it
		delete(a.byHash, a.hashes[id-1])
	}
	a.topics[id-1] = append(a.topics[id-1][:0], topic...)
	a.hashes[id-1] = h
	a.byHash[h] = id
	a.touch(id)
	return id, false
}

// admit reports whether a topic without an alias may be given one, and
// keeps the admission counts (see aliasesOut). Admission is open while the
// table has room; once it is full (and it never shrinks), admit judges
// each window of lookups.
func (a *aliasesOut) admit() bool {
	if a.closed {
		a.misses++
		if a.hits+a.misses < a.closedFor {
			return false
		}
		// Open again, on probation: the window this miss begins decides
		// whether the next closed period is longer.
		a.closed, a.probation, a.hits, a.misses = false, true, 0, 1
		return true
	}
	if len(a.topics) < cap(a.topics) {
		return true // no eviction: nothing to judge
	}
	a.misses++
	w := aliasWindow(cap(a.topics))
	if a.hits+a.misses < w {
		return true
	}
	if a.misses > 2*a.hits {
		// Fewer than one hit for every two reassignments in this window:
		// close, longer if this was a probation window. (Not one for one:
		// a subscriber with some locality, whose LRU hits about as often
		// as it misses, would then close on a window's noise and lose
		// hits that only reassignment gives it.)
		if a.probation {
			a.closedFor = min(2*a.closedFor, w<<10)
		}
		a.closed, a.probation, a.hits, a.misses = true, false, 0, 1
		return false
	}
	a.probation, a.closedFor, a.hits, a.misses = false, 4*w, 0, 0
	return true
}

func (a *aliasesOut) touch(id uint16) {
	if a.head == id {
		return
	}
	// unlink
	p, n := a.prev[id], a.next[id]
	a.next[p] = n
	if n != 0 {
		a.prev[n] = p
	} else {
		a.tail = p
	}
	a.pushFront(id)
}

func (a *aliasesOut) pushFront(id uint16) {
	a.prev[id] = 0
	a.next[id] = a.head
	if a.head != 0 {
		a.prev[a.head] = id
	} else {
		a.tail = id
	}
	a.head = id
}
