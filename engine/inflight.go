package engine

import (
	"slices"
	"sync/atomic"
)

// Outgoing QoS 1/2 state of one in-flight slot [MQTT 4.3.2, 4.3.3].
const (
	slotFree      byte = iota
	slotAwaitAck       // QoS 1 PUBLISH sent, waiting for PUBACK
	slotAwaitRec       // QoS 2 PUBLISH sent, waiting for PUBREC
	slotAwaitComp      // PUBREL sent, waiting for PUBCOMP
)

type slot struct {
	id    uint16
	state byte
	// pending marks a PUBLISH sent on an earlier connection that is not
	// sent again on this one yet: a new connection's Receive Maximum may
	// be smaller than the window the session kept (session.resendPending).
	pending bool
	// written says the slot's PUBLISH has been written to a connection
	// (this one or an earlier one), so that the client may hold its packet
	// identifier (dropInFlight). A slot recovered from the store counts as
	// written: its mark was durable before the PUBLISH went out, which the
	// store cannot tell.
	written bool
	seq     uint64 // the message's store sequence once m.msg is released (slotAwaitComp)
	// hold is the owner loop's store batch that must be durable before
	// this slot's PUBLISH (slotAwaitRec) or PUBREL (slotAwaitComp) is
	// written; 0: none (persist.go, loop.holdForDurable).
	hold uint64
	m    outMsg
}

// inflight is a session's window of outgoing QoS 1/2 messages awaiting
// acknowledgement, kept as a ring indexed by packet identifier. Packet
// identifiers are handed out in sequence over a cycle that is a multiple of
// the ring size, so identifier id always lives in slot (id-1) % size and an
// acknowledgement finds its slot without searching. Clients acknowledge in
// order [MQTT-4.6.0-2], so sequential assignment wastes nothing in practice.
// Owned by the session's owner loop.
type inflight struct {
	slots   []slot
	next    uint16 // next identifier to assign, 1-based
	used    int    // slots not free: compared with the client's Receive Maximum
	pending int    // slots marked pending
	// owner is the session's owner: the loop that calls these methods,
	// whose in-flight gauge they keep (stats.go); nil in tests.
	owner *atomic.Pointer[loop]
}

// count adds n messages of size payload bytes to the owner loop's
// in-flight gauges (see msgQueue.count).
func (w *inflight) count(n, size int64) {
	if w.owner != nil {
		if l := w.owner.Load(); l != nil {
			l.acc.inflight += n
			l.acc.inflightBytes += size
		}
	}
}

func newInflight(size int) inflight {
	if size < 1 {
		size = 1
	}
	if size > 65535 {
		size = 65535
	}
	return inflight{slots: make([]slot, size), next: 1}
}

func (w *inflight) cycle() int { return len(w.slots) * (65535 / len(w.slots)) }

func (w *inflight) index(id uint16) int { return int(id-1) % len(w.slots) }

// full reports whether no new message may be sent now.
func (w *inflight) full() bool {
	if w.slots == nil {
		return false // allocated by the first add
	}
	// Identifiers are handed out in sequence, so the next one's slot is
	// busy exactly when the window is full or its oldest message is still
	// unacknowledged.
	return w.slots[w.index(w.next)].state != slotFree
}

// add puts m in the next slot and returns its packet identifier. The
// caller checked !full(). size is the window to allocate on first use: a
// session that never receives QoS 1/2 never pays for its window.
func (w *inflight) add(m outMsg, size int) uint16 {
	if w.slots == nil {
		owner := w.owner
		*w = newInflight(size)
		w.owner = owner
	}
	id := w.next
	s := &w.slots[w.index(id)]
	state := slotAwaitAck
	if m.qos == 2 {
		state = slotAwaitRec
	}
	*s = slot{id: id, state: state, m: m}
	w.used++
	w.count(1, m.payloadSize())
	if int(w.next) >= w.cycle() {
		w.next = 1
	} else {
		w.next++
	}
	return id
}

