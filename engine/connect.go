package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// onConnect validates CONNECT and binds the connection to its session.
func (c *client) onConnect(p *codec.Connect) {
	srv := c.loop.srv
	c.version = p.Version
	id := string(p.ClientID)
	if id == "" {
		if !p.CleanStart && p.Version != codec.V5 {
			// [MQTT-3.1.3-8] an empty client id needs Clean Session = 1.
			c.refuse(codec.ClientIdentifierNotValid, "empty client identifier without clean session [MQTT-3.1.3-8]")
			return
		}
		// [MQTT-3.1.3-6] the server assigns a unique identifier.
		id = newClientID()
		c.terms |= termAssignedID
	}
	if (p.Version == codec.V31 && len(id) > 23) || len(id) > srv.opts.MaxClientIDLen {
		c.refuse(codec.ClientIdentifierNotValid, "client identifier too long")
		return
	}
	if p.WillFlag {
		if code, why, refused := srv.publishUnsupported(p.Will.QoS, p.Will.Retain); refused {
			c.refuse(code, "will: "+why) // [MQTT-3.2.2-12] [MQTT-3.2.2-13]
			return
		}
	}
	c.clientID = id
	c.lastSeen = c.loop.mono // the keep alive runs from CONNECT
	c.will = srv.newWill(p, id)
	if !c.mayWill() { // authz.go: refused when the will's topic is not writable
		return
	}
	if !c.negotiate(p) { // keep alive and Session Expiry Interval (lifecycle.go)
		return
	}
	c.setLimits(p) // Receive Maximum, topic aliases
	c.state = stateWaiting
	c.cleanStart = p.CleanStart
	srv.attach(c)
}

// setLimits takes the client's 5.0 limits from CONNECT: its Receive
// Maximum and Topic Alias Maximum [MQTT 5.0 section 3.1.2.11]
// (takeProblemTerms has taken the rest).
func (c *client) setLimits(p *codec.Connect) {
	o := &c.loop.srv.opts
	c.sendQuota = uint16(o.MaxInflight)
	if p.Version != codec.V5 {
		return
	}
	pr := &p.Properties
	if pr.Has(codec.PropReceiveMaximum) && int(pr.ReceiveMaximum) < o.MaxInflight {
		c.sendQuota = pr.ReceiveMaximum // [MQTT-3.3.4-7]
	}
	if n := min(int(pr.TopicAliasMaximum), o.MaxTopicAliasOut); n > 0 {
		c.extras().aliases.out = newAliasesOut(n)
	}
	if pr.RequestResponseInfo == 1 {
		c.terms |= termResponseInfo
	}
}

// takeProblemTerms takes from a 5.0 CONNECT, before anything can refuse
// it, what bounds the Reason Strings the broker sends: the client's
// Maximum Packet Size (a refusing CONNACK's Reason String must fit it
// [MQTT-3.2.2-19]) and Request Problem Information (0: none on
// acknowledgements [MQTT-3.1.2-29]).
func (c *client) takeProblemTerms(p *codec.Connect) {
	if p.Version != codec.V5 {
		return
	}
	pr := &p.Properties
	c.maxPacketOut = pr.MaximumPacketSize
	if pr.Has(codec.PropRequestProblemInfo) && pr.RequestProblemInfo == 0 {
		c.terms |= termNoProblemInfo
	}
}

// connackLimits adds the server's limits and capabilities to a 5.0
// CONNACK [MQTT 5.0 section 3.2.2.3]. What is absent means the default:
// maximum QoS 2, retain, wildcard, shared subscriptions and subscription
// identifiers available.
func (c *client) connackLimits(props *codec.Properties) {
	o := &c.loop.srv.opts
	if o.ReceiveMaximum < 65535 {
		props.ReceiveMaximum = uint16(o.ReceiveMaximum)
	}
	props.TopicAliasMaximum = uint16(o.TopicAliasMaximum)
	props.MaximumPacketSize = uint32(o.MaxPacketSize)
	c.loop.srv.connackCapabilities(props) // capabilities.go
}

// refuse answers CONNECT with a failure code and closes.
func (c *client) refuse(code codec.ReasonCode, why string) {
	c.loop.srv.log.Info("connection refused", "client", c.id(), "remote", c.remote(), "reason", why, "code", code)
	c.loop.refused(refuseReason(code))
	if (code == codec.BadUserNameOrPassword || code == codec.NotAuthorized) && !c.gone {
		c.loop.srv.ipl.failed(c.conn.RemoteAddr(), time.Now())
	}
	c.writeConnack(false, code, nil, why)
	c.close(reasonProtocol)
}

