package store

// OpKind is what one batch operation does.
type OpKind uint8

const (
	// OpNone is an operation taken back before the batch was committed
	// (Batch.CancelPutEntry); stores skip it.
	OpNone            OpKind = iota
	OpPutSession             // Session
	OpDeleteSession          // ClientID: the session, its entries and inbound ids
	OpPutEntry               // ClientID, Entry (replaces one with the same Seq), Once
	OpDeleteEntry            // ClientID, Seq, Once
	OpPutInbound             // ClientID, PacketID
	OpDeleteInbound          // ClientID, PacketID
	OpPutRetained            // Msg (replaces the one on Msg.Topic)
	OpDeleteRetained         // Msg.Topic
	OpPutMeta                // Key, Value
	OpDeleteEntriesTo        // ClientID, Seq: every entry with a Seq up to it
)

// Op is one operation of a batch. Its byte slices are copies owned by the
// batch, valid until the batch is Reset.
type Op struct {
	Kind     OpKind
	ClientID string
	Seq      uint64
	PacketID uint16
	Session  *Session
	Entry    Entry
	Msg      Message
	Key      string
	Value    []byte
	// Once marks an OpPutEntry of an entry put only this once
	// (PutEntryOnce), and an OpDeleteEntry of an entry put exactly once
	// (DeleteEntryPutOnce).
	Once bool
}

// Batch collects changes to apply atomically with Store.Commit. The caller
// fills it on one goroutine; everything it is given is copied, so the
// caller's buffers may be reused as soon as a Put returns. The zero Batch is
// ready to use; Reset makes a committed one reusable without allocating.
type Batch struct {
	ops    []Op
	chunks [][]byte // arena: copies of byte slices; chunks never move
	cur    int      // chunk being filled
	none   int      // operations taken back (OpNone)
	copied int      // bytes copied (Copied)
	// onceSeq and onceMsg: the Seq of the last entry put once and the
	// arena copy of its message, which the next entries put once with that
	// Seq share (PutEntryOnce).
	onceSeq uint64
	onceMsg Message
	// heap: an operation holds memory outside the arena other than a
	// string (a session's copy, subscription identifiers, a byte slice
	// too large for the arena), so Reset clears the operations rather than
	// keep it alive. Otherwise it leaves them to be overwritten: clearing
	// the operations (344 bytes then, 360 with Entry.Group) was 5% of the
	// broker's CPU in persisted fan-out (docs/benchmarks.md), and what
	// they keep until then is strings (client and publisher ids, shared
	// groups' filters) and the arena, kept anyway.
	heap bool
}

const chunkSize = 32 << 10

// Ops returns the batch's operations in the order they were added; for
// Store implementations.
func (b *Batch) Ops() []Op { return b.ops }

// Len returns the number of operations, not counting those taken back.
func (b *Batch) Len() int { return len(b.ops) - b.none }

// Copied returns the bytes of topics, payloads, properties and values the
// batch copied since it was last Reset, those of operations taken back
// included: what it holds besides its operations.
func (b *Batch) Copied() int { return b.copied }

// Reset empties b, keeping its memory.
func (b *Batch) Reset() {
	if b.heap {
		clear(b.ops)
		b.heap = false
	}
	b.ops = b.ops[:0]
	for i := range b.chunks {
		b.chunks[i] = b.chunks[i][:0]
	}
	b.cur = 0
	b.none = 0
	b.copied = 0
	b.onceSeq, b.onceMsg = 0, Message{}
}

// copyBytes copies p into the arena; nil stays nil.
func (b *Batch) copyBytes(p []byte) []byte {
	if p == nil {
		return nil
	}
	b.copied += len(p)
	if len(p) > chunkSize/4 {
		b.heap = true
		return append([]byte(nil), p...)
	}
	for {
		if b.cur == len(b.chunks) {
			b.chunks = append(b.chunks, make([]byte, 0, chunkSize))
		}
		c := b.chunks[b.cur]
		if len(c)+len(p) <= cap(c) {
			n := len(c)
			c = append(c, p...)
			b.chunks[b.cur] = c
			return c[n:len(c):len(c)]
		}
		b.cur++
	}
}

func (b *Batch) copyMessage(m *Message) Message {
	c := *m
	c.Topic = b.copyBytes(m.Topic)
	c.Payload = b.copyBytes(m.Payload)
	c.Props = b.copyBytes(m.Props)
	return c
}

// PutSession stores s (a deep copy), replacing the session of the same
// client id; its entries and inbound ids are kept.
func (b *Batch) PutSession(s *Session) {
	b.heap = true
	c := *s
	c.Subs = append([]Subscription(nil), s.Subs...)
	if s.Will != nil {
		w := *s.Will
		w.Msg = b.copyMessage(&s.Will.Msg)
		c.Will = &w
	}
	b.ops = append(b.ops, Op{Kind: OpPutSession, ClientID: s.ClientID, Session: &c})
}

