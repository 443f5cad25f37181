package engine

import (
	"sync"
	"sync/atomic"
	"time"

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
	// acksDue counts the message's QoS 1 deliveries to persistent sessions
	// whose clients have not acknowledged them yet, when publisher is set
	// (earlyack.go); any loop counts it down.
	acksDue atomic.Int32
	// held says the publisher's PUBACK is withheld waiting for acksDue
	// (set and cleared on its loop, read by any): the last
	// acknowledgement tells the publisher's loop only then.
	held atomic.Bool

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
	// props are the 5.0 properties forwarded to every 5.0 recipient, encoded
	// once (codec.Publish.RawProperties form): payload format indicator,
	// content type, response topic, correlation data and user properties in
	// the order received [MQTT-3.3.2-15..20]. A view into buf; nil without.
	props []byte
	// expiry is when the message expires, on the server's monotonic clock
	// (nanoseconds since start, as loop.mono); 0 means never [MQTT-3.3.2-5].
	expiry int64

	// from is the client identifier of the publisher ("" for wills sent by
	// the broker on a session's behalf is never the case: wills carry it
	// too); 5.0 No Local compares it.
	from string

	// seq numbers the message in the store, 0 until its first entry is
	// written (persist.go). Set by the routing loop before any hand-off.
	seq uint64
	// router is the loop that numbered the message and put its entries
	// in its batch (persistDelivery); nil for a message read back from
	// the store. An acknowledgement on that loop deletes its entry at
	// once (loop.forgetAcked).
	router *loop
	// publisher is the client whose PUBACK may go once acksDue is zero;
	// nil when that PUBLISH waits for its batch regardless (earlyack.go).
	// Set by the routing loop before any hand-off.
	publisher *client

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

// newMessage copies topic, payload and the forwarded 5.0 properties into a
// message with one reference owned by the caller. This is the only copy of
// a payload the broker makes. props are the PUBLISH (or will) properties,
// nil for none; recv, when set, is the 5.0 PUBLISH they were decoded from
// (props is &recv.Properties), whose received property block is copied
// instead of re-encoding props. now is the loop clock, the origin of
// props' Message Expiry Interval.
//
// A retained message is pinned: allocated outside the pool and never
// recycled, because the retained index hands it to lock-free readers that
// hold no reference (the garbage collector frees it once unreachable).
func (p *messagePool) newMessage(topic, payload []byte, qos byte, retain bool, from string, props *codec.Properties, recv *codec.Publish, now int64) *message {
	size := codec.Publish0Size(topic, payload)
	hasFwd := props != nil && props.Present&forwardedProps != 0
	var fwd *codec.Properties
	switch {
	case !hasFwd:
	case recv != nil:
		size += len(recv.ReceivedProperties) // at least what is forwarded
	default:
		// Per-recipient properties are left out: the expiry is kept as a
		// deadline, aliases belong to a connection, subscription
		// identifiers to a subscription.
		fwd = new(codec.Properties)
		*fwd = *props
		fwd.Present &= forwardedProps
		fwd.MessageExpiry, fwd.TopicAlias, fwd.SubscriptionIDs = 0, 0, nil
		size += fwd.PublishRawSize()
	}
	var m *message
	if retain {
		m = &message{pinned: true}
		b := make([]byte, 0, size)
		m.buf = &b
	} else {
		m = p.msgs.Get().(*message)
		m.buf = p.bufs.Get(size)
	}
	b := codec.AppendPublish0((*m.buf)[:0], topic, payload)
	m.frame0 = b
	m.payload = b[len(b)-len(payload) : len(b) : len(b)]
	end := len(b) - len(payload)
	m.topic = b[end-len(topic) : end : end]
	switch {
	case !hasFwd:
	case fwd != nil:
		b = fwd.AppendPublishRaw(b)
	default:
		b = recv.AppendForwarded(b)
	}
	if len(b) > len(m.frame0) {
		m.props = b[len(m.frame0):len(b):len(b)]
	}
	*m.buf = b
	if props != nil && props.Present.Has(codec.PropMessageExpiry) {
		m.expiry = now + int64(props.MessageExpiry)*int64(time.Second)
	}
	m.qos, m.retain, m.from = qos, retain, from
	m.refs.Store(1)
	return m
}

// forwardedProps are the PUBLISH properties the broker passes on unchanged.
var forwardedProps = func() codec.PropSet {
	var s codec.PropSet
	for _, id := range []codec.PropID{codec.PropPayloadFormat, codec.PropContentType,
		codec.PropResponseTopic, codec.PropCorrelationData, codec.PropUser} {
		s.Add(id)
	}
	return s
}()

// expired reports whether m's Message Expiry Interval has passed at now.
func (m *message) expired(now int64) bool { return m.expiry != 0 && now >= m.expiry }

// remainingExpiry is the Message Expiry Interval to send at now: the one
// received minus the time the message waited in the server, in whole
// seconds rounded up [MQTT-3.3.2-6].
func (m *message) remainingExpiry(now int64) uint32 {
	left := m.expiry - now
	if left <= 0 {
		return 0
	}
	return uint32((left + int64(time.Second) - 1) / int64(time.Second))
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
