package storetest

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/store"
)

// Tests of Commit: batches, done, concurrency, Close, restarts.

// testBatchReuse commits a batch, resets it after done and fills it with
// other data: what the first commit stored must not change (the store may
// not keep pointers into a batch past its done).
func testBatchReuse(t *testing.T, open opener, _ reopener) {
	s := open(t)
	var b store.Batch
	for round := 0; round < 3; round++ {
		b.Reset()
		for i := 0; i < 50; i++ {
			e := sampleEntry(uint64(round*100 + i))
			b.PutEntry("c", &e)
		}
		m := sampleMessage("topic", round)
		b.PutRetained(&m)
		b.PutMeta("round", []byte(strconv.Itoa(round)))
		commit(t, s, &b)
	}
	// Overwrite the arena once more without committing.
	b.Reset()
	junk := make([]byte, 1000)
	for i := range junk {
		junk[i] = 0xEE
	}
	for i := 0; i < 100; i++ {
		b.PutMeta("junk", junk)
	}
	got := entries(t, s, "c", 0, 0)
	require.Len(t, got, 150)
	for _, e := range got {
		require.Equal(t, normEntry(sampleEntry(e.Seq)), e)
	}
	rs := retained(t, s)
	require.Equal(t, []store.Message{normMessage(sampleMessage("topic", 2))}, rs)
	require.Equal(t, []byte("2"), meta(t, s, "round"))
}

func testEmptyBatch(t *testing.T, open opener, _ reopener) {
	s := open(t)
	var b store.Batch
	commit(t, s, &b)
	require.Empty(t, sessions(t, s))
}

func testReadCallbackError(t *testing.T, open opener, _ reopener) {
	s := open(t)
	one(t, s, func(b *store.Batch) {
		fillClient(b, "a")
		fillClient(b, "b")
		m := sampleMessage("t", 1)
		b.PutRetained(&m)
	})
	stop := errors.New("stop")
	n := 0
	require.ErrorIs(t, s.Sessions(func(*store.Session) error { n++; return stop }), stop)
	require.Equal(t, 1, n)
	require.ErrorIs(t, s.Inbound(func(string, uint16) error { return stop }), stop)
	require.ErrorIs(t, s.Retained(func(*store.Message) error { return stop }), stop)
}

// testConcurrent commits from several goroutines at once, some waiting for
// each done before the next commit and some keeping many batches in
// flight: every batch is applied and every done called exactly once.
func testConcurrent(t *testing.T, open opener, _ reopener) {
	s := open(t)
	const goroutines, perG = 8, 200
	dc := newDoneCounter(goroutines * perG)
	errs := make([]error, goroutines*perG)
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("client-%d", g)
			wait := g%2 == 0
			doneCh := make(chan int, perG)
			batches := make([]store.Batch, perG)
			for i := 0; i < perG; i++ {
				b := &batches[i]
				e := sampleEntry(uint64(i))
				b.PutEntry(id, &e)
				if i%10 == 0 {
					b.PutInbound(id, uint16(i))
				}
				if i == 0 {
					ss := sampleSession(id)
					b.PutSession(&ss)
				}
				s.Commit(b, dc.done(g*perG+i, errs, doneCh))
				if wait {
					<-doneCh
				}
			}
			if !wait {
				for i := 0; i < perG; i++ {
					<-doneCh
				}
			}
		}()
	}
	waitGroup(t, &wg)
	dc.requireOnce(t)
	for i, err := range errs {
		require.NoError(t, err, "commit %d", i)
	}
	require.Len(t, sessions(t, s), goroutines)
	in := inbound(t, s)
	for g := 0; g < goroutines; g++ {
		id := fmt.Sprintf("client-%d", g)
		require.Len(t, entries(t, s, id, 0, 0), perG, id)
		require.Len(t, in[id], perG/10, id)
	}
}

func waitGroup(t *testing.T, wg *sync.WaitGroup) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(commitTimeout):
		t.Fatal("commits did not finish")
	}
}

