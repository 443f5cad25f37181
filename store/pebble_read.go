package store

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// Reads of the on-disk store. Each iterates a pebble snapshot of one kind's
// key range on the caller's goroutine; it sees every batch whose done was
// called before it began. Records that do not decode are skipped, counted in
// Stats.Skipped and logged (skipLog); a read fails only if pebble does.

// Sessions implements Store. The Session is reused from one call of fn to
// the next, and its byte slices alias pebble's memory: valid only during
// the call (strings are copies and may be kept).
func (p *Pebble) Sessions(fn func(*Session) error) error {
	var s Session
	return p.scan(kindSession, func(key, value []byte) (bool, error) {
		if err := decodeSessionValue(value, &s); err != nil {
			p.skips.skip(key, err)
			return true, nil
		}
		s.ClientID = string(key[1:])
		return true, fn(&s)
	})
}

// Entries implements Store. The Entry is reused from one call of fn to the
// next, and its byte slices alias pebble's memory: valid only during the
// call.
func (p *Pebble) Entries(clientID string, from uint64, max int, fn func(*Entry) bool) error {
	if checkClientID(clientID) != nil {
		return nil // no such client can have entries
	}
	lower := appendEntryKey(nil, clientID, from)
	upper := prefixEnd(nil, appendClientPrefix(nil, kindEntry, clientID))
	var e Entry
	n := 0
	// Grouped entries (groups.go) go in between the entry records, in Seq
	// order.
	gr := p.groupedFrom(clientID, from)
	var msg []byte // the message record of the entry being yielded, if it refers to one
	var readErr error
	yield := func(key, value []byte, seq uint64) bool {
		if max > 0 && n >= max {
			return false
		}
		ref, err := decodeEntryValue(value, &e)
		if err != nil {
			p.skips.skip(key, err)
			return true
		}
		if ref {
			var found bool
			if msg, found, readErr = p.readMessage(msg[:0], seq); readErr != nil {
				return false
			}
			if !found {
				return true // deleted with its last live entry: this one was too (groups.go)
			}
			if err := decodeMessageValue(msg, &e.Msg); err != nil {
				p.skips.skip(appendMessageKey(nil, seq), err)
				return true
			}
		}
		e.Seq = seq
		n++
		return fn(&e)
	}
	more := true
	err := p.scanRange(lower, upper, func(key, value []byte) (bool, error) {
		_, seq, ok := parseEntryKey(key)
		if !ok {
			p.skips.skip(key, fmt.Errorf("%w: bad entry key", errCorrupt))
			return true, nil
		}
		if more = gr.yieldBelow(seq, yield); !more {
			return false, nil
		}
		more = yield(key, value, seq)
		return more, nil
	})
	if err == nil && more {
		gr.yieldBelow(math.MaxUint64, yield)
	}
	if err == nil {
		err = gr.err
	}
	if err == nil {
		err = readErr
	}
	return err
}

// readMessage appends the value of the message record seq to dst; found
// is false if there is none.
func (p *Pebble) readMessage(dst []byte, seq uint64) (_ []byte, found bool, err error) {
	if v, ok := p.msgCache.get(dst, seq); ok {
		return v, true, nil
	}
	start := len(dst)
	dst, found, err = p.get(dst, appendMessageKey(nil, seq))
	if err != nil {
		return dst, false, fmt.Errorf("store: read message %d: %w", seq, err)
	}
	if found {
		p.msgCache.put(seq, dst[start:])
	}
	return dst, found, nil
}

// get appends the value of key to dst, as a read Close waits for; found is
// false if there is no such record.
func (p *Pebble) get(dst, key []byte) (_ []byte, found bool, err error) {
	if err := p.beginRead(); err != nil {
		return dst, false, err
	}
	defer p.readers.Done()
	v, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return dst, false, nil
	}
	if err != nil {
		return dst, false, err
	}
	dst = append(dst, v...)
	return dst, true, closer.Close()
}

// msgCache keeps the message records read last, so that reading back the
// queues of the sessions a message was fanned out to reads it from disk
// once rather than once per session (BenchmarkRecovery/shared). A record
// never changes while it exists (entries put once with one Seq hold one
// message, Batch.PutEntryOnce); one deleted since it was cached can only
// be served for an entry deleted as it was being read, which a read a
// moment earlier would have returned too. Direct-mapped by Seq: at most
// msgCacheSlots values of at most msgCacheMax bytes. Safe for concurrent
// use.
type msgCache struct {
	mu    sync.Mutex
	slots [msgCacheSlots]cachedMsg
}

