package engine

import (
	"sync"
	"sync/atomic"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/pool"
)

// message is one published application message after it left the
// publisher's read buffer: the single copy of its topic and payload that
// every subscriber, queue and the retained index share.
//
// A message is immutable once routed, so any loop may read it. Its life is
// counted by refs: every holder (a delivery in flight to another loop, a
// queue slot, an in-flight window slot, the retained index, a pending
// write) owns one reference and calls release when done; the last release
// returns the message and its buffer to their pools.
type message struct {
	refs atomic.Int32

	buf     *[]byte // pooled storage holding topic, payload and hdr0
	topic   []byte  // view into buf
	payload []byte  // view into buf
	qos     byte    // QoS it was published with
	retain  bool    // retain flag it was published with
	// hdr0 is the encoded header (fixed header and topic) of the QoS 0,
	// non-retained frame for 3.1/3.1.1 recipients and 5.0 recipients that
	// need no per-subscriber properties: every such recipient gets
	// hdr0+payload, so it is encoded once per message.
	hdr0 []byte

	// from is the client identifier of the publisher ("" for wills sent by
	// the broker on a session's behalf is never the case: wills carry it
	// too); 5.0 No Local compares it.
	from string

	pool *messagePool
}

// messagePool recycles messages and their buffers.
type messagePool struct {
	msgs sync.Pool
	bufs pool.Bytes
}

func newMessagePool() *messagePool {
	p := &messagePool{}
	p.msgs.New = func() any { return &message{pool: p} }
	return p
}

// newMessage copies topic and payload into a pooled message with one
// reference owned by the caller. This is the only copy of a payload the
// broker makes.
func (p *messagePool) newMessage(topic, payload []byte, qos byte, retain bool, from string) *message {
	m := p.msgs.Get().(*message)
	hdr0Len := 1 + 4 + 2 + len(topic)
	m.buf = p.bufs.Get(len(topic) + len(payload) + hdr0Len)
	b := append((*m.buf)[:0], topic...)
	b = append(b, payload...)
	m.topic = b[:len(topic):len(topic)]
	m.payload = b[len(topic):len(b):len(b)]
	pub := codec.Publish{Topic: m.topic, Payload: m.payload}
	b = pub.AppendHeader(b, codec.V311)
	m.hdr0 = b[len(topic)+len(payload):]
	*m.buf = b
	m.qos, m.retain, m.from = qos, retain, from
	m.refs.Store(1)
	return m
}

// retain adds a reference.
func (m *message) ref() { m.refs.Add(1) }

// release drops a reference; the last one recycles the message.
func (m *message) release() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		p := m.pool
		p.bufs.Put(m.buf)
		*m = message{pool: p}
		p.msgs.Put(m)
	case n < 0:
		panic("BUG: message released more often than referenced")
	}
}
