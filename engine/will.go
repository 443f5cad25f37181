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
// session cancels it [MQTT-3.1.3-9].
type will struct {
	msg *message // owned reference
	// props are the 5.0 will properties but the Will Delay Interval, in
	// memory of their own (not views into the read buffer); nil when the
	// will has none.
	props *codec.Properties
	delay uint32 // Will Delay Interval, seconds
	at    int64  // loop clock when a delayed will is due; set when it moves into the session
}

// newWill copies the will of CONNECT p (nil when it has none). from is the
// client identifier.
func (srv *Server) newWill(p *codec.Connect, from string) *will {
	if !p.WillFlag {
		return nil
	}
	w := &will{msg: srv.msgs.newMessage(p.Will.Topic, p.Will.Payload, p.Will.QoS, p.Will.Retain, from)}
	if p.Version == codec.V5 {
		w.delay = p.Will.Properties.WillDelay
		w.props = ownWillProps(&p.Will.Properties)
	}
	return w
}

// ownWillProps copies the will properties that travel with the will
// message (all but the Will Delay Interval) into one allocation of their
// own, so they outlive the CONNECT frame. It returns nil when there are
// none.
func ownWillProps(p *codec.Properties) *codec.Properties {
	keep := p.Present
	keep.Remove(codec.PropWillDelay)
	n := len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
	for _, u := range p.User {
		n += len(u.Key) + len(u.Value)
	}
	if keep == 0 && n == 0 && len(p.User) == 0 && p.PayloadFormat == 0 && p.MessageExpiry == 0 {
		return nil
	}
	buf := make([]byte, 0, n) // never grows: the views below stay valid
	own := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	out := &codec.Properties{
		Present:         keep,
		PayloadFormat:   p.PayloadFormat,
		MessageExpiry:   p.MessageExpiry,
		ContentType:     own(p.ContentType),
		ResponseTopic:   own(p.ResponseTopic),
		CorrelationData: own(p.CorrelationData),
	}
	if len(p.User) > 0 {
		out.User = make([]codec.UserProperty, len(p.User))
		for i, u := range p.User {
			out.User[i] = codec.UserProperty{Key: own(u.Key), Value: own(u.Value)}
		}
	}
	return out
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
// it. Otherwise the will stays with c for sendWill. Runs on s's owner,
// c's loop.
func (c *client) parkWill(s *session) {
	w := c.will
	if w == nil || w.delay == 0 || c.disconnect || s.clean.Load() {
		return
	}
	c.will = nil
	if old := s.will; old != nil {
		old.release() // not reached: a resumed session's will was cancelled
	}
	w.at = c.loop.mono + int64(w.delay)*int64(time.Second)
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
	// TODO(issue 7): will properties — attach w.props (an owned copy:
	// payload format, message expiry, content type, response topic,
	// correlation data, user properties) to m once messages carry PUBLISH
	// properties.
	l.route(m)
}
