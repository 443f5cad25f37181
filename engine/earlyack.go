package engine

// Early acknowledgements: a QoS 1 PUBLISH whose every entry was taken back.
//
// A publisher's PUBACK waits for the batch holding what its message wrote
// to be durable (persist.go), one to two fsyncs. When each persistent
// subscriber the message went to acknowledges it before that batch is
// committed, each entry is taken back (takeBackPut) and the message needs
// the store no more: nothing of it is written, and a crash cannot lose a
// message every subscriber has acknowledged. Its PUBACK then goes at the
// end of the event that took back the last entry, in order with the
// publisher's other acknowledgements (releaseHeld), instead of after the
// fsync.
//
// Accounting, per route (loop.route): unsaved counts the operations the
// route added to the open batch, less those of its puts taken back since;
// putRoute maps a put's index in the batch to its route. Only puts can be
// taken back, so a route that added anything else (a retained message, a
// QoS 2 entry, a delete, a nested route's writes) or took back one of its
// own puts while routing is not counted: its count is poisoned and never
// reaches zero. A count at zero, its batch still open, means the route
// left nothing that must be durable.
//
// Only the routing loop takes back puts. An acknowledgement read on
// another loop is handed to it (forgetAcked, taskTakeBack) and takes the
// put back if it arrives before the batch is committed; the subscriber's
// loop writes its delete anyway, which then finds nothing.
//
// Measured (separate processes, pairs10 QoS 1, -sync always, medians of
// six alternated runs): 215k deliveries/s before, 211k with take-backs
// released early on the routing loop only, 282k with acknowledgements
// from other loops handed over as well.
//
// Ownership: all of it is the loop's (loopStore), and it describes the
// open batch only: commitStore clears it, since a committed put can no
// longer be taken back.

// An open batch keeps the operations taken back, and their copies, until
// it is committed, and publishers whose acknowledgements go early keep
// adding to it while a commit is outstanding: past earlyMaxOps operations
// or earlyMaxBytes copied, nothing more goes early, and the publishers'
// windows bound the batch again, as without early acknowledgements (the
// Bounds table in docs/architecture.md). A commit cycle at 300,000
// deliveries a second per loop adds about 150 operations.
const (
	earlyMaxOps   = 8192
	earlyMaxBytes = 4 << 20
)

// poisoned is added to the count of a route that wrote something other
// than puts that can be taken back: no number of take-backs brings it to
// zero (a batch holds far fewer operations).
const poisoned = 1 << 30

// earlyState is loopStore's part for early acknowledgements.
type earlyState struct {
	unsaved  []int32 // per counted route of the open batch: its operations less its puts taken back
	putRoute []int32 // per operation of the open batch: 1 + its route's index in unsaved, 0 for none
	route    int32   // 1 + the index of the current route's count, 0 while it has none
	start    routeStart
	early    int32  // the count the last route's acknowledgement may be released on, 0 for none (waitSaved)
	cleared  uint64 // times commitStore cleared the counts: a route's index is good within one
	freed    bool   // a count reached zero since releaseEarly last looked
}

// routeStart is where the open batch stood when a route began.
type routeStart struct {
	ticket  uint64 // the ticket its writes go to
	ops     int    // the batch's operations before it
	cleared uint64 // earlyState.cleared then
	route   int32  // the enclosing route's count (a will routed from inside a delivery nests)
}

// durableWait is what an acknowledgement waits for in the store: batch
// ticket durable (0: nothing), or, for early, count early of that batch
// at zero while the batch is still open.
type durableWait struct {
	ticket uint64
	early  int32
}

// beginRoute starts counting a route's writes and returns the enclosing
// route's state for endRoute. All of these run on the loop.
func (ls *loopStore) beginRoute() routeStart {
	prev := ls.e.start
	prev.route = ls.e.route
	s := routeStart{ticket: ls.ticket + 1, cleared: ls.e.cleared}
	if ls.b != nil {
		s.ticket, s.ops = ls.ticket, len(ls.b.Ops())
	}
	ls.e.start, ls.e.route = s, 0
	return prev
}

// endRoute decides whether the route just ended may have its
// acknowledgement released early, and resumes the enclosing route's count.
func (ls *loopStore) endRoute(prev routeStart) {
	e := &ls.e
	e.early = 0
	if r := e.route; r != 0 {
		s := e.start
		if ls.b != nil && ls.ticket == s.ticket && e.cleared == s.cleared &&
			len(ls.b.Ops())-s.ops == int(e.unsaved[r-1]) {
			e.early = r
		} else {
			// r is of the current counts: commitStore zeroes route.
			e.unsaved[r-1] += poisoned
		}
	}
	e.start, e.route = prev, prev.route
	if prev.cleared != e.cleared {
		e.route = 0 // the enclosing route's batch was committed meanwhile
	}
}

// countPut counts the open batch's put at index put-1 (a QoS 1 entry
// put once) to the current route.
func (ls *loopStore) countPut(put int32) {
	e := &ls.e
	if ls.routing == nil {
		return
	}
	if e.route == 0 {
		e.unsaved = append(e.unsaved, 0)
		e.route = int32(len(e.unsaved))
	}
	e.unsaved[e.route-1]++
	for len(e.putRoute) < int(put)-1 {
		e.putRoute = append(e.putRoute, 0)
	}
	e.putRoute = append(e.putRoute, e.route)
}

// tookBack uncounts the open batch's put at index put-1, just taken back.
func (ls *loopStore) tookBack(put int32) {
	e := &ls.e
	if i := int(put) - 1; i < len(e.putRoute) {
		if r := e.putRoute[i]; r != 0 {
			e.putRoute[i] = 0
			if e.unsaved[r-1]--; e.unsaved[r-1] == 0 {
				e.freed = true
			}
		}
	}
}

// clearEarly forgets the counts when the open batch is committed.
func (ls *loopStore) clearEarly() {
	e := &ls.e
	e.unsaved, e.putRoute = e.unsaved[:0], e.putRoute[:0]
	e.route, e.early = 0, 0
	e.cleared++
}

// saved reports whether an acknowledgement waiting for w may go now
// although its batch is not durable: the batch is still open and the
// route's count is zero.
func (ls *loopStore) saved(w durableWait) bool {
	return w.early != 0 && w.ticket == ls.ticket && ls.b != nil &&
		int(w.early) <= len(ls.e.unsaved) && ls.e.unsaved[w.early-1] == 0 &&
		len(ls.b.Ops()) <= earlyMaxOps && ls.b.Copied() <= earlyMaxBytes
}

// releaseEarly sends the acknowledgements whose routes' counts reached
// zero, with those held before them. Called by endBatch.
func (l *loop) releaseEarly() {
	ls := &l.st
	if !ls.e.freed {
		return
	}
	ls.e.freed = false
	for _, c := range ls.waiters {
		if h := c.heldAcks(); h != nil && h.on == nil && len(h.acks) > 0 {
			c.releaseHeld()
		}
	}
}