type cachedMsg struct {
	seq uint64
	val []byte // nil: empty slot
}

const (
	msgCacheSlots = 256
	msgCacheMax   = 4 << 10
)

// get appends the cached value of seq to dst.
func (c *msgCache) get(dst []byte, seq uint64) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq%msgCacheSlots]
	if s.val == nil || s.seq != seq {
		return dst, false
	}
	return append(dst, s.val...), true
}

// put caches v (copied) as seq's value if it is small enough.
func (c *msgCache) put(seq uint64, v []byte) {
	if len(v) > msgCacheMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq%msgCacheSlots]
	s.seq, s.val = seq, append(s.val[:0], v...) // get copies out under mu
}

// groupedReader hands out a client's live grouped entries in Seq order
// for Entries: it merges the client's groups in key order (a group's
// entries are at or above its key Seq), looking at a group only once the
// next entry due could be one of its own, and reads a group record when
// its first entry is due.
type groupedReader struct {
	p      *Pebble
	id     string
	from   uint64
	groups []*entryGroup // the client's groups when the read began, by key
	gi     int           // groups[:gi] are in due
	due    []groupedSeq  // their live entries not yet passed, ascending
	open   map[uint64]*openGroup
	key    []byte
	err    error
}

type groupedSeq struct {
	seq, group uint64 // the entry's Seq, its group's key Seq
}

// openGroup is a group record read for groupedReader: a copy of its value,
// its entries, and how far the read has come.
type openGroup struct {
	value   []byte
	entries [][]byte
	seqs    []uint64
	at      int
	missing bool // deleted since the index was read
}

// groupedFrom starts the read of id's grouped entries with a Seq at least
// from.
func (p *Pebble) groupedFrom(id string, from uint64) *groupedReader {
	p.groups.mu.Lock()
	defer p.groups.mu.Unlock()
	gs := p.groups.clients[id]
	if len(gs) == 0 {
		return &groupedReader{}
	}
	return &groupedReader{p: p, id: id, from: from, groups: slices.Clone(gs)}
}

// take adds the next group's live entries to due.
func (r *groupedReader) take() {
	g := r.groups[r.gi]
	r.gi++
	n := len(r.due)
	r.p.groups.mu.Lock()
	for i, s := range g.seqs {
		if s >= r.from && g.isLive(i) {
			r.due = append(r.due, groupedSeq{s, g.key})
		}
	}
	r.p.groups.mu.Unlock()
	if n > 0 && len(r.due) > n {
		slices.SortFunc(r.due, func(a, b groupedSeq) int { return cmp.Compare(a.seq, b.seq) })
	}
}

// yieldBelow passes every grouped entry with a Seq below limit to yield,
// in Seq order, and reports false once yield does.
func (r *groupedReader) yieldBelow(limit uint64, yield func(key, value []byte, seq uint64) bool) bool {
	for {
		for r.gi < len(r.groups) && r.groups[r.gi].key < limit &&
			(len(r.due) == 0 || r.groups[r.gi].key < r.due[0].seq) {
			r.take()
		}
		if len(r.due) == 0 || r.due[0].seq >= limit {
			return true
		}
		gs := r.due[0]
		r.due = r.due[1:]
		og := r.group(gs.group)
		if og == nil || og.missing {
			continue
		}
		for og.at < len(og.seqs) && og.seqs[og.at] < gs.seq {
			og.at++
		}
		if og.at == len(og.seqs) || og.seqs[og.at] != gs.seq {
			continue // not in the record: rewritten since without it
		}
		r.key = appendGroupKey(r.key[:0], r.id, gs.group)
		if !yield(r.key, og.entries[og.at], gs.seq) {
			return false
		}
	}
}

