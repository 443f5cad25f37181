package store_test

import (
	"bytes"
	"log/slog"
	"strings"
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

// TestPebbleLogsThroughLogger: pebble's own log lines reach the Logger (at
// Debug), not stderr.
func TestPebbleLogsThroughLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := openPebble(t, t.TempDir(), store.PebbleOptions{Logger: log})
	var b store.Batch
	b.PutMeta("k", []byte("v"))
	require.NoError(t, commit(t, p, &b))
	require.NoError(t, p.Close())
	require.Contains(t, buf.String(), "component=pebble")
	require.Contains(t, buf.String(), "level=DEBUG")
}

func commit(t testing.TB, s store.Store, b *store.Batch) error {
	t.Helper()
	ch := make(chan error, 1)
	s.Commit(b, func(err error) { ch <- err })
	return <-ch
}

// TestPebbleClientIDLength: a client id of 65535 bytes (the MQTT maximum)
// is stored; a longer one fails its batch alone, whole, through done.
func TestPebbleClientIDLength(t *testing.T) {
	p := openPebble(t, t.TempDir(), store.PebbleOptions{Sync: store.SyncNone})
	defer p.Close()
	longest := strings.Repeat("x", 65535)
	tooLong := longest + "y"

	var bad, good store.Batch
	bad.PutSession(&store.Session{ClientID: tooLong})
	bad.PutEntry(tooLong, &store.Entry{Seq: 1})
	good.PutSession(&store.Session{ClientID: longest})
	good.PutEntry(longest, &store.Entry{Seq: 1})
	good.PutInbound(longest, 7)
	badDone, goodDone := make(chan error, 1), make(chan error, 1)
	p.Commit(&bad, func(err error) { badDone <- err })
	p.Commit(&good, func(err error) { goodDone <- err })
	require.ErrorContains(t, <-badDone, "client id of 65536 bytes")
	require.NoError(t, <-goodDone)

	var ids []string
	require.NoError(t, p.Sessions(func(s *store.Session) error { ids = append(ids, s.ClientID); return nil }))
	require.Equal(t, []string{longest}, ids, "nothing of the failed batch is stored")
	n := 0
	require.NoError(t, p.Entries(longest, 0, 0, func(*store.Entry) bool { n++; return true }))
	require.Equal(t, 1, n)
	require.NoError(t, p.Entries(tooLong, 0, 0, func(*store.Entry) bool { n++; return true }))
	require.Equal(t, 1, n)
}

// TestPebbleNoSyncWithoutRecords: under SyncAlways a commit whose every
// write was taken back (CancelPutEntry) costs no fsync; one with a record
// does.
func TestPebbleNoSyncWithoutRecords(t *testing.T) {
	p := openPebble(t, t.TempDir(), store.PebbleOptions{Sync: store.SyncAlways})
	defer p.Close()
	e := store.Entry{Seq: 1, State: store.EntryQueued, QoS: 1, Msg: store.Message{Topic: []byte("t"), QoS: 1}}
	var b store.Batch
	b.PutEntry("c", &e)
	require.True(t, b.CancelPutEntry(0, "c", 1))
	before := p.Stats().Syncs
	require.NoError(t, commit(t, p, &b))
	require.Equal(t, before, p.Stats().Syncs, "nothing to make durable")
	b.Reset()
	b.PutEntry("c", &e)
	require.NoError(t, commit(t, p, &b))
	require.Equal(t, before+1, p.Stats().Syncs)
}