// testCommitOrder commits batches that overwrite one another from one
// goroutine without waiting: they apply in commit order and their dones
// come in commit order.
func testCommitOrder(t *testing.T, open opener, _ reopener) {
	s := open(t)
	const n = 500
	batches := make([]store.Batch, n)
	order := make(chan int, n)
	dc := newDoneCounter(n)
	for i := range batches {
		batches[i].PutMeta("k", []byte(strconv.Itoa(i)))
		if i%2 == 0 {
			e := sampleEntry(1)
			batches[i].PutEntry("c", &e)
		} else {
			batches[i].DeleteEntry("c", 1)
		}
		s.Commit(&batches[i], dc.done(i, nil, order))
	}
	for i := 0; i < n; i++ {
		select {
		case got := <-order:
			require.Equal(t, i, got, "dones out of commit order")
		case <-time.After(commitTimeout):
			t.Fatal("done not called")
		}
	}
	dc.requireOnce(t)
	require.Equal(t, []byte(strconv.Itoa(n-1)), meta(t, s, "k"))
	require.Empty(t, entries(t, s, "c", 0, 0))
}

func testStats(t *testing.T, open opener, _ reopener) {
	s := open(t)
	before := s.Stats()
	one(t, s, func(b *store.Batch) { fillClient(b, "a") }) // 6 operations
	one(t, s, func(b *store.Batch) { b.DeleteSession("a") })
	st := s.Stats()
	require.Equal(t, before.Commits+2, st.Commits)
	require.Equal(t, before.Records+7, st.Records)
	require.Greater(t, st.CommitNanos, before.CommitNanos)
	require.Zero(t, st.Skipped)
}

// testCloseWaits commits batches without waiting and closes (or reopens)
// the store at once: Close returns only after every done was called, and
// with no error.
func testCloseWaits(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	const n = 300
	batches := make([]store.Batch, n)
	dc := newDoneCounter(n)
	errs := make([]error, n)
	for i := range batches {
		e := sampleEntry(uint64(i))
		batches[i].PutEntry("c", &e)
		s.Commit(&batches[i], dc.done(i, errs, nil))
	}
	if reopen == nil {
		require.NoError(t, s.Close())
	} else {
		s = reopen(t, s)
	}
	dc.requireOnce(t)
	for i, err := range errs {
		require.NoError(t, err, "commit %d", i)
	}
	if reopen != nil {
		require.Len(t, entries(t, s, "c", 0, 0), n)
	}
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "second Close")
}

// testCommitAfterClose: a commit after Close is refused through done, not
// with a panic.
func testCommitAfterClose(t *testing.T, open opener, _ reopener) {
	s := open(t)
	require.NoError(t, s.Close())
	var b store.Batch
	b.PutMeta("k", []byte("v"))
	require.ErrorIs(t, commitErr(t, s, &b), store.ErrClosed)
}

// fillAll writes every record kind.
func fillAll(t *testing.T, s store.Store) {
	one(t, s, func(b *store.Batch) {
		fillClient(b, "a")
		fillClient(b, "b")
		m := sampleMessage("r/1", 1)
		b.PutRetained(&m)
		m = sampleMessage("r/2", 2)
		b.PutRetained(&m)
		b.PutMeta("seq", []byte{1, 2, 3})
		b.PutMeta("empty", []byte{})
	})
}

// snapshot is everything a store holds, as the conformance tests read it.
type snapshot struct {
	Sessions []store.Session
	Entries  map[string][]store.Entry
	Inbound  map[string][]uint16
	Retained []store.Message
	Meta     map[string][]byte
}

func take(t *testing.T, s store.Store, metaKeys ...string) snapshot {
	t.Helper()
	sn := snapshot{
		Sessions: sessions(t, s),
		Entries:  make(map[string][]store.Entry),
		Inbound:  inbound(t, s),
		Retained: retained(t, s),
		Meta:     make(map[string][]byte),
	}
	for _, ss := range sn.Sessions {
		sn.Entries[ss.ClientID] = entries(t, s, ss.ClientID, 0, 0)
	}
	for _, k := range metaKeys {
		sn.Meta[k] = meta(t, s, k)
	}
	return sn
}

func testDurable(t *testing.T, open opener, reopen reopener) {
	if reopen == nil {
		t.Skip("store does not outlive its process")
	}
	s := open(t)
	fillAll(t, s)
	before := take(t, s, "seq", "empty", "missing")
	require.Len(t, before.Sessions, 2)
	s = reopen(t, s)
	after := take(t, s, "seq", "empty", "missing")
	require.Equal(t, before, after)
	require.NotNil(t, after.Meta["empty"])
	// And once more, after writing to the reopened store.
	one(t, s, func(b *store.Batch) { fillClient(b, "c") })
	before = take(t, s, "seq")
	s = reopen(t, s)
	require.Equal(t, before, take(t, s, "seq"))
}

