package engine

import (
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
	if c.aliasIn == nil {
		c.aliasIn = make([][]byte, max)
	}
	slot := &c.aliasIn[alias-1]
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

// aliasesOut are the topic aliases the broker uses towards one 5.0 client,
// at most the Topic Alias Maximum it sent in CONNECT [MQTT-3.3.2-10]. When
// all are in use, the least recently used one is given to the new topic.
//
// The topic table is a map keyed by the topic (a lookup converts without
// allocating); a new alias costs one string allocation, so a subscriber
// cycling through more topics than it has aliases allocates per message
// (the steady state with a stable set of topics does not).
type aliasesOut struct {
	byTopic map[string]uint16
	topics  []string // alias-1 → topic
	// LRU list over aliases (1-based; 0 ends the list): head is the most
	// recently used, tail the next to be reassigned.
	prev, next []uint16
	head, tail uint16
}

func newAliasesOut(max int) *aliasesOut {
	return &aliasesOut{byTopic: make(map[string]uint16, max), topics: make([]string, 0, max),
		prev: make([]uint16, max+1), next: make([]uint16, max+1)}
}

// alias returns the alias to send with topic and whether the client knows
// it already (then the PUBLISH may carry an empty topic [MQTT-3.3.2-12...]).
func (a *aliasesOut) alias(topic []byte) (alias uint16, known bool) {
	if id, ok := a.byTopic[string(topic)]; ok {
		a.touch(id)
		return id, true
	}
	t := string(topic)
	if len(a.topics) < cap(a.topics) {
		a.topics = append(a.topics, t)
		id := uint16(len(a.topics))
		a.byTopic[t] = id
		a.pushFront(id)
		return id, false
	}
	id := a.tail // least recently used: reassign it [MQTT-3.3.2-12 permits redefinition]
	delete(a.byTopic, a.topics[id-1])
	a.topics[id-1] = t
	a.byTopic[t] = id
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
