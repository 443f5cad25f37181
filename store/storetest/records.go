package storetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// Tests of each record kind: put, replace, delete, read back.

type opener = func(*testing.T) store.Store
type reopener = func(*testing.T, store.Store) store.Store

func testEmpty(t *testing.T, open opener, _ reopener) {
	s := open(t)
	require.Empty(t, sessions(t, s))
	require.Empty(t, entries(t, s, "nobody", 0, 0))
	require.Empty(t, inbound(t, s))
	require.Empty(t, retained(t, s))
	require.Nil(t, meta(t, s, "missing"))
}

func testSessions(t *testing.T, open opener, _ reopener) {
	s := open(t)
	a, b, c := sampleSession("b"), sampleSession("a"), sampleSession("c\x00\xff")
	c.Will, c.Subs, c.Username = nil, nil, ""
	one(t, s, func(bt *store.Batch) {
		bt.PutSession(&a)
		bt.PutSession(&b)
		bt.PutSession(&c)
	})
	// Read back in client id order, with every field.
	require.Equal(t, []store.Session{normSession(b), normSession(a), normSession(c)}, sessions(t, s))

	// Replacing keeps one session per client id.
	a2 := a
	a2.Subs = a.Subs[:1]
	a2.Will = nil
	a2.DisconnectedAt = 99
	one(t, s, func(bt *store.Batch) { bt.PutSession(&a2) })
	require.Equal(t, []store.Session{normSession(b), normSession(a2), normSession(c)}, sessions(t, s))

	one(t, s, func(bt *store.Batch) { bt.DeleteSession("a") })
	require.Equal(t, []store.Session{normSession(a2), normSession(c)}, sessions(t, s))
}

func testEntries(t *testing.T, open opener, _ reopener) {
	s := open(t)
	// Put out of order, over two batches; they read back in Seq order,
	// including Seqs whose bytes differ only in high bytes.
	order := []uint64{5, 1, 1 << 40, 3, 256, 2, 0, ^uint64(0)}
	one(t, s, func(b *store.Batch) {
		for _, seq := range order[:4] {
			e := sampleEntry(seq)
			b.PutEntry("c", &e)
		}
	})
	one(t, s, func(b *store.Batch) {
		for _, seq := range order[4:] {
			e := sampleEntry(seq)
			b.PutEntry("c", &e)
		}
		e := sampleEntry(4)
		b.PutEntry("other", &e)
	})
	want := []store.Entry{}
	for _, seq := range []uint64{0, 1, 2, 3, 5, 256, 1 << 40, ^uint64(0)} {
		want = append(want, normEntry(sampleEntry(seq)))
	}
	require.Equal(t, want, entries(t, s, "c", 0, 0))
	require.Equal(t, []uint64{4}, seqs(entries(t, s, "other", 0, 0)))
	require.Empty(t, entries(t, s, "", 0, 0))

	// An entry in EntryAwaitComp has an empty message.
	comp := store.Entry{Seq: 3, State: store.EntryAwaitComp, PacketID: 9, QoS: 2}
	one(t, s, func(b *store.Batch) {
		b.PutEntry("c", &comp)
		b.DeleteEntry("c", 5)
		b.DeleteEntry("c", 12345) // not there: no effect
	})
	got := entries(t, s, "c", 3, 1)
	require.Equal(t, []store.Entry{normEntry(comp)}, got)
	require.Equal(t, []uint64{0, 1, 2, 3, 256, 1 << 40, ^uint64(0)}, seqs(entries(t, s, "c", 0, 0)))

	// fn returning false stops the read.
	var n int
	require.NoError(t, s.Entries("c", 0, 0, func(*store.Entry) bool { n++; return n < 2 }))
	require.Equal(t, 2, n)
}

