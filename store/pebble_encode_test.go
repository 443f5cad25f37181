package store

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncodeDeletesDoNotAllocate: a batch of entry deletes only, what a
// subscriber's loop commits for the acknowledgements it read, is encoded
// into pebble's batch without an allocation per delete: the key is built
// in the store's reused buffer (before, each delete grew a key buffer that
// was then dropped: about three allocations per delete).
func TestEncodeDeletesDoNotAllocate(t *testing.T) {
	p, err := OpenPebble(t.TempDir(), quietOptions(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	var b Batch
	for seq := uint64(1); seq <= 100; seq++ {
		if seq%2 == 0 {
			b.DeleteEntryPutOnce("client", seq)
		} else {
			b.DeleteEntry("client", seq)
		}
	}
	c := &pendingCommit{b: &b}
	pb := p.db.NewBatch()
	t.Cleanup(func() { _ = pb.Close() })
	p.encode(pb, c) // pebble's batch grows its buffer once
	require.NoError(t, c.err)
	allocs := testing.AllocsPerRun(20, func() {
		pb.Reset()
		p.encode(pb, c)
	})
	require.Zero(t, allocs, "allocations per encode of 100 deletes")
}
