package storetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// onceEntry is a QoS 1 entry of seq for PutEntryOnce.
func onceEntry(seq uint64) *store.Entry {
	return &store.Entry{Seq: seq, State: store.EntryQueued, QoS: 1,
		Msg: store.Message{Topic: []byte("t"), Payload: []byte{byte(seq)}, QoS: 1}}
}

// testPutEntryOnce: entries put with PutEntryOnce read back like any other,
// in Seq order among a client's other entries and those of other batches
// (an on-disk store may keep those of one commit in one record); deletes
// one by one, DeleteEntriesTo, DeleteSession and deletes in the put's own
// batch take exactly what they name, and all of it holds across a reopen.
func testPutEntryOnce(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		b.PutEntry("a", onceEntry(5))
		for _, seq := range []uint64{12, 10, 14} {
			b.PutEntryOnce("a", onceEntry(seq))
		}
		b.PutEntryOnce("b", onceEntry(11))
		b.PutEntryOnce("b", onceEntry(13))
		b.PutEntryOnce("c", onceEntry(15))
	})
	one(t, s, func(b *store.Batch) {
		b.PutEntryOnce("a", onceEntry(11))
		b.PutEntryOnce("a", onceEntry(13))
		b.PutEntry("a", onceEntry(16))
	})
	require.Equal(t, []uint64{5, 10, 11, 12, 13, 14, 16}, seqs(entries(t, s, "a", 0, 0)))
	for _, e := range entries(t, s, "a", 0, 0) {
		require.Equal(t, []byte{byte(e.Seq)}, e.Msg.Payload, "entry %d", e.Seq)
		require.Equal(t, byte(1), e.QoS)
	}

	one(t, s, func(b *store.Batch) { b.DeleteEntryPutOnce("a", 12) })
	require.Equal(t, []uint64{5, 10, 11, 13, 14, 16}, seqs(entries(t, s, "a", 0, 0)))
	require.Equal(t, []uint64{11, 13}, seqs(entries(t, s, "a", 11, 2)))
	require.Equal(t, []uint64{13, 14, 16}, seqs(entries(t, s, "a", 12, 0)))

	one(t, s, func(b *store.Batch) {
		b.DeleteEntryPutOnce("a", 10)
		b.DeleteEntryPutOnce("a", 14) // the first batch's three are gone
	})
	require.Equal(t, []uint64{5, 11, 13, 16}, seqs(entries(t, s, "a", 0, 0)))

	one(t, s, func(b *store.Batch) { b.DeleteEntriesTo("a", 11) })
	require.Equal(t, []uint64{13, 16}, seqs(entries(t, s, "a", 0, 0)))

	one(t, s, func(b *store.Batch) {
		b.PutEntryOnce("d", onceEntry(30))
		b.PutEntryOnce("d", onceEntry(31))
		b.PutEntryOnce("d", onceEntry(32))
		b.DeleteEntryPutOnce("d", 30) // in its put's batch
		b.PutEntryOnce("e", onceEntry(40))
		b.PutEntryOnce("e", onceEntry(41))
		b.DeleteSession("e") // after its puts: they go
		b.PutEntryOnce("e", onceEntry(42))
		b.PutEntryOnce("e", onceEntry(43))
	})
	one(t, s, func(b *store.Batch) { b.DeleteSession("b") })
	check := func(s store.Store) {
		require.Equal(t, []uint64{13, 16}, seqs(entries(t, s, "a", 0, 0)))
		require.Empty(t, entries(t, s, "b", 0, 0))
		require.Equal(t, []uint64{15}, seqs(entries(t, s, "c", 0, 0)))
		require.Equal(t, []uint64{31, 32}, seqs(entries(t, s, "d", 0, 0)))
		require.Equal(t, []uint64{42, 43}, seqs(entries(t, s, "e", 0, 0)))
	}
	check(s)
	if reopen != nil {
		s = reopen(t, s)
		check(s)
		one(t, s, func(b *store.Batch) { b.DeleteEntryPutOnce("e", 42) })
		s = reopen(t, s)
		require.Equal(t, []uint64{43}, seqs(entries(t, s, "e", 0, 0)))
	}
}

