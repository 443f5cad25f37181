package engine

import (
	"unicode/utf8"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/trie"
)

// onPublish handles an inbound PUBLISH. The payload is copied once, into a
// pooled message shared by every recipient; then the message is routed and
// acknowledged per its QoS [MQTT 4.3].
func (c *client) onPublish(p *codec.Publish) {
	l := c.loop
	s := c.sess
	l.stats.msgsIn[p.QoS].Add(1) // the decoder refuses QoS 3 [MQTT-3.3.1-4]
	l.acc.payloadIn[p.QoS] += uint64(len(p.Payload))
	// The conditions of publishUnsupported, tested here first so that a
	// PUBLISH within the capabilities costs two comparisons.
	if (p.QoS > l.srv.maxQoS || p.Retain && l.srv.opts.NoRetain) && c.refusePublish(p) { // capabilities.go
		return
	}
	code := codec.Success
	if c.version == codec.V5 {
		if p.Properties.Has(codec.PropTopicAlias) {
			topic, err := c.resolveTopicAlias(p.Topic, p.Properties.TopicAlias)
			if err != nil {
				c.protocolError(err)
				return
			}
			p.Topic = topic
		}
		if len(p.Properties.SubscriptionIDs) > 0 {
			c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: codec.PUBLISH,
				Reason: "subscription identifier in a PUBLISH from a client [MQTT-3.3.4-6]"})
			return
		}
		if p.QoS > 0 && c.inboundUnacked() >= c.loop.srv.opts.ReceiveMaximum {
			c.protocolError(&codec.Error{Code: codec.ReceiveMaximumExceeded, Packet: codec.PUBLISH,
				Reason: "more unacknowledged QoS 1/2 PUBLISH packets than the server's Receive Maximum [MQTT-3.3.4-9]"})
			return
		}
		if p.Properties.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
			// [MQTT-3.3.2-4] the sender promised UTF-8; the server may
			// refuse it with 0x99 (MQTT 5.0 section 3.3.2.3.2).
			err := &codec.Error{Code: codec.PayloadFormatInvalid, Packet: codec.PUBLISH,
				Reason: "payload format indicator is 1 but the payload is not valid UTF-8"}
			if p.QoS == 0 {
				c.protocolError(err)
				return
			}
			l.srv.log.Info("PUBLISH refused", "client", c.id(), "error", err)
			code = codec.PayloadFormatInvalid
		}
	}
	if code == codec.Success && !c.mayPublish(p) { // authz.go: Write; answered there
		return
	}
	if code != codec.Success {
		t := codec.PUBACK
		if p.QoS == 2 {
			t = codec.PUBREC // the flow ends here: no PUBREL follows an error [MQTT-4.3.3]
		}
		c.ackPublish(t, p.PacketID, code, nil, durableWait{})
		return
	}
	switch p.QoS {
	case 0:
		l.route(l.srv.msgs.newMessage(p.Topic, p.Payload, 0, p.Retain, c.clientID, &p.Properties, p, l.mono))
	case 1:
		slow, n := l.route(l.srv.msgs.newMessage(p.Topic, p.Payload, 1, p.Retain, c.clientID, &p.Properties, p, l.mono))
		c.ackPublish(codec.PUBACK, p.PacketID, c.matchCode(n), slow, l.waitSaved(c))
	case 2:
		// Exactly once, method B of MQTT 4.3.3: deliver on the first
		// receipt, remember the packet identifier until PUBREL, and do not
		// deliver a re-sent PUBLISH with that identifier again.
		var slow *session
		n := 1
		if _, seen := s.inboundQoS2[p.PacketID]; !seen {
			if len(s.inboundQoS2) >= maxInboundQoS2 {
				c.protocolError(&codec.Error{Code: codec.ReceiveMaximumExceeded, Packet: codec.PUBLISH,
					Reason: "too many QoS 2 messages awaiting PUBREL"})
				return
			}
			if s.inboundQoS2 == nil {
				s.inboundQoS2 = make(map[uint16]struct{})
			}
			s.inboundQoS2[p.PacketID] = struct{}{}
			slow, n = l.route(l.srv.msgs.newMessage(p.Topic, p.Payload, 2, p.Retain, c.clientID, &p.Properties, p, l.mono))
			if l.srv.ps != nil {
				c.persistInbound(p.PacketID, true)
			}
		} else if l.srv.ps != nil {
			// Sent again, typically after a reconnection, when the first
			// one's PUBREC was still waiting for its batch (perhaps on
			// another loop: a takeover commits the old owner's batch
			// before the session moves). Writing the identifier again
			// makes this PUBREC wait for a batch committed after that
			// one, which the store makes durable after it.
			c.persistInbound(p.PacketID, true)
		}
		c.ackPublish(codec.PUBREC, p.PacketID, c.matchCode(n), slow, l.waitDurable(c))
	}
}