// DeleteSession removes clientID's session with all its entries and
// inbound packet identifiers.
func (b *Batch) DeleteSession(clientID string) {
	b.ops = append(b.ops, Op{Kind: OpDeleteSession, ClientID: clientID})
}

// PutEntry stores e for clientID, replacing the entry with the same Seq.
func (b *Batch) PutEntry(clientID string, e *Entry) {
	b.putEntry(clientID, e, false)
}

// PutEntryOnce stores e for clientID like PutEntry, for an entry that is
// never put again with the same Seq until the client's next DeleteSession
// (the engine's QoS 1 deliveries). The on-disk store may then keep several
// such entries of one client, committed together, in one record
// (groups.go), deleted once all of them are.
//
// Entries put once with the same Seq, for whichever clients, must hold
// the same message (the engine numbers each message it routes once): the
// batch copies it once for a run of them, and the on-disk store writes it
// once for all the entries of one commit that hold it (message records,
// groups.go).
func (b *Batch) PutEntryOnce(clientID string, e *Entry) {
	b.putEntry(clientID, e, true)
}

func (b *Batch) putEntry(clientID string, e *Entry, once bool) {
	c := *e
	if len(e.SubIDs) > 0 {
		c.SubIDs = append([]uint32(nil), e.SubIDs...)
		b.heap = true
	}
	if once && e.Seq != 0 && e.Seq == b.onceSeq {
		c.Msg = b.onceMsg
	} else {
		c.Msg = b.copyMessage(&e.Msg)
		if once {
			b.onceSeq, b.onceMsg = e.Seq, c.Msg
		}
	}
	b.ops = append(b.ops, Op{Kind: OpPutEntry, ClientID: clientID, Seq: e.Seq, Entry: c, Once: once})
}

// CancelPutEntry takes back operation i of b if it is the PutEntry of
// clientID's entry seq, and reports whether it was: an entry acknowledged
// before its batch was committed never reaches the store, and needs no
// delete either. Only for an entry put once (see DeleteEntryPutOnce):
// taking back a put that replaces an earlier one would bring the earlier
// one back. The operation stays in Ops as OpNone, its bytes in the arena.
func (b *Batch) CancelPutEntry(i int, clientID string, seq uint64) bool {
	if i < 0 || i >= len(b.ops) {
		return false
	}
	op := &b.ops[i]
	if op.Kind != OpPutEntry || op.Seq != seq || op.ClientID != clientID {
		return false
	}
	*op = Op{}
	b.none++
	return true
}

// DeleteEntry removes clientID's entry seq, if any.
func (b *Batch) DeleteEntry(clientID string, seq uint64) {
	b.ops = append(b.ops, Op{Kind: OpDeleteEntry, ClientID: clientID, Seq: seq})
}

// DeleteEntryPutOnce removes clientID's entry seq, which was put at most
// once (never replaced by another PutEntry of the same Seq) since the
// client's last DeleteSession. The on-disk store can then drop the put
// and the delete together when they meet (pebble's SingleDelete) instead
// of keeping a tombstone until it reaches the last level. Deleting an
// entry that was put more than once this way is undefined: it may come
// back. Deleting one that was never put is allowed (the engine does, for
// a put it took back from its batch).
func (b *Batch) DeleteEntryPutOnce(clientID string, seq uint64) {
	b.ops = append(b.ops, Op{Kind: OpDeleteEntry, ClientID: clientID, Seq: seq, Once: true})
}

// DeleteEntriesTo removes clientID's entries whose Seq is at most seq,
// and nothing else of clientID's.
func (b *Batch) DeleteEntriesTo(clientID string, seq uint64) {
	b.ops = append(b.ops, Op{Kind: OpDeleteEntriesTo, ClientID: clientID, Seq: seq})
}

// PutInbound records that clientID's QoS 2 packet id was received and
// PUBREC is owed or sent.
func (b *Batch) PutInbound(clientID string, packetID uint16) {
	b.ops = append(b.ops, Op{Kind: OpPutInbound, ClientID: clientID, PacketID: packetID})
}

// DeleteInbound forgets clientID's QoS 2 packet id (PUBREL received).
func (b *Batch) DeleteInbound(clientID string, packetID uint16) {
	b.ops = append(b.ops, Op{Kind: OpDeleteInbound, ClientID: clientID, PacketID: packetID})
}

// PutRetained stores m as the retained message of m.Topic.
func (b *Batch) PutRetained(m *Message) {
	b.ops = append(b.ops, Op{Kind: OpPutRetained, Msg: b.copyMessage(m)})
}

// DeleteRetained removes the retained message of topic.
func (b *Batch) DeleteRetained(topic []byte) {
	b.ops = append(b.ops, Op{Kind: OpDeleteRetained, Msg: Message{Topic: b.copyBytes(topic)}})
}

// PutMeta stores value under key (engine bookkeeping such as the message
// sequence floor).
func (b *Batch) PutMeta(key string, value []byte) {
	b.ops = append(b.ops, Op{Kind: OpPutMeta, Key: key, Value: b.copyBytes(value)})
}
