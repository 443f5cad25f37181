package engine

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/trie"
)

// Durable state (Options.Store, issue 9).
//
// What is written: a persistent session (one that outlives its connection)
// as a session record — expiry, subscriptions with their options, the will
// of its connection, its user — rewritten when it connects, subscribes,
// unsubscribes or goes offline, and deleted with everything it owns when
// it ends; every QoS 1/2 delivery to a persistent session as an entry
// (the message's own copy: topic, payload, 5.0 properties), deleted when
// the client acknowledges it (PUBACK, PUBCOMP) or the broker drops it;
// QoS 2 packet identifiers a persistent publisher's PUBLISH left awaiting
// PUBREL; retained messages. QoS 0 messages and deliveries to sessions that
// end with their connection are never written.
//
// Group commit: each loop collects its writes in a batch (loopStore.b)
// and commits it at the end of an event (endBatch) when it has no other
// commit outstanding; otherwise the batch keeps collecting until the
// outstanding one is durable, and is committed then. So a loop has at
// most one commit in flight (plus the rare forced ones below), and the
// store shares one fsync among the batches of every loop.
//
// Order across loops: a loop's batches are applied in the order it
// commits them, but another loop's may come first. The writes that must
// follow another loop's are the owner's writes to an entry routed there:
// its delete when the client acknowledges it (or the broker drops it) and
// the marks of a QoS 2 message's progress (EntryAwaitRec, EntryAwaitComp).
// Applied before the entry's put, a delete would let the entry come back
// after a restart, and a mark would be overwritten by the put (the
// message sent again under a new packet identifier). Such a write waits
// in loopStore.deferred until the watermark (spill.go) says the entry is
// durable; that is at most one fsync behind. The writes to one entry stay
// in order: while any waits, the next ones wait behind it, and when the
// session moves to another loop its waiting writes move with it
// (sessionMove.carried). Lifecycle writes that other
// loops' work depends on (a session ended before a new one with its client
// id binds elsewhere, a session moving to another loop) commit at once.
// The store applies commits in the order they arrive.
//
// The promise: the PUBACK/PUBREC of a PUBLISH whose message was written
// (it reached a persistent session or is retained) is withheld, in order
// with the client's other acknowledgements, until its batch is durable
// (heldAcks with a ticket, flow.go). A publisher therefore never holds an
// acknowledgement for a message a crash can lose.
//
// Ownership: a loop's loopStore is its own. session.stored is written
// by the session's owner. message.seq is set by the routing loop before
// the message is handed to any other loop.

// loopStore is one loop's side of the store.
type loopStore struct {
	b       *store.Batch   // open batch; nil until the first write of an event
	ticket  uint64         // ticket of the open batch: committed batches count from 1
	durable uint64         // every batch up to this ticket is durable
	waiters []*client      // clients holding acknowledgements for the open batch
	spare   []*client      // a durable batch's waiters list, for the next open batch
	pending []pendingBatch // committed, not durable yet, in commit order
	free    []*store.Batch
	dones   []*commitDone // completions of earlier commits, for reuse
	entry   store.Entry   // scratch for PutEntry
	subIDs  []uint32
	needs   bool // the current route wrote something its publisher's ack must wait for
	// low is the lowest message sequence number the loop's open or
	// committed-but-not-durable batches may hold, 0 for none; any loop
	// reads it (Server.watermark, spill.go). openLow is the open batch's.
	low     atomic.Uint64
	openLow uint64
	readers []*session // spilling sessions waiting for a batch to be durable (spill.go)
	// deferred are writes to entries waiting for the entry's own put to
	// be durable, in order; w is the watermark when last read.
	deferred []entryKey
	w        uint64
	// held are QoS 2 slots whose PUBLISH or PUBREL waits for the batch
	// that records the slot's state to be durable, in the order they were
	// held. heldWaiting is sendHeld's scratch.
	held        []heldSend
	heldWaiting []*session
	// routing is the message loop.route is routing: the puts of its
	// entries are in the open batch, so writes to them may follow there.
	routing *message
	// markDeferred says the last markEntry left its write waiting.
	markDeferred bool
	// deferring is set while deferred is not empty; other loops read it
	// to wake this one when the watermark moves (committed).
	deferring atomic.Bool
	// stalledSince is when the oldest outstanding commit counted as
	// stalled (loop clock), 0 while none does; warned is when the last
	// warning about it was logged (checkStall).
	stalledSince, warned int64
	// handed says a batch went to the store in the current event: the
	// store's committer goroutine is runnable, and endBatch yields to it.
	handed bool
	// e counts the current route's writes, for early acknowledgements
	// (earlyack.go).
	e earlyState
}

