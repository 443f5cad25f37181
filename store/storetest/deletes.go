package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// Tests of DeleteSession and of operations on one key within a batch.

// fillClient gives clientID a session, entries 1..3 and inbound ids 1, 2.
func fillClient(b *store.Batch, clientID string) {
	ss := sampleSession(clientID)
	b.PutSession(&ss)
	for seq := uint64(1); seq <= 3; seq++ {
		e := sampleEntry(seq)
		b.PutEntry(clientID, &e)
	}
	b.PutInbound(clientID, 1)
	b.PutInbound(clientID, 2)
}

func clientIDs(ss []store.Session) []string {
	var ids []string
	for _, s := range ss {
		ids = append(ids, s.ClientID)
	}
	return ids
}

func testDeleteSession(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		fillClient(b, "x")
		fillClient(b, "y")
		// Entries and inbound ids without a session record go too.
		e := sampleEntry(9)
		b.PutEntry("orphan", &e)
		b.PutInbound("orphan", 5)
	})
	one(t, s, func(b *store.Batch) {
		b.DeleteSession("x")
		b.DeleteSession("orphan")
		b.DeleteSession("never-existed")
	})
	require.Equal(t, []string{"y"}, clientIDs(sessions(t, s)))
	require.Empty(t, entries(t, s, "x", 0, 0))
	require.Empty(t, entries(t, s, "orphan", 0, 0))
	require.Equal(t, []uint64{1, 2, 3}, seqs(entries(t, s, "y", 0, 0)))
	require.Equal(t, map[string][]uint16{"y": {1, 2}}, inbound(t, s))

	// A client id can start over after its session was deleted.
	one(t, s, func(b *store.Batch) {
		e := sampleEntry(100)
		b.PutEntry("x", &e)
	})
	require.Equal(t, []uint64{100}, seqs(entries(t, s, "x", 0, 0)))
}

// testDeleteEntriesTo deletes a client's entries up to a sequence number,
// and nothing of other clients' (including those whose ids extend it).
func testDeleteEntriesTo(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		fillClient(b, "x")
		fillClient(b, "xx")
		e := sampleEntry(^uint64(0))
		b.PutEntry("y", &e)
		b.PutEntry("z", &e)
	})
	one(t, s, func(b *store.Batch) {
		b.DeleteEntriesTo("x", 2)
		b.DeleteEntriesTo("y", ^uint64(0)-1)
		b.DeleteEntriesTo("z", ^uint64(0))
		b.DeleteEntriesTo("never-existed", 5)
	})
	require.Equal(t, []uint64{3}, seqs(entries(t, s, "x", 0, 0)))
	require.Equal(t, []uint64{1, 2, 3}, seqs(entries(t, s, "xx", 0, 0)))
	require.Equal(t, []uint64{^uint64(0)}, seqs(entries(t, s, "y", 0, 0)))
	require.Empty(t, entries(t, s, "z", 0, 0))
	require.Equal(t, []string{"x", "xx"}, clientIDs(sessions(t, s)))
	require.Equal(t, map[string][]uint16{"x": {1, 2}, "xx": {1, 2}}, inbound(t, s))
}

// testDeleteSessionPrefixes deletes clients whose ids are prefixes of
// others', or extend others' with bytes that sort around them: each delete
// must take exactly one client's records.
func testDeleteSessionPrefixes(t *testing.T, open opener, _ reopener) {
	ids := []string{"", "a", "ab", "a\x00", "a\xff", "a\xff\xff", "b", "aa", "\xff", "\xff\xff"}
	for _, del := range ids {
		t.Run(quoteID(del), func(t *testing.T) {
			s := open(t)
			one(t, s, func(b *store.Batch) {
				for _, id := range ids {
					fillClient(b, id)
				}
			})
			one(t, s, func(b *store.Batch) { b.DeleteSession(del) })
			var want []string
			wantInbound := make(map[string][]uint16)
			for _, id := range ids {
				if id == del {
					require.Empty(t, entries(t, s, id, 0, 0), "entries of deleted %q", id)
					continue
				}
				want = append(want, id)
				wantInbound[id] = []uint16{1, 2}
				require.Equal(t, []uint64{1, 2, 3}, seqs(entries(t, s, id, 0, 0)), "entries of %q", id)
			}
			require.ElementsMatch(t, want, clientIDs(sessions(t, s)))
			require.Equal(t, wantInbound, inbound(t, s))
		})
	}
}

func quoteID(id string) string {
	if id == "" {
		return "empty"
	}
	q := ""
	for _, c := range []byte(id) {
		if c >= 'a' && c <= 'z' {
			q += string(rune(c))
		} else {
			q += "x" + string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])
		}
	}
	return q
}

// testBatchOrder checks operations on one key apply in batch order.
func testBatchOrder(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) { fillClient(b, "c") })
	one(t, s, func(b *store.Batch) {
		// Deleted, then written again: the new records stay.
		b.DeleteSession("c")
		ss := sampleSession("c")
		ss.Username = "again"
		b.PutSession(&ss)
		e := sampleEntry(50)
		b.PutEntry("c", &e)
		b.PutInbound("c", 9)
		// Written, then deleted: gone.
		fillClient(b, "d")
		b.DeleteSession("d")
		e = sampleEntry(1)
		b.PutEntry("e", &e)
		b.DeleteEntry("e", 1)
		b.PutInbound("e", 1)
		b.DeleteInbound("e", 1)
		m := sampleMessage("r", 1)
		b.PutRetained(&m)
		b.DeleteRetained([]byte("r"))
		m2 := sampleMessage("r2", 2)
		b.DeleteRetained([]byte("r2"))
		b.PutRetained(&m2)
		b.PutMeta("k", []byte("1"))
		b.PutMeta("k", []byte("2"))
	})
	ss := sessions(t, s)
	require.Equal(t, []string{"c"}, clientIDs(ss))
	require.Equal(t, "again", ss[0].Username)
	require.Equal(t, []uint64{50}, seqs(entries(t, s, "c", 0, 0)))
	require.Empty(t, entries(t, s, "d", 0, 0))
	require.Empty(t, entries(t, s, "e", 0, 0))
	require.Equal(t, map[string][]uint16{"c": {9}}, inbound(t, s))
	rs := retained(t, s)
	require.Len(t, rs, 1)
	require.Equal(t, "r2", string(rs[0].Topic))
	require.Equal(t, []byte("2"), meta(t, s, "k"))
}
