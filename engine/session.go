package engine

import (
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/trie"
)

// session is the broker-side state of one client identifier: its
// subscriptions, the in-flight window and the queue of messages owed to it.
//
// Ownership: every field below owner is read and written only by the loop
// that owner points to. The owner changes only by a hand-off that the
// current owner performs (takeover by a connection on another loop); code
// on any other goroutine that wants something done with a session posts it
// to owner's inbox, and the receiving loop re-checks ownership and forwards
// if the session moved meanwhile.
type session struct {
	id    string
	owner atomic.Pointer[loop]
	// flags holds what any loop may read (bits below); the owner writes
	// them. One word rather than four atomic.Bool keeps a session in the
	// 112-byte size class: every connection has one (issue 6).
	flags atomic.Uint32
	// inTransit counts QoS 1/2 deliveries other loops handed towards the
	// owner that it has not taken yet (flow.go).
	inTransit atomic.Int32

	ended   bool // removed from the registry; deliveries to it are dropped
	holding bool // moving to a new owner loop: see sessionMove
	// stored: the store holds a record of s (persist.go).
	stored bool
	// heldWaiting: a held PUBLISH of s waits, during one pass of
	// loop.sendHeld (persist.go); false otherwise.
	heldWaiting bool

	client      *client                 // current connection, nil while offline
	subs        map[string]trie.Options // its filters and their options; allocated by the first SUBSCRIBE
	q           *sessionQueues          // allocated by the first QoS 1/2 message
	inboundQoS2 map[uint16]struct{}     // QoS 2 packet ids received, PUBREC sent, awaiting PUBREL
	move        *sessionMove            // while holding
	authz       *sessionAuthz           // identity and cached decisions (authz.go); nil: anonymous, nothing cached

	// Lifecycle (expiry.go): the Session Expiry Interval in force
	// (seconds, expiryNever for none), the place in the owner's expiry
	// heap plus one (0: not in it), when the session ends while offline
	// (loop clock), and a will waiting for its Will Delay Interval.
	expiry   uint32
	expIdx   int32
	expireAt int64
	will     *will
}

// The bits of session.flags.
const (
	// flagOnline is set while a connection is bound; any loop may read
	// it (shared subscriptions skip offline members).
	flagOnline uint32 = 1 << iota
	// flagPressure is set while the connected client is saturated and
	// its queue is past its high watermark: publishers routing QoS 1/2
	// here get their acknowledgements withheld (flow.go).
	flagPressure
	// flagClean is set while the session ends with its connection (3.x
	// Clean Session = 1, 5.0 Session Expiry Interval 0); attach reads it
	// on any loop, under the registry lock.
	flagClean
	// flagKeep is set when a session resumed with a Session Expiry
	// Interval of 0 still has part of its queue on disk only (spill.go):
	// the store keeps it, and its messages are written as a persistent
	// session's, until it ends.
	flagKeep
)

// flag reports whether f is set in s.flags. Any goroutine.
func (s *session) flag(f uint32) bool { return s.flags.Load()&f != 0 }

// setFlag sets or clears f in s.flags. Runs on s's owner.
func (s *session) setFlag(f uint32, on bool) {
	if on {
		s.flags.Or(f)
	} else {
		s.flags.And(^f)
	}
}

// sessionQueues are a session's outgoing QoS 1/2 state: the in-flight
// window and the queue behind it. A session that never receives QoS 1/2
// (most idle devices) never allocates them.
type sessionQueues struct {
	inflight inflight
	queue    msgQueue
	// Back-pressure state (flow.go): the last acknowledgement from the
	// client (loop clock), whether it counts as stalled, and the
	// publishers waiting for the pressure to end.
	lastAck int64
	stalled bool
	waiters []func(*loop) // their heldAcks.wake
	// Spilling to disk (spill.go): the spill in progress, the sequence
	// number below which every entry was read back, and the entries
	// acknowledged during the spill.
	spill     *spillState
	readTo    uint64
	forgotten []uint64
	// sentTo bounds the entries the client may have been sent before a
	// restart: those at or below it go out again with DUP (persist.go).
	sentTo uint64
}