// storeStallAfter is how long a commit may stay outstanding before the
// loop counts the store as stalled and says so; storeStallRepeat is how
// often it says so again while the stall lasts.
const (
	storeStallAfter  = 5 * time.Second
	storeStallRepeat = 30 * time.Second
)

// checkStall watches the loop's oldest outstanding commit. A store that
// takes longer than storeStallAfter (a dying disk, a hung fsync) holds
// every acknowledgement waiting for it: publishers stop at their windows
// and the loop's open batch grows with what they sent before. Nothing is
// released early (that would acknowledge messages a crash can lose); the
// stall is logged with what waits, repeated every storeStallRepeat, and
// counted in Stats.StoreStalls. Called by the sweep. Runs on l.
func (l *loop) checkStall(now int64) {
	ls := &l.st
	stalled := len(ls.pending) > 0 && now-ls.pending[0].at > int64(l.srv.ps.stallAfter)
	switch {
	case stalled && ls.stalledSince == 0:
		ls.stalledSince, ls.warned = ls.pending[0].at, now
		l.srv.ps.stalls.Add(1)
		l.logStall(now, "store commit not durable yet: acknowledgements wait for it")
	case stalled && now-ls.warned >= int64(storeStallRepeat):
		ls.warned = now
		l.logStall(now, "store commit still not durable: acknowledgements wait for it")
	case !stalled && ls.stalledSince != 0:
		l.srv.log.Warn("store commits durable again", "stalled_for", time.Duration(now-ls.stalledSince).Round(time.Millisecond))
		ls.stalledSince = 0
	}
}

func (l *loop) logStall(now int64, msg string) {
	ls := &l.st
	waiting, acks := 0, 0
	for _, p := range ls.pending {
		waiting += len(p.waiters)
	}
	for _, c := range l.clients {
		if h := c.heldAcks(); h != nil {
			acks += len(h.acks)
		}
	}
	open := 0
	if ls.b != nil {
		open = ls.b.Len()
	}
	l.srv.log.Warn(msg, "outstanding_for", time.Duration(now-ls.pending[0].at).Round(time.Millisecond),
		"commits_outstanding", len(ls.pending), "publishers_waiting", waiting, "acks_held", acks,
		"writes_in_open_batch", open, "writes_waiting_for_watermark", len(ls.deferred))
}

// deferWrite makes k wait in deferred for the watermark. Runs on l.
func (l *loop) deferWrite(k entryKey) {
	ls := &l.st
	if len(ls.deferred) == 0 {
		ls.deferring.Store(true)
	}
	ls.deferred = append(ls.deferred, k)
}

// QoS 2 towards a persistent session, exactly once across a crash: the
// broker records a message's packet identifier before it sends the
// PUBLISH, and its release (PUBREC received) before it sends PUBREL, and
// sends each only once the record is durable. After a restart the client
// then sees the PUBLISH again under the identifier it still holds (and
// does not deliver it twice), or the PUBREL, never the PUBLISH of a
// message it has released.

// heldSend is slot id of s, whose PUBLISH or PUBREL waits (slot.hold).
type heldSend struct {
	s  *session
	id uint16
}

// holdDeferred is slot.hold while the slot's mark itself waits in
// loopStore.deferred for the entry's put (markEntry): not written yet, so
// no batch to wait for yet.
const holdDeferred = math.MaxUint64

// holdForDurable makes the PUBLISH or PUBREL of sl (s's slot, whose state
// markEntry just recorded) wait until the batch holding that record is
// durable: the open batch, or, when the mark waits for the entry's put,
// the batch it goes into then (writeEntry sets it). Runs on s's owner.
func (l *loop) holdForDurable(s *session, sl *slot) {
	if l.st.markDeferred {
		sl.hold = holdDeferred
	} else {
		l.batch() // the record is in it; make sure the ticket is its
		sl.hold = l.st.ticket
	}
	l.st.held = append(l.st.held, heldSend{s: s, id: sl.id})
}

// rehold records sl's state again on this loop and holds it here: a
// session that moved loops carries holds of its old owner's tickets,
// which mean nothing here. Runs on s's owner.
func (l *loop) rehold(s *session, sl *slot) {
	if sl.state == slotAwaitRec {
		l.markEntry(s, &sl.m, sl.m.msg.seq, store.EntryAwaitRec, sl.id)
	} else {
		l.markEntry(s, &outMsg{qos: 2}, sl.seq, store.EntryAwaitComp, sl.id)
	}
	l.holdForDurable(s, sl)
}