// widen rebuilds w at the smallest larger size under which id and every
// identifier in use have slots of their own, each kept under its
// identifier. Recovery calls it when the window shrank across a restart
// (a smaller MaxInflight) and two recovered identifiers would share a
// slot: the client still holds them, so they cannot change. A QoS 2
// release dropped instead would leave the client holding its identifier,
// and until a PUBREL comes it acknowledges a PUBLISH under it without
// delivering it (MQTT 4.3.3); a QoS 2 PUBLISH sent again under a new
// identifier would be delivered twice. id must not be in use.
// Both sizes (old and new) fit in the 65535 identifiers, and at 65535
// every identifier has its own slot, so the search ends.
func (w *inflight) widen(id uint16) {
	ids := []uint16{id}
	for i := range w.slots {
		if w.slots[i].state != slotFree {
			ids = append(ids, w.slots[i].id)
		}
	}
	n := len(w.slots) + 1
	taken := make(map[int]bool, len(ids))
	for ; n < 65535; n++ {
		clear(taken)
		distinct := true
		for _, x := range ids {
			k := int(x-1) % n
			if taken[k] {
				distinct = false
				break
			}
			taken[k] = true
		}
		if distinct {
			break
		}
	}
	old := w.slots
	w.slots = make([]slot, n)
	for i := range old {
		if old[i].state != slotFree {
			w.slots[w.index(old[i].id)] = old[i]
		}
	}
}

// resume sets next after the newest identifier in use, once recovery has
// put the messages that were in flight back into their slots: each then
// visits them in the order they were sent, and new identifiers follow
// theirs. Identifiers are handed out in sequence, so the newest is the
// one before the largest gap between those in use, around the cycle.
func (w *inflight) resume() {
	var ids []int
	for i := range w.slots {
		if w.slots[i].state != slotFree {
			ids = append(ids, int(w.slots[i].id))
		}
	}
	if len(ids) == 0 {
		return
	}
	slices.Sort(ids)
	c := w.cycle()
	newest, gap := ids[len(ids)-1], ids[0]+c-ids[len(ids)-1]
	for i := 1; i < len(ids); i++ {
		if d := ids[i] - ids[i-1]; d > gap {
			newest, gap = ids[i-1], d
		}
	}
	w.next = 1
	if newest < c {
		w.next = uint16(newest + 1)
	}
}

// lookup returns the slot holding packet identifier id in the given state
// (never slotFree), or nil.
func (w *inflight) lookup(id uint16, state byte) *slot {
	if s := w.at(id); s != nil && s.state == state {
		return s
	}
	return nil
}

// at returns the slot holding packet id (in any state but free), or nil.
func (w *inflight) at(id uint16) *slot {
	if id == 0 || len(w.slots) == 0 {
		return nil
	}
	s := &w.slots[w.index(id)]
	if s.id != id || s.state == slotFree {
		return nil
	}
	return s
}

// free empties s and releases its message.
func (w *inflight) free(s *slot) {
	size := s.m.payloadSize()
	if s.m.msg != nil {
		s.m.msg.release()
	}
	if s.pending {
		w.pending--
	}
	*s = slot{}
	w.used--
	w.count(-1, -size)
}

// take empties s and returns its message with the slot's reference.
func (w *inflight) take(s *slot) outMsg {
	m := s.m
	if s.pending {
		w.pending--
	}
	*s = slot{}
	w.used--
	w.count(-1, -m.payloadSize())
	return m
}

// untake puts back into s what take took from it: kept is the slot as it
// was, its message's reference included.
func (w *inflight) untake(s *slot, kept slot) {
	*s = kept
	if kept.pending {
		w.pending++
	}
	w.used++
	w.count(1, kept.m.payloadSize())
}

// delivered releases the message of s, a QoS 2 slot whose PUBREC came in:
// from then on only its packet identifier remains (MQTT 4.3.3).
func (w *inflight) delivered(s *slot) {
	w.count(0, -s.m.payloadSize())
	s.m.msg.release()
	s.m.msg = nil
}

// bytes returns the payload bytes the window holds. It walks the window.
func (w *inflight) bytes() int64 {
	var n int64
	for i := range w.slots {
		n += w.slots[i].m.payloadSize()
	}
	return n
}

// each calls fn for every used slot, oldest first.
func (w *inflight) each(fn func(s *slot)) {
	if w.slots == nil {
		return
	}
	start := w.index(w.next)
	for i := 0; i < len(w.slots); i++ {
		s := &w.slots[(start+i)%len(w.slots)]
		if s.state != slotFree {
			fn(s)
		}
	}
}

// clear releases every in-flight message.
func (w *inflight) clear() {
	for i := range w.slots {
		if w.slots[i].state != slotFree {
			w.free(&w.slots[i])
		}
	}
}

// holdsSeq reports whether a slot holds the message with store sequence
// number seq. It walks the window.
func (w *inflight) holdsSeq(seq uint64) bool {
	for i := range w.slots {
		sl := &w.slots[i]
		if sl.state != slotFree && (sl.seq == seq || sl.m.msg != nil && sl.m.msg.seq == seq) {
			return true
		}
	}
	return false
}
