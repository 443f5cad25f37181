package engine

import (
	"time"

	"github.com/loopmq/loopmq/codec"
)

// Publisher back-pressure.
//
// A QoS 1/2 publisher faster than one of its subscribers would fill that
// subscriber's bounded queue and then lose messages to the overflow policy.
// gnet cannot stop reading a connection, so the broker slows the publisher
// the way MQTT allows: it withholds the PUBACK/PUBREC of messages routed to
// a congested session, and the publisher's own in-flight window (5.0:
// the broker's Receive Maximum) stops it until the session drains.
//
// A session is congested (session.pressure) while its connected client is
// saturated, not stalled: its queue is past the high watermark — half of
// MaxQueued, but no more than 8 in-flight windows (at least 256): a
// saturated subscriber gains nothing from a deeper queue but latency and
// memory — or past half of MaxQueuedBytes, and it keeps acknowledging. The owner may run behind the
// publishers' loops, so QoS 1/2 deliveries still on their way to it count
// too (session.inTransit): past a quarter of MaxQueued in transit, the
// publisher is held as well, and its registration, which travels behind
// those deliveries, finds the owner's queue up to date. A client that acknowledges
// nothing for stallAfter, or goes offline, ends the pressure and the
// overflow policy applies again, so a stuck subscriber holds publishers
// back for at most about stallAfter plus one sweep, never longer.
//
// Ownership: pressure is written by the session's owner and read by any
// loop's route. The waiting publishers are kept in the session's queues
// (owner loop); a publisher registers by a task posted to the owner and
// is woken by a task posted to the publisher's loop. The held
// acknowledgements belong to the publisher's client and loop.

// stallAfter is how long a congested client may go without acknowledging
// before it counts as stalled rather than saturated.
const stallAfter = 500 * time.Millisecond

// heldAcks are a publisher's withheld acknowledgements, in the order the
// PUBLISH packets arrived ([MQTT-4.6.0-2/3]: once one is held, every later
// one waits behind it).
type heldAcks struct {
	acks  []heldAck
	on    *session // the congested session this client waits for; nil once woken
	since int64    // loop clock when the first ack was held
	// wake runs the client's releaseHeld on its loop when called on any
	// loop (handing itself over if need be). It is made once, with the
	// heldAcks, before any loop is given it, and never changes: the
	// registration with a congested session and the wake-up then
	// allocate nothing (they used to allocate three closures per hold).
	wake func(*loop)
}

// newHeldAcks makes c's heldAcks. Runs on c's loop.
func newHeldAcks(c *client) *heldAcks {
	h := &heldAcks{}
	var wake func(*loop)
	wake = func(l *loop) {
		if l != c.loop {
			l.handOff(c.loop, task{kind: taskFunc, fn: wake})
			return
		}
		c.releaseHeld()
	}
	h.wake = wake
	return h
}

// heldAck is one withheld acknowledgement. wait is the store batch that
// must be durable before it is sent (persist.go), or the message whose
// deliveries must all be acknowledged instead (earlyack.go; the held
// acknowledgement holds a reference to it); zero for none.
type heldAck struct {
	codec.Ack
	wait durableWait
}

// maxHeldAcks bounds a client's withheld acknowledgements (3.1.1 clients
// have no Receive Maximum): past it back-pressure holds are released. An
// acknowledgement held for the store is never released early; a client
// that has this many waiting has no packet identifier left [MQTT-2.3.1-2],
// so one more PUBLISH is a protocol violation and closes the connection.
const maxHeldAcks = 65535

// ackPublish acknowledges an inbound QoS 1/2 PUBLISH with code, or holds
// the acknowledgement back when slow (a congested recipient) is set, when
// w names a store batch that must be durable first (persist.go; or every
// delivery of w.acked acknowledged, earlyack.go), or when older ones are
// held. A held acknowledgement takes w's reference to w.acked.
func (c *client) ackPublish(t codec.Type, id uint16, code codec.ReasonCode, slow *session, w durableWait) {
	h := c.heldAcks()
	if slow == nil && w.ticket == 0 && (h == nil || len(h.acks) == 0) {
		c.writeAck(t, id, code)
		return
	}
	if h == nil {
		h = newHeldAcks(c)
		c.extras().held = h
	}
	if len(h.acks) == 0 {
		h.since = c.loop.mono
	}
	if len(h.acks) >= maxHeldAcks {
		c.releaseHeld() // what the store made durable, and back-pressure holds before the rest
	}
	if len(h.acks) >= maxHeldAcks {
		pkt := codec.PUBLISH
		if t == codec.PUBCOMP {
			pkt = codec.PUBREL
		}
		if w.acked != nil {
			w.acked.release()
		}
		c.protocolError(&codec.Error{Code: codec.ReceiveMaximumExceeded, Packet: pkt,
			Reason: "65,535 QoS 1/2 packets unacknowledged and another arrived: a packet identifier was reused"})
		return
	}
	if w.acked != nil {
		w.acked.held.Store(true) // the held acknowledgement takes w's reference
	}
	h.acks = append(h.acks, heldAck{Ack: codec.Ack{PacketType: t, PacketID: id, ReasonCode: code}, wait: w})
	if len(h.acks) >= maxHeldAcks && w.ticket == 0 {
		c.releaseHeld()
		return
	}
	if slow != nil && h.on == nil {
		h.on = slow
		c.loop.addWaiter(slow, h.wake)
	}
}

