package storetest

import (
	"bytes"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// commitTimeout bounds the wait for one done; a store that needs longer is
// broken, not slow.
const commitTimeout = 30 * time.Second

// doneCounter wraps done callbacks and checks each is called exactly once.
type doneCounter struct {
	calls []atomic.Int32
}

func newDoneCounter(n int) *doneCounter { return &doneCounter{calls: make([]atomic.Int32, n)} }

// done returns the callback for commit i, which records its error in errs
// (if not nil) and closes ch (if not nil).
func (c *doneCounter) done(i int, errs []error, ch chan<- int) func(error) {
	return func(err error) {
		c.calls[i].Add(1)
		if errs != nil {
			errs[i] = err
		}
		if ch != nil {
			ch <- i
		}
	}
}

func (c *doneCounter) requireOnce(t *testing.T) {
	t.Helper()
	for i := range c.calls {
		require.EqualValues(t, 1, c.calls[i].Load(), "done of commit %d", i)
	}
}

// commit commits b and waits for its done, which must report no error.
func commit(t *testing.T, s store.Store, b *store.Batch) {
	t.Helper()
	require.NoError(t, commitErr(t, s, b))
}

func commitErr(t *testing.T, s store.Store, b *store.Batch) error {
	t.Helper()
	ch := make(chan error, 2)
	s.Commit(b, func(err error) { ch <- err })
	var err error
	select {
	case err = <-ch:
	case <-time.After(commitTimeout):
		t.Fatal("done not called")
	}
	select {
	case <-ch:
		t.Fatal("done called twice")
	case <-time.After(time.Millisecond):
	}
	return err
}

// one builds a batch with fill and commits it.
func one(t *testing.T, s store.Store, fill func(b *store.Batch)) {
	t.Helper()
	var b store.Batch
	fill(&b)
	commit(t, s, &b)
}

// cloneBytes copies p, mapping empty to nil: the stores may return either
// for an empty slice.
func cloneBytes(p []byte) []byte {
	if len(p) == 0 {
		return nil
	}
	return bytes.Clone(p)
}

func cloneMessage(m *store.Message) store.Message {
	c := *m
	c.Topic = cloneBytes(m.Topic)
	c.Payload = cloneBytes(m.Payload)
	c.Props = cloneBytes(m.Props)
	return c
}

func cloneSession(s *store.Session) store.Session {
	c := *s
	c.Subs = nil
	if len(s.Subs) > 0 {
		c.Subs = slices.Clone(s.Subs)
	}
	if s.Will != nil {
		w := *s.Will
		w.Msg = cloneMessage(&s.Will.Msg)
		c.Will = &w
	}
	return c
}

func cloneEntry(e *store.Entry) store.Entry {
	c := *e
	c.SubIDs = nil
	if len(e.SubIDs) > 0 {
		c.SubIDs = slices.Clone(e.SubIDs)
	}
	c.Msg = cloneMessage(&e.Msg)
	return c
}

func sessions(t *testing.T, s store.Store) []store.Session {
	t.Helper()
	var out []store.Session
	require.NoError(t, s.Sessions(func(ss *store.Session) error {
		out = append(out, cloneSession(ss))
		return nil
	}))
	return out
}

func entries(t *testing.T, s store.Store, clientID string, from uint64, max int) []store.Entry {
	t.Helper()
	var out []store.Entry
	require.NoError(t, s.Entries(clientID, from, max, func(e *store.Entry) bool {
		out = append(out, cloneEntry(e))
		return true
	}))
	return out
}

func seqs(es []store.Entry) []uint64 {
	out := make([]uint64, len(es))
	for i := range es {
		out[i] = es[i].Seq
	}
	return out
}

// inbound returns the stored packet ids per client, sorted: the order of
// Inbound across clients differs between stores.
func inbound(t *testing.T, s store.Store) map[string][]uint16 {
	t.Helper()
	out := make(map[string][]uint16)
	require.NoError(t, s.Inbound(func(id string, pid uint16) error {
		out[id] = append(out[id], pid)
		return nil
	}))
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

func retained(t *testing.T, s store.Store) []store.Message {
	t.Helper()
	var out []store.Message
	require.NoError(t, s.Retained(func(m *store.Message) error {
		out = append(out, cloneMessage(m))
		return nil
	}))
	return out
}

func meta(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	v, err := s.Meta(key)
	require.NoError(t, err)
	return v
}

// normSession returns s as the stores give it back (empty slices nil).
func normSession(s store.Session) store.Session { return cloneSession(&s) }

func normEntry(e store.Entry) store.Entry { return cloneEntry(&e) }

func normMessage(m store.Message) store.Message { return cloneMessage(&m) }