// sendHeld writes the held packets whose records are durable to the
// session's client. One whose client went away meanwhile is sent when the
// session is resumed, like any unacknowledged message. A PUBLISH also
// waits for the held PUBLISHes of its session before it: its mark may be
// durable first (a message routed on this loop is marked at once, one
// routed elsewhere waits for its put: markEntry), and a topic stays in
// order [MQTT-4.6.0-6]. Runs on l.
func (l *loop) sendHeld() {
	ls := &l.st
	held := ls.held
	keep := held[:0]
	waiting := ls.heldWaiting[:0] // sessions with a PUBLISH still held
	for _, h := range held {
		s := h.s
		if s.owner.Load() != l || s.q == nil {
			continue
		}
		sl := s.q.inflight.at(h.id)
		if sl == nil || sl.hold == 0 {
			continue // acknowledged, or sent
		}
		publish := sl.state == slotAwaitRec
		if sl.hold > ls.durable || (publish && s.heldWaiting) {
			keep = append(keep, h)
			if publish && !s.heldWaiting {
				s.heldWaiting = true
				waiting = append(waiting, s)
			}
			continue
		}
		sl.hold = 0
		c := s.client
		if c == nil || c.state != stateConnected {
			continue
		}
		switch {
		case sl.state == slotAwaitComp:
			c.writeAck(codec.PUBREL, sl.id, codec.Success)
		case sl.pending:
			// Held when another connection had the session: sent
			// within this one's Receive Maximum [MQTT-3.3.4-9].
			s.resendPending(c)
		case c.writePublish(sl.m, sl.id, false):
			sl.written = true
		default:
			// Too large for this connection [MQTT-3.1.2-25]. Held since
			// send put it in the window (a resume makes held PUBLISHes
			// pending), so never written: no client holds its packet
			// identifier, which may be freed (see dropInFlight).
			l.forgetEntry(s, sl.m.msg.seq, sl.m.qos, sl.m.put)
			s.q.inflight.free(sl)
		}
	}
	if n := len(held); len(ls.held) > n {
		// Held while this ran: resendPending may release a slot too
		// large for the connection (dropInFlight), whose PUBREL waits
		// for its record. No path does so today (a pending slot is sent,
		// or dropped, by the pump that follows every resume and every
		// acknowledgement); kept rather than lost, after the older ones,
		// in a new array, since keep and the appended entries may share
		// held's.
		keep = append(keep[:len(keep):len(keep)], ls.held[n:]...)
	} else {
		clear(held[len(keep):])
	}
	ls.held = keep
	for i, s := range waiting {
		s.heldWaiting = false
		waiting[i] = nil
	}
	ls.heldWaiting = waiting[:0]
}

// entryKey is one write to an entry waiting in loopStore.deferred: its
// delete, or a put of the entry in state (a QoS 2 mark).
type entryKey struct {
	id    string
	seq   uint64
	state byte // entryDelete, or the state to put
	pid   uint16
	out   outMsg   // a put's message (EntryAwaitRec: one reference), QoS
	sess  *session // a mark's session, whose held slot it releases (holdForDurable)
}

// entryDelete marks an entryKey that deletes its entry (entryDeleteOnce:
// an entry put once, forgetEntry), entryDeleteTo one that deletes every
// entry of its client up to seq (those of an ended session:
// forgetSession).
const (
	entryDelete     = 0xFF
	entryDeleteTo   = 0xFE
	entryDeleteOnce = 0xFD
)

// deletesOne reports whether k deletes its entry.
func (k *entryKey) deletesOne() bool { return k.state == entryDelete || k.state == entryDeleteOnce }

// deleteEntry adds the delete of entry seq of client id to the open batch.
func (l *loop) deleteEntry(id string, seq uint64, state byte) {
	if state == entryDeleteOnce {
		l.batch().DeleteEntryPutOnce(id, seq)
	} else {
		l.batch().DeleteEntry(id, seq)
	}
}

// pendingBatch is a batch handed to the store and the clients waiting for it.
type pendingBatch struct {
	at      int64 // loop clock when committed
	ticket  uint64
	low     uint64 // openLow when it was committed
	b       *store.Batch
	waiters []*client
}

// persistence is the server's side of the store.
type persistence struct {
	st  store.Store
	seq atomic.Uint64 // last message sequence number handed out
	// orphans are recovered sessions no loop owns yet: the first loop to
	// sweep adopts them (recover.go).
	orphans atomic.Pointer[[]*session]
	// failures counts commits the store failed; stalls, the times a
	// loop's commit stayed outstanding past storeStallAfter.
	failures, stalls atomic.Uint64
	// stallAfter is storeStallAfter (shorter in tests).
	stallAfter time.Duration
	// full is set while the store is past Options.MaxStoreBytes;
	// notStored counts the deliveries not written because of it.
	full      atomic.Bool
	notStored atomic.Uint64
}

