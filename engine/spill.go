package engine

import (
	"slices"

	"github.com/loopmq/loopmq/store"
)

// Offline queues that spill to disk.
//
// Every QoS 1/2 message owed to a persistent session is already an entry
// in the store (persist.go), so keeping it in memory as well is only a
// cache. An offline session keeps at most Options.MaxQueuedInMemory
// messages in memory; the ones that arrive past that are released at once
// and live only on disk ("spilled"), up to MaxQueued in all. When the
// client is back and the in-memory queue has room, the session reads its
// entries back in sequence order, a chunk at a time, until it has read
// every spilled one; from then on its queue works in memory again.
//
// Reading back must neither miss an entry nor deliver one twice:
//
//   - Entries of other loops' batches may not be in the store yet. Every
//     loop publishes the lowest sequence number its unfinished batches may
//     hold (loopStore.low), so the watermark (Server.watermark) is a
//     number below which every entry is durable. A chunk reads no entry
//     above the watermark; the spill ends only when the watermark has
//     passed the highest sequence number spilled.
//   - A delivery can still be on its way to the owner loop when its entry,
//     already durable, was read back. Everything below sessionQueues.readTo
//     has been read, so such a late delivery is dropped on arrival.
//   - Entries that are in memory (queued before the spill began, or in the
//     in-flight window) and entries acknowledged since the client came back
//     (their deletes may not be applied yet: sessionQueues.forgotten) are
//     skipped; and the first read waits until the owner's own batches up to
//     the reconnection are durable. Deletes made before that still waiting
//     for their entry's put (loopStore.deferred) are in no batch yet: the
//     reconnection adds them to forgotten.
//
// Ownership: all of it belongs to the session's owner loop, except
// loopStore.low, which the loop writes and any loop reads.

// spillState is a session's spill: entries on disk and not in memory.
type spillState struct {
	last  uint64 // highest sequence number spilled
	n     int    // entries spilled and not read back (for the MaxQueued bound)
	bytes int    // their payload bytes (for the MaxQueuedBytes bound)
	// wait is the owner's batch ticket that must be durable before the
	// first read (the deletes made before the client came back); 0 none.
	wait uint64
}

// set sets the count of spilled entries to n and their payload bytes to
// size (negative values count as 0), keeping the owner loop's queued
// gauges (Stats.Queued and QueuedBytes, loopmq_messages_queued) counting
// them: a spilled message is queued too, on disk. A session restored
// from the store has no owner yet: its count is added when a loop adopts
// it.
func (sp *spillState) set(q *sessionQueues, n, size int) {
	n, size = max(n, 0), max(size, 0)
	if dn, ds := int64(n-sp.n), int64(size-sp.bytes); dn != 0 || ds != 0 {
		q.queue.count(dn, ds)
	}
	sp.n, sp.bytes = n, size
}

// readChunk bounds the entries one read-back takes from the store.
const readChunk = 256

// spillOut moves out to disk only, when s is a persistent session past
// its in-memory bound, or spilling already. It reports whether it took
// out (spilled or dropped past MaxQueued). Runs on s's owner.
func (l *loop) spillOut(s *session, q *sessionQueues, out outMsg) bool {
	o := &l.srv.opts
	seq := out.msg.seq
	if seq == 0 || !l.srv.durable(s) {
		return false // not on disk: it stays in memory
	}
	if q.spill == nil {
		if s.client != nil || q.queue.len() < o.MaxQueuedInMemory {
			return false
		}
		q.spill = &spillState{}
	}
	sp := q.spill
	full := func() bool {
		queued := q.queue.len() + sp.n
		return queued >= o.MaxQueued || queued > 0 && q.queue.bytes+sp.bytes+len(out.msg.payload) > o.MaxQueuedBytes
	}
	for full() {
		// DropOldest: the oldest are the in-memory part (queued before
		// the spill began), then the oldest entries on disk.
		if o.QueueOverflow != DropOldest || !l.dropOldestQueued(s, q) {
			l.stats.droppedQueueFull.Add(1)
			l.forgetEntry(s, seq, out.qos, out.put)
			if o.QueueOverflow == DropOldest {
				q.forgetOffline(s, seq) // rare: the oldest could not be told
			}
			out.msg.release()
			return true
		}
	}
	sp.last = max(sp.last, seq)
	sp.set(q, sp.n+1, sp.bytes+len(out.msg.payload))
	out.msg.release()
	return true
}

// dropOldestQueued drops the oldest message of s's spilling queue:
// the in-memory part's first, else the first entry on disk after readTo
// that is not in flight, read from the store. It reports false when it
// cannot tell which is the oldest (an entry above the watermark may be
// older). Moving readTo past the dropped entry keeps it from being read
// back before its delete is applied; everything below it was in flight or
// is gone. Runs on s's owner, l.
func (l *loop) dropOldestQueued(s *session, q *sessionQueues) bool {
	if q.queue.len() > 0 {
		old := q.queue.pop()
		l.stats.droppedQueueFull.Add(1)
		l.forgetEntry(s, old.msg.seq, old.qos, old.put)
		q.forgetOffline(s, old.msg.seq) // at most MaxQueuedInMemory per absence: the in-memory part only shrinks offline
		old.msg.release()
		return true
	}
	w := l.srv.watermark()
	var (
		seq   uint64
		qos   byte
		size  int
		found bool
	)
	err := l.srv.ps.st.Entries(s.id, q.readTo, 0, func(e *store.Entry) bool {
		if e.Seq > w {
			return false
		}
		if q.inflight.holdsSeq(e.Seq) || slices.Contains(q.forgotten, e.Seq) || e.State == store.EntryAwaitComp {
			return true // in the window, acknowledged with its delete not applied yet, or a release (readBack drops it)
		}
		seq, qos, size, found = e.Seq, e.QoS, len(e.Msg.Payload), true
		if e.State != store.EntryQueued {
			qos = 2 // marked: put more than once
		}
		return false
	})
	if err != nil || !found {
		return false
	}
	l.stats.droppedQueueFull.Add(1)
	l.forgetEntry(s, seq, qos, 0)
	sp := q.spill
	sp.set(q, sp.n-1, sp.bytes-size)
	q.readTo = seq + 1
	return true
}

