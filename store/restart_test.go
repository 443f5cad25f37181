package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// restartPayload is the size of an entry's payload in the restart test and
// benchmark.
const restartPayload = 100

// fillLayout is how fillSessions writes entries.
type fillLayout int

const (
	fillEntries fillLayout = iota // PutEntry: entry records
	fillGrouped                   // PutEntryOnce: each session's entries one group (groups.go)
	fillShared                    // PutEntryOnce, the 100 sessions of a batch sharing its messages: groups referring to message records
)

func (l fillLayout) String() string {
	return [...]string{"entries", "grouped", "shared"}[l]
}

// fillSessions writes sessions persistent sessions with perSession entries
// each through s, 100 sessions a batch, up to 16 batches in flight. Seqs
// are unique per message: client c's entry i has Seq c*perSession+i
// (fillShared: the batch's first client's), and a payload starting with
// byte(c+i).
func fillSessions(tb testing.TB, s store.Store, sessions, perSession int, layout fillLayout) {
	tb.Helper()
	const perBatch, inFlight = 100, 16
	payload := make([]byte, restartPayload)
	sem := make(chan struct{}, inFlight)
	errs := make(chan error, inFlight)
	pool := make(chan *store.Batch, inFlight)
	for i := 0; i < inFlight; i++ {
		pool <- new(store.Batch)
	}
	for first := 0; first < sessions; first += perBatch {
		sem <- struct{}{}
		b := <-pool
		b.Reset()
		last := min(first+perBatch, sessions)
		for c := first; c < last; c++ {
			id := restartClientID(c)
			b.PutSession(&store.Session{
				ClientID: id, Version: 5, Expiry: 3600,
				Subs: []store.Subscription{{Filter: "devices/" + id + "/#", QoS: 1}},
			})
		}
		put := func(c, from, i int, topic string) {
			fillPayload(payload, from, i)
			e := &store.Entry{
				Seq: uint64(from*perSession + i), QoS: 1,
				Msg: store.Message{Topic: []byte(topic), Payload: payload, QoS: 1},
			}
			if layout == fillEntries {
				b.PutEntry(restartClientID(c), e)
			} else {
				b.PutEntryOnce(restartClientID(c), e)
			}
		}
		if layout == fillShared {
			for i := 0; i < perSession; i++ {
				for c := first; c < last; c++ {
					put(c, first, i, "devices/broadcast")
				}
			}
		} else {
			for c := first; c < last; c++ {
				for i := 0; i < perSession; i++ {
					put(c, c, i, "devices/"+restartClientID(c)+"/telemetry")
				}
			}
		}
		s.Commit(b, func(err error) {
			if err != nil {
				errs <- err
			}
			pool <- b
			<-sem
		})
	}
	for i := 0; i < inFlight; i++ {
		sem <- struct{}{}
	}
	select {
	case err := <-errs:
		require.NoError(tb, err)
	default:
	}
}

// fillPayload fills p with bytes that do not compress (as telemetry
// mostly does not), starting with byte(c+seq).
func fillPayload(p []byte, c, seq int) {
	x := uint64(c)<<32 | uint64(seq) | 1
	for i := range p {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		p[i] = byte(x)
	}
	p[0] = byte(c + seq)
}

func restartClientID(c int) string { return fmt.Sprintf("sensor-%07d", c) }

// readAll counts every session and every entry of every session, as the
// engine's recovery reads them.
func readAll(tb testing.TB, s store.Store) (sessions, entries int) {
	tb.Helper()
	var ids []string
	require.NoError(tb, s.Sessions(func(ss *store.Session) error {
		ids = append(ids, ss.ClientID)
		return nil
	}))
	for _, id := range ids {
		require.NoError(tb, s.Entries(id, 0, 0, func(e *store.Entry) bool {
			entries++
			return true
		}))
	}
	return len(ids), entries
}

// TestPebbleRestart writes 100,000 persistent sessions with 10 entries each
// (1,000,000 entries of 100-byte payloads) through the store, reopens it
// and counts them (about 4 s on 2 cores). Under the race detector, which
// makes that over a minute, it writes a tenth; with -short a hundredth.
func TestPebbleRestart(t *testing.T) {
	sessions, perSession := 100_000, 10
	if raceEnabled {
		sessions = 10_000
	}
	if testing.Short() {
		sessions = 1_000
	}
	dir := t.TempDir()
	p := openPebble(t, dir, store.PebbleOptions{Sync: store.SyncNone})
	start := time.Now()
	fillSessions(t, p, sessions, perSession, fillEntries)
	t.Logf("wrote %d sessions, %d entries in %v", sessions, sessions*perSession, time.Since(start))
	require.NoError(t, p.Close())

	start = time.Now()
	p = openPebble(t, dir, store.PebbleOptions{})
	defer p.Close()
	gotSessions, gotEntries := readAll(t, p)
	t.Logf("reopened and read in %v; %d bytes on disk", time.Since(start), p.Stats().DiskBytes)
	require.Equal(t, sessions, gotSessions)
	require.Equal(t, sessions*perSession, gotEntries)

	// Entries come back whole and in order.
	id := restartClientID(sessions / 2)
	var seqs []uint64
	base := uint64(sessions / 2 * perSession)
	require.NoError(t, p.Entries(id, 0, 0, func(e *store.Entry) bool {
		seqs = append(seqs, e.Seq)
		require.Len(t, e.Msg.Payload, restartPayload)
		require.Equal(t, byte(sessions/2+int(e.Seq-base)), e.Msg.Payload[0])
		return true
	}))
	require.Len(t, seqs, perSession)
	require.Equal(t, base+uint64(perSession-1), seqs[perSession-1])
}
