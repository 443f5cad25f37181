package engine

// Early acknowledgements: a QoS 1 PUBLISH that every persistent session it
// reached has acknowledged.
//
// A publisher's PUBACK waits for the batch holding what its message wrote
// to be durable (persist.go), one to two fsyncs. Those writes are there for
// one reason: to give the message to the persistent sessions it reached if
// the broker crashes first. Once each of them has acknowledged its
// delivery, a crash can lose the message for none of them, and the PUBACK
// may go, in order with the publisher's other acknowledgements
// (releaseHeld), at the end of the event that read the last
// acknowledgement: on the publisher's loop, or handed to it
// (taskAcksDue). The entries are still taken back if their batch is open
// (takeBackPut) and deleted otherwise, as before.
//
// Which PUBLISH qualifies: one whose route (loop.route) wrote nothing but
// QoS 1 entries into one open batch: no retained message, no delete, no
// nested route's writes, no commit in between (a QoS 2 PUBLISH never
// qualifies: its PUBREC waits for the packet identifier's write). Its message
// counts those entries (message.acksDue), and each acknowledgement of one
// of those deliveries by its client counts one down (forgetAcked, on the
// subscriber's loop). A delivery the broker drops instead (queue bound,
// expiry, a session ending, a shared group passing it on to another
// member as a copy) is never counted down, and a message read back from
// the store is another object: the PUBACK then waits for the batch.
//
// Ownership: the route's counts are the routing loop's (loopStore.e);
// message.acksDue is counted down by any loop (atomic), and
// message.publisher is set by the routing loop before the deliveries are
// handed to other loops.

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

// earlyState is loopStore's part for early acknowledgements: the route
// being counted.
type earlyState struct {
	start routeStart
	puts  int32    // QoS 1 entries the current route put
	early *message // the last route's message if it qualified, for waitSaved
}

// routeStart is where the open batch stood when a route began, and the
// enclosing route's count (a will routed from inside a delivery nests).
type routeStart struct {
	ticket uint64 // the ticket the route's writes go to
	ops    int    // the batch's operations before it
	puts   int32
}

// durableWait is what an acknowledgement waits for in the store: batch
// ticket durable (0: nothing), or every delivery of acked acknowledged
// (acked.acksDue at zero; nil: not that way). A durableWait with acked
// holds a reference to it, which ackPublish hands to the held
// acknowledgement.
type durableWait struct {
	ticket uint64
	acked  *message
}

// beginRoute starts counting a route's writes and returns the enclosing
// route's state for endRoute. All of these run on the loop.
func (ls *loopStore) beginRoute() routeStart {
	prev := ls.e.start
	prev.puts = ls.e.puts
	s := routeStart{ticket: ls.ticket + 1}
	if ls.b != nil {
		s.ticket, s.ops = ls.ticket, len(ls.b.Ops())
	}
	ls.e.start, ls.e.puts = s, 0
	return prev
}

// endRoute decides whether m, just routed, qualifies, and resumes the
// enclosing route's count. A qualifying m is kept in e.early with a
// reference of its own (the route releases the caller's, which may be the
// last), for waitSaved to take or the next route to drop.
func (ls *loopStore) endRoute(m *message, prev routeStart) {
	e := &ls.e
	if e.early != nil {
		e.early.release() // a route with no PUBACK to hold (a will)
		e.early = nil
	}
	if n := e.puts; n > 0 && m.qos == 1 && ls.b != nil && ls.ticket == e.start.ticket && len(ls.b.Ops())-e.start.ops == int(n) {
		m.acksDue.Store(n)
		m.ref()
		e.early = m
	}
	e.start, e.puts = prev, prev.puts
}

// acked reports whether an acknowledgement waiting for w may go now
// although its batch is not durable: every delivery of its message was
// acknowledged, and the open batch is within its bound.
func (ls *loopStore) acked(w durableWait) bool {
	return w.acked != nil && w.acked.acksDue.Load() == 0 &&
		(ls.b == nil || len(ls.b.Ops()) <= earlyMaxOps && ls.b.Copied() <= earlyMaxBytes)
}

// ackedDelivery counts down m's deliveries awaiting acknowledgement, for
// one of them its client acknowledged; the last lets the publisher's
// PUBACK go. Runs on the subscriber's loop, l.
func (l *loop) ackedDelivery(m *message) {
	c := m.publisher
	if c == nil || m.acksDue.Add(-1) != 0 || !m.held.Load() {
		return // not counted, not the last, or the PUBACK went already
	}
	if c.loop == l {
		c.releaseEarly()
		return
	}
	m.ref()
	l.handOff(c.loop, task{kind: taskAcksDue, out: outMsg{msg: m}})
}

// releaseEarly sends c's withheld acknowledgements that may go now, unless
// c is held back for a congested subscriber (flow.go). Runs on c's loop.
func (c *client) releaseEarly() {
	if h := c.heldAcks(); h != nil && h.on == nil && len(h.acks) > 0 {
		c.releaseHeld()
	}
}