// checkDiskBound updates persistence.full from the store's size. Called
// once a second by the ticker.
func (srv *Server) checkDiskBound() {
	ps := srv.ps
	limit := srv.opts.MaxStoreBytes
	if limit == 0 {
		return
	}
	full := ps.st.Stats().DiskBytes >= limit
	if ps.full.Swap(full) != full {
		if full {
			srv.log.Warn("store reached its size bound: new messages to persistent sessions are kept in memory only", "bound", limit)
		} else {
			srv.log.Info("store below its size bound again: messages to persistent sessions are written again", "bound", limit)
		}
	}
}

// durable reports whether s outlives its connection under a store.
func (srv *Server) durable(s *session) bool {
	return srv.ps != nil && s.stores()
}

// batch returns the loop's open batch, opening one.
func (l *loop) batch() *store.Batch {
	ls := &l.st
	if ls.b == nil {
		if n := len(ls.free); n > 0 {
			ls.b = ls.free[n-1]
			ls.free = ls.free[:n-1]
		} else {
			ls.b = new(store.Batch)
		}
		ls.ticket++
	}
	return ls.b
}

// flushStore commits the open batch unless a commit is outstanding (the
// batch is committed when that one is durable). Called by endBatch.
func (l *loop) flushStore() {
	ls := &l.st
	if len(ls.pending) == 0 && (ls.b != nil || len(ls.deferred) > 0) {
		l.commitStore()
	}
}

// commitStore hands the open batch, with the deferred deletes that may go
// now, to the store. Called by flushStore, and by the lifecycle code that
// must order its writes before work it posts to another loop.
func (l *loop) commitStore() {
	ls := &l.st
	if len(ls.deferred) > 0 {
		ls.w = l.srv.watermark()
		// In place: a write that stays is moved only once one before it
		// went (the list can hold a commit cycle's deletes of entries
		// other loops put, scanned at every commit).
		n := 0
		for i := range ls.deferred {
			k := &ls.deferred[i]
			if k.seq <= ls.w {
				l.writeEntry(k)
				continue
			}
			if n != i {
				ls.deferred[n] = *k
			}
			n++
		}
		clear(ls.deferred[n:])
		ls.deferred = ls.deferred[:n]
		if n == 0 {
			ls.deferring.Store(false)
		}
	}
	if ls.b == nil {
		return
	}
	b, t, ws := ls.b, ls.ticket, ls.waiters
	ls.b, ls.waiters, ls.spare = nil, ls.spare, nil
	ls.pending = append(ls.pending, pendingBatch{at: l.mono, ticket: t, low: ls.openLow, b: b, waiters: ws})
	ls.openLow = 0
	ls.handed = true
	cd := l.commitDone()
	cd.ticket = t
	l.srv.ps.st.Commit(b, cd.done)
}

// commitDone is one commit's completion: the store calls done, which
// hands the result to the loop, where committed runs. Reused from commit
// to commit (loopStore.dones) so that a commit allocates no closure: done
// and run are bound once. Between commits it is its loop's; the store's
// goroutine sets err before it posts run, and touches it no more.
type commitDone struct {
	l      *loop
	ticket uint64
	err    error
	done   func(error)
	run    func(*loop)
}

// commitDone returns a completion for the next commit.
func (l *loop) commitDone() *commitDone {
	ls := &l.st
	if n := len(ls.dones); n > 0 {
		cd := ls.dones[n-1]
		ls.dones = ls.dones[:n-1]
		return cd
	}
	cd := &commitDone{l: l}
	cd.done = cd.finish
	cd.run = cd.apply
	return cd
}

// finish is the store's callback: it runs on the store's goroutine.
func (cd *commitDone) finish(err error) {
	cd.err = err
	cd.l.post(task{kind: taskFunc, fn: cd.run})
}

// apply runs on the loop: cd goes back for reuse, then committed.
func (cd *commitDone) apply(l *loop) {
	t, err := cd.ticket, cd.err
	cd.err = nil
	if ls := &l.st; len(ls.dones) < 4 {
		ls.dones = append(ls.dones, cd)
	}
	l.committed(t, err)
}

