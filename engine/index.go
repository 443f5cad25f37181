package engine

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/loopmq/loopmq/trie"
)

// index holds the broker's two topic indexes. Both are safe for concurrent
// use and take no lock on the read side (see package trie): every loop
// matches in them directly.
//
// Subscriptions are keyed by client identifier with the session as handle.
// A client id's subscriptions belong to at most one session at a time: a
// session that replaces another is bound only after the old one ended and
// left the index (see Server.attach).
//
// Retained messages are pinned messages (never recycled, freed by the
// garbage collector), so a reader that found one just before it was
// replaced can still use it without reference counting.
//
// The retained index's writers (setRetained, expireRetained: retained
// PUBLISHes and the sweep, on any loop) hold retainedW, so that finding
// the message a write replaces or removes and making the write are one
// step: retainedBytes stays the sum of the retained payloads, and the
// expiry deadlines follow the writes in their order. The trie serializes
// its writers on a mutex of its own anyway; readers take neither.
type index struct {
	subs          *trie.Trie[*session]
	retained      *trie.Retained[*message]
	retainedExp   retainedExpiry // deadlines of retained messages with an expiry (retainexp.go)
	retainedW     sync.Mutex
	retainedBytes atomic.Int64 // payload bytes of the retained messages; written under retainedW
}

func newIndex() *index {
	return &index{subs: trie.New[*session](), retained: trie.NewRetained[*message]()}
}

// matchScratch is a loop's reusable match result.
type matchScratch = trie.Result[*session]

// viewString returns a string sharing b's memory, for lookups that do not
// keep it (trie.Match keeps nothing of its arguments).
func viewString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

func (x *index) subscribe(filter string, s *session, o trie.Options) bool {
	return x.subs.Subscribe(filter, s.id, s, o)
}

func (x *index) unsubscribe(filter string, s *session) bool {
	return x.subs.Unsubscribe(filter, s.id)
}

// match finds the deliveries for a message published by publisherID: one
// per session with its ordinary subscriptions merged, one per shared group.
// No Local is applied by the trie. The result lives in sc until its next use.
func (x *index) match(topic []byte, publisherID string, sc *matchScratch) []trie.Delivery[*session] {
	if sc.Eligible == nil {
		sc.Eligible = sessionOnline
	}
	x.subs.Match(viewString(topic), publisherID, sc)
	return sc.Deliveries
}

// sessionOnline tells shared subscriptions which members can take a
// message now. It runs on any loop, so it reads the atomic flag only.
func sessionOnline(s *session) bool { return s.flag(flagOnline) }

// matchRetained calls fn for every retained message matching filter.
func (x *index) matchRetained(filter string, fn func(*message)) {
	x.retained.Match(filter, func(_ string, m *message) bool {
		fn(m)
		return true
	})
}

// setRetained stores m (a pinned message) as its topic's retained
// message, or removes the topic's retained message when m's payload is
// empty [MQTT-3.3.1-10] [MQTT-3.3.1-11].
func (s *Server) setRetained(m *message) {
	t := string(m.topic)
	x := s.idx
	x.retainedW.Lock()
	defer x.retainedW.Unlock()
	size := int64(len(m.payload))
	if old, ok := x.retained.Get(t); ok {
		size -= int64(len(old.payload))
	}
	x.retainedBytes.Add(size)
	if len(m.payload) == 0 {
		x.retained.Delete(t)
		x.retainedExp.set(t, nil)
		return
	}
	x.retained.Set(t, m)
	x.retainedExp.set(t, m)
}

// deleteRetainedIf removes topic's retained message if it is m, and
// reports whether it did (expireRetained).
func (x *index) deleteRetainedIf(topic string, m *message) bool {
	x.retainedW.Lock()
	defer x.retainedW.Unlock()
	if !x.retained.DeleteIf(topic, func(v *message) bool { return v == m }) {
		return false
	}
	x.retainedBytes.Add(-int64(len(m.payload)))
	return true
}

func (s *Server) retainedCount() int { return s.idx.retained.Count() }