// releaseHeld sends the withheld acknowledgements, in order, up to the
// first whose store batch is not durable yet and whose message is not
// acknowledged by every persistent session it reached; that one and those
// behind it are sent when it is (loop.committed, client.releaseEarly).
// Runs on c's loop.
func (c *client) releaseHeld() {
	h := c.heldAcks()
	if h == nil {
		return
	}
	h.on = nil
	if c.state == stateClosed {
		for i := range h.acks {
			if m := h.acks[i].wait.acked; m != nil {
				m.release()
				h.acks[i].wait.acked = nil
			}
		}
		h.acks = h.acks[:0]
		return
	}
	ls := &c.loop.st
	n := 0
	for n < len(h.acks) {
		a := &h.acks[n]
		if a.wait.ticket > ls.durable {
			if !ls.acked(a.wait) {
				break
			}
			c.loop.stats.acksEarly.Add(1)
		}
		c.writeAck(a.PacketType, a.PacketID, a.ReasonCode)
		if m := a.wait.acked; m != nil {
			m.held.Store(false)
			m.release()
			a.wait.acked = nil
		}
		n++
	}
	if n < len(h.acks) {
		k := copy(h.acks, h.acks[n:])
		for i := k; i < len(h.acks); i++ {
			h.acks[i].wait.acked = nil // moved or released
		}
		h.acks = h.acks[:k]
		h.since = c.loop.mono
		return
	}
	h.acks = h.acks[:0]
	if cap(h.acks) > 1024 {
		h.acks = nil
	}
}

// addWaiter registers a publisher's wake (heldAcks.wake) with s, to be
// called when s's pressure ends, or calls it now if it already has. It
// runs on s's owner loop: inline when that is l, otherwise handed off (a
// taskAddWaiter, which follows s if it moves).
func (l *loop) addWaiter(s *session, wake func(*loop)) {
	if o := s.ownerFrom(l); o != l {
		l.handOff(o, task{kind: taskAddWaiter, sess: s, fn: wake})
		return
	}
	if !s.flag(flagPressure) || s.q == nil {
		wake(l)
		return
	}
	s.q.waiters = append(s.q.waiters, wake)
}

// setPressure updates s's congestion after its queue grew or shrank, or
// its client came or went. Runs on s's owner.
func (s *session) setPressure(l *loop) {
	q := s.q
	on := false
	if q != nil && s.client != nil && !q.stalled {
		o := &l.srv.opts
		high := l.srv.pressureHigh
		if s.flag(flagPressure) {
			// Hysteresis: stay congested until the queue is down to half
			// the high watermark.
			on = q.queue.len() > high/2 || q.queue.bytes > o.MaxQueuedBytes/4
		} else {
			on = q.queue.len() >= high || q.queue.bytes >= o.MaxQueuedBytes/2
			if on {
				q.lastAck = l.mono // the stall clock starts now
			}
		}
	}
	if on == s.flag(flagPressure) {
		return
	}
	s.setFlag(flagPressure, on)
	if !on && q != nil {
		for i, wake := range q.waiters {
			wake(l)
			q.waiters[i] = nil
		}
		q.waiters = q.waiters[:0]
	}
}

// checkStall ends s's pressure when its client stopped acknowledging: a
// stuck subscriber must not hold its publishers back. Runs on s's owner.
func (s *session) checkStall(l *loop) {
	if q := s.q; q != nil && s.flag(flagPressure) && l.mono-q.lastAck > int64(stallAfter) {
		q.stalled = true
		l.srv.log.Info("subscriber stopped acknowledging; its queue drops past its bound", "client", s.id)
		s.setPressure(l)
	}
}

// acked notes that s's client acknowledged a message. Runs on s's owner.
func (s *session) acked(l *loop) {
	q := s.q
	q.lastAck = l.mono
	q.stalled = false
}
