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

	buf     *[]byte // pooled storage: frame0, which holds topic and payload
	topic   []byte  // view into buf
	payload []byte  // view into buf
	qos     byte    // QoS it was published with
	retain  bool    // retain flag it was published with
	// frame0 is the whole encoded QoS 0, non-retained PUBLISH for 3.1/3.1.1
	// recipients: fixed header, topic, payload, laid out so that topic and
	// payload are its tail. Every such recipient is sent these same bytes
	// (one iovec, no per-recipient encoding).
	frame0 []byte

	// from is the client identifier of the publisher ("" for wills sent by
	// the broker on a session's behalf is never the case: wills carry it
	// too); 5.0 No Local compares it.
	from string

	pool   *messagePool
	pinned bool // never recycled: see newMessage
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

// newMessage copies topic and payload into a message with one reference
// owned by the caller. This is the only copy of a payload the broker makes.
// A retained message is pinned: allocated outside the pool and never
// recycled, because the retained index hands it to lock-free readers that
// hold no reference (the garbage collector frees it once unreachable).
func (p *messagePool) newMessage(topic, payload []byte, qos byte, retain bool, from string) *message {
	pub := codec.Publish{Topic: topic, Payload: payload}
	size := pub.Size(codec.V311)
	var m *message
	if retain {
		m = &message{pinned: true}
		b := make([]byte, 0, size)
		m.buf = &b
	} else {
		m = p.msgs.Get().(*message)
		m.buf = p.bufs.Get(size)
	}
	b := pub.AppendTo((*m.buf)[:0], codec.V311)
	*m.buf = b
	m.frame0 = b
	m.payload = b[len(b)-len(payload) : len(b) : len(b)]
	end := len(b) - len(payload)
	m.topic = b[end-len(topic) : end : end]
	m.qos, m.retain, m.from = qos, retain, from
	m.refs.Store(1)
	return m
}

// ref adds a reference.
func (m *message) ref() { m.refs.Add(1) }

// release drops a reference; the last one recycles the message.
func (m *message) release() {
	switch n := m.refs.Add(-1); {
	case n == 0 && m.pinned:
		// The garbage collector frees it once nothing points to it.
	case n == 0:
		p := m.pool
		p.bufs.Put(m.buf)
		*m = message{pool: p}
		p.msgs.Put(m)
	case n < 0:
		panic("BUG: message released more often than referenced")
	}
}
