package store_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/store/storetest"
)

// testLogger sends a store's log lines to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

func openPebble(t testing.TB, dir string, opts store.PebbleOptions) *store.Pebble {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	p, err := store.OpenPebble(dir, opts)
	require.NoError(t, err)
	return p
}

func TestPebbleConformance(t *testing.T) {
	for _, policy := range []store.SyncPolicy{store.SyncAlways, store.SyncInterval, store.SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			opts := store.PebbleOptions{Sync: policy, SyncInterval: 5 * time.Millisecond}
			storetest.Run(t,
				func(t *testing.T) store.Store { return openPebble(t, t.TempDir(), opts) },
				func(t *testing.T, old store.Store) store.Store {
					dir := old.(*store.Pebble).Dir()
					require.NoError(t, old.Close())
					return openPebble(t, dir, opts)
				})
		})
	}
}