// committed releases what waited for batch t (and any before it) to be
// durable. Runs on l.
func (l *loop) committed(t uint64, err error) {
	ls := &l.st
	if err != nil {
		l.srv.ps.failures.Add(1)
		l.srv.log.Error("store commit failed; publishers waiting for it are disconnected and will resend", "error", err)
	}
	for len(ls.pending) > 0 && ls.pending[0].ticket <= t {
		p := ls.pending[0]
		n := copy(ls.pending, ls.pending[1:]) // in place: the list keeps its storage
		ls.pending[n] = pendingBatch{}
		ls.pending = ls.pending[:n]
		ls.durable = p.ticket
		for _, c := range p.waiters {
			if err != nil {
				c.close(reasonStoreFailed)
				continue
			}
			if h := c.heldAcks(); h != nil && h.on == nil {
				c.releaseHeld()
			}
		}
		if ls.spare == nil && cap(p.waiters) <= 1024 {
			clear(p.waiters)
			ls.spare = p.waiters[:0]
		}
		p.b.Reset()
		if len(ls.free) < 4 {
			ls.free = append(ls.free, p.b)
		}
	}
	low := ls.openLow
	for i := range ls.pending {
		if ls.pending[i].low != 0 {
			low = ls.pending[i].low
			break
		}
	}
	if ls.low.Swap(low) != low {
		// The watermark may have moved: loops whose writes wait for it
		// look again now rather than at their next event or sweep.
		for _, lx := range l.srv.loopsSnapshot() {
			if lx != l && lx.st.deferring.Load() {
				lx.post(task{kind: taskFunc, fn: func(lx *loop) { lx.flushStore() }})
			}
		}
	}
	if len(ls.pending) == 0 && cap(ls.pending) > 64 {
		ls.pending = nil // grew during a stall
	}
	ls.w = l.srv.watermark()
	l.sendHeld()
	l.flushStore() // what collected meanwhile
	if rs := ls.readers; len(rs) > 0 {
		ls.readers = nil
		for _, s := range rs {
			if s.owner.Load() == l && s.client != nil && s.q != nil {
				s.pump() // reads back what it can now (spill.go)
			}
		}
	}
	l.endBatch()
}

// commitAtStop hands the store what the loops had not committed when they
// ended: their open batches (kept while a commit was outstanding), then,
// behind every one of them, the writes that waited for the watermark
// (the store applies commits in order, so their entries' puts come
// first). The caller's Store.Close makes them durable. Runs in Stop once
// no loop runs any more.
func (srv *Server) commitAtStop() {
	loops := srv.loopsSnapshot()
	commit := func(l *loop) {
		if b := l.st.b; b != nil {
			l.st.b = nil
			srv.ps.st.Commit(b, func(error) {})
		}
	}
	for _, l := range loops {
		commit(l)
	}
	for _, l := range loops {
		for i := range l.st.deferred {
			l.writeEntry(&l.st.deferred[i])
		}
		l.st.deferred = nil
		commit(l)
	}
}

// waitDurable makes c's acknowledgement being added wait for the open
// batch; it returns the ticket to hold it with (0: no wait).
func (l *loop) waitDurable(c *client) durableWait {
	ls := &l.st
	if !ls.needs {
		return durableWait{}
	}
	ls.needs = false
	if len(ls.waiters) == 0 || ls.waiters[len(ls.waiters)-1] != c {
		ls.waiters = append(ls.waiters, c)
	}
	return durableWait{ticket: ls.ticket}
}

// waitSaved is waitDurable for the QoS 1 PUBLISH of c just routed: its
// acknowledgement may also go once every persistent session the message
// reached has acknowledged it (earlyack.go).
func (l *loop) waitSaved(c *client) durableWait {
	w := l.waitDurable(c)
	if m := l.st.e.early; m != nil {
		l.st.e.early = nil
		if w.ticket == 0 {
			m.release()
		} else {
			m.publisher = c
			w.acked = m // with the reference endRoute took
		}
	}
	return w
}

// nextSeq numbers a message for the store. Sequence numbers order a
// session's entries; they grow for the life of the data directory.
func (ps *persistence) nextSeq() uint64 { return ps.seq.Add(1) }

// wallNanos converts the loop clock to Unix nanoseconds.
func (srv *Server) wallNanos(mono int64) int64 {
	return srv.started.UnixNano() + mono
}

// monoFromWall converts Unix nanoseconds to the loop clock.
func (srv *Server) monoFromWall(wall int64) int64 {
	return wall - srv.started.UnixNano()
}

// storeMessage fills sm from m, as views into m (the batch copies them).
func (srv *Server) storeMessage(sm *store.Message, m *message) {
	*sm = store.Message{Topic: m.topic, Payload: m.payload, Props: m.props, QoS: m.qos, Retain: m.retain, From: m.from}
	if m.expiry != 0 {
		sm.Expiry = srv.wallNanos(m.expiry)
	}
}

// copyMessage returns a copy of m with one reference and no sequence
// number, for a delivery of m, numbered for other sessions' entries, that
// has no entry of its own under that number: a retained message sent on
// SUBSCRIBE, a shared one handed to another member, a second delivery of m
// to one session (route: trie.Result.Again; numbered then by
// persistDelivery, as a message of its own). The spill
// (spill.go) assumes that a session owes a numbered message under its
// number and only ever receives numbers that grow: it would drop such a
// delivery as read back already, or spill it without an entry.
func (srv *Server) copyMessage(m *message) *message {
	var sm store.Message
	srv.storeMessage(&sm, m)
	return srv.restoreMessage(&sm, false)
}

