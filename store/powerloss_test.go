package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// TestPebblePowerLoss commits batches from several goroutines, then takes
// the state a power failure would leave (pebble's crashable in-memory file
// system keeps only what was synced) and opens it: under SyncAlways every
// batch whose done was called is there, under SyncInterval every batch
// done an interval before the failure. Under SyncNone the test only logs
// what survived.
func TestPebblePowerLoss(t *testing.T) {
	const goroutines, perG = 8, 100
	for _, policy := range []SyncPolicy{SyncAlways, SyncInterval, SyncNone} {
		t.Run(policy.String(), func(t *testing.T) {
			mem := vfs.NewCrashableMem()
			opts := quietOptions(t)
			opts.Sync, opts.SyncInterval, opts.fs = policy, 10*time.Millisecond, mem
			p, err := OpenPebble("/store", opts)
			require.NoError(t, err)
			defer p.Close()
			var wg sync.WaitGroup
			for g := 0; g < goroutines; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < perG; i++ {
						var b Batch
						b.PutEntry(fmt.Sprint("c", g), &Entry{Seq: uint64(i), Msg: Message{Payload: make([]byte, 100)}})
						commitWait(t, p, &b)
					}
				}()
			}
			wg.Wait()
			if policy == SyncInterval {
				time.Sleep(5 * opts.SyncInterval)
			}
			crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})

			opts.fs = crashed
			p2, err := OpenPebble("/store", opts)
			require.NoError(t, err)
			defer p2.Close()
			total := 0
			for g := 0; g < goroutines; g++ {
				n := 0
				require.NoError(t, p2.Entries(fmt.Sprint("c", g), 0, 0, func(e *Entry) bool {
					require.EqualValues(t, n, e.Seq, "a hole in what survived")
					n++
					return true
				}))
				total += n
			}
			st := p.Stats()
			t.Logf("%d of %d commits survived; %d fsyncs", total, goroutines*perG, st.Syncs)
			if policy != SyncNone {
				require.Equal(t, goroutines*perG, total)
			}
		})
	}
}