// matchCode is the PUBACK/PUBREC reason code for a message that reached n
// subscriptions: 5.0 says when nobody matched (0x10), which is still a
// success [MQTT 5.0 section 3.4.2.1].
func (c *client) matchCode(n int) codec.ReasonCode {
	if n == 0 && c.version == codec.V5 {
		return codec.NoMatchingSubscribers
	}
	return codec.Success
}

// inboundUnacked counts the client's QoS 1/2 PUBLISH packets the broker
// has not acknowledged yet: held-back PUBACK/PUBREC (flow.go) and QoS 2
// flows awaiting PUBREL. The server's Receive Maximum bounds it.
func (c *client) inboundUnacked() int {
	n := len(c.sess.inboundQoS2)
	if h := c.heldAcks(); h != nil {
		n += len(h.acks)
	}
	return n
}

// maxInboundQoS2 bounds the QoS 2 packet identifiers a client may leave
// awaiting PUBREL: the broker's Receive Maximum.
const maxInboundQoS2 = 65535

// onAck handles PUBACK, PUBREC, PUBREL and PUBCOMP.
func (c *client) onAck(a *codec.Ack) {
	s := c.sess
	switch a.PacketType {
	case codec.PUBACK:
		if sl := s.lookup(a.PacketID, slotAwaitAck); sl != nil {
			s.acked(c.loop)
			c.loop.forgetAcked(s, &sl.m)
			s.q.inflight.free(sl)
			s.pump()
		}
	case codec.PUBREC:
		sl := s.lookup(a.PacketID, slotAwaitRec)
		if sl == nil {
			if rel := s.lookup(a.PacketID, slotAwaitComp); rel != nil {
				if rel.hold == 0 {
					// A PUBREC again: the release stands [MQTT-4.3.3].
					c.writeAck(codec.PUBREL, a.PacketID, codec.Success)
				}
				return // else its PUBREL follows once the release is durable
			}
			code := codec.Success
			if c.version == codec.V5 {
				code = codec.PacketIdentifierNotFound
			}
			c.writeAck(codec.PUBREL, a.PacketID, code)
			return
		}
		s.acked(c.loop)
		if a.ReasonCode.IsError() {
			// 5.0: the client refused the message; the flow ends here.
			c.loop.forgetEntry(s, sl.m.msg.seq, sl.m.qos, sl.m.put)
			s.q.inflight.free(sl)
			s.pump()
			return
		}
		// A pending slot is an earlier connection's PUBLISH not sent
		// again yet on this one: the client had it.
		s.release(c.loop, sl, c)
	case codec.PUBREL:
		_, ok := s.inboundQoS2[a.PacketID]
		delete(s.inboundQoS2, a.PacketID)
		l := c.loop
		l.st.needs = false
		if ok && l.srv.ps != nil {
			c.persistInbound(a.PacketID, false)
		}
		code := codec.Success
		if !ok && c.version == codec.V5 {
			code = codec.PacketIdentifierNotFound
		}
		// After the forgetting is durable: a publisher told PUBCOMP may
		// reuse the identifier, which a restarted broker still holding
		// it would take for a repeat and drop.
		c.ackPublish(codec.PUBCOMP, a.PacketID, code, nil, l.waitDurable(c))
	case codec.PUBCOMP:
		if sl := s.lookup(a.PacketID, slotAwaitComp); sl != nil {
			s.acked(c.loop)
			c.loop.forgetEntry(s, sl.seq, 2, 0)
			s.q.inflight.free(sl)
			s.pump()
		}
	}
}