// refuseReason classifies a CONNACK failure code for Stats.Refused.
func refuseReason(code codec.ReasonCode) RefuseReason {
	switch code {
	case codec.BadUserNameOrPassword:
		return RefusedBadCredentials
	case codec.NotAuthorized:
		return RefusedNotAuthorized
	case codec.ClientIdentifierNotValid:
		return RefusedClientID
	case codec.UnsupportedProtocolVersion:
		return RefusedProtocolVersion
	case codec.BadAuthenticationMethod:
		return RefusedAuthMethod
	}
	return RefusedOther
}

func newClientID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "loopmq-" + hex.EncodeToString(b[:])
}

// attach finds or creates the session for id and binds c to it, taking the
// session over from another connection (possibly on another loop) when
// needed [MQTT-3.1.4-2]. It runs on c's loop; the binding may complete
// later, in a runnable on the same loop, after the session's previous
// owner handed it over.
func (srv *Server) attach(c *client) {
	l, id, cleanStart := c.loop, c.clientID, c.cleanStart
	var fresh, old *session
	srv.reg.swap(id, func(o *session) *session {
		old = o
		// [MQTT-3.1.2-4] Clean Start discards the old session; one that
		// ends with its connection cannot be resumed either.
		if o == nil || cleanStart || o.flag(flagClean) {
			fresh = srv.newSession(id, c.expiry == 0, l)
			return fresh
		}
		return o
	})
	if fresh != nil {
		if old == nil {
			c.bind(fresh, false)
			return
		}
		// The old session is discarded: its connection (if any) is closed
		// with its will and its state freed, on its owner loop. c is bound
		// only after that, so the old session's subscriptions have left
		// the index (keyed by client id) before c can subscribe.
		srv.onOwner(l, old, func(ol *loop, s *session) {
			s.kick()
			s.end()
			c.bindFrom(ol, fresh, false)
		})
		return
	}
	var takeOver func(ol *loop, s *session)
	takeOver = func(ol *loop, s *session) {
		if s.holding {
			s.move.deferred = append(s.move.deferred, takeOver) // the session is still arriving here
			return
		}
		if !s.ended && s.client == nil {
			// Deadlines passed and not run yet (the expiry heap is looked
			// at every 250 ms, and after a restart only once a loop
			// adopted the session) run now: a will past its delay is
			// published, a session past its expiry ends and is not
			// resumed [MQTT-3.1.2-23].
			s.runDue(ol, ol.now())
		}
		if s.ended {
			// It ended while the request travelled: start over, unless c
			// is gone meanwhile (its session ended: the will goes now; a
			// closed connection must not take over another one's).
			l.post(task{kind: taskFunc, fn: func(*loop) {
				if c.state == stateClosed {
					c.sendWill()
					return
				}
				srv.attach(c)
			}})
			return
		}
		s.kick()
		s.resume(ol) // its delayed will is cancelled [MQTT-3.1.3-9]; it leaves ol's expiry heap
		if ol == l {
			c.bind(s, true)
			return
		}
		if srv.ps != nil {
			ol.commitStore() // s's writes so far reach the store before l's
		}
		s.holding = true
		s.move = &sessionMove{}
		if srv.ps != nil {
			s.move.carried = ol.dropDeferred(s, true) // l writes them, in order with its own
		}
		s.owner.Store(l) // from here on only l touches s
		c.bindFrom(ol, s, true)
		srv.moveBarrier(ol, s, l)
	}
	srv.onOwner(l, old, takeOver)
}

// moveBarrier runs on from, the loop s just left for to. It asks every
// other loop to answer through the queue of hand-offs it keeps for from,
// so each answer arrives after whatever that loop had routed towards from
// before it saw the new owner. When all have answered, every stale
// delivery has been forwarded to to (in the same queue, ahead of the
// release), and to releases the deliveries it held.
func (srv *Server) moveBarrier(from *loop, s *session, to *loop) {
	loops := srv.loopsSnapshot()
	remaining := len(loops)
	answered := func(ol *loop) { // runs on from
		remaining--
		if remaining == 0 {
			ol.handOff(to, task{kind: taskFunc, fn: func(l *loop) { s.releaseHold(l) }})
		}
	}
	for _, lx := range loops {
		if lx == from {
			continue
		}
		lx.post(task{kind: taskFunc, fn: func(lx *loop) {
			lx.handOff(from, task{kind: taskFunc, fn: answered})
		}})
	}
	answered(from)
}

