package engine

import (
	"time"

	"github.com/loopmq/loopmq/codec"
)

// will is a connection's Will Message [MQTT 5.0 section 3.1.2.5].
//
// Ownership: the client holds it (client's loop) while the connection is
// open. When the connection ends it is published, dropped (the client
// sent DISCONNECT 0x00 [MQTT-3.14.4-3]), or, with a Will Delay Interval
// and a session that outlives the connection, moved into the session
// (owner loop, session.will) until the delay elapses or the session ends,
// whichever is first [MQTT-3.1.2-8]; a new connection that resumes the
// session cancels it [MQTT-3.1.3-9]. A connection that ends while its
// session is still on its way to its loop (stateWaiting: a takeover from
// another loop, or a Clean Start waiting for the old session to end
// there) keeps its will until the binding finds it closed (client.bind),
// on the same loop, which then does the same.
type will struct {
	// msg carries the will's topic, payload and 5.0 properties (copied
	// into the message at CONNECT, like a PUBLISH's [MQTT-3.1.3-10]);
	// owned reference.
	msg *message
	// expiry is the will's Message Expiry Interval in seconds, which
	// starts when the will is published (hasExpiry: it has one).
	expiry    uint32
	hasExpiry bool
	delay     uint32    // Will Delay Interval, seconds
	ident     *Identity // whose will it is, client id aside (authz.go); nil: anonymous
	at        int64     // loop clock when a delayed will is due; set when it moves into the session
}

// newWill copies the will of CONNECT p (nil when it has none). from is the
// client identifier.
func (srv *Server) newWill(p *codec.Connect, from string) *will {
	if !p.WillFlag {
		return nil
	}
	wp := &p.Will.Properties
	w := &will{msg: srv.msgs.newMessage(p.Will.Topic, p.Will.Payload, p.Will.QoS, p.Will.Retain, from, wp, nil, 0)}
	if p.Version == codec.V5 {
		w.delay = wp.WillDelay
		w.expiry, w.hasExpiry = wp.MessageExpiry, wp.Has(codec.PropMessageExpiry)
	}
	return w
}

// release drops the will unpublished.
func (w *will) release() {
	if w.msg != nil {
		w.msg.release()
		w.msg = nil
	}
}

// parkWill moves c's will into s when it has to wait for its Will Delay
// Interval: the connection ended without DISCONNECT 0x00 and s outlives
// it. The interval runs from the close (c.lastSeen). Otherwise the will
// stays with c for sendWill. Runs on s's owner, c's loop.
func (c *client) parkWill(s *session) {
	w := c.will
	if w == nil || w.delay == 0 || c.disconnect || s.flag(flagClean) {
		return
	}
	c.will = nil
	if old := s.will; old != nil {
		old.release() // not reached: a resumed session's will was cancelled
	}
	w.at = c.lastSeen + int64(w.delay)*int64(time.Second)
	s.will = w
}

// sendWill publishes the client's will now, once, unless the client sent
// DISCONNECT without asking for it [MQTT-3.1.2-8] [MQTT-3.1.2-10]. A
// delayed will has been moved to the session by parkWill before.
func (c *client) sendWill() {
	w := c.will
	if w == nil {
		return
	}
	c.will = nil
	if c.disconnect {
		w.release()
		return
	}
	c.loop.publishWill(w)
}

// publishWill routes w's message, consuming w.
func (l *loop) publishWill(w *will) {
	m := w.msg
	w.msg = nil
	if m == nil {
		return
	}
	if !l.mayPublishWill(w, m) { // authz.go: Write, checked again
		m.release()
		return
	}
	m.expiry = 0
	if w.hasExpiry {
		// Not routed yet, so still the publisher's to change.
		m.expiry = l.mono + int64(w.expiry)*int64(time.Second)
	}
	l.route(m)
}