// release makes sl, a QoS 2 slot of s awaiting PUBREC, a release awaiting
// PUBCOMP, as a PUBREC does: the message goes, and from then on only its
// packet identifier remains (MQTT 4.3.3); PUBREL goes out once the release
// is recorded (a durable session's, persist.go), and the identifier is
// free when PUBCOMP comes [MQTT-4.3.3-1]. The slot keeps counting against
// the client's Receive Maximum until then (MQTT 5.0 section 4.9). The
// message is never sent again: a pending slot (resendPending) is pending
// no more, and a release is recorded in the store before its PUBREL is
// written, so that after a restart the client sees the PUBREL again,
// never the PUBLISH. c is the connection to write the PUBREL to; nil
// leaves it to the resume under way, which writes the PUBREL of every
// release after its CONNACK (client.bind). Runs on s's owner, l.
func (s *session) release(l *loop, sl *slot, c *client) {
	w := &s.q.inflight
	if sl.pending {
		sl.pending = false
		w.pending--
	}
	sl.seq = sl.m.msg.seq
	w.delivered(sl)
	sl.state = slotAwaitComp
	sl.hold = 0
	if sl.seq != 0 && l.srv.durable(s) {
		l.markEntry(s, &outMsg{qos: 2}, sl.seq, store.EntryAwaitComp, sl.id)
		l.holdForDurable(s, sl)
		return
	}
	if c != nil {
		c.writeAck(codec.PUBREL, sl.id, codec.Success)
	}
}

// dropInFlight drops the message of sl, a slot of s awaiting PUBACK or
// PUBREC, when the broker will not deliver it after all. c is the
// connection to write to, as for release.
//
// A slot whose PUBLISH was never written (sl.written: held for its mark
// to be durable, or pending since then) is freed: no client holds its
// identifier, and a PUBREL for a PUBLISH the client never saw is no part
// of the QoS 2 exchange [MQTT-4.3.3-1].
//
// QoS 1: the slot is freed. A QoS 1 receiver keeps no state under a
// packet identifier that would make it drop a message: it delivers what
// it receives, and once it has sent PUBACK treats a PUBLISH under the same
// identifier as new (MQTT 3.1.1 [MQTT-4.3.2-2], MQTT 5.0 section 4.3.2),
// so reusing the identifier loses nothing.
//
// QoS 2, written: the slot becomes a release (release). The client may
// hold the identifier (it had the PUBLISH; its PUBREC may have
// been lost with a connection), and until a PUBREL releases it, it
// acknowledges a PUBLISH under that identifier without delivering it
// [MQTT-4.3.3-2] (MQTT 5.0 section 4.3.3, Method B): a new message sent
// under it would be lost. A recovered slot counts as written (the store
// cannot tell); if the client never had it, it answers the PUBREL with
// PUBCOMP (5.0: 0x92 Packet Identifier not found), which frees the slot
// like any PUBCOMP. Runs on s's owner, l.
func (s *session) dropInFlight(l *loop, sl *slot, c *client) {
	if sl.state == slotAwaitRec && sl.written {
		s.release(l, sl, c)
		return
	}
	l.forgetEntry(s, sl.m.msg.seq, sl.m.qos, sl.m.put)
	s.q.inflight.free(sl)
}

// resendPending sends again, with DUP and their packet identifiers, the
// PUBLISHes of an earlier connection that c's Receive Maximum left
// waiting, oldest first, while fewer than c.sendQuota slots are out
// [MQTT-3.3.4-9]. A pending slot still held for its state to be durable
// (sendHeld) waits for that. Runs on s's owner with c connected.
//
// A held PUBLISH was never written, so its DUP is set on what is its first
// attempt: DUP 1 says the packet "might be" a re-delivery [MQTT 3.3.1.1].
func (s *session) resendPending(c *client) {
	w := &s.q.inflight
	w.each(func(sl *slot) {
		if !sl.pending || sl.hold != 0 || w.used-w.pending >= int(c.sendQuota) {
			return
		}
		sl.pending = false
		w.pending--
		if !c.writePublish(sl.m, sl.id, true) {
			// Too large for this connection: discarded as if sent
			// [MQTT-3.1.2-25]. An earlier connection may have had it.
			s.dropInFlight(c.loop, sl, c)
			return
		}
		sl.written = true
	})
}