// releaseHold ends a move: the held deliveries go out in order, then the
// takeovers that waited. Runs on s's owner.
func (s *session) releaseHold(l *loop) {
	s.holding = false
	mv := s.move
	s.move = nil
	if mv == nil {
		return
	}
	for _, out := range mv.held {
		l.deliver(s, out, true)
	}
	for _, fn := range mv.deferred {
		l.srv.onOwner(l, s, fn)
	}
}

// onOwner runs fn on s's owner loop: inline when that is cur, otherwise
// posted, following the session if it moves meanwhile.
func (srv *Server) onOwner(cur *loop, s *session, fn func(*loop, *session)) {
	o := s.ownerFrom(cur)
	if o == cur {
		fn(cur, s)
		return
	}
	o.post(task{kind: taskFunc, fn: func(l *loop) { srv.onOwner(l, s, fn) }})
}

func (srv *Server) newSession(id string, clean bool, owner *loop) *session {
	s := &session{id: id}
	s.setFlag(flagClean, clean)
	s.owner.Store(owner)
	return s
}

// bindFrom binds c to s from code running on loop cur: at once when cur
// is c's loop, otherwise by posting the binding there.
func (c *client) bindFrom(cur *loop, s *session, present bool) {
	if cur == c.loop {
		c.bind(s, present)
		return
	}
	c.loop.post(task{kind: taskFunc, fn: func(*loop) { c.bind(s, present) }})
}

// bind attaches c to s (both owned by c's loop now), answers CONNACK and
// resumes the session's message flow: unacknowledged messages are sent
// again with DUP [MQTT-4.4.0-1], then the queue.
func (c *client) bind(s *session, present bool) {
	wasWaiting := c.state == stateWaiting
	if mv := s.move; mv != nil && len(mv.carried) > 0 && !s.ended {
		// The writes to s's entries still waiting on the previous owner
		// wait here now, before any this loop makes (persist.go).
		for _, k := range mv.carried {
			c.loop.deferWrite(k)
		}
		mv.carried = nil
	}
	if s.ended && c.state != stateClosed {
		// Another connection with this id discarded the session (Clean
		// Start) while it travelled here: attach again, which picks up
		// whatever session the registry holds now.
		c.loop.srv.attach(c)
		return
	}
	if c.state == stateClosed {
		// The connection went away while the session travelled: s goes
		// offline as at any close, and OnClose left c's will to this, so
		// that a delayed one waits in s, its delay counted from the close
		// [MQTT-3.1.2-8].
		if !s.ended { // discarded meanwhile: nothing of it may be written again
			s.setExpiry(c.expiry)
			if s.flag(flagClean) {
				s.end()
			} else {
				s.wentOffline(c.loop, c)
			}
		}
		c.sendWill() // unless it waits in s: the session it was for ended
		return
	}
	s.client = c
	s.setFlag(flagOnline, true)
	s.setExpiry(c.expiry) // the latest CONNECT's interval applies
	c.sess = s
	c.state = stateConnected
	c.loop.stats.connects.Add(1)
	c.loop.stats.connected.Add(1)
	s.bindIdentity(c, false) // authz.go
	if s.stored && s.flag(flagClean) && (s.q == nil || s.q.spill == nil) {
		c.loop.forgetSession(s) // resumed with a Session Expiry Interval of 0
	} else {
		if s.stored && s.flag(flagClean) {
			// The same with part of its queue on disk only: the store
			// keeps it, as a session that ends with its connection,
			// until it ends and everything is read (persist.go).
			s.setFlag(flagKeep, true)
		}
		c.loop.persistSession(s, c)
	}
	var props codec.Properties
	if c.terms&termAssignedID != 0 {
		props.AssignedClientID = []byte(c.clientID)
	}
	c.connackTerms(&props)
	c.connackLimits(&props)
	c.writeConnack(present, codec.Success, &props, "")
	if log := c.loop.srv.log; log.Enabled(context.Background(), slog.LevelDebug) {
		id := c.identity()
		log.Debug("client connected", "client", c.id(), "remote", c.remote(),
			"version", c.version.String(), "keepalive", c.keepAlive, "username", id.Username,
			"session_present", present)
	}
	if s.q != nil {
		// Everything in flight goes again [MQTT-4.4.0-1]: PUBRELs now,
		// PUBLISHes oldest first as far as this connection's Receive
		// Maximum allows, the rest as acknowledgements make room
		// [MQTT-3.3.4-9] (pump, resendPending).
		w := &s.q.inflight
		w.pending = 0
		w.each(func(sl *slot) {
			sl.pending = false
			if sl.hold != 0 {
				if c.loop.srv.durable(s) {
					c.loop.rehold(s, sl) // sent once its state is durable here
					if sl.state == slotAwaitRec {
						// Never written: then it waits for room in
						// this connection's Receive Maximum like the
						// others (sendHeld, resendPending).
						sl.pending = true
						w.pending++
					}
					return
				}
				// Resumed with a Session Expiry Interval of 0, the
				// session is no longer stored (forgetSession above): a
				// mark written now would bring its entry back for good,
				// owed to the next session of this client id. Nothing
				// to wait for.
				sl.hold = 0
			}
			switch sl.state {
			case slotAwaitAck, slotAwaitRec:
				sl.pending = true
				w.pending++
			case slotAwaitComp:
				c.writeAck(codec.PUBREL, sl.id, codec.Success)
			}
		})
	}
	if s.q != nil && s.q.spill != nil {
		// Read back once the deletes made so far are durable (spill.go);
		// those still waiting for their entry's put are not in a batch
		// yet, so what they delete is skipped.
		s.q.spill.wait = c.loop.st.ticket
		for _, k := range c.loop.st.deferred {
			if k.id == s.id && k.deletesOne() {
				s.forgot(k.seq)
			}
		}
	}
	s.pump()
	if wasWaiting && c.loop.traffic != c {
		// Frames that arrived while waiting are still in gnet's inbound
		// buffer; Wake makes the loop call OnTraffic for them. Not when
		// the binding happens inside c's own onTraffic (a new session,
		// or one this loop owns): that goes on with the next frame, and
		// a Wake would cost every such connection a task and a write to
		// the loop's eventfd.
		_ = c.conn.Wake(nil)
	}
	c.loop.endBatch()
}