// readBack refills s's in-memory queue from the store while it spills.
// Runs on s's owner, l, with s's client connected.
func (l *loop) readBack(s *session) {
	q := s.q
	sp := q.spill
	if sp == nil {
		return
	}
	if sp.wait != 0 {
		if l.st.durable < sp.wait {
			l.st.readers = append(l.st.readers, s) // again when it is
			return
		}
		sp.wait = 0
	}
	room := l.srv.opts.MaxQueuedInMemory - q.queue.len()
	if room <= 0 {
		return
	}
	room = min(room, readChunk)
	w := l.srv.watermark()
	skip := make(map[uint64]struct{}, q.queue.len()+q.inflight.used+len(q.forgotten))
	for i := 0; i < q.queue.len(); i++ {
		skip[q.queue.items[(q.queue.head+i)%len(q.queue.items)].msg.seq] = struct{}{}
	}
	q.inflight.each(func(sl *slot) {
		if sl.m.msg != nil {
			skip[sl.m.msg.seq] = struct{}{}
		}
		skip[sl.seq] = struct{}{}
	})
	for _, seq := range q.forgotten {
		skip[seq] = struct{}{}
	}
	var (
		read, last uint64
		denied     int
		gone       int // payload bytes of the entries read or dropped
		full       bool
	)
	err := l.srv.ps.st.Entries(s.id, q.readTo, 0, func(e *store.Entry) bool {
		if e.Seq > w {
			return false
		}
		last = e.Seq
		if _, ok := skip[e.Seq]; ok {
			return true
		}
		if e.State == store.EntryAwaitComp {
			// A release outside the window: one recovery could not put
			// back (its packet identifier held by another entry,
			// recover.go restoreEntry). It keeps no message and the
			// client has it: there is nothing to send, and its PUBREL
			// cannot be sent without the slot. Not counted in the spill
			// (it was not queued).
			l.forgetEntry(s, e.Seq, 2, 0)
			return true
		}
		out := l.srv.restoreOut(e)
		gone += len(e.Msg.Payload)
		if !l.mayRead(s, out.msg) {
			// Checked when it was queued, but the session may have been
			// resumed by another identity since (authz.go).
			qos := e.QoS
			if e.State != store.EntryQueued {
				qos = 2 // marked: put more than once
			}
			l.forgetEntry(s, e.Seq, qos, 0)
			out.msg.release()
			denied++
			return true
		}
		// Sent before (in flight under a packet id, or possibly sent
		// before a restart): again with DUP [MQTT-3.3.1-1].
		out.dup = e.State != store.EntryQueued || e.Seq <= q.sentTo
		q.queue.push(out, 1<<31, 1<<62) // room was checked; bytes as on disk
		read++
		if int(read) >= room {
			full = true
			return false
		}
		return true
	})
	if err != nil {
		l.srv.log.Error("reading a spilled queue back failed; trying again later", "client", s.id, "error", err)
		return
	}
	sp.set(q, sp.n-int(read)-denied, sp.bytes-gone)
	if full {
		q.readTo = last + 1
		return
	}
	q.readTo = max(q.readTo, w+1)
	if sp.last <= w {
		// Every spilled entry was durable and has been read.
		sp.set(q, 0, 0)
		q.spill = nil
		q.forgotten = nil
	}
}

// watermark returns a sequence number below or at which every entry any
// loop wrote is durable.
func (srv *Server) watermark() uint64 {
	w := srv.ps.seq.Load()
	for _, l := range srv.loopsSnapshot() {
		if lw := l.st.low.Load(); lw != 0 && lw-1 < w {
			w = lw - 1
		}
	}
	return w
}

// forgot notes that s no longer owes entry seq while part of its queue is
// on disk only: a read-back must skip the entry even if its delete is not
// applied yet. Runs on s's owner.
//
// Only while the client is connected: the first read-back after it comes
// back waits until the deletes made before are durable (spillState.wait),
// and deletes made offline would otherwise pile up here for as long as
// the session stays offline with a full queue (one per message dropped).
func (s *session) forgot(seq uint64) {
	if q := s.q; q != nil && q.spill != nil && s.client != nil && seq >= q.readTo {
		q.forgotten = append(q.forgotten, seq)
	}
}

// forgetOffline records seq as forgotten (see forgot) while s is offline,
// for the drops of a full queue under DropOldest: dropOldestQueued reads
// the store while offline, and may meet an entry dropped earlier whose
// delete is not applied yet. Online, forgot has recorded it. Runs on s's
// owner.
func (q *sessionQueues) forgetOffline(s *session, seq uint64) {
	if s.client == nil {
		q.forgotten = append(q.forgotten, seq)
	}
}
