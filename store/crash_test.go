package store_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

const crashChildEnv = "LOOPMQ_STORE_CRASH_CHILD"

// crashEntries is how many batches the child commits before it dies.
const crashEntries = 2000

// TestPebbleSurvivesProcessCrash: under SyncInterval and SyncNone, a batch
// whose done was called survives the death of the process (its memory, not
// the machine's). The child process commits batches, waits for the last
// done and exits without closing the store; the parent reopens it and
// finds every batch. (Pebble's own NoSync commits would fail this: they
// leave the log's last block in the process.)
func TestPebbleSurvivesProcessCrash(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	for _, policy := range []store.SyncPolicy{store.SyncNone, store.SyncInterval} {
		t.Run(policy.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			cmd := exec.Command(os.Args[0], "-test.run=^TestPebbleSurvivesProcessCrash$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, "LOOPMQ_STORE_CRASH_POLICY="+policy.String())
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "child: %s", out)
			require.Equal(t, 3, ee.ExitCode(), "child: %s", out)
			require.Contains(t, string(out), "committed")

			p := openPebble(t, dir, store.PebbleOptions{})
			defer p.Close()
			n := 0
			require.NoError(t, p.Entries("c", 0, 0, func(e *store.Entry) bool {
				require.EqualValues(t, n, e.Seq)
				n++
				return true
			}))
			require.Equal(t, crashEntries, n)
		})
	}
}

func crashChild(dir string) {
	policy, err := store.ParseSyncPolicy(os.Getenv("LOOPMQ_STORE_CRASH_POLICY"))
	if err != nil {
		panic(err)
	}
	// An interval longer than the test: only the commits can have made
	// the data reach the operating system.
	p, err := store.OpenPebble(dir, store.PebbleOptions{Sync: policy, SyncInterval: 1 << 40})
	if err != nil {
		panic(err)
	}
	batches := make([]store.Batch, crashEntries)
	last := make(chan error, 1)
	for i := range batches {
		batches[i].PutEntry("c", &store.Entry{Seq: uint64(i), Msg: store.Message{Payload: bytes.Repeat([]byte{1}, 100)}})
		done := func(error) {}
		if i == len(batches)-1 {
			done = func(err error) { last <- err }
		}
		p.Commit(&batches[i], done)
	}
	if err := <-last; err != nil {
		panic(err)
	}
	fmt.Println("committed")
	os.Exit(3)
}
