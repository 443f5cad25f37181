package engine

import (
	"fmt"
	"math"
	"time"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/trie"
)

// Recovery: Start reads the store before it listens and rebuilds the
// persistent sessions (with their subscriptions in the index, their queues
// and in-flight windows, their QoS 2 packet identifiers and wills) and the
// retained messages.
//
// A recovered session has no owner loop yet: gnet hands loops out only
// with connections. The first loop that needs one (a delivery routed to
// it, its client reconnecting, or the first sweep after start) adopts it
// (session.ownerFrom) and schedules its expiry and will there. From then
// on it is owned like any other session.

// ownerFrom returns s's owner loop; a recovered session nobody owns yet
// becomes l's. Runs on l.
func (s *session) ownerFrom(l *loop) *loop {
	if o := s.owner.Load(); o != nil {
		return o
	}
	if s.owner.CompareAndSwap(nil, l) {
		s.schedule(l) // the expiry and will deadlines set at recovery
		// Restored while no loop owned s: its gauges count here now
		// (msgQueue.count).
		l.stats.subscriptions.Add(int64(len(s.subs)))
		if q := s.q; q != nil {
			l.acc.queued += int64(q.queue.len())
			l.acc.queuedBytes += int64(q.queue.bytes)
			if sp := q.spill; sp != nil {
				l.acc.queued += int64(sp.n) // on disk (spillState.set)
				l.acc.queuedBytes += int64(sp.bytes)
			}
			l.acc.inflight += int64(q.inflight.used)
			l.acc.inflightBytes += q.inflight.bytes()
		}
	}
	return s.owner.Load()
}

// adoptOrphans gives l every recovered session no loop has adopted yet, so
// that their deadlines run. Called by the sweep.
func (l *loop) adoptOrphans() {
	ps := l.srv.ps
	if ps.orphans.Load() == nil {
		return
	}
	list := ps.orphans.Swap(nil)
	if list == nil {
		return
	}
	for _, s := range *list {
		s.ownerFrom(l)
	}
}

