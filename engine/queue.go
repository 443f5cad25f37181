package engine

import (
	"math"
	"strconv"
	"sync/atomic"
	"unsafe"
)

// outMsg is one message owed to a session: the shared message plus what
// is specific to this recipient. It owns one reference to msg.
//
// It fills in-flight windows, queue rings and hand-off tasks, so it is
// kept at 32 bytes (TestOutMsgSize): ext is one word for two things that
// never meet (see group and moreSubIDs).
type outMsg struct {
	msg *message
	// ext is, when glen > 0, the bytes of the filter of the shared
	// subscription group that chose this session (group); otherwise nil
	// or a *[]uint32 holding the Subscription Identifiers after subID,
	// when several subscriptions of the client matched with different
	// identifiers (rare; allocated then) [MQTT-3.3.4-3]. A group's
	// delivery comes from one subscription: it never has more than subID.
	ext   unsafe.Pointer
	subID uint32 // 5.0 Subscription Identifier of the matching subscription; 0 for none
	// put is 1 + the index of this delivery's PutEntry in its routing
	// loop's open batch (persistDelivery, QoS 1), 0 if none: the put is
	// taken back there if the delivery is acknowledged before the batch is
	// committed (takeBackPut). The index may be stale by then: the batch
	// checks that it names this put.
	put    int32
	glen   uint16 // length of the group's filter in ext; 0: not through a shared subscription
	qos    byte   // delivered QoS: min(published, granted)
	retain bool   // retain flag to send
	dup    bool   // may have been sent before: recovered from the store after a restart
	// stored says the routing loop wrote this delivery's entry
	// (persistDelivery). The owner deletes it should the session have
	// stopped storing meanwhile (forgetStray).
	stored bool
}

// group returns the shared subscription group that chose the session for
// out, by its whole filter ("$share/{name}/{filter}" as
// trie.Delivery.Filter: one name on two filters is two groups), or "" for
// a delivery through the session's own subscriptions. Another member of
// that group may take the message over (shared.go). The store keeps it
// with the delivery's entry (store.Entry.Group); groupUnknown for one read
// back from an entry written before it did.
func (out *outMsg) group() string {
	if out.glen == 0 {
		return ""
	}
	return unsafe.String((*byte)(out.ext), int(out.glen))
}

// setGroup records that shared group g chose the session for out. Call it
// before adding subscription identifiers.
func (out *outMsg) setGroup(g string) {
	if len(g) == 0 || len(g) > math.MaxUint16 {
		// A filter is a SUBSCRIBE's UTF-8 string: at most 65,535 bytes.
		panic("BUG: shared group filter of " + strconv.Itoa(len(g)) + " bytes")
	}
	out.ext, out.glen = unsafe.Pointer(unsafe.StringData(g)), uint16(len(g))
}

// moreSubIDs returns out's Subscription Identifiers after subID, nil for
// none. The slice is out's: valid while out is.
func (out *outMsg) moreSubIDs() []uint32 {
	if out.glen != 0 || out.ext == nil {
		return nil
	}
	return *(*[]uint32)(out.ext)
}

// addSubID adds a matching subscription's identifier (0: none) to out.
func (out *outMsg) addSubID(id uint32) {
	switch {
	case id == 0 || id == out.subID:
	case out.subID == 0:
		out.subID = id
	case out.glen != 0:
		// Not reached: a shared group's delivery has one subscription.
	default:
		more := (*[]uint32)(out.ext)
		if more == nil {
			more = new([]uint32)
			out.ext = unsafe.Pointer(more)
		}
		*more = append(*more, id)
	}
}

// payloadSize is the payload bytes out holds: none once its message was
// released (an in-flight slot in slotAwaitComp).
func (out *outMsg) payloadSize() int64 {
	if out.msg == nil {
		return 0
	}
	return int64(len(out.msg.payload))
}

// msgQueue is a session's FIFO of messages waiting for an in-flight slot
// or for the client to come back. It is bounded by message count and by
// payload bytes; what does not fit is dropped per the overflow policy and
// counted by the caller. Owned by the session's owner loop.
type msgQueue struct {
	items      []outMsg // ring buffer
	head, size int
	bytes      int
	// soonest is no later than the earliest Message Expiry of the queued
	// messages (loop clock; 0: none has one). Pops leave it, so it may be
	// early, never late: dropExpired then walks for nothing and sets it
	// right.
	soonest int64
	// owner is the session's owner: the loop that calls these methods,
	// whose queued gauge they keep (stats.go); nil in tests.
	owner *atomic.Pointer[loop]
}

// count adds n messages of size payload bytes to the owner loop's queued
// gauges. A recovered session has no owner yet: the loop that adopts it
// counts what it holds then.
func (q *msgQueue) count(n, size int64) {
	if q.owner != nil {
		if l := q.owner.Load(); l != nil {
			l.acc.queued += n
			l.acc.queuedBytes += size
		}
	}
}

func (q *msgQueue) len() int { return q.size }

// push appends m. It reports false, leaving the queue unchanged, when the
// queue holds maxMsgs messages or maxBytes payload bytes already.
func (q *msgQueue) push(m outMsg, maxMsgs, maxBytes int) bool {
	if q.size >= maxMsgs || (q.size > 0 && q.bytes+len(m.msg.payload) > maxBytes) {
		return false
	}
	if q.size == len(q.items) {
		q.grow(maxMsgs)
	}
	q.items[(q.head+q.size)%len(q.items)] = m
	q.size++
	q.bytes += len(m.msg.payload)
	q.count(1, int64(len(m.msg.payload)))
	if e := m.msg.expiry; e != 0 && (q.soonest == 0 || e < q.soonest) {
		q.soonest = e
	}
	return true
}

// takeExpired removes the messages whose Message Expiry has passed at now
// and appends them to into, keeping the others in order; it walks the
// queue only when one may have expired (soonest). The caller takes the
// removed messages' references.
func (q *msgQueue) takeExpired(now int64, into []outMsg) []outMsg {
	if q.soonest == 0 || now < q.soonest {
		return into
	}
	q.soonest = 0
	for n := q.size; n > 0; n-- {
		m := q.pop()
		if m.msg.expired(now) {
			into = append(into, m)
			continue
		}
		q.push(m, math.MaxInt, math.MaxInt) // back in order; it was within bounds already
	}
	return into
}

func (q *msgQueue) grow(limit int) {
	n := 2 * len(q.items)
	if n == 0 {
		n = 8
	}
	if n > limit {
		n = limit
	}
	items := make([]outMsg, n)
	for i := 0; i < q.size; i++ {
		items[i] = q.items[(q.head+i)%len(q.items)]
	}
	q.items, q.head = items, 0
}

// peek returns the oldest message without removing it.
func (q *msgQueue) peek() *outMsg { return &q.items[q.head] }

// pop removes and returns the oldest message; the caller takes its reference.
func (q *msgQueue) pop() outMsg {
	m := q.items[q.head]
	q.items[q.head] = outMsg{}
	q.head = (q.head + 1) % len(q.items)
	q.size--
	q.bytes -= len(m.msg.payload)
	q.count(-1, -int64(len(m.msg.payload)))
	if q.size == 0 {
		q.head, q.soonest = 0, 0
	}
	return m
}

// clear releases every queued message.
func (q *msgQueue) clear() {
	for q.size > 0 {
		m := q.pop()
		m.msg.release()
	}
	q.items = nil
}