func testEntriesFromMax(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		for seq := uint64(10); seq < 20; seq++ {
			e := sampleEntry(seq)
			b.PutEntry("c", &e)
		}
	})
	f := func(from uint64, max int, want ...uint64) {
		t.Helper()
		got := seqs(entries(t, s, "c", from, max))
		if len(want) == 0 {
			require.Empty(t, got, "from %d max %d", from, max)
			return
		}
		require.Equal(t, want, got, "from %d max %d", from, max)
	}
	f(0, 0, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)
	f(0, -1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19)
	f(0, 3, 10, 11, 12)
	f(15, 0, 15, 16, 17, 18, 19)
	f(15, 2, 15, 16)
	f(19, 5, 19)
	f(20, 0)
	f(^uint64(0), 0)
	f(12, 1, 12)
}

func testEntryReplace(t *testing.T, open opener, _ reopener) {
	s := open(t)
	e := sampleEntry(7)
	one(t, s, func(b *store.Batch) { b.PutEntry("c", &e) })
	// The engine's life of an entry: queued, sent, PUBREC'd.
	e2 := e
	e2.State, e2.PacketID = store.EntryAwaitRec, 77
	one(t, s, func(b *store.Batch) { b.PutEntry("c", &e2) })
	require.Equal(t, []store.Entry{normEntry(e2)}, entries(t, s, "c", 0, 0))
	e3 := store.Entry{Seq: 7, State: store.EntryAwaitComp, PacketID: 77, QoS: 2}
	one(t, s, func(b *store.Batch) {
		b.PutEntry("c", &e)
		b.PutEntry("c", &e3) // the last in a batch wins
	})
	require.Equal(t, []store.Entry{normEntry(e3)}, entries(t, s, "c", 0, 0))
}

func testInbound(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		b.PutInbound("b", 65535)
		b.PutInbound("b", 1)
		b.PutInbound("a", 1)
		b.PutInbound("a", 1) // again: still once
		b.PutInbound("ab", 300)
		b.PutInbound("", 2)
	})
	require.Equal(t, map[string][]uint16{"a": {1}, "ab": {300}, "b": {1, 65535}, "": {2}}, inbound(t, s))
	one(t, s, func(b *store.Batch) {
		b.DeleteInbound("b", 1)
		b.DeleteInbound("a", 2) // not there
		b.DeleteInbound("ab", 300)
	})
	require.Equal(t, map[string][]uint16{"a": {1}, "b": {65535}, "": {2}}, inbound(t, s))
}

func testRetained(t *testing.T, open opener, _ reopener) {
	s := open(t)
	m1, m2, m3 := sampleMessage("b/c", 1), sampleMessage("a", 2), sampleMessage("b", 3)
	m3.Props, m3.From, m3.Expiry = nil, "", 0
	one(t, s, func(b *store.Batch) {
		b.PutRetained(&m1)
		b.PutRetained(&m2)
		b.PutRetained(&m3)
	})
	require.Equal(t, []store.Message{normMessage(m2), normMessage(m3), normMessage(m1)}, retained(t, s))

	m1b := sampleMessage("b/c", 10)
	one(t, s, func(b *store.Batch) {
		b.PutRetained(&m1b)
		b.DeleteRetained([]byte("a"))
		b.DeleteRetained([]byte("nothing"))
	})
	require.Equal(t, []store.Message{normMessage(m3), normMessage(m1b)}, retained(t, s))
}

func testMeta(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		b.PutMeta("seq", []byte{0, 0, 0, 0, 0, 0, 1, 0})
		b.PutMeta("empty", []byte{})
		b.PutMeta("", []byte("empty key"))
	})
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 1, 0}, meta(t, s, "seq"))
	v := meta(t, s, "empty")
	require.NotNil(t, v, "an empty value is not a missing one")
	require.Empty(t, v)
	require.Equal(t, []byte("empty key"), meta(t, s, ""))
	require.Nil(t, meta(t, s, "se"))

	// The value returned is the caller's to keep and change.
	v = meta(t, s, "seq")
	v[0] = 0xFF
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 1, 0}, meta(t, s, "seq"))

	one(t, s, func(b *store.Batch) { b.PutMeta("seq", []byte("later")) })
	require.Equal(t, []byte("later"), meta(t, s, "seq"))
}