// recoverStore rebuilds the broker's state from the store. Runs in Start
// before any loop exists.
func (srv *Server) recoverStore() error {
	ps := srv.ps
	st := ps.st
	begin := time.Now()
	now := begin.UnixNano()
	var (
		sessions []*session
		byID     = make(map[string]*session)
		entries  int
		maxSeq   uint64
	)
	// sentTo is each session's bound on entries its client may have
	// been sent (store.Session.SentTo); sentAll marks a session whose
	// client was connected when the broker stopped: it may have been sent
	// any of them.
	const sentAll = math.MaxUint64
	sentTo := make(map[*session]uint64)
	// sentIDs: the packet identifiers each session's QoS 1 entries in
	// flight had when its client disconnected (store.Session.SentIDs).
	sentIDs := make(map[*session]map[uint64]uint16)
	err := st.Sessions(func(rec *store.Session) error {
		s := &session{id: rec.ClientID, expiry: rec.Expiry, stored: true}
		switch {
		case rec.DisconnectedAt == 0:
			sentTo[s] = sentAll
		case rec.SentTo != 0:
			sentTo[s] = rec.SentTo
		}
		if rec.DisconnectedAt != 0 && len(rec.SentIDs) > 0 {
			ids := make(map[uint64]uint16, len(rec.SentIDs))
			for _, id := range rec.SentIDs {
				ids[id.Seq] = id.PacketID
			}
			sentIDs[s] = ids
		}
		for i := range rec.Subs {
			sub := &rec.Subs[i]
			o, ok := srv.restoredSubscription(s.id, sub)
			if !ok {
				continue
			}
			srv.idx.subscribe(sub.Filter, s, o)
			if s.subs == nil {
				s.subs = make(map[string]trie.Options, len(rec.Subs))
			}
			s.subs[sub.Filter] = o
		}
		if rec.Username != "" {
			s.authz = &sessionAuthz{id: Identity{ClientID: s.id, Username: rec.Username}}
		}
		// A client connected when the broker stopped counts as gone now.
		off := rec.DisconnectedAt
		if off == 0 {
			off = now
		}
		s.expireAt = noDeadline
		if s.expiry != expiryNever {
			s.expireAt = srv.monoFromWall(off) + int64(s.expiry)*int64(time.Second)
		}
		if rec.Will != nil {
			w := &will{msg: srv.restoreMessage(&rec.Will.Msg, rec.Will.Msg.Retain), delay: rec.Will.Delay, // a retained one pinned, as newMessage does
				expiry: rec.Will.MessageExpiry, hasExpiry: rec.Will.HasExpiry}
			if rec.Username != "" {
				w.ident = &Identity{ClientID: s.id, Username: rec.Username}
			}
			w.at = srv.monoFromWall(off) + int64(w.delay)*int64(time.Second)
			s.will = w
		}
		srv.reg.swap(s.id, func(*session) *session { return s })
		sessions = append(sessions, s)
		byID[s.id] = s
		return nil
	})
	if err != nil {
		return fmt.Errorf("read sessions: %w", err)
	}
	// Only the entries that were in flight come into memory (they go back
	// into the window, with their packet identifiers); the queue stays on
	// disk and is read back when the client is back (spill.go). Every
	// entry is looked at: one in flight may follow a queued one (a QoS 1
	// message in flight keeps its Queued entry, and a session sends in the
	// order deliveries reached it, not always in Seq order), and its
	// packet identifier must be known before any new one is handed out.
	var spilled []*session
	for _, s := range sessions {
		queued := false
		var queuedN, queuedBytes int // on disk only: they count towards the queue's bounds (spill.go)
		ids := sentIDs[s]
		err := st.Entries(s.id, 0, 0, func(e *store.Entry) bool {
			maxSeq = max(maxSeq, e.Seq)
			if e.State == store.EntryQueued || e.PacketID == 0 {
				pid, sent := ids[e.Seq]
				if !sent || e.QoS != 1 {
					queued = true
					queuedN++
					queuedBytes += len(e.Msg.Payload)
					return true
				}
				// A QoS 1 message in flight when its client left: back
				// into the window under its packet identifier (its
				// entry stays as it is, put once, and readBack skips it).
				inflight := *e
				inflight.State, inflight.PacketID = store.EntryAwaitAck, pid
				e = &inflight
			}
			entries++
			srv.restoreEntry(s, e)
			return true
		})
		if err != nil {
			return fmt.Errorf("read queue of %q: %w", s.id, err)
		}
		if s.q != nil {
			s.q.inflight.resume()
		}
		if queued {
			s.queues().spill = &spillState{n: queuedN, bytes: queuedBytes}
			spilled = append(spilled, s)
		}
	}
	err = st.Inbound(func(id string, pid uint16) error {
		if s := byID[id]; s != nil {
			if s.inboundQoS2 == nil {
				s.inboundQoS2 = make(map[uint16]struct{})
			}
			s.inboundQoS2[pid] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read QoS 2 packet identifiers: %w", err)
	}
	retained := 0
	err = st.Retained(func(sm *store.Message) error {
		m := srv.restoreMessage(sm, true)
		srv.setRetained(m)
		retained++
		return nil
	})
	if err != nil {
		return fmt.Errorf("read retained messages: %w", err)
	}
	// Sequence numbers must grow past every entry, queued ones included:
	// the wall clock may be behind the one that numbered them (stepped
	// back, or not yet set on a device that just booted), and a queued
	// entry above the watermark would not be read back (spill.go) until
	// the clock passed it, while new messages went out before it. The
	// wall clock in nanoseconds grows faster than any message rate, so it
	// also covers entries written for sessions whose record did not make
	// it, as long as it was not stepped back.
	ps.seq.Store(max(maxSeq, uint64(now)))
	for _, s := range spilled {
		s.q.spill.last = ps.seq.Load() // whatever is on disk is below it
		// Entries the client may have had go out again with DUP. Those
		// that were in flight under a packet id already do (restoreEntry);
		// QoS 1 entries keep no packet id, so this is how their resend is
		// marked [MQTT-3.3.1-1].
		if to, ok := sentTo[s]; ok {
			s.q.sentTo = min(to, ps.seq.Load())
		}
	}
	if len(sessions) > 0 {
		ps.orphans.Store(&sessions)
	}
	srv.log.Info("state recovered from the store", "sessions", len(sessions), "in_flight", entries,
		"sessions_with_queue", len(spilled),
		"retained", retained, "took", time.Since(begin).Round(time.Millisecond))
	return nil
}

// restoreEntry puts a stored entry back in s's in-flight window (sent
// before: sent again with DUP, or PUBREL again) or queue.
func (srv *Server) restoreEntry(s *session, e *store.Entry) {
	q := s.queues()
	if e.State != store.EntryQueued && e.PacketID != 0 {
		if q.inflight.slots == nil {
			owner := q.inflight.owner
			q.inflight = newInflight(srv.opts.MaxInflight)
			q.inflight.owner = owner
		}
		sl := &q.inflight.slots[q.inflight.index(e.PacketID)]
		if sl.state != slotFree && sl.id != e.PacketID {
			// The window shrank since (a smaller MaxInflight): the client
			// holds both identifiers, so the window grows to keep them.
			before := len(q.inflight.slots)
			q.inflight.widen(e.PacketID)
			srv.log.Info("in-flight window widened for a recovered session: its messages keep their packet identifiers",
				"client", s.id, "window_was", before, "window", len(q.inflight.slots))
			sl = &q.inflight.slots[q.inflight.index(e.PacketID)]
		}
		if sl.state == slotFree {
			state := slotAwaitAck
			switch e.State {
			case store.EntryAwaitRec:
				state = slotAwaitRec
			case store.EntryAwaitComp:
				state = slotAwaitComp
			}
			*sl = slot{id: e.PacketID, state: state, seq: e.Seq, written: true}
			if state != slotAwaitComp {
				sl.m = srv.restoreOut(e)
			}
			q.inflight.used++
			return
		}
		// Two entries under one identifier: only one can be the client's.
		// A release has nothing to send again (readBack deletes its entry);
		// a message goes out again as a new one.
		if e.State == store.EntryAwaitComp {
			srv.log.Warn("recovered QoS 2 release dropped: its packet identifier is in use by another entry", "client", s.id, "packet", e.PacketID)
			return
		}
	}
	out := srv.restoreOut(e)
	if e.State != store.EntryQueued {
		out.dup = true
	}
	// Within no bound: the store held it, so it was within them.
	q.queue.push(out, math.MaxInt, math.MaxInt)
}

// restoreOut rebuilds a delivery from an entry.
func (srv *Server) restoreOut(e *store.Entry) outMsg {
	m := srv.restoreMessage(&e.Msg, false)
	m.seq = e.Seq
	out := outMsg{msg: m, qos: e.QoS, retain: e.Retain, dup: e.State != store.EntryQueued}
	if e.Shared {
		g := e.Group // a copy the store made, or its own: kept as long as out
		if g == "" || len(g) > math.MaxUint16 {
			g = groupUnknown // written by a loopmq that kept only Shared (store format 4)
		}
		out.setGroup(g)
	}
	for _, id := range e.SubIDs {
		out.addSubID(id)
	}
	return out
}

// restoreMessage builds a message from its stored form, laid out as
// newMessage lays a received one out, with one reference. A retained one
// is pinned (see newMessage).
func (srv *Server) restoreMessage(sm *store.Message, retained bool) *message {
	size := codec.Publish0Size(sm.Topic, sm.Payload) + len(sm.Props)
	var m *message
	if retained {
		m = &message{pinned: true}
		b := make([]byte, 0, size)
		m.buf = &b
	} else {
		p := srv.msgs
		m = p.msgs.Get().(*message)
		m.buf = p.bufs.Get(size)
	}
	b := codec.AppendPublish0((*m.buf)[:0], sm.Topic, sm.Payload)
	m.frame0 = b
	m.payload = b[len(b)-len(sm.Payload) : len(b) : len(b)]
	end := len(b) - len(sm.Payload)
	m.topic = b[end-len(sm.Topic) : end : end]
	b = append(b, sm.Props...)
	if len(sm.Props) > 0 {
		m.props = b[len(m.frame0):len(b):len(b)]
	}
	*m.buf = b
	if sm.Expiry != 0 {
		m.expiry = max(srv.monoFromWall(sm.Expiry), 1)
	}
	m.qos, m.retain, m.from = sm.QoS, sm.Retain || retained, sm.From
	m.refs.Store(1)
	return m
}

// restoredSubscription is the options a stored subscription of client id
// comes back with under today's Options, and whether it comes back at all:
// it was granted by a broker that may have allowed more. Its QoS is capped
// at Options.MaxQoS; a Subscription Identifier is dropped when they are off
// (the subscription stays); a shared or wildcard filter is dropped when
// that capability is off, since the client was told at CONNACK it is not
// available and a new SUBSCRIBE with it would end its connection. Each
// change is logged with the client and filter.
func (srv *Server) restoredSubscription(id string, sub *store.Subscription) (trie.Options, bool) {
	o := subOptions(sub)
	if code, unsupported := srv.subscribeUnsupported([]byte(sub.Filter), o.SubscriptionID); unsupported {
		if code != codec.SubscriptionIdentifiersNotSupported {
			srv.log.Warn("recovered subscription dropped: "+code.String()+" by configuration",
				"client", id, "filter", sub.Filter)
			return o, false
		}
		srv.log.Warn("recovered subscription keeps no subscription identifier: "+code.String()+" by configuration",
			"client", id, "filter", sub.Filter, "identifier", o.SubscriptionID)
		o.SubscriptionID = 0
	}
	if o.QoS > srv.maxQoS {
		o.QoS = srv.maxQoS // granted before Options.MaxQoS was lowered
	}
	return o, true
}
