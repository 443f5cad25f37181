package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
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
	return p.scanRange(lower, upper, func(key, value []byte) (bool, error) {
		if max > 0 && n >= max {
			return false, nil
		}
		_, seq, ok := parseEntryKey(key)
		if !ok {
			p.skips.skip(key, fmt.Errorf("%w: bad entry key", errCorrupt))
			return true, nil
		}
		if err := decodeEntryValue(value, &e); err != nil {
			p.skips.skip(key, err)
			return true, nil
		}
		e.Seq = seq
		n++
		return fn(&e), nil
	})
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
	if err := p.beginRead(); err != nil {
		return nil, err
	}
	defer p.readers.Done()
	k := appendMetaKey(nil, key)
	v, closer, err := p.db.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, err)
	}
	defer closer.Close()
	value, err := decodeMetaValue(v)
	if err != nil {
		p.skips.skip(k, err)
		return nil, nil
	}
	return bytes.Clone(value), nil
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
	l.log.Warn("store: skipping undecodable record", "kind", kindName(key[0]), "key", printableKey(key), "err", err)
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