func testDeletesDurable(t *testing.T, open opener, reopen reopener) {
	if reopen == nil {
		t.Skip("store does not outlive its process")
	}
	s := open(t)
	fillAll(t, s)
	one(t, s, func(b *store.Batch) {
		b.DeleteSession("a")
		b.DeleteEntry("b", 2)
		b.DeleteInbound("b", 1)
		b.DeleteRetained([]byte("r/1"))
	})
	before := take(t, s, "seq")
	s = reopen(t, s)
	after := take(t, s, "seq")
	require.Equal(t, before, after)
	require.Equal(t, []string{"b"}, clientIDs(after.Sessions))
	require.Equal(t, []uint64{1, 3}, seqs(after.Entries["b"]))
	require.Empty(t, entries(t, s, "a", 0, 0))
	require.Equal(t, map[string][]uint16{"b": {2}}, after.Inbound)
	require.Len(t, after.Retained, 1)
}

// testDeletePutOnce: entries deleted with DeleteEntryPutOnce are gone, in
// the batch of their put or a later one, across enough writes that an
// on-disk store flushes and compacts them, and across a reopen; the
// others stay.
func testDeletePutOnce(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	payload := make([]byte, 1024)
	const n = 12000 // about 12 MiB of entries: several memtables
	for base := uint64(1); base <= n; base += 500 {
		one(t, s, func(b *store.Batch) {
			for seq := base; seq < base+500; seq++ {
				e := store.Entry{Seq: seq, State: store.EntryQueued, QoS: 1,
					Msg: store.Message{Topic: []byte("t"), Payload: payload, QoS: 1}}
				b.PutEntry("once", &e)
				if seq%3 == 0 {
					b.DeleteEntryPutOnce("once", seq) // in the put's batch
				}
			}
			for seq := base; seq < base+500 && base > 500; seq++ {
				if (seq-500)%3 == 1 {
					b.DeleteEntryPutOnce("once", seq-500) // a batch later
				}
			}
		})
	}
	want := func() []uint64 {
		var w []uint64
		for seq := uint64(1); seq <= n; seq++ {
			if seq%3 != 0 && (seq%3 != 1 || seq > n-500) {
				w = append(w, seq)
			}
		}
		return w
	}()
	require.Equal(t, want, seqs(entries(t, s, "once", 0, 0)))
	if reopen != nil {
		s = reopen(t, s)
		require.Equal(t, want, seqs(entries(t, s, "once", 0, 0)))
	}
}

// testCancelPutEntry: a put taken back before its batch is committed
// (CancelPutEntry) is never stored, and the batch's other operations are;
// CancelPutEntry takes back only the PutEntry it names.
func testCancelPutEntry(t *testing.T, open opener, reopen reopener) {
	s := open(t)
	var b store.Batch
	for seq := uint64(1); seq <= 3; seq++ {
		e := store.Entry{Seq: seq, State: store.EntryQueued, QoS: 1,
			Msg: store.Message{Topic: []byte("t"), Payload: []byte("p"), QoS: 1}}
		b.PutEntry("c", &e)
	}
	b.PutInbound("c", 9)
	require.False(t, b.CancelPutEntry(1, "c", 1), "operation 1 is seq 2")
	require.False(t, b.CancelPutEntry(1, "other", 2), "another client's")
	require.False(t, b.CancelPutEntry(3, "c", 0), "not a PutEntry")
	require.False(t, b.CancelPutEntry(4, "c", 2), "out of range")
	require.True(t, b.CancelPutEntry(1, "c", 2))
	require.False(t, b.CancelPutEntry(1, "c", 2), "taken back already")
	require.Equal(t, 3, b.Len())
	commit(t, s, &b)
	require.Equal(t, []uint64{1, 3}, seqs(entries(t, s, "c", 0, 0)))
	if reopen != nil {
		s = reopen(t, s)
		require.Equal(t, []uint64{1, 3}, seqs(entries(t, s, "c", 0, 0)))
	}
	require.Equal(t, map[string][]uint16{"c": {9}}, inbound(t, s))
	b.Reset()
	require.Equal(t, 0, b.Len())
}