// group returns the record of id's group key, read on first use; nil after
// an error (r.err).
func (r *groupedReader) group(key uint64) *openGroup {
	if og := r.open[key]; og != nil {
		return og
	}
	if r.err != nil {
		return nil
	}
	if r.open == nil {
		r.open = make(map[uint64]*openGroup)
	}
	og := &openGroup{}
	r.open[key] = og
	r.key = appendGroupKey(r.key[:0], r.id, key)
	v, found, err := r.p.get(nil, r.key)
	if err != nil {
		r.err = fmt.Errorf("store: read group: %w", err)
		return nil
	}
	if !found {
		og.missing = true
		return og
	}
	og.value = v
	if err := decodeGroupValue(og.value, key, func(s uint64, entry []byte) bool {
		og.seqs = append(og.seqs, s)
		og.entries = append(og.entries, entry)
		return true
	}); err != nil {
		r.p.skips.skip(r.key, err)
		og.missing = true
	}
	return og
}

// Inbound implements Store: grouped by client (clients in the order of
// their ids' length, then bytes), packet ids ascending within a client.
func (p *Pebble) Inbound(fn func(clientID string, packetID uint16) error) error {
	var last []byte
	var lastID string
	return p.scan(kindInbound, func(key, value []byte) (bool, error) {
		id, pid, ok := parseInboundKey(key)
		if !ok {
			p.skips.skip(key, fmt.Errorf("%w: bad inbound key", errCorrupt))
			return true, nil
		}
		if err := decodeInboundValue(value); err != nil {
			p.skips.skip(key, err)
			return true, nil
		}
		if last == nil || !bytes.Equal(id, last) {
			lastID = string(id)
			last = append(last[:0], id...)
		}
		return true, fn(lastID, pid)
	})
}

// Retained implements Store. The Message is reused from one call of fn to
// the next, and its byte slices alias pebble's memory: valid only during
// the call.
func (p *Pebble) Retained(fn func(*Message) error) error {
	var m Message
	return p.scan(kindRetained, func(key, value []byte) (bool, error) {
		if err := decodeRetainedValue(value, &m); err != nil {
			p.skips.skip(key, err)
			return true, nil
		}
		m.Topic = key[1:len(key):len(key)]
		return true, fn(&m)
	})
}

// Meta implements Store. The value returned is the caller's.
func (p *Pebble) Meta(key string) ([]byte, error) {
	k := appendMetaKey(nil, key)
	v, found, err := p.get(nil, k)
	if err != nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, err)
	}
	if !found {
		return nil, nil
	}
	value, err := decodeMetaValue(v) // aliases v, the caller's copy
	if err != nil {
		p.skips.skip(k, err)
		return nil, nil
	}
	return value, nil
}

// scan calls fn for every record of kind.
func (p *Pebble) scan(kind byte, fn func(key, value []byte) (bool, error)) error {
	lower, upper := kindBounds(kind)
	return p.scanRange(lower, upper, fn)
}

// scanRange calls fn for every record in [lower, upper) until it returns
// false or an error; key and value are valid only during the call.
func (p *Pebble) scanRange(lower, upper []byte, fn func(key, value []byte) (bool, error)) error {
	if err := p.beginRead(); err != nil {
		return err
	}
	defer p.readers.Done()
	it, err := p.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("store: read: %w", err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		value, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		more, err := fn(it.Key(), value)
		if err != nil {
			_ = it.Close()
			return err
		}
		if !more {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store: read %s records: %w", kindName(lower[0]), err)
	}
	return nil
}

// maxSkipLogs is how many distinct undecodable records a store logs; the
// rest are only counted.
const maxSkipLogs = 8

// skipLog counts the records reads skip and logs the first few of them,
// each once however many reads pass over it.
type skipLog struct {
	log   *slog.Logger
	count atomic.Uint64

	mu     sync.Mutex
	logged map[string]struct{}
	muted  bool
}

func (l *skipLog) skip(key []byte, err error) {
	l.count.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.muted {
		return
	}
	if _, ok := l.logged[string(key)]; ok {
		return
	}
	if len(l.logged) == maxSkipLogs {
		l.muted = true
		l.log.Warn("store: more undecodable records skipped; not logging them (see Stats.Skipped)")
		return
	}
	if l.logged == nil {
		l.logged = make(map[string]struct{})
	}
	l.logged[string(key)] = struct{}{}
	l.log.Warn("store: skipping undecodable record", "kind", kindName(key[0]), "key", printableKey(key), errAttr(err))
}

// printableKey quotes key for a log line or report, cut to a readable
// length.
func printableKey(key []byte) string {
	const max = 96
	if len(key) > max {
		return fmt.Sprintf("%q... (%d bytes)", key[:max], len(key))
	}
	return fmt.Sprintf("%q", key)
}
