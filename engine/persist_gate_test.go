package engine

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// gateStore is a store.Memory whose commits wait until the test lets them
// through, in the order they arrived (as a store applies them): the test
// decides when each batch becomes durable and visible to reads, so an
// interleaving of several loops' batches can be replayed exactly.
type gateStore struct {
	*store.Memory
	mu   sync.Mutex
	held []gatedCommit
	open bool
}

type gatedCommit struct {
	b    *store.Batch
	done func(error)
}

func newGateStore() *gateStore { return &gateStore{Memory: store.NewMemory()} }

// openGate returns a gateStore that lets commits through until the test
// closes it (setOpen(false)); it is closed with the test.
func openGate(t *testing.T) *gateStore {
	st := newGateStore()
	t.Cleanup(func() { _ = st.Close() })
	st.setOpen(true)
	return st
}

// Commit implements store.Store.
func (g *gateStore) Commit(b *store.Batch, done func(error)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open && len(g.held) == 0 {
		g.Memory.Commit(b, done)
		return
	}
	g.held = append(g.held, gatedCommit{b, done})
}

// waiting returns the number of commits held.
func (g *gateStore) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// waitFor waits until at least n commits are held.
func (g *gateStore) waitFor(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return g.waiting() >= n }, e2eWait, time.Millisecond, "%d commits held", n)
}

// release lets the n oldest held commits through.
func (g *gateStore) release(n int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n = min(n, len(g.held))
	for _, c := range g.held[:n] {
		g.Memory.Commit(c.b, c.done)
	}
	g.held = append(g.held[:0], g.held[n:]...)
}

// setOpen lets every held commit through and, when open, the later ones
// at once; closed, later commits are held again.
func (g *gateStore) setOpen(open bool) {
	g.mu.Lock()
	g.open = open
	g.mu.Unlock()
	g.release(1 << 30)
}

// settle waits until every commit released so far is applied (a Memory
// applies in order, so an empty batch committed now is applied last).
func (g *gateStore) settle(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	g.Memory.Commit(new(store.Batch), func(err error) { done <- err })
	select {
	case <-done:
	case <-time.After(e2eWait):
		t.Fatal("store did not apply")
	}
}

// entryStates returns id's entries in the store: seq -> state.
func entryStates(st store.Store, id string) map[uint64]byte {
	m := map[uint64]byte{}
	_ = st.Entries(id, 0, 0, func(e *store.Entry) bool { m[e.Seq] = e.State; return true })
	return m
}

// commitDirect applies b to st and waits.
func commitDirect(t *testing.T, st store.Store, b *store.Batch) {
	t.Helper()
	done := make(chan error, 1)
	st.Commit(b, func(err error) { done <- err })
	require.NoError(t, <-done)
}

// dialOnLoop connects id (3.1.1) on loop index want of a two-loop server:
// gnet hands connections to the loops in turn, so a probe connection
// tells which loop the next one gets.
func dialOnLoop(t *testing.T, s *Server, id string, clean bool, want int) *rawClient {
	t.Helper()
	for range 10 {
		probeID := "probe-" + id
		p := connectRaw(t, s, connectPacket(probeID, true, 0))
		at := sessionOwnerLoop(s, probeID)
		p.disconnect()
		require.Eventually(t, func() bool { return sessionOwnerLoop(s, probeID) < 0 }, e2eWait, time.Millisecond)
		if at != want {
			c := connectRaw(t, s, connectPacket(id, clean, 0))
			return c
		}
	}
	t.Fatalf("could not reach loop %d", want)
	return nil
}

// disconnectStored disconnects c, the client of persistent session id,
// and waits until the store holds the session as offline. A test that
// closes the gate next must not have that write held: it would be a commit
// outstanding on the session's loop that the test did not make (in
// TestStoreStallCountedAndLogged, a second stall in about one run of 40
// under -race).
func disconnectStored(t *testing.T, st store.Store, c *rawClient, id string) {
	t.Helper()
	c.disconnect()
	require.Eventually(t, func() bool {
		off := false
		_ = st.Sessions(func(ss *store.Session) error {
			off = off || (ss.ClientID == id && ss.DisconnectedAt != 0)
			return nil
		})
		return off
	}, e2eWait, 10*time.Millisecond, "%s stored offline", id)
}
