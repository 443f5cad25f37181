package engine

import (
	"math"

	"github.com/loopmq/loopmq/codec"
)

// redistributeShared runs when s's connection ends, and when s ends (s is
// already offline): the messages s received through a shared subscription
// and has not had acknowledged go to another online member of the group
// that chose s for them (outMsg.group), so a member's disconnect does not
// strand them (MQTT 5.0 section 4.8.2). That is every such QoS 1 message,
// in flight or queued (the
// standard allows the broker to wait for the member instead — loopmq, like
// EMQX, does not), and a QoS 2 message only if it is queued, never sent:
// one in flight stays with s until it reconnects [MQTT-4.8.2-4], and is
// never sent to another member, even when s ends [MQTT-4.8.2-5]. A message
// no other member can take stays with s where it was: one in flight keeps
// its slot, to be sent again under its packet identifier with DUP when s
// returns [MQTT-4.4.0-1]. Runs on s's owner loop.
func (s *session) redistributeShared(l *loop) {
	q := s.q
	if q == nil {
		return
	}
	q.inflight.each(func(sl *slot) {
		if sl.m.glen == 0 || sl.state != slotAwaitAck {
			return
		}
		// Out of the window first: once reshare has it, the message may
		// be released and reused on another loop.
		kept := *sl
		if !l.reshare(s, q.inflight.take(sl)) {
			q.inflight.untake(sl, kept)
		}
	})
	var moved []outMsg
	for n := q.queue.len(); n > 0; n-- {
		out := q.queue.pop()
		if out.glen != 0 && (out.qos < 2 || !out.dup) { // dup: may have been sent before a restart
			moved = append(moved, out)
			continue
		}
		q.queue.push(out, math.MaxInt, math.MaxInt) // back in order; it was within bounds already
	}
	for _, out := range moved {
		if !l.reshare(s, out) {
			s.enqueue(out)
		}
	}
}

// reshare delivers out to another online member of the group out came
// through (out.group). It reports false, keeping out's reference, when
// there is none.
func (l *loop) reshare(s *session, out outMsg) bool {
	m := out.msg
	ds := l.srv.idx.match(m.topic, m.from, &l.rematch)
	for i := range ds {
		d := &ds[i]
		if d.Share == "" || d.Unavailable || d.Handle == s {
			continue
		}
		if g := out.group(); d.Filter != g && (g != groupUnknown || !s.inGroup(d.Filter)) {
			continue // another group, which had its own copy
		}
		next := deliveryOut(m, d)
		next.retain = out.retain // as it was first sent
		seq := m.seq
		if seq != 0 || l.srv.durable(d.Handle) {
			// A copy, numbered anew if it is written: other loops may be
			// reading m, and the old number is s's (persist.go).
			next.msg = l.srv.copyMessage(m)
			m.release()
		}
		if next.qos > 0 && l.srv.durable(d.Handle) {
			// The entry moves with the message, in one batch.
			l.persistDelivery(d.Handle, &next)
		}
		l.forgetEntry(s, seq, out.qos, out.put) // s no longer owes it, wherever it goes
		if o := d.Handle.ownerFrom(l); o != l {
			l.handOff(o, task{kind: taskDeliver, sess: d.Handle, out: next})
		} else {
			l.deliver(d.Handle, next, false)
		}
		return true
	}
	return false
}

// groupUnknown is outMsg.group of a shared delivery read back from an
// entry that keeps only that it was shared (store.Entry.Shared without
// Group: written by a loopmq of store format 4 or older): it may go to a
// member of any group of the session that matches its topic. Never a
// group's filter, which has a share name after the prefix.
const groupUnknown = codec.SharePrefix

// inGroup reports whether s is a member of the shared group subscribed as
// filter ("$share/{name}/{filter}": a name on another filter is another
// group).
func (s *session) inGroup(filter string) bool {
	_, ok := s.subs[filter]
	return ok
}
