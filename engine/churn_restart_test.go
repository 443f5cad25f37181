package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// churnBroker is a broker on a pebble store that the soak restarts: each
// restart stops it gracefully, closes the store, opens the store again on
// the same directory and starts a new broker on the same address.
// restart runs on the soak's restarter goroutine, the rest on the test's.
type churnBroker struct {
	dir  string
	opts Options // Listen is the first broker's address once it runs
	st   *store.Pebble
	s    *Server
}

// start opens the store and starts a broker on it, trying again for a
// second while its address is not free yet.
func (b *churnBroker) start() error {
	st, err := store.OpenPebble(b.dir, store.PebbleOptions{Sync: store.SyncNone})
	if err != nil {
		return err
	}
	opts := b.opts
	opts.Store = st
	for deadline := time.Now().Add(time.Second); ; {
		s := New(opts)
		err = s.Start()
		if err == nil {
			b.st, b.s = st, s
			b.opts.Listen = s.Addr().String()
			return nil
		}
		if time.Now().After(deadline) {
			_ = st.Close()
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop stops the broker gracefully and closes its store.
func (b *churnBroker) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.s.Stop(ctx)
	if cerr := b.st.Close(); err == nil {
		err = cerr
	}
	if n := b.s.Stats().Panics; n != 0 && err == nil {
		err = fmt.Errorf("the broker recovered %d panics", n)
	}
	return err
}

func (b *churnBroker) restart() (*Server, error) {
	if err := b.stop(); err != nil {
		return nil, fmt.Errorf("stop: %w", err)
	}
	if err := b.start(); err != nil {
		return nil, fmt.Errorf("start on %s: %w", b.opts.Listen, err)
	}
	return b.s, nil
}

// TestChurnPersistentRestarts is the persistent soak with the broker
// restarted (gracefully: Stop, then the store closed) every second or so
// while the clients and the audit run: recovery meets live state. Nothing
// acknowledged may be lost, no session (the audit's subscribers check
// Session Present), and QoS 2 stays exactly once across restarts. At the
// end the store must be sound (store.Check) and hold nothing.
func TestChurnPersistentRestarts(t *testing.T) {
	d, seed := churnParams(t)
	b := &churnBroker{dir: t.TempDir(), opts: Options{
		Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Loops: churnLoops(t, seed), MaxQueued: 2000, MaxQueuedInMemory: 4, MaxSessionExpiry: time.Minute,
	}}
	churnAuthOptions(t, &b.opts)
	require.NoError(t, b.start())
	t.Cleanup(func() { _ = b.stop() }) // whichever broker runs last
	goroutines := settledGoroutines(t, b.s)
	run := churn(t, b.s, d, seed, churnOpts{restart: b.restart})
	logChurn(t, run, seed)
	require.GreaterOrEqual(t, run.restarted.Load(), int64(1), "seed %d: no restart", seed)
	// Each restart started new loops: their goroutines are compared
	// once the last broker is idle.
	checkChurnClean(t, b.s, seed, goroutines)
	require.NoError(t, b.stop())

	rep, err := store.Check(b.dir)
	require.NoError(t, err, "seed %d: store check", seed)
	require.True(t, rep.OK(), "seed %d: store check:\n%s", seed, rep.String())
	require.Zero(t, rep.Sessions+rep.Entries+rep.Groups+rep.Inbound+rep.Retained+rep.Messages,
		"seed %d: store holds records after every session ended:\n%s", seed, rep.String())

	require.NoError(t, b.start())
	got := b.s.Stats()
	require.Zero(t, got.Sessions, "seed %d: sessions restored", seed)
	require.Zero(t, got.Retained, "seed %d: retained messages restored", seed)
	require.Zero(t, got.Queued, "seed %d: queued messages restored", seed)
}