// sentBound returns the highest sequence number of an entry the client
// may have received and not acknowledged: q.sentTo, or one in flight.
// Runs on the session's owner.
func (q *sessionQueues) sentBound() uint64 {
	to := q.sentTo
	q.inflight.each(func(sl *slot) {
		to = max(to, sl.seq)
		if sl.m.msg != nil {
			to = max(to, sl.m.msg.seq)
		}
	})
	return to
}

// sentIDs returns the packet identifiers of the QoS 1 messages in flight,
// for the session record (store.Session.SentIDs); nil for none.
func (q *sessionQueues) sentIDs() []store.SentID {
	var ids []store.SentID
	q.inflight.each(func(sl *slot) {
		if sl.state == slotAwaitAck && sl.m.msg != nil && sl.m.qos == 1 {
			ids = append(ids, store.SentID{Seq: sl.m.msg.seq, PacketID: sl.id})
		}
	})
	return ids
}

// stores reports whether s's state goes to the store (with one): it
// outlives its connection, or it keeps what it had there (keep).
func (s *session) stores() bool { return !s.flag(flagClean) || s.flag(flagKeep) }

// queues returns s's QoS 1/2 state, allocating it on first use.
func (s *session) queues() *sessionQueues {
	if s.q == nil {
		s.q = &sessionQueues{}
		s.q.queue.owner = &s.owner
		s.q.inflight.owner = &s.owner
	}
	return s.q
}

// lookup returns the in-flight slot for packet id in state, or nil.
func (s *session) lookup(id uint16, state byte) *slot {
	if s.q == nil {
		return nil
	}
	return s.q.inflight.lookup(id, state)
}

// canSendNow reports whether a QoS 1/2 message may go straight into the
// in-flight window of s's client c: nothing queued ahead of it, no
// earlier connection's message still to be sent again (pending), and a
// free slot within the client's Receive Maximum.
func (s *session) canSendNow(c *client) bool {
	return s.q == nil || (s.q.queue.len() == 0 && s.q.spill == nil && s.q.inflight.pending == 0 && !s.q.windowFull(c))
}

// windowFull reports whether no more QoS 1/2 messages may be sent to c:
// the window is full, or c's Receive Maximum is reached [MQTT-3.3.4-7].
func (q *sessionQueues) windowFull(c *client) bool {
	return q.inflight.full() || q.inflight.used >= int(c.sendQuota)
}

// sessionMove is what a session keeps while it moves to a new owner loop
// (holding): until every delivery that other loops had already sent towards
// the old owner has been forwarded here, deliveries routed here directly
// wait in held, so that no message overtakes an older one of the same
// publisher [MQTT-4.6.0-6]. deferred are takeovers that arrived meanwhile;
// they run after the release. Allocated only for the move.
type sessionMove struct {
	held     []outMsg
	deferred []func(*loop, *session)
	carried  []entryKey // writes to its entries that waited on the old owner (persist.go)
}

// registry maps client identifiers to sessions. It is touched only when a
// client connects or a session ends, never per message, and is sharded so
// that connection storms on different loops rarely meet on one lock.
type registry struct {
	shards [64]registryShard
}

type registryShard struct {
	mu sync.Mutex
	m  map[string]*session
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[string]*session)
	}
	return r
}

func (r *registry) shard(id string) *registryShard {
	return &r.shards[xxhash.Sum64String(id)%uint64(len(r.shards))]
}

// swap installs fn's result for id under the shard lock and returns the
// previous session. fn sees the previous session (or nil) and returns the
// session to keep.
func (r *registry) swap(id string, fn func(old *session) *session) (old *session) {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	old = sh.m[id]
	if s := fn(old); s != nil {
		sh.m[id] = s
	} else {
		delete(sh.m, id)
	}
	return old
}

// remove deletes id's entry if it is still s.
func (r *registry) remove(id string, s *session) {
	sh := r.shard(id)
	sh.mu.Lock()
	if sh.m[id] == s {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
}

// count returns the number of sessions.
func (r *registry) count() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