// route delivers m to every matching subscription and updates the retained
// index. It consumes the caller's reference to m. Deliveries to sessions
// owned by this loop happen now; the others are batched per target loop
// and handed over at the end of the current event. It returns the number
// of deliveries and a congested recipient of a QoS 1/2 delivery, if any,
// whose publisher should be held back (flow.go).
func (l *loop) route(m *message) (slow *session, n int) {
	srv := l.srv
	l.st.needs = false
	prev := l.st.routing // a will routed from inside a delivery nests
	l.st.routing = m
	var start routeStart
	if srv.ps != nil {
		start = l.st.beginRoute()
	}
	if m.retain {
		// [MQTT-3.3.1-5] store; [MQTT-3.3.1-10/11] an empty payload removes.
		srv.setRetained(m)
		if srv.ps != nil {
			l.persistRetained(m)
		}
	}
	ds := srv.idx.match(m.topic, m.from, &l.match)
	for i := range ds {
		d := &ds[i]
		s := d.Handle
		out := deliveryOut(m, d)
		if out.qos > 0 {
			if slow == nil && s.flag(flagPressure) {
				slow = s
			}
			if srv.ps != nil && s.stores() {
				if srv.ps.full.Load() {
					srv.ps.notStored.Add(1)
				} else {
					if d.Share != "" && l.match.Again(i) {
						// s gets m twice (a shared group and another
						// subscription): its entries are keyed by
						// session and message number, so this one is a
						// copy with a number of its own.
						out.msg = srv.copyMessage(m)
					}
					l.persistDelivery(s, &out)
				}
			}
		}
		if out.msg == m {
			m.ref()
		}
		if o := s.ownerFrom(l); o != l {
			t := task{kind: taskDeliver, sess: s, out: out}
			if out.qos > 0 {
				// Count it until the owner has it, so that publishers are
				// held back before the owner's queue sees the burst.
				t.transit = true
				if s.inTransit.Add(1) > l.srv.transitHigh && slow == nil {
					slow = s
				}
			}
			l.handOff(o, t)
			continue
		}
		l.deliver(s, out, false)
	}
	if srv.ps != nil {
		l.st.endRoute(m, start)
	}
	l.st.routing = prev
	m.release()
	return slow, len(ds)
}

// deliveryOut is what m becomes for delivery d: the QoS granted, the
// retain flag [MQTT-3.3.1-9] (0 on delivery to established subscriptions
// unless Retain As Published), the subscription identifiers of every
// matching subscription, and whether a shared group chose the session.
func deliveryOut(m *message, d *trie.Delivery[*session]) outMsg {
	out := outMsg{msg: m, qos: min(m.qos, d.QoS)}
	if d.Share != "" {
		out.setGroup(d.Filter)
	}
	for i := range d.Subs {
		o := &d.Subs[i]
		out.retain = out.retain || (m.retain && o.RetainAsPublished)
		out.addSubID(o.SubscriptionID)
	}
	return out
}

// deliver gives out to s, which this loop owns, or forwards it to the loop
// that owns s now. It consumes out's reference. forwarded says out came
// from a previous owner of s; while s is holding, deliveries routed here
// directly wait until every forwarded one has arrived.
func (l *loop) deliver(s *session, out outMsg, forwarded bool) {
	if o := s.ownerFrom(l); o != l {
		l.handOff(o, task{kind: taskDeliver, sess: s, out: out, forwarded: true})
		return
	}
	if out.stored && !l.srv.durable(s) {
		l.forgetStray(s, &out)
	}
	if q := s.q; q != nil && out.msg.seq != 0 && out.msg.seq < q.readTo {
		// Read back from the store while it travelled here (spill.go).
		out.msg.release()
		return
	}
	if out.glen != 0 && out.qos > 0 && (s.ended || s.client == nil && !s.holding) && l.reshare(s, out) {
		// Routed to s while it was a member online; it left while the
		// message travelled here: another member takes it, as it would
		// have at the disconnect (redistributeShared).
		return
	}
	if s.ended || !l.mayRead(s, out.msg) { // authz.go: Read, before anything queues it
		l.forgetEntry(s, out.msg.seq, out.qos, out.put)
		out.msg.release()
		return
	}
	if s.holding && !forwarded {
		if len(s.move.held) >= l.srv.opts.MaxQueued {
			l.stats.droppedQueueFull.Add(1)
			l.forgetEntry(s, out.msg.seq, out.qos, out.put) // not left on disk
			out.msg.release()
			return
		}
		s.move.held = append(s.move.held, out)
		return
	}
	c := s.client
	if out.qos == 0 {
		switch {
		case c == nil || c.state != stateConnected:
			l.stats.droppedOffline0.Add(1)
		case s.q != nil && s.q.queue.len() > 0:
			// Older QoS 1/2 messages wait for in-flight slots: queue
			// behind them so the topic stays ordered [MQTT-4.6.0-6].
			s.enqueue(out)
			return
		case c.outboundFull():
			// A slow subscriber loses QoS 0 messages, never stalls the loop.
			l.stats.droppedSlow.Add(1)
		default:
			c.writePublish(out, 0, false) // takes the reference
			return
		}
		out.msg.release()
		return
	}
	if c != nil && c.state == stateConnected && s.canSendNow(c) {
		if out.msg.expired(l.mono) {
			l.forgetEntry(s, out.msg.seq, out.qos, out.put)
			l.stats.droppedExpired.Add(1)
			out.msg.release()
			return
		}
		s.send(c, out)
		return
	}
	s.enqueue(out)
}

