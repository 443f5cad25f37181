package engine

import (
	"sync"
	"sync/atomic"
)

// Retained messages with a Message Expiry Interval leave the retained index
// once it has passed [MQTT-3.3.2-5]. A SUBSCRIBE skips an expired one; this
// removes it, so that retained messages published with an expiry to ever
// new topics (request ids, device sessions) do not grow the index, and
// their payloads stay in memory, without bound.
//
// The deadlines are an indexed min-heap by topic, shared by every loop
// behind one mutex: a retained message set with an expiry enters or moves,
// one set without or cleared leaves, so the heap holds at most one entry
// per retained topic. Loops touch it only for retained PUBLISHes (and only
// when some retained message has an expiry: n) and in their sweep.
type retainedExpiry struct {
	n  atomic.Int64 // entries, read without the lock
	mu sync.Mutex
	h  []retainedDeadline
	at map[string]int // topic → index in h
}

type retainedDeadline struct {
	at    int64 // loop clock (message.expiry)
	topic string
	m     *message
}

// set records topic's retained message m: its deadline if it has one,
// else none. Any loop, under the retained index's order (setRetained).
func (x *retainedExpiry) set(topic string, m *message) {
	if m == nil || m.expiry == 0 {
		if x.n.Load() == 0 {
			return
		}
		x.mu.Lock()
		if i, ok := x.at[topic]; ok {
			x.remove(i)
		}
		x.mu.Unlock()
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.at == nil {
		x.at = make(map[string]int)
	}
	if i, ok := x.at[topic]; ok {
		x.h[i].at, x.h[i].m = m.expiry, m
		x.fix(i)
		return
	}
	x.h = append(x.h, retainedDeadline{at: m.expiry, topic: topic, m: m})
	x.at[topic] = len(x.h) - 1
	x.n.Add(1)
	x.up(len(x.h) - 1)
}

// popDue removes and returns the earliest deadline if it is at or before
// now.
func (x *retainedExpiry) popDue(now int64) (retainedDeadline, bool) {
	if x.n.Load() == 0 {
		return retainedDeadline{}, false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.h) == 0 || x.h[0].at > now {
		return retainedDeadline{}, false
	}
	d := x.h[0]
	x.remove(0)
	return d, true
}

func (x *retainedExpiry) remove(i int) {
	last := len(x.h) - 1
	delete(x.at, x.h[i].topic)
	if i != last {
		x.h[i] = x.h[last]
		x.at[x.h[i].topic] = i
	}
	x.h[last] = retainedDeadline{}
	x.h = x.h[:last]
	x.n.Add(-1)
	if i < last {
		x.fix(i)
	}
	if cap(x.h) > 64 && len(x.h) < cap(x.h)/4 {
		x.h = append([]retainedDeadline(nil), x.h...) // let a burst's array go
	}
}

func (x *retainedExpiry) fix(i int) {
	if !x.down(i) {
		x.up(i)
	}
}

func (x *retainedExpiry) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if x.h[p].at <= x.h[i].at {
			return
		}
		x.swap(i, p)
		i = p
	}
}

func (x *retainedExpiry) down(i int) bool {
	start := i
	for {
		c := 2*i + 1
		if c >= len(x.h) {
			break
		}
		if r := c + 1; r < len(x.h) && x.h[r].at < x.h[c].at {
			c = r
		}
		if x.h[i].at <= x.h[c].at {
			break
		}
		x.swap(i, c)
		i = c
	}
	return i > start
}

func (x *retainedExpiry) swap(i, j int) {
	x.h[i], x.h[j] = x.h[j], x.h[i]
	x.at[x.h[i].topic] = i
	x.at[x.h[j].topic] = j
}

// maxRetainedExpiriesPerSweep bounds the retained messages one sweep
// removes, so that a mass expiry does not hold a loop for long; the rest
// go in the next sweeps.
const maxRetainedExpiriesPerSweep = 10000

// expireRetained removes the retained messages whose expiry has passed,
// and writes their removal to the store. Called by every loop's sweep;
// whichever gets there first does the work.
func (l *loop) expireRetained() {
	srv := l.srv
	for range maxRetainedExpiriesPerSweep {
		d, ok := srv.idx.retainedExp.popDue(l.mono)
		if !ok {
			return
		}
		// A message that replaced d.m since recorded its own deadline
		// (setRetained writes both in one step), so there is nothing to
		// do when d.m is not there any more.
		if srv.idx.deleteRetainedIf(d.topic, d.m) && srv.ps != nil {
			l.batch().DeleteRetained([]byte(d.topic))
		}
	}
}
