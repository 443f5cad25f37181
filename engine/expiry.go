package engine

import (
	"math"
	"time"
)

// Session expiry and delayed wills: when an offline session ends.
//
// A session whose connection closed lives on for its Session Expiry
// Interval [MQTT-3.1.2-23] (3.x Clean Session = 0: until MaxSessionExpiry,
// or for ever), and a will with a Will Delay Interval waits in it
// [MQTT-3.1.3-9]. Both deadlines go into the owner loop's expiryHeap,
// ordered by the earlier of the two, which the loop's once-a-second sweep
// pops. A connection that closes or resumes a session costs O(log n) here;
// a message costs nothing.
//
// Ownership: a loop's heap and each session's place in it
// (session.expIdx) belong to the loop. A session is in at most one heap,
// its owner's: a session changes owner only by a takeover, which starts
// on the old owner with resume, and resume takes it out of the heap first.
// The sweep still checks what it pops (still offline, not ended), so a
// session that came back without resume costs a stale entry, never a
// wrong expiry.

// noDeadline marks a deadline that never comes.
const noDeadline = math.MaxInt64

// maxExpiriesPerSweep bounds the sessions one sweep ends or sends the
// will of, so that a mass expiry cannot stall a loop; the rest wait for
// the next sweep.
const maxExpiriesPerSweep = 4096

// expiryEntry is one offline session and its next deadline (loop clock).
type expiryEntry struct {
	at int64
	s  *session
}

// expiryHeap is a binary min-heap of offline sessions by next deadline.
// Each session's index in it, plus one, is in session.expIdx (0: not in
// the heap). Owned by its loop.
type expiryHeap []expiryEntry

func (h *expiryHeap) push(s *session, at int64) {
	*h = append(*h, expiryEntry{at: at, s: s})
	i := len(*h) - 1
	s.expIdx = int32(i + 1)
	h.up(i)
}

// remove takes the entry at index i out.
func (h *expiryHeap) remove(i int) {
	old := *h
	last := len(old) - 1
	old[i].s.expIdx = 0
	if i != last {
		old[i] = old[last]
		old[i].s.expIdx = int32(i + 1)
	}
	old[last] = expiryEntry{}
	*h = old[:last]
	if i != last {
		h.down(i)
		h.up(i)
	}
	if cap(*h) > 1024 && len(*h) < cap(*h)/4 {
		// A mass expiry is over: give the memory back.
		*h = append(expiryHeap(nil), *h...)
	}
}

func (h expiryHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[p].at <= h[i].at {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h expiryHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r].at < h[l].at {
			m = r
		}
		if h[i].at <= h[m].at {
			return
		}
		h.swap(i, m)
		i = m
	}
}

func (h expiryHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].s.expIdx = int32(i + 1)
	h[j].s.expIdx = int32(j + 1)
}

// wentOffline starts s's life without a connection after c (nil when the
// connection closed before it was bound) went away: c's will moves into s
// if it has to wait for its delay, and s is scheduled to end after its
// Session Expiry Interval. Runs on s's owner, l.
func (s *session) wentOffline(l *loop, c *client) {
	if c != nil {
		c.parkWill(s)
	}
	s.expireAt = noDeadline
	if s.expiry != expiryNever {
		s.expireAt = l.mono + int64(s.expiry)*int64(time.Second)
	}
	s.schedule(l)
	l.persistSession(s, nil) // when it went offline, and its delayed will
}

// schedule puts s in l's heap at its next deadline, or takes it out when
// it has none. Runs on s's owner, l.
func (s *session) schedule(l *loop) {
	at := s.expireAt
	if w := s.will; w != nil {
		at = min(at, w.at)
	}
	if s.expIdx != 0 {
		l.expiring.remove(int(s.expIdx - 1))
	}
	if at != noDeadline {
		l.expiring.push(s, at)
		if at < l.nextExpiry.Load() {
			l.nextExpiry.Store(at)
		}
	}
}

// resume readies s for a new connection: a delayed will is cancelled
// [MQTT-3.1.3-9] and s leaves l's heap. It runs on s's owner, l, before
// s may move to another loop.
func (s *session) resume(l *loop) {
	if w := s.will; w != nil {
		s.will = nil
		w.release()
	}
	if s.expIdx != 0 {
		l.expiring.remove(int(s.expIdx - 1))
	}
}

// endLife is end's part of the lifecycle: s leaves l's heap, and a will
// still waiting for its delay is published now, since the session ends
// first [MQTT-3.1.2-8]. Runs on s's owner, l.
func (s *session) endLife(l *loop) {
	if s.expIdx != 0 {
		l.expiring.remove(int(s.expIdx - 1))
	}
	if w := s.will; w != nil {
		s.will = nil
		l.publishWill(w)
	}
}

// expire ends s, offline past its Session Expiry Interval: kept for its
// interval [MQTT-3.1.2-23], and no longer: its subscriptions, queue and
// registry entry go, its will is published. Runs on s's owner, l.
func (s *session) expire(l *loop) {
	l.srv.log.Debug("session expired", "client", s.id)
	l.stats.sessionsExpired.Add(1)
	s.end()
}

// runDue publishes offline s's will if its Will Delay Interval has passed
// at now [MQTT-3.1.2-8] and ends s if its Session Expiry Interval has,
// and reports whether s ended. Runs on s's owner, l: from the expiry heap,
// or for a client coming back before that got to s.
func (s *session) runDue(l *loop, now int64) bool {
	if w := s.will; w != nil && w.at <= now {
		s.will = nil
		l.publishWill(w)
	}
	if s.expireAt <= now {
		s.expire(l)
		return true
	}
	return false
}

// expireSessions publishes the delayed wills and ends the sessions whose
// time has come, at most maxExpiriesPerSweep of them. Called by the sweep.
func (l *loop) expireSessions() {
	h := &l.expiring
	now := l.mono
	for n := 0; n < maxExpiriesPerSweep && len(*h) > 0 && (*h)[0].at <= now; n++ {
		s := (*h)[0].s
		h.remove(0)
		if s.ended || s.client != nil {
			continue // stale: resumed or ended without leaving the heap
		}
		if !s.runDue(l, now) {
			s.schedule(l)
		}
	}
	next := int64(noDeadline)
	if len(*h) > 0 {
		next = (*h)[0].at
	}
	l.nextExpiry.Store(next)
}

// maxIdleMatch is the largest match result (deliveries) a loop keeps
// between sweeps; see trimMatch.
const maxIdleMatch = 256

// trimMatch drops the loop's match scratch once it has grown past
// maxIdleMatch deliveries. trie.Result reuses its arrays without clearing
// them, so a large fan-out keeps the handles it matched reachable, and
// with them sessions that ended since, until a match as large overwrites
// them. Called by the sweep: a loop that routes large fan-outs regrows
// the scratch at most once a second; nothing changes per message.
func (l *loop) trimMatch() {
	if cap(l.match.Deliveries) > maxIdleMatch {
		l.match = matchScratch{}
	}
	if cap(l.rematch.Deliveries) > maxIdleMatch {
		l.rematch = matchScratch{}
	}
}