// persistDelivery writes out, a QoS 1/2 delivery to persistent session s,
// as an entry of s and marks the current route as needing the batch
// durable before its publisher is acknowledged. Every entry of one message
// has the message's Seq, numbered here for its first: entries put once with
// one Seq hold one message, which the batch and the store then keep once
// for them all (store.Batch.PutEntryOnce). Runs on the routing loop.
func (l *loop) persistDelivery(s *session, out *outMsg) {
	m := out.msg
	if m.seq == 0 {
		ls := &l.st
		if ls.openLow == 0 {
			// Published before the number is taken, so that the
			// watermark never passes it while the batch is open.
			ls.openLow = l.srv.ps.seq.Load() + 1
			if ls.low.Load() == 0 {
				ls.low.Store(ls.openLow)
			}
		}
		m.seq = l.srv.ps.nextSeq()
		m.router = l
	}
	l.putEntry(s.id, out, m.seq, store.EntryQueued, 0)
	out.stored = true
	if out.qos < 2 {
		out.put = int32(len(l.st.b.Ops())) // 1 + its index
		l.st.e.puts++
	}
	l.st.needs = true
}

// takeBackPut removes the put of s's entry seq from the open batch if it
// is there, and reports whether it did: the delivery was acknowledged (or
// dropped) before its batch was committed, so neither the entry nor its
// delete needs writing. put is the delivery's outMsg.put (persistDelivery,
// QoS 1 only); the batch checks that it still names that put, so what was
// put by another loop or has been committed is deleted as usual. Runs on
// s's owner, or on the routing loop for an acknowledgement another loop
// read (taskTakeBack); l either way.
func (l *loop) takeBackPut(s *session, put int32, seq uint64) bool {
	ls := &l.st
	if ls.b == nil || put == 0 || !ls.b.CancelPutEntry(int(put-1), s.id, seq) {
		return false
	}
	l.stats.takenBack.Add(1)
	return true
}

// putEntry writes one entry of session id. A queued delivery below QoS 2
// is never put again (no mark rewrites it, markEntry), so the store may
// group it with others (store.Batch.PutEntryOnce); forgetEntry deletes it
// as put once.
func (l *loop) putEntry(id string, out *outMsg, seq uint64, state byte, pid uint16) {
	ls := &l.st
	e := &ls.entry
	ls.subIDs = out.appendSubIDs(ls.subIDs[:0])
	*e = store.Entry{Seq: seq, State: state, PacketID: pid, QoS: out.qos, Retain: out.retain,
		Shared: out.glen != 0, Group: out.storedGroup(), SubIDs: ls.subIDs}
	if out.msg != nil {
		l.srv.storeMessage(&e.Msg, out.msg)
	}
	if state == store.EntryQueued && out.qos < 2 {
		l.batch().PutEntryOnce(id, e)
	} else {
		l.batch().PutEntry(id, e)
	}
	e.Msg = store.Message{}
}

// storedGroup is the group out's entry keeps (store.Entry.Group): out's
// group, "" for a delivery through the session's own subscriptions or one
// whose group is not known (groupUnknown).
func (out *outMsg) storedGroup() string {
	if g := out.group(); g != groupUnknown {
		return g
	}
	return ""
}

// appendSubIDs appends out's subscription identifiers to dst.
func (out *outMsg) appendSubIDs(dst []uint32) []uint32 {
	if out.subID != 0 {
		dst = append(dst, out.subID)
	}
	return append(dst, out.moreSubIDs()...)
}

// entryNow reports whether a write to entry seq may go into the open
// batch now rather than wait in deferred: the entry's put is in that
// batch already (m is the message being routed) or durable (seq at or
// below the watermark), and no earlier write waits that must come first.
func (l *loop) entryNow(seq uint64, m *message) bool {
	ls := &l.st
	return (m != nil && m == ls.routing) || (seq <= ls.w && len(ls.deferred) == 0)
}

// writeEntry adds a deferred write to the open batch, giving up its
// reference.
func (l *loop) writeEntry(k *entryKey) {
	switch k.state {
	case entryDelete, entryDeleteOnce:
		l.deleteEntry(k.id, k.seq, k.state)
		return
	case entryDeleteTo:
		l.batch().DeleteEntriesTo(k.id, k.seq)
		return
	}
	l.putEntry(k.id, &k.out, k.seq, k.state, k.pid)
	if k.out.msg != nil {
		k.out.msg.release()
	}
	if s := k.sess; s != nil && s.q != nil {
		// The mark a held PUBLISH or PUBREL waits for is in this batch
		// now (holdForDurable).
		want := slotAwaitRec
		if k.state == store.EntryAwaitComp {
			want = slotAwaitComp
		}
		if sl := s.q.inflight.at(k.pid); sl != nil && sl.state == want && sl.hold == holdDeferred {
			sl.hold = l.st.ticket
		}
	}
}

