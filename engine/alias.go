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
// all are in use, the least recently used one is given to the new topic.
//
// Topics are found by their xxhash; each alias keeps its topic in storage
// it reuses when reassigned, so a subscriber cycling through more topics
// than it has aliases costs a copy of the topic per message, not an
// allocation. Two topics with the same hash share one alias, each taking
// it over from the other (a redefinition, still correct).
type aliasesOut struct {
	byHash map[uint64]uint16
	topics [][]byte // alias-1 → topic
	hashes []uint64 // alias-1 → xxhash of the topic
	// LRU list over aliases (1-based; 0 ends the list): head is the most
	// recently used, tail the next to be reassigned.
	prev, next []uint16
	head, tail uint16
}

func newAliasesOut(max int) *aliasesOut {
	return &aliasesOut{byHash: make(map[uint64]uint16, max), topics: make([][]byte, 0, max),
		hashes: make([]uint64, max), prev: make([]uint16, max+1), next: make([]uint16, max+1)}
}

// alias returns the alias to send with topic and whether the client knows
// it already (then the PUBLISH may carry an empty topic [MQTT-3.3.2-12]).
func (a *aliasesOut) alias(topic []byte) (alias uint16, known bool) {
	// The most recently used alias first: a subscriber of one topic, or
	// the next message of a burst on one topic, costs a comparison instead
	// of a hash and a map lookup (BenchmarkAliasesOutSame). The head needs
	// no touch.
	if id := a.head; id != 0 && bytes.Equal(a.topics[id-1], topic) {
		return id, true
	}
	h := xxhash.Sum64(topic)
	id, ok := a.byHash[h]
	if ok && bytes.Equal(a.topics[id-1], topic) {
		a.touch(id)
		return id, true
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