// enqueue queues out for later, within the session's bounds: QoS 1/2
// waiting for an in-flight slot or an offline client, and QoS 0 behind
// them while the client is connected.
func (s *session) enqueue(out outMsg) {
	l := s.owner.Load()
	o := &l.srv.opts
	sq := s.queues()
	q := &sq.queue
	defer s.setPressure(l)
	if l.srv.ps != nil && l.spillOut(s, sq, out) {
		return
	}
	if q.push(out, o.MaxQueued, o.MaxQueuedBytes) {
		return
	}
	// Expired messages leave only at the head (pump): those behind it
	// must not push out a live one [MQTT-3.3.2-5].
	if s.dropExpired(l) && q.push(out, o.MaxQueued, o.MaxQueuedBytes) {
		return
	}
	l.stats.droppedQueueFull.Add(1)
	s.checkStall(l)
	if o.QueueOverflow == DropNewest || q.len() == 0 {
		l.forgetEntry(s, out.msg.seq, out.qos, out.put)
		out.msg.release()
		return
	}
	for q.len() > 0 && !q.push(out, o.MaxQueued, o.MaxQueuedBytes) {
		old := q.pop()
		l.forgetEntry(s, old.msg.seq, old.qos, old.put)
		old.msg.release()
	}
}

// dropExpired drops the queued messages of s whose Message Expiry has
// passed, and reports whether there were any. Runs on s's owner.
func (s *session) dropExpired(l *loop) bool {
	q := &s.q.queue
	gone := q.takeExpired(l.mono, l.expiredScratch[:0])
	for i, out := range gone {
		l.forgetEntry(s, out.msg.seq, out.qos, out.put)
		l.stats.droppedExpired.Add(1)
		out.msg.release()
		gone[i] = outMsg{}
	}
	l.expiredScratch = gone[:0]
	return len(gone) > 0
}

// send puts out (QoS 1/2) in the next in-flight slot and writes it to c.
// A message larger than the client's Maximum Packet Size is discarded as
// if it had been sent and acknowledged [MQTT-3.1.2-25].
func (s *session) send(c *client, out outMsg) {
	q := s.queues()
	id := q.inflight.add(out, c.loop.srv.opts.MaxInflight) // the window takes the reference
	if out.qos == 2 && out.msg.seq != 0 && c.loop.srv.durable(s) {
		// The packet identifier is kept, and the PUBLISH goes out once
		// that is durable: after a restart the message is sent again
		// with the same identifier, so a client that had it knows it
		// (exactly once across a crash).
		c.loop.markEntry(s, &out, out.msg.seq, store.EntryAwaitRec, id)
		c.loop.holdForDurable(s, &q.inflight.slots[q.inflight.index(id)])
		return
	}
	sl := &q.inflight.slots[q.inflight.index(id)]
	if !c.writePublish(out, id, out.dup) {
		c.loop.forgetEntry(s, out.msg.seq, out.qos, out.put)
		q.inflight.free(sl)
		return
	}
	sl.written = true
}

// pump moves queued messages into the in-flight window while there is room
// and the client is connected.
func (s *session) pump() {
	c := s.client
	if c == nil || c.state != stateConnected {
		return
	}
	q := s.q
	if q == nil {
		return
	}
	if q.inflight.pending > 0 {
		s.resendPending(c)
	}
	// Queued messages follow the ones still pending (an earlier
	// connection's, or held for the store): a topic stays ordered
	// [MQTT-4.6.0-6].
	resent := q.inflight.pending == 0
	now := c.loop.mono
	if q.spill != nil && q.queue.len() <= c.loop.srv.opts.MaxQueuedInMemory/2 {
		c.loop.readBack(s)
	}
	for resent && q.queue.len() > 0 {
		if q.queue.peek().msg.expired(now) {
			// [MQTT-3.3.2-5] not delivered once expired.
			out := q.queue.pop()
			c.loop.forgetEntry(s, out.msg.seq, out.qos, out.put)
			c.loop.stats.droppedExpired.Add(1)
			out.msg.release()
			continue
		}
		if q.queue.peek().qos == 0 {
			c.writePublish(q.queue.pop(), 0, false) // takes the reference; needs no slot
			continue
		}
		if q.windowFull(c) {
			break
		}
		s.send(c, q.queue.pop())
	}
	if s.flag(flagPressure) {
		s.setPressure(c.loop)
	}
}