// markEntry records a QoS 2 message's progress in s's entry: sent with
// packet identifier pid (store.EntryAwaitRec; out is the message), or
// released (store.EntryAwaitComp). Runs on s's owner.
func (l *loop) markEntry(s *session, out *outMsg, seq uint64, state byte, pid uint16) {
	l.st.markDeferred = false
	if l.entryNow(seq, out.msg) {
		l.putEntry(s.id, out, seq, state, pid)
		return
	}
	l.st.markDeferred = true
	k := entryKey{id: s.id, seq: seq, state: state, pid: pid, out: outMsg{qos: out.qos}, sess: s}
	if out.msg != nil {
		k.out = *out
		k.out.msg.ref()
	}
	l.deferWrite(k)
}

// dropDeferred takes s's waiting writes out of l's deferred list: the
// puts are released when s ends (its record and entries are deleted),
// and kept to move with s when it moves to another loop. Runs on s's
// owner, l.
func (l *loop) dropDeferred(s *session, keepMoving bool) (moving []entryKey) {
	ls := &l.st
	keep := ls.deferred[:0]
	for _, k := range ls.deferred {
		switch {
		case k.id != s.id:
			keep = append(keep, k)
		case keepMoving:
			moving = append(moving, k)
		case k.out.msg != nil:
			k.out.msg.release()
		}
	}
	clear(ls.deferred[len(keep):])
	ls.deferred = keep
	if len(keep) == 0 {
		ls.deferring.Store(false)
	}
	return moving
}

// forgetEntry deletes s's entry for a message it no longer owes: the
// client acknowledged it, or the broker dropped it. qos is the delivery's:
// below 2 its entry was put once and never marked (markEntry), so the
// store may drop the put and the delete together
// (store.Batch.DeleteEntryPutOnce), and when that put is still in this
// loop's open batch it is taken back and nothing is written at all
// (takeBackPut; put is the delivery's outMsg.put, 0 if not at hand). Runs
// on s's owner.
func (l *loop) forgetEntry(s *session, seq uint64, qos byte, put int32) {
	if seq == 0 || !l.srv.durable(s) {
		return
	}
	l.dropEntry(s, seq, qos, put)
	s.forgot(seq)
}

// dropEntry is forgetEntry's write: the put taken back, or the delete in
// the open batch once the put is durable (deferred until then).
func (l *loop) dropEntry(s *session, seq uint64, qos byte, put int32) {
	state := byte(entryDelete)
	if qos < 2 {
		state = entryDeleteOnce
	}
	switch {
	case qos < 2 && l.takeBackPut(s, put, seq):
	case !l.entryNow(seq, nil):
		l.deferWrite(entryKey{id: s.id, seq: seq, state: state})
	default:
		l.deleteEntry(s.id, seq, state)
	}
}

// forgetStray deletes the entry a route wrote for s (outMsg.stored) after
// s stopped storing. The routing loop read s's flags just before its
// owner made the session end with its connection (a DISCONNECT, or a
// CONNECT resuming it, with a Session Expiry Interval of 0), and numbered
// the message after forgetSession took its bound: no delete of
// forgetSession's covers the entry, and forgetEntry writes nothing for a
// session that does not store, so without this the entry would stay in
// the store for good, and come back after a restart as a message owed to
// a later persistent session of the same client id. out.put stays: the
// delivery still counts towards its publisher's early PUBACK. Runs on s's
// owner.
func (l *loop) forgetStray(s *session, out *outMsg) {
	out.stored = false
	l.dropEntry(s, out.msg.seq, out.qos, out.put)
}

// forgetAcked is forgetEntry for a delivery its client acknowledged
// (PUBACK). When this loop routed the message (message.router), the
// entry's put is in one of its own batches, which the store applies in
// order: the put is taken back if still in the open batch, else the
// delete joins the open batch at once, with no wait for the watermark.
//
// Entries another loop put are deleted by forgetEntry, on this loop:
// handing the delete to the routing loop would put it in a batch this
// session's spill read-back does not wait for (spill.go), which could read
// the acknowledged entry back and send it again. The routing loop is asked
// to take the put back as well (taskTakeBack): if its batch is still open,
// the message is never written; the delete written here then finds
// nothing, which the store allows. Either way the acknowledgement counts
// towards the publisher's early PUBACK (earlyack.go). Runs on s's owner, l.
func (l *loop) forgetAcked(s *session, out *outMsg) {
	m := out.msg
	if out.put != 0 {
		l.ackedDelivery(m)
	}
	if out.qos >= 2 || m.router != l || m.seq == 0 || !l.srv.durable(s) {
		if r := m.router; out.put != 0 && r != nil && r != l && l.srv.durable(s) { // put: QoS 1, numbered
			m.ref()
			l.handOff(r, task{kind: taskTakeBack, sess: s, out: outMsg{msg: m, put: out.put}})
		}
		l.forgetEntry(s, m.seq, out.qos, 0) // not put by this loop, or not once
		return
	}
	if !l.takeBackPut(s, out.put, m.seq) {
		l.deleteEntry(s.id, m.seq, entryDeleteOnce)
	}
	s.forgot(m.seq)
}

