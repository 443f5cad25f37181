package store

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

func onceEntry(seq uint64) *Entry {
	return &Entry{Seq: seq, State: EntryQueued, QoS: 1, Msg: Message{Topic: []byte("t"), Payload: []byte{byte(seq)}, QoS: 1}}
}

func entrySeqs(t *testing.T, s Store, id string) []uint64 {
	t.Helper()
	var got []uint64
	require.NoError(t, s.Entries(id, 0, 0, func(e *Entry) bool {
		got = append(got, e.Seq)
		return true
	}))
	return got
}

// Entries put once in one commit become one group record (one single entry
// stays an entry record); the group is deleted with its last entry.
func TestPebbleGroupsEntriesPutOnce(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir, quietOptions(t))
	require.NoError(t, err)
	var b Batch
	for seq := uint64(1); seq <= 3; seq++ {
		b.PutEntryOnce("a", onceEntry(seq))
	}
	b.PutEntryOnce("b", onceEntry(4))
	commitWait(t, p, &b)
	require.Len(t, p.groups.clients["a"], 1)
	require.Empty(t, p.groups.clients["b"], "one entry: an entry record")
	require.NoError(t, p.Close())
	rep, err := Check(dir)
	require.NoError(t, err)
	require.Equal(t, 1, rep.Groups)
	require.Equal(t, 3, rep.GroupedEntries)
	require.Equal(t, 1, rep.Entries)

	p, err = OpenPebble(dir, quietOptions(t))
	require.NoError(t, err)
	defer p.Close()
	require.Len(t, p.groups.clients["a"], 1, "the index is rebuilt at open")
	b.Reset()
	for seq := uint64(1); seq <= 3; seq++ {
		b.DeleteEntryPutOnce("a", seq)
	}
	commitWait(t, p, &b)
	require.Empty(t, p.groups.clients)
	require.Empty(t, entrySeqs(t, p, "a"))
}

// The deletes of a group's entries are on disk only once the group is
// gone: after a crash (what was synced, nothing else) the deleted entries
// of a group with live ones are back; after Close they are not. Entries
// DeleteEntriesTo removes stay removed after a crash too.
func TestPebbleGroupDeletesAfterCrashAndClose(t *testing.T) {
	mem := vfs.NewCrashableMem()
	opts := quietOptions(t)
	opts.fs = mem
	p, err := OpenPebble("/store", opts)
	require.NoError(t, err)
	var b Batch
	for seq := uint64(1); seq <= 6; seq++ {
		b.PutEntryOnce("a", onceEntry(seq))
		b.PutEntryOnce("gone", onceEntry(seq))
	}
	commitWait(t, p, &b)
	b.Reset()
	b.DeleteEntryPutOnce("a", 2)
	b.DeleteEntriesTo("gone", 4) // an ended session's entries
	commitWait(t, p, &b)
	require.Equal(t, []uint64{1, 3, 4, 5, 6}, entrySeqs(t, p, "a"))
	require.Equal(t, []uint64{5, 6}, entrySeqs(t, p, "gone"))

	opts.fs = mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
	crashed, err := OpenPebble("/store", opts)
	require.NoError(t, err)
	require.Equal(t, []uint64{1, 2, 3, 4, 5, 6}, entrySeqs(t, crashed, "a"), "sent again after a crash")
	require.Equal(t, []uint64{5, 6}, entrySeqs(t, crashed, "gone"))
	require.NoError(t, crashed.Close())

	require.NoError(t, p.Close())
	opts.fs = mem
	p, err = OpenPebble("/store", opts)
	require.NoError(t, err)
	defer p.Close()
	require.Equal(t, []uint64{1, 3, 4, 5, 6}, entrySeqs(t, p, "a"))
	require.Equal(t, []uint64{5, 6}, entrySeqs(t, p, "gone"))
}

// A store of format 1 (before group records) opens, and is marked format 2
// once opened for writing: an older loopmq, which would not read the
// groups, then refuses it.
func TestPebbleOpensFormat1(t *testing.T) {
	dir := t.TempDir()
	p, err := OpenPebble(dir, quietOptions(t))
	require.NoError(t, err)
	var b Batch
	b.PutEntry("a", onceEntry(1))
	commitWait(t, p, &b)
	require.NoError(t, p.db.Set(formatKey, []byte{1}, nil))
	require.NoError(t, p.Close())
	rep, err := Check(dir)
	require.NoError(t, err)
	require.Equal(t, byte(1), rep.Format)

	p, err = OpenPebble(dir, quietOptions(t))
	require.NoError(t, err)
	require.Equal(t, []uint64{1}, entrySeqs(t, p, "a"))
	require.NoError(t, p.Close())
	rep, err = Check(dir)
	require.NoError(t, err)
	require.Equal(t, formatVersion, rep.Format)
}
