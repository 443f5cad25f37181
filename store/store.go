// Package store holds the broker's durable state behind a small interface:
// persistent sessions with their subscriptions and wills, the QoS 1/2
// messages owed to them (queued or in flight), the QoS 2 packet
// identifiers received and not yet released, and retained messages.
//
// The engine never waits on the store on its event loops: it collects the
// changes of one loop round in a Batch and hands it to Commit, which applies
// batches in the order they are committed from one goroutine and calls done
// once the batch is durable under the store's SyncPolicy (group commit: many
// batches share one fsync). Reads (Sessions, Entries, Retained, Inbound,
// Meta) are for recovery at start and for reading spilled offline queues
// back; they see every batch whose done has been called.
//
// Implementations: Memory (tests, persistence off) and Pebble (the on-disk
// default, github.com/cockroachdb/pebble/v2). Both pass the conformance
// suite in storetest. The package imports no other loopmq package.
//
// The on-disk store's files: keys.go (key layout), codec.go (value
// encoding), pebble.go (open, close, stats), pebble_commit.go (the commit
// pipeline and its goroutines), groups.go (entries put once, written
// several to a record, and the message records they share), walsync.go
// (how the log reaches the disk under each SyncPolicy), pebble_read.go
// (reads), recover.go (OpenPebbleRecovering), check.go (Check).
package store

import "errors"

// Store is durable broker state. Implementations are safe for concurrent
// use by any number of goroutines.
type Store interface {
	// Commit applies b atomically and calls done (exactly once, on a
	// goroutine of the store's; it must not block, nor call Commit) when b
	// is durable under the sync policy, or with the error that lost it. Batches committed
	// from one goroutine are applied in that order. b belongs to the store
	// until done is called; the caller may Reset and reuse it afterwards.
	Commit(b *Batch, done func(error))

	// Sessions calls fn for every stored session, in client id order. The
	// Session and everything it points to are valid only during the call.
	Sessions(fn func(*Session) error) error
	// Entries calls fn for clientID's entries with Seq >= from, in Seq
	// order, until fn returns false or max entries were passed (max <= 0:
	// no limit). The Entry is valid only during the call.
	Entries(clientID string, from uint64, max int, fn func(*Entry) bool) error
	// Inbound calls fn for every stored QoS 2 packet identifier received
	// and not yet released, per client.
	Inbound(fn func(clientID string, packetID uint16) error) error
	// Retained calls fn for every retained message, in topic order. The
	// Message is valid only during the call.
	Retained(fn func(*Message) error) error
	// Meta returns the value stored under key by Batch.PutMeta, nil if none.
	Meta(key string) ([]byte, error)

	// Stats reports counters and disk usage.
	Stats() Stats
	// Close flushes and syncs what was committed and releases the store.
	// Commit must not be called after Close.
	Close() error
}

// SyncPolicy says when a committed batch counts as durable.
type SyncPolicy uint8

const (
	// SyncAlways: done is called after the batch reached the disk (fsync);
	// concurrent batches share one fsync (group commit). Nothing whose done
	// was called is lost on power failure.
	SyncAlways SyncPolicy = iota
	// SyncInterval: done is called once the batch is written to the
	// operating system; the log is synced every Options.SyncInterval. A
	// power failure loses at most the last interval; a crash of the broker
	// process alone loses nothing.
	SyncInterval
	// SyncNone: done is called once written to the operating system, which
	// decides when it reaches the disk. A process crash loses nothing; a
	// power failure loses what the kernel had not written (typically up to
	// 30 s).
	SyncNone
)

// ParseSyncPolicy parses "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, errors.New("store: sync policy must be always, interval or none, not " + s)
}

func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return "unknown"
}

// Stats are a store's counters since it was opened.
type Stats struct {
	Commits   uint64 // batches committed
	Syncs     uint64 // fsyncs of the log
	Records   uint64 // records written (puts and deletes)
	DiskBytes uint64 // bytes the store occupies on disk (0 for Memory)
	// CommitNanos is the total time from Commit to done, over Commits.
	CommitNanos uint64
	// CommitWaits counts Commit calls that found the store's queue of
	// pending batches full and waited for room; CommitWaitNanos is the
	// total time they waited. Both stay 0 while the store keeps up.
	CommitWaits     uint64
	CommitWaitNanos uint64
	// Skipped counts records that reads passed over because they could not
	// be decoded (always 0 for Memory).
	Skipped uint64
}