// testPutEntryOnceMany is testDeletePutOnce with PutEntryOnce: grouped
// entries deleted in their batch or a later one, over several memtables.
func testPutEntryOnceMany(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	payload := make([]byte, 1024)
	const n = 12000
	for base := uint64(1); base <= n; base += 500 {
		one(t, s, func(b *store.Batch) {
			for seq := base; seq < base+500; seq++ {
				b.PutEntryOnce("once", &store.Entry{Seq: seq, State: store.EntryQueued, QoS: 1,
					Msg: store.Message{Topic: []byte("t"), Payload: payload, QoS: 1}})
				if seq%3 == 0 {
					b.DeleteEntryPutOnce("once", seq)
				}
			}
			for seq := base; seq < base+500 && base > 500; seq++ {
				if (seq-500)%3 == 1 {
					b.DeleteEntryPutOnce("once", seq-500)
				}
			}
		})
	}
	var want []uint64
	for seq := uint64(1); seq <= n; seq++ {
		if seq%3 != 0 && (seq%3 != 1 || seq > n-500) {
			want = append(want, seq)
		}
	}
	require.Equal(t, want, seqs(entries(t, s, "once", 0, 0)))
	if reopen != nil {
		s = reopen(t, s)
		require.Equal(t, want, seqs(entries(t, s, "once", 0, 0)))
	}
}

// sharedEntry is client i's entry of the message seq, which every client
// putting seq shares (PutEntryOnce); what is the client's own differs.
func sharedEntry(seq uint64, i int) *store.Entry {
	e := &store.Entry{Seq: seq, State: store.EntryQueued, QoS: byte(i % 2), Retain: i%3 == 0, Shared: i%4 == 1,
		Msg: sampleMessage("shared/"+string(rune('a'+seq%26)), int(seq))}
	if i%2 == 1 {
		e.SubIDs = []uint32{uint32(i + 1)}
	}
	if i == 1 {
		e.Group = "$share/g/shared/+" // i 5: shared, group unknown
	}
	return e
}

// testPutEntryOnceShared: a message put once for several clients (the
// on-disk store writes it once for them all) reads back whole for each,
// with each client's own fields, and stays readable for the clients whose
// entries are left however many of the others' are deleted one by one,
// by DeleteEntriesTo or DeleteSession, or taken back; the same Seq put
// again in a later batch is not disturbed by deletes of the first ones.
func testPutEntryOnceShared(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	clients := []string{"c0", "c1", "c2", "c3", "c4"}
	one(t, s, func(b *store.Batch) {
		for seq := uint64(1); seq <= 4; seq++ {
			for i, id := range clients {
				if seq == 4 && i > 0 {
					break // c0 alone
				}
				b.PutEntryOnce(id, sharedEntry(seq, i))
			}
		}
		b.PutEntryOnce("solo", sharedEntry(9, 0))
		// c4's entry 3 is taken back before the commit.
		require.True(t, b.CancelPutEntry(14, "c4", 3))
	})
	want := func(s store.Store, id string, i int, seqList ...uint64) {
		t.Helper()
		got := entries(t, s, id, 0, 0)
		require.Equal(t, seqList, seqs(got), "client %s", id)
		for _, e := range got {
			w := sharedEntry(e.Seq, i)
			require.Equal(t, *w, e, "client %s entry %d", id, e.Seq)
		}
	}
	want(s, "c0", 0, 1, 2, 3, 4)
	want(s, "c4", 4, 1, 2)
	want(s, "solo", 0, 9)

	// Every other client's entry 1 goes one by one; c4's stays.
	for _, id := range clients[:4] {
		one(t, s, func(b *store.Batch) { b.DeleteEntryPutOnce(id, 1) })
	}
	want(s, "c4", 4, 1, 2)
	want(s, "c0", 0, 2, 3, 4)
	one(t, s, func(b *store.Batch) { b.DeleteEntriesTo("c1", 2) })
	one(t, s, func(b *store.Batch) { b.DeleteSession("c2") })
	want(s, "c1", 1, 3)
	require.Empty(t, entries(t, s, "c2", 0, 0))
	want(s, "c3", 3, 2, 3)

	// Seq 2 again, for a new client, in a later batch; then every first
	// put of it goes.
	one(t, s, func(b *store.Batch) {
		b.PutEntryOnce("late", sharedEntry(2, 5))
		b.PutEntryOnce("late2", sharedEntry(2, 6))
	})
	one(t, s, func(b *store.Batch) {
		for _, id := range []string{"c0", "c3", "c4"} {
			b.DeleteEntryPutOnce(id, 2)
		}
	})
	check := func(s store.Store) {
		want(s, "late", 5, 2)
		want(s, "late2", 6, 2)
		want(s, "c0", 0, 3, 4)
		want(s, "c1", 1, 3)
		want(s, "c3", 3, 3)
		want(s, "c4", 4, 1)
		want(s, "solo", 0, 9)
	}
	check(s)
	if reopen != nil {
		s = reopen(t, s)
		check(s)
		one(t, s, func(b *store.Batch) {
			b.DeleteEntryPutOnce("c0", 3)
			b.DeleteEntryPutOnce("c1", 3)
			b.DeleteEntryPutOnce("c4", 1)
		})
		s = reopen(t, s)
		want(s, "c0", 0, 4)
		want(s, "c3", 3, 3)
		require.Empty(t, entries(t, s, "c4", 0, 0))
		want(s, "late", 5, 2)
	}
}

