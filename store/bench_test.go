package store_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// BenchmarkCommit: committers goroutines each commit single-entry batches
// (100-byte payload) and wait for each done before the next, as many
// sessions' event loops would; b.N commits in all. Reported: commits/s,
// syncs/s (log fsyncs), entries/fsync (how many commits shared one fsync),
// done-ns (mean Commit-to-done time) and wait-ns (mean time Commit blocked
// on a full queue).
func BenchmarkCommit(b *testing.B) {
	for _, policy := range []store.SyncPolicy{store.SyncAlways, store.SyncInterval, store.SyncNone} {
		for _, committers := range []int{1, 2, 8, 64} {
			b.Run(fmt.Sprintf("%s/committers=%d", policy, committers), func(b *testing.B) {
				benchCommit(b, policy, committers)
			})
		}
	}
}

func benchCommit(b *testing.B, policy store.SyncPolicy, committers int) {
	p := openPebble(b, b.TempDir(), store.PebbleOptions{Sync: policy})
	defer p.Close()
	payload := make([]byte, restartPayload)
	fillPayload(payload, 1, 1)
	before := p.Stats()
	b.ReportAllocs()
	b.SetBytes(restartPayload)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < committers; g++ {
		n := b.N / committers
		if g < b.N%committers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("bench-%d", g)
			var batch store.Batch
			done := make(chan error, 1)
			e := store.Entry{QoS: 1, Msg: store.Message{Topic: []byte("bench/topic"), Payload: payload, QoS: 1}}
			for i := 0; i < n; i++ {
				batch.Reset()
				e.Seq = uint64(i)
				batch.PutEntry(id, &e)
				p.Commit(&batch, func(err error) { done <- err })
				if err := <-done; err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	st := p.Stats()
	commits := float64(st.Commits - before.Commits)
	syncs := float64(st.Syncs - before.Syncs)
	b.ReportMetric(commits/elapsed.Seconds(), "commits/s")
	b.ReportMetric(syncs/elapsed.Seconds(), "syncs/s")
	if syncs > 0 {
		b.ReportMetric(commits/syncs, "entries/fsync")
	}
	if commits > 0 {
		b.ReportMetric(float64(st.CommitNanos-before.CommitNanos)/commits, "done-ns")
		b.ReportMetric(float64(st.CommitWaitNanos-before.CommitWaitNanos)/commits, "wait-ns")
	}
}

// BenchmarkRecovery: a store of 100,000 sessions with 10 entries each
// (1,000,000 entries, 100-byte payloads) is written once; each iteration
// opens it and reads every session and every entry, as the engine's
// recovery does. "recovering" opens with OpenPebbleRecovering, which reads
// every record once more to check the store first. Layouts: entry
// records (entries), each session's entries one group (grouped), and the
// 100 sessions of each write sharing its 10 messages, which are message
// records the groups refer to (shared; groups.go).
func BenchmarkRecovery(b *testing.B) {
	for _, layout := range []fillLayout{fillEntries, fillGrouped, fillShared} {
		b.Run(layout.String(), func(b *testing.B) { benchRecovery(b, layout) })
	}
}

func benchRecovery(b *testing.B, layout fillLayout) {
	const sessions, perSession = 100_000, 10
	dir := b.TempDir()
	p := openPebble(b, dir, store.PebbleOptions{Sync: store.SyncNone})
	start := time.Now()
	fillSessions(b, p, sessions, perSession, layout)
	written := time.Since(start)
	require.NoError(b, p.Close())
	b.Logf("wrote %d sessions, %d entries in %v", sessions, sessions*perSession, written)

	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			p := openPebble(b, dir, store.PebbleOptions{})
			s, e := readAll(b, p)
			require.Equal(b, sessions, s)
			require.Equal(b, sessions*perSession, e)
			b.ReportMetric(float64(p.Stats().DiskBytes), "disk-bytes")
			require.NoError(b, p.Close())
		}
		b.ReportMetric(float64(sessions*perSession)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
	b.Run("recovering", func(b *testing.B) {
		for b.Loop() {
			p, rep, err := store.OpenPebbleRecovering(dir, store.PebbleOptions{Logger: testLogger(b)})
			require.NoError(b, err)
			require.Empty(b, rep.MovedTo)
			s, e := readAll(b, p)
			require.Equal(b, sessions, s)
			require.Equal(b, sessions*perSession, e)
			require.NoError(b, p.Close())
		}
		b.ReportMetric(float64(sessions*perSession)*float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	})
}

// BenchmarkCommitOpenLoop: one goroutine commits single-entry batches as
// fast as it can without waiting for done (as an event loop does), so the
// store's queue fills whenever the disk falls behind. Reported: how long a
// Commit call takes (call-ns mean, call-max-ns), how often it had to wait
// for queue room (waits/commit), commits/s and entries/fsync.
func BenchmarkCommitOpenLoop(b *testing.B) {
	for _, policy := range []store.SyncPolicy{store.SyncAlways, store.SyncNone} {
		b.Run(policy.String(), func(b *testing.B) {
			p := openPebble(b, b.TempDir(), store.PebbleOptions{Sync: policy})
			defer p.Close()
			payload := make([]byte, restartPayload)
			fillPayload(payload, 1, 1)
			// Enough batches for a full queue and the groups being synced.
			free := make(chan *store.Batch, 8192)
			for i := 0; i < cap(free); i++ {
				free <- new(store.Batch)
			}
			var pending sync.WaitGroup
			done := func(b *store.Batch) func(error) {
				return func(error) { free <- b; pending.Done() }
			}
			e := store.Entry{QoS: 1, Msg: store.Message{Topic: []byte("bench/topic"), Payload: payload, QoS: 1}}
			before := p.Stats()
			var callMax, callTotal time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				batch := <-free
				batch.Reset()
				e.Seq = uint64(i)
				batch.PutEntry("open-loop", &e)
				pending.Add(1)
				t := time.Now()
				p.Commit(batch, done(batch))
				d := time.Since(t)
				callTotal += d
				callMax = max(callMax, d)
			}
			pending.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			st := p.Stats()
			commits := float64(st.Commits - before.Commits)
			b.ReportMetric(commits/elapsed.Seconds(), "commits/s")
			b.ReportMetric(float64(callTotal)/float64(b.N), "call-ns")
			b.ReportMetric(float64(callMax), "call-max-ns")
			b.ReportMetric(float64(st.CommitWaits-before.CommitWaits)/commits, "waits/commit")
			if syncs := float64(st.Syncs - before.Syncs); syncs > 0 && policy == store.SyncAlways {
				b.ReportMetric(commits/syncs, "entries/fsync")
			}
		})
	}
}
