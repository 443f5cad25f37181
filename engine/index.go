package engine

import (
	"strings"
	"sync"
)

// subOpts are a subscription's granted options.
type subOpts struct {
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubscriptionID    uint32
}

// matchScratch is a loop's reusable state for one match.
type matchScratch struct {
	seen map[*session]int // session -> index in hits
	hits []matchHit
}

type matchHit struct {
	s    *session
	opts subOpts
}

// index is the engine's view of the subscription and retained indexes.
// TEMPORARY: a plain locked map until the trie package lands.
type index struct {
	mu       sync.RWMutex
	subs     map[string]map[*session]subOpts
	retained map[string]*message
}

func newIndex() *index {
	return &index{subs: make(map[string]map[*session]subOpts), retained: make(map[string]*message)}
}

func (x *index) subscribe(filter string, s *session, o subOpts) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.subs[filter]
	if m == nil {
		m = make(map[*session]subOpts)
		x.subs[filter] = m
	}
	_, ok := m[s]
	m[s] = o
	return ok
}

func (x *index) unsubscribe(filter string, s *session) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.subs[filter]
	_, ok := m[s]
	delete(m, s)
	if len(m) == 0 {
		delete(x.subs, filter)
	}
	return ok
}

func matchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fl := strings.Split(filter, "/")
	tl := strings.Split(topic, "/")
	for i, f := range fl {
		if f == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if f != "+" && f != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

// match returns one hit per matching session, with the maximum granted
// QoS, in sc's reusable storage (valid until the next match on sc).
func (x *index) match(topic []byte, sc *matchScratch) []matchHit {
	t := string(topic)
	if sc.seen == nil {
		sc.seen = make(map[*session]int)
	}
	clear(sc.seen)
	clear(sc.hits)
	sc.hits = sc.hits[:0]
	x.mu.RLock()
	for f, m := range x.subs {
		if !matchFilter(f, t) {
			continue
		}
		for s, o := range m {
			if i, ok := sc.seen[s]; ok {
				if o.QoS > sc.hits[i].opts.QoS {
					sc.hits[i].opts.QoS = o.QoS
				}
				continue
			}
			sc.seen[s] = len(sc.hits)
			sc.hits = append(sc.hits, matchHit{s, o})
		}
	}
	x.mu.RUnlock()
	return sc.hits
}

func (x *index) matchRetained(filter string, fn func(*message)) {
	var ms []*message
	x.mu.RLock()
	for t, m := range x.retained {
		if matchFilter(filter, t) {
			m.ref()
			ms = append(ms, m)
		}
	}
	x.mu.RUnlock()
	for _, m := range ms {
		fn(m)
		m.release()
	}
}

// setRetained stores m as the retained message of its topic, or removes
// the topic's retained message when m's payload is empty.
func (s *Server) setRetained(m *message) {
	x := s.idx
	t := string(m.topic)
	x.mu.Lock()
	old := x.retained[t]
	if len(m.payload) == 0 {
		delete(x.retained, t)
	} else {
		m.ref()
		x.retained[t] = m
	}
	x.mu.Unlock()
	if old != nil {
		old.release()
	}
}

func (s *Server) retainedCount() int {
	s.idx.mu.RLock()
	defer s.idx.mu.RUnlock()
	return len(s.idx.retained)
}