// Message is an application message as stored: everything needed to
// deliver it again after a restart.
type Message struct {
	Topic   []byte
	Payload []byte
	// Props are the 5.0 properties forwarded to recipients, in the
	// codec.Publish.RawProperties form; nil for none.
	Props  []byte
	QoS    byte // QoS it was published with
	Retain bool
	// Expiry is when the message expires, Unix nanoseconds; 0 never.
	Expiry int64
	// From is the publisher's client identifier (5.0 No Local).
	From string
}

// Entry states: where a message owed to a session stands.
const (
	EntryQueued    byte = iota // not sent yet
	EntryAwaitAck              // QoS 1 sent with PacketID, awaiting PUBACK
	EntryAwaitRec              // QoS 2 sent with PacketID, awaiting PUBREC
	EntryAwaitComp             // PUBREL sent for PacketID, awaiting PUBCOMP; Msg is empty
)

// Entry is one message owed to a persistent session.
type Entry struct {
	// Seq orders a session's entries (the engine's message sequence) and
	// identifies the entry within its session.
	Seq      uint64
	State    byte
	PacketID uint16 // 0 while EntryQueued
	QoS      byte   // QoS it is delivered with
	Retain   bool   // retain flag it is delivered with
	Shared   bool   // it came through a shared subscription
	SubIDs   []uint32
	Msg      Message
	// Group is the shared subscription group it came through, as the
	// group's members subscribed ("$share/{name}/{filter}": one name on
	// two filters is two groups), if Shared; "" when that is not known
	// (an entry written by a loopmq of store format 4 or older, which
	// kept only Shared). Stores keep it only with Shared, at most 65,535
	// bytes (an MQTT string).
	Group string
}

// Subscription is one of a session's subscriptions with its options.
type Subscription struct {
	Filter            string // as subscribed, including any $share/group/ prefix
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	SubID             uint32 // 5.0 Subscription Identifier; 0 none
}

// Will is a session's Last Will and Testament.
type Will struct {
	Msg   Message // its Expiry is 0: a will's expiry starts when it is published
	Delay uint32  // Will Delay Interval, seconds
	// MessageExpiry is the will's Message Expiry Interval in seconds, if
	// HasExpiry.
	MessageExpiry uint32
	HasExpiry     bool
}

// Session is a persistent session.
type Session struct {
	ClientID string
	Version  byte   // protocol level of its last connection (3, 4 or 5)
	Expiry   uint32 // Session Expiry Interval, seconds; 0xFFFFFFFF never
	// DisconnectedAt is when its client disconnected, Unix nanoseconds;
	// 0 while a client was connected when it was last written.
	DisconnectedAt int64
	Subs           []Subscription
	Will           *Will // nil: none
	// Username is the authenticated user name, for authorization of
	// deliveries after a restart.
	Username string
	// SentTo bounds what the client may already have received: every
	// entry of the session whose Seq is at most SentTo may have been sent
	// to it before it disconnected, so it is sent again with DUP after a
	// restart [MQTT-3.3.1-1]. Meaningful when DisconnectedAt is set; 0
	// none. (A session written while its client was connected may have
	// been sent any of its entries.)
	SentTo uint64
	// SentIDs are the packet identifiers its QoS 1 entries in flight were
	// last sent with, written when its client disconnected, so that they
	// are sent again with them after a restart [MQTT-4.4.0-1]. QoS 1
	// entries keep none themselves (that would cost a second write per
	// delivery); QoS 2 entries do (Entry.PacketID). At most the in-flight
	// window, 65,535; nil none.
	SentIDs []SentID
}

// SentID is the packet identifier an entry was last sent with.
type SentID struct {
	Seq      uint64
	PacketID uint16 // 1 to 65535
}
