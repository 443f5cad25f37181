package store

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is a Store that keeps everything in the process: for tests and for
// comparison with the on-disk store. Commits are applied in order on one
// goroutine of its own, like the on-disk store's, so callers see the same
// asynchrony.
type Memory struct {
	mu       sync.RWMutex
	sessions map[string]*Session
	entries  map[string]map[uint64]*Entry
	inbound  map[string]map[uint16]struct{}
	retained map[string]*Message
	meta     map[string][]byte

	// workMu is held shared by Commit while it sends on work and
	// exclusively by Close to close it; closing is guarded by it.
	workMu  sync.RWMutex
	closing bool
	work    chan memCommit
	closed  chan struct{}
	once    sync.Once

	commits, records, nanos atomic.Uint64
	waits, waitNanos        atomic.Uint64
}

type memCommit struct {
	b     *Batch
	done  func(error)
	start time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	m := &Memory{
		sessions: make(map[string]*Session),
		entries:  make(map[string]map[uint64]*Entry),
		inbound:  make(map[string]map[uint16]struct{}),
		retained: make(map[string]*Message),
		meta:     make(map[string][]byte),
		work:     make(chan memCommit, 1024),
		closed:   make(chan struct{}),
	}
	go m.run()
	return m
}

func (m *Memory) run() {
	defer close(m.closed)
	for c := range m.work {
		m.apply(c.b)
		m.commits.Add(1)
		m.records.Add(uint64(c.b.Len()))
		m.nanos.Add(uint64(time.Since(c.start)))
		c.done(nil)
	}
}

// Commit implements Store. After Close, done gets ErrClosed.
func (m *Memory) Commit(b *Batch, done func(error)) {
	c := memCommit{b: b, done: done, start: time.Now()}
	m.workMu.RLock()
	defer m.workMu.RUnlock()
	if m.closing {
		go done(ErrClosed)
		return
	}
	select {
	case m.work <- c:
	default:
		t := time.Now()
		m.work <- c
		m.waits.Add(1)
		m.waitNanos.Add(uint64(time.Since(t)))
	}
}

func cloneMessage(src *Message) Message {
	c := *src
	c.Topic = bytes.Clone(src.Topic)
	c.Payload = bytes.Clone(src.Payload)
	c.Props = bytes.Clone(src.Props)
	return c
}

func (m *Memory) apply(b *Batch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range b.ops {
		op := &b.ops[i]
		switch op.Kind {
		case OpPutSession:
			s := *op.Session
			s.Subs = slices.Clone(op.Session.Subs)
			s.SentIDs = slices.Clone(op.Session.SentIDs)
			if op.Session.Will != nil {
				w := *op.Session.Will
				w.Msg = cloneMessage(&op.Session.Will.Msg)
				s.Will = &w
			}
			m.sessions[op.ClientID] = &s
		case OpDeleteSession:
			delete(m.sessions, op.ClientID)
			delete(m.entries, op.ClientID)
			delete(m.inbound, op.ClientID)
		case OpPutEntry:
			es := m.entries[op.ClientID]
			if es == nil {
				es = make(map[uint64]*Entry)
				m.entries[op.ClientID] = es
			}
			e := op.Entry
			e.SubIDs = slices.Clone(op.Entry.SubIDs)
			e.Msg = cloneMessage(&op.Entry.Msg)
			e.Group = ""
			if op.Entry.keepsGroup() { // as the on-disk store's codec
				e.Group = strings.Clone(op.Entry.Group)
			}
			es[op.Seq] = &e
		case OpDeleteEntry:
			if es := m.entries[op.ClientID]; es != nil {
				delete(es, op.Seq)
				if len(es) == 0 {
					delete(m.entries, op.ClientID)
				}
			}
		case OpDeleteEntriesTo:
			if es := m.entries[op.ClientID]; es != nil {
				for seq := range es {
					if seq <= op.Seq {
						delete(es, seq)
					}
				}
				if len(es) == 0 {
					delete(m.entries, op.ClientID)
				}
			}
		case OpPutInbound:
			ids := m.inbound[op.ClientID]
			if ids == nil {
				ids = make(map[uint16]struct{})
				m.inbound[op.ClientID] = ids
			}
			ids[op.PacketID] = struct{}{}
		case OpDeleteInbound:
			if ids := m.inbound[op.ClientID]; ids != nil {
				delete(ids, op.PacketID)
				if len(ids) == 0 {
					delete(m.inbound, op.ClientID)
				}
			}
		case OpPutRetained:
			r := cloneMessage(&op.Msg)
			m.retained[string(op.Msg.Topic)] = &r
		case OpDeleteRetained:
			delete(m.retained, string(op.Msg.Topic))
		case OpPutMeta:
			m.meta[op.Key] = bytes.Clone(op.Value)
		}
	}
}

// Sessions implements Store.
func (m *Memory) Sessions(fn func(*Session) error) error {
	return eachSorted(&m.mu, m.sessions, fn)
}

// eachSorted calls fn for the values of recs in key order, reading each
// under mu (read-locked) and skipping those deleted meanwhile; fn runs
// without the lock, so it may take its time.
func eachSorted[V any](mu *sync.RWMutex, recs map[string]*V, fn func(*V) error) error {
	mu.RLock()
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	mu.RUnlock()
	slices.Sort(keys)
	for _, k := range keys {
		mu.RLock()
		v, ok := recs[k]
		mu.RUnlock()
		if !ok {
			continue
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	return nil
}

// Entries implements Store.
func (m *Memory) Entries(clientID string, from uint64, max int, fn func(*Entry) bool) error {
	m.mu.RLock()
	var es []*Entry
	for seq, e := range m.entries[clientID] {
		if seq >= from {
			es = append(es, e)
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(es, func(a, b *Entry) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	for i, e := range es {
		if max > 0 && i >= max {
			break
		}
		if !fn(e) {
			break
		}
	}
	return nil
}

// Inbound implements Store.
func (m *Memory) Inbound(fn func(clientID string, packetID uint16) error) error {
	type pair struct {
		id  string
		pid uint16
	}
	var all []pair
	m.mu.RLock()
	for id, ids := range m.inbound {
		for pid := range ids {
			all = append(all, pair{id, pid})
		}
	}
	m.mu.RUnlock()
	slices.SortFunc(all, func(a, b pair) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return int(a.pid) - int(b.pid)
	})
	for _, p := range all {
		if err := fn(p.id, p.pid); err != nil {
			return err
		}
	}
	return nil
}

// Retained implements Store.
func (m *Memory) Retained(fn func(*Message) error) error {
	return eachSorted(&m.mu, m.retained, fn)
}

// Meta implements Store.
func (m *Memory) Meta(key string) ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return bytes.Clone(m.meta[key]), nil
}

// Stats implements Store.
func (m *Memory) Stats() Stats {
	return Stats{
		Commits:         m.commits.Load(),
		Records:         m.records.Load(),
		CommitNanos:     m.nanos.Load(),
		CommitWaits:     m.waits.Load(),
		CommitWaitNanos: m.waitNanos.Load(),
	}
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// Close implements Store: it waits for committed batches to be applied.
func (m *Memory) Close() error {
	m.once.Do(func() {
		m.workMu.Lock()
		m.closing = true
		close(m.work)
		m.workMu.Unlock()
	})
	<-m.closed
	return nil
}