// kick closes s's current connection because another connection takes the
// session (or replaces it). The will is published as for any connection
// that ends without DISCONNECT. Runs on s's owner loop.
func (s *session) kick() {
	c := s.client
	if c == nil {
		return
	}
	s.client = nil
	s.setFlag(flagOnline, false)
	s.setPressure(c.loop)
	c.sess = nil
	if c.version == codec.V5 && c.state == stateConnected {
		// Not when the broker closed c already with a DISCONNECT of
		// its own (serverDisconnect: Stop's notice, a keep-alive
		// timeout, run by a task just before this one) and gnet has
		// not closed the socket yet: nothing may follow that DISCONNECT
		// [MQTT-3.14.4-1].
		d := codec.Disconnect{ReasonCode: codec.SessionTakenOver}
		c.writePacket(&d)
	}
	c.loop.srv.log.Info("session taken over, closing old connection", "client", s.id, "remote", c.remote())
	// A will with a delay waits in the session: cancelled if the session
	// is resumed (resume), published if it ends (end) [MQTT-3.1.3-9].
	c.lastSeen = c.loop.mono // closed now
	c.parkWill(s)
	c.sendWill()
	c.close(reasonTakeover)
}

// end discards the session: its subscriptions leave the index, queued and
// in-flight messages are released, and the registry forgets it. Runs on the
// owner loop.
func (s *session) end() {
	if s.ended {
		return
	}
	l := s.owner.Load()
	srv := l.srv
	if s.client == nil {
		// Publishers held for s's congestion go on (flow.go), and the
		// messages s received through shared subscriptions go to other
		// members while s is still in its groups (shared.go).
		s.setPressure(l)
		s.redistributeShared(l)
	}
	s.ended = true
	// A delivery still on its way here through a shared subscription goes
	// to another member of its group (loop.deliver): it names the group.
	for filter := range s.subs {
		if srv.idx.unsubscribe(filter, s) {
			l.stats.subscriptions.Add(-1)
		}
	}
	s.subs = nil
	if s.q != nil {
		if sp := s.q.spill; sp != nil {
			sp.set(s.q, 0, 0)
		}
		s.q.inflight.clear()
		s.q.queue.clear()
		s.q = nil
	}
	if s.move != nil {
		for _, out := range s.move.held {
			out.msg.release()
		}
		s.move.held = nil
		for _, k := range s.move.carried {
			if k.out.msg != nil {
				k.out.msg.release()
			}
		}
		s.move.carried = nil
	}
	s.inboundQoS2 = nil
	srv.reg.remove(s.id, s)
	s.owner.Load().forgetSession(s)
	s.endLife(s.owner.Load())
}
