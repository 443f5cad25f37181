// Package storetest is the conformance suite every store.Store passes: Run
// it from the implementation's tests. It imports only store and testify,
// and opens its own stores through the functions it is given, one or more
// per subtest; subtests do not run in parallel.
package storetest

import (
	"fmt"
	"testing"

	"github.com/loopmq/loopmq/store"
)

// Run runs the conformance suite. open returns a new, empty store. reopen
// closes old (checking the error) and opens the same store again, as after
// a restart; nil for a store that does not outlive its process, which skips
// the durability tests. The suite may call Close more than once on a store
// (the second call must return nil).
func Run(t *testing.T, open func(t *testing.T) store.Store, reopen func(t *testing.T, old store.Store) store.Store) {
	o := func(t *testing.T) store.Store {
		s := open(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	r := func(t *testing.T, old store.Store) store.Store {
		s := reopen(t, old)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	if reopen == nil {
		r = nil
	}
	cases := []struct {
		name string
		run  func(t *testing.T, open func(*testing.T) store.Store, reopen func(*testing.T, store.Store) store.Store)
	}{
		{"Empty", testEmpty},
		{"Sessions", testSessions},
		{"Entries", testEntries},
		{"EntriesFromMax", testEntriesFromMax},
		{"EntryReplaceSameSeq", testEntryReplace},
		{"Inbound", testInbound},
		{"Retained", testRetained},
		{"Meta", testMeta},
		{"DeleteSession", testDeleteSession},
		{"DeleteSessionPrefixClientIDs", testDeleteSessionPrefixes},
		{"DeleteEntriesTo", testDeleteEntriesTo},
		{"BatchAppliesInOrder", testBatchOrder},
		{"BatchReuseAfterDone", testBatchReuse},
		{"EmptyBatch", testEmptyBatch},
		{"ReadCallbackError", testReadCallbackError},
		{"ConcurrentCommits", testConcurrent},
		{"CommitOrderOneGoroutine", testCommitOrder},
		{"Stats", testStats},
		{"CloseWaitsForCommits", testCloseWaits},
		{"CommitAfterClose", testCommitAfterClose},
		{"DurableAcrossReopen", testDurable},
		{"DeletesDurableAcrossReopen", testDeletesDurable},
		{"DeleteEntryPutOnce", testDeletePutOnce},
		{"CancelPutEntry", testCancelPutEntry},
		{"PutEntryOnce", testPutEntryOnce},
		{"PutEntryOnceMany", testPutEntryOnceMany},
		{"PutEntryOnceShared", testPutEntryOnceShared},
		{"EntryGroup", testEntryGroup},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, o, r) })
	}
}

// Sample records: every field set to something other than its zero value,
// so a field an encoder forgets shows.

func sampleMessage(topic string, i int) store.Message {
	return store.Message{
		Topic:   []byte(topic),
		Payload: []byte(fmt.Sprintf("payload %d \x00\xff", i)),
		Props:   []byte{0x01, 0x01, 0x03, 0x00, 0x04, 't', 'e', 'x', 't'},
		QoS:     byte(1 + i%2),
		Retain:  i%2 == 0,
		Expiry:  1_700_000_000_000_000_000 + int64(i),
		From:    fmt.Sprintf("publisher-%d", i),
	}
}

func sampleSession(id string) store.Session {
	return store.Session{
		ClientID:       id,
		Version:        5,
		Expiry:         0xFFFFFFFF,
		DisconnectedAt: -1_234_567,
		Subs: []store.Subscription{
			{Filter: "a/+/c", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 2, SubID: 268435455},
			{Filter: "$share/g/x/#", QoS: 1, SubID: 7},
			{Filter: "plain"},
		},
		Will:     &store.Will{Msg: sampleMessage("will/"+id, 3), Delay: 42, MessageExpiry: 60, HasExpiry: true},
		Username: "user of " + id,
		SentTo:   1 << 40,
		SentIDs:  []store.SentID{{Seq: 1 << 40, PacketID: 65535}, {Seq: 5, PacketID: 1}},
	}
}

// sampleEntry's Group is set on half its shared entries; the others are
// shared with the group unknown.
func sampleEntry(seq uint64) store.Entry {
	e := store.Entry{
		Seq:      seq,
		State:    byte(seq % 4),
		PacketID: uint16(seq*7 + 1),
		QoS:      byte(seq % 3),
		Retain:   seq%2 == 1,
		Shared:   seq%3 == 1,
		SubIDs:   []uint32{uint32(seq), 268435455},
		Msg:      sampleMessage(fmt.Sprintf("t/%d", seq), int(seq)),
	}
	if e.Shared && seq%2 == 1 {
		e.Group = fmt.Sprintf("$share/g%d/t/+", seq)
	}
	return e
}