// testEntryGroup: the shared subscription group of a shared entry reads
// back as it was put, in an entry put on its own, with others of its
// client in one commit, and sharing its message with other clients' entries
// (the on-disk store's entry records, group records and message records);
// a shared entry put without one reads back without one (not known), and
// a group is kept only with Shared, and only one an MQTT string can hold.
func testEntryGroup(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	const g1, g2 = "$share/g/a/+", "$share/g/+/b" // one name, two groups
	entry := func(seq uint64, shared bool, group string) *store.Entry {
		e := onceEntry(seq)
		e.Shared, e.Group = shared, group
		return e
	}
	one(t, s, func(b *store.Batch) {
		b.PutEntry("single", entry(1, true, g1))
		b.PutEntry("single", entry(2, true, ""))
		b.PutEntry("single", entry(3, false, g1))
		b.PutEntry("single", entry(4, true, "$share/g/"+strings.Repeat("x", 65536)))
		b.PutEntry("single", entry(5, true, "$share/g/"+strings.Repeat("x", 65535-len("$share/g/"))))
		for seq := uint64(10); seq < 14; seq++ { // one client's several
			b.PutEntryOnce("grouped", entry(seq, seq != 13, []string{g1, g2, ""}[seq%3]))
		}
		for seq, g := range map[uint64]string{20: g2, 21: g1} { // one message, several clients
			for _, id := range []string{"r0", "r1", "r2"} {
				b.PutEntryOnce(id, entry(seq, true, g))
			}
		}
		b.PutEntryOnce("r2", entry(22, true, ""))
	})
	check := func(s store.Store) {
		t.Helper()
		group := func(id string) []string {
			var gs []string
			for _, e := range entries(t, s, id, 0, 0) {
				require.Equal(t, []byte{byte(e.Seq)}, e.Msg.Payload, "client %s entry %d", id, e.Seq)
				gs = append(gs, fmt.Sprint(e.Shared, " ", e.Group))
			}
			return gs
		}
		require.Equal(t, []string{"true " + g1, "true ", "false ", "true ",
			"true $share/g/" + strings.Repeat("x", 65535-len("$share/g/"))}, group("single"))
		require.Equal(t, []string{"true " + g2, "true ", "true " + g1, "false "}, group("grouped"))
		for _, id := range []string{"r0", "r1"} {
			require.Equal(t, []string{"true " + g2, "true " + g1}, group(id), "client %s", id)
		}
		require.Equal(t, []string{"true " + g2, "true " + g1, "true "}, group("r2"))
	}
	check(s)
	if reopen != nil {
		s = reopen(t, s)
		check(s)
	}
}