// persistRetained writes m's retained state: set, or cleared by an empty
// payload. Runs on the routing loop.
func (l *loop) persistRetained(m *message) {
	b := l.batch()
	if len(m.payload) == 0 {
		b.DeleteRetained(m.topic)
	} else {
		var sm store.Message
		l.srv.storeMessage(&sm, m)
		b.PutRetained(&sm)
	}
	if m.qos > 0 {
		l.st.needs = true
	}
}

// persistSession writes s's record. c is its current connection (nil
// while offline). Runs on s's owner.
func (l *loop) persistSession(s *session, c *client) {
	if !l.srv.durable(s) {
		return
	}
	rec := store.Session{ClientID: s.id, Expiry: s.expiry}
	if c != nil {
		rec.Version = byte(c.version)
		if w := c.will; w != nil {
			rec.Will = l.srv.storeWill(w)
		}
	} else {
		rec.DisconnectedAt = time.Now().UnixNano()
		if w := s.will; w != nil {
			rec.Will = l.srv.storeWill(w)
		}
		if s.q != nil {
			// What went out before the disconnect, to resend with DUP
			// and, for QoS 1, the same packet identifiers
			// [MQTT-4.4.0-1] should the broker restart before the
			// client is back (QoS 2 entries keep theirs).
			rec.SentTo = s.q.sentBound()
			rec.SentIDs = s.q.sentIDs()
		}
	}
	if id := s.identity(); !id.Anonymous {
		rec.Username = id.Username
	}
	rec.Subs = make([]store.Subscription, 0, len(s.subs))
	for f, o := range s.subs {
		rec.Subs = append(rec.Subs, store.Subscription{Filter: f, QoS: o.QoS, NoLocal: o.NoLocal,
			RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling, SubID: o.SubscriptionID})
	}
	l.batch().PutSession(&rec)
	s.stored = true
}

// storeWill is w as stored.
func (srv *Server) storeWill(w *will) *store.Will {
	if w.msg == nil {
		return nil
	}
	sw := &store.Will{Delay: w.delay, MessageExpiry: w.expiry, HasExpiry: w.hasExpiry}
	srv.storeMessage(&sw.Msg, w.msg)
	sw.Msg.Expiry = 0 // a will's expiry starts when it is published
	return sw
}

// forgetSession deletes s and everything it owns from the store, and
// commits at once: whatever the caller posts to other loops next (a new
// session of the same id binding elsewhere) must reach the store after
// the delete. Its waiting writes are dropped, and the entries still on
// their way from other loops are deleted behind them (entryDeleteTo).
// Runs on s's owner.
func (l *loop) forgetSession(s *session) {
	if l.srv.ps == nil || !s.stored {
		return
	}
	l.dropDeferred(s, false)
	s.stored = false
	l.batch().DeleteSession(s.id)
	if seq := l.srv.ps.seq.Load(); seq > l.srv.watermark() {
		// Entries other loops wrote for s may reach the store after the
		// delete: they go too once the watermark passes them. A session
		// that takes s's client id later has greater sequence numbers.
		l.deferWrite(entryKey{id: s.id, seq: seq, state: entryDeleteTo})
	}
	l.commitStore()
}

// persistInbound records or forgets a persistent publisher's QoS 2 packet
// identifier awaiting PUBREL. Runs on the publisher's loop.
func (c *client) persistInbound(id uint16, add bool) {
	l := c.loop
	if !l.srv.durable(c.sess) {
		return
	}
	if add {
		l.batch().PutInbound(c.sess.id, id)
	} else {
		l.batch().DeleteInbound(c.sess.id, id)
	}
	l.st.needs = true
}

// subOptions converts a stored subscription to the index's options.
func subOptions(s *store.Subscription) trie.Options {
	return trie.Options{QoS: s.QoS, NoLocal: s.NoLocal, RetainAsPublished: s.RetainAsPublished,
		RetainHandling: s.RetainHandling, SubscriptionID: s.SubID}
}
