package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Value encoding of the on-disk store. Every value starts with codecVersion;
// the fields follow in a fixed order:
//
//	bytes    uvarint(len+1) then the bytes; 0 for nil (nil and empty differ)
//	string   uvarint(len) then the bytes
//	uint32   uvarint, at most math.MaxUint32
//	int64    varint (zigzag)
//	uint16   2 bytes big-endian
//	byte     1 byte; flags bytes have only the bits defined below
//
//	Message  Topic bytes, Payload bytes, Props bytes, QoS byte,
//	         flags (msgRetain), Expiry int64, From string
//	Session  Version byte, Expiry uint32, DisconnectedAt int64, Username
//	         string, uvarint count of Subs, each: Filter string, QoS byte,
//	         flags (subNoLocal|subRetainAsPublished), RetainHandling byte,
//	         SubID uint32; then 0 (no will) or 1, Will.Delay uint32,
//	         Will.Msg Message
//	Entry    State byte, PacketID uint16, QoS byte, flags
//	         (entryRetain|entryShared|entryMsgRef|entryHasGroup), uvarint
//	         count of SubIDs, each uint32, then Group string if
//	         entryHasGroup (only with entryShared, never empty), then Msg
//	         Message unless entryMsgRef says it is in the message record
//	         of the entry's Seq (groups.go)
//	MsgRec   Message (a message record, kindMessage)
//	Retained Message whose Topic is empty (the topic is the key)
//	Meta     the value's bytes, all the rest
//	Inbound  nothing after the version
//
// Decoders never panic and never allocate more than the input's length
// justifies: any malformed input, trailing bytes included, is an error
// wrapping errCorrupt. Decoded byte slices alias the input; strings are
// copies (an entry's Group may be the one the Entry held already).
const codecVersion byte = 1

// formatVersion is the store's key layout and codec generation, stored under
// formatKey. A store with another format is refused (ErrFormat), except
// formats 1 (before group records, groups.go), 2 (before message records),
// 3 (before Session.SentIDs) and 4 (before Entry.Group), which are read as
// they are and marked 5 when opened for writing: a loopmq that reads 4 then
// refuses the store rather than fail to decode (and skip) the entries of
// shared deliveries, whose flags it does not know.
const formatVersion byte = 5

// errCorrupt is wrapped by every decoding error.
var errCorrupt = errors.New("undecodable record")

const (
	msgRetain            byte = 1
	subNoLocal           byte = 1
	subRetainAsPublished byte = 2
	entryRetain          byte = 1
	entryShared          byte = 2
	entryMsgRef          byte = 4
	entryHasGroup        byte = 8
)

func appendBytesField(dst, p []byte) []byte {
	if p == nil {
		return append(dst, 0)
	}
	dst = binary.AppendUvarint(dst, uint64(len(p))+1)
	return append(dst, p...)
}

func appendStringField(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendMessage(dst []byte, m *Message, withTopic bool) []byte {
	if withTopic {
		dst = appendBytesField(dst, m.Topic)
	} else {
		dst = appendBytesField(dst, nil)
	}
	dst = appendBytesField(dst, m.Payload)
	dst = appendBytesField(dst, m.Props)
	var flags byte
	if m.Retain {
		flags |= msgRetain
	}
	dst = append(dst, m.QoS, flags)
	dst = binary.AppendVarint(dst, m.Expiry)
	return appendStringField(dst, m.From)
}

// appendSessionValue encodes s without its ClientID (the key holds it).
func appendSessionValue(dst []byte, s *Session) []byte {
	dst = append(dst, codecVersion, s.Version)
	dst = binary.AppendUvarint(dst, uint64(s.Expiry))
	dst = binary.AppendVarint(dst, s.DisconnectedAt)
	dst = appendStringField(dst, s.Username)
	dst = binary.AppendUvarint(dst, uint64(len(s.Subs)))
	for i := range s.Subs {
		sub := &s.Subs[i]
		dst = appendStringField(dst, sub.Filter)
		var flags byte
		if sub.NoLocal {
			flags |= subNoLocal
		}
		if sub.RetainAsPublished {
			flags |= subRetainAsPublished
		}
		dst = append(dst, sub.QoS, flags, sub.RetainHandling)
		dst = binary.AppendUvarint(dst, uint64(sub.SubID))
	}
	if s.Will == nil {
		dst = append(dst, 0)
	} else {
		dst = append(dst, 1)
		dst = binary.AppendUvarint(dst, uint64(s.Will.Delay))
		dst = appendMessage(dst, &s.Will.Msg, true)
	}
	// Optional trailing fields, absent from records written before them:
	// the decoder reads them, in this order, only while bytes remain, so
	// each one is written when it or a later one is set. The will's
	// Message Expiry Interval is stored plus one (0: none).
	var willExpiry uint64
	if w := s.Will; w != nil && w.HasExpiry {
		willExpiry = uint64(w.MessageExpiry) + 1
	}
	if s.SentTo != 0 || willExpiry != 0 || len(s.SentIDs) > 0 {
		dst = binary.AppendUvarint(dst, s.SentTo)
	}
	if willExpiry != 0 || len(s.SentIDs) > 0 {
		dst = binary.AppendUvarint(dst, willExpiry)
	}
	if len(s.SentIDs) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(s.SentIDs)))
		for _, id := range s.SentIDs {
			dst = binary.AppendUvarint(dst, id.Seq)
			dst = binary.AppendUvarint(dst, uint64(id.PacketID))
		}
	}
	return dst
}

// appendEntryValue encodes e without its Seq (the key holds it).
func appendEntryValue(dst []byte, e *Entry) []byte {
	return appendMessage(appendEntryFields(dst, e, 0), &e.Msg, true)
}

// appendEntryRefValue encodes e without its Seq and without its message,
// which is in the message record of its Seq (groups.go).
func appendEntryRefValue(dst []byte, e *Entry) []byte {
	return appendEntryFields(dst, e, entryMsgRef)
}

func appendEntryFields(dst []byte, e *Entry, flags byte) []byte {
	dst = append(dst, codecVersion, e.State)
	dst = binary.BigEndian.AppendUint16(dst, e.PacketID)
	if e.Retain {
		flags |= entryRetain
	}
	group := e.keepsGroup()
	if e.Shared {
		flags |= entryShared
		if group {
			flags |= entryHasGroup
		}
	}
	dst = append(dst, e.QoS, flags)
	dst = binary.AppendUvarint(dst, uint64(len(e.SubIDs)))
	for _, id := range e.SubIDs {
		dst = binary.AppendUvarint(dst, uint64(id))
	}
	if group {
		dst = appendStringField(dst, e.Group)
	}
	return dst
}

// keepsGroup reports whether a store keeps e.Group: only with Shared, and
// only one an MQTT string can hold (any other is kept as not known, ""),
// so that the record stays readable.
func (e *Entry) keepsGroup() bool {
	return e.Shared && e.Group != "" && len(e.Group) <= math.MaxUint16
}

// entryValueIsRef reports whether an encoded entry value leaves its message
// to a message record; false for one too short to tell (it fails to
// decode).
func entryValueIsRef(v []byte) bool {
	const flagsAt = 5 // version, state, packet id (2), QoS
	return len(v) > flagsAt && v[flagsAt]&entryMsgRef != 0
}

// appendMessageValue encodes a message record's value.
func appendMessageValue(dst []byte, m *Message) []byte {
	return appendMessage(append(dst, codecVersion), m, true)
}

// appendRetainedValue encodes m without its Topic (the key holds it).
func appendRetainedValue(dst []byte, m *Message) []byte {
	return appendMessage(append(dst, codecVersion), m, false)
}

func appendMetaValue(dst, value []byte) []byte {
	return append(append(dst, codecVersion), value...)
}

func appendInboundValue(dst []byte) []byte { return append(dst, codecVersion) }

// decoder reads fields from b; the first error sticks and every later read
// returns zero values, so decode functions check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", errCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) version() {
	if len(d.b) == 0 {
		d.fail("version: empty value")
		return
	}
	if d.b[0] != codecVersion {
		d.err = fmt.Errorf("%w: codec version %d, want %d", errCorrupt, d.b[0], codecVersion)
		d.b = nil
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) byte(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// flags reads a flags byte that may only have the bits of mask.
func (d *decoder) flags(what string, mask byte) byte {
	c := d.byte(what)
	if c&^mask != 0 {
		d.fail(what)
		return 0
	}
	return c
}

// boolean reads a byte that must be 0 or 1.
func (d *decoder) boolean(what string) bool {
	return d.flags(what, 1) == 1
}

func (d *decoder) uint16(what string) uint16 {
	if len(d.b) < 2 {
		d.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint16(d.b)
	d.b = d.b[2:]
	return v
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	v := d.uvarint(what)
	if v > math.MaxUint32 {
		d.fail(what)
		return 0
	}
	return uint32(v)
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count and checks that the rest of the input can
// hold that many elements of at least minSize bytes each, so a corrupt
// count cannot make the caller allocate more than the input justifies.
func (d *decoder) count(what string, minSize int) int {
	v := d.uvarint(what)
	if v > uint64(len(d.b)/minSize) {
		d.fail(what)
		return 0
	}
	return int(v)
}

// raw returns the next n bytes, aliasing the input.
func (d *decoder) raw(what string, n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if n == 0 || d.err != nil {
		return nil
	}
	return d.raw(what, n-1)
}

func (d *decoder) string(what string) string {
	n := d.uvarint(what)
	if n == 0 || d.err != nil {
		return ""
	}
	return string(d.raw(what, n))
}

// stringLike is string, returning prev rather than a copy when it holds
// the same bytes.
func (d *decoder) stringLike(what, prev string) string {
	n := d.uvarint(what)
	if n == 0 || d.err != nil {
		return ""
	}
	b := d.raw(what, n)
	if string(b) == prev {
		return prev
	}
	return string(b)
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(d.b))
	}
	return d.err
}

func (d *decoder) message(m *Message) {
	m.Topic = d.bytes("message topic")
	m.Payload = d.bytes("message payload")
	m.Props = d.bytes("message properties")
	m.QoS = d.byte("message QoS")
	m.Retain = d.flags("message flags", msgRetain) != 0
	m.Expiry = d.varint("message expiry")
	m.From = d.string("message publisher")
}

// decodeSessionValue decodes v into s, reusing s.Subs and s.Will's memory;
// s.ClientID is left alone (it is the key's).
func decodeSessionValue(v []byte, s *Session) error {
	d := decoder{b: v}
	d.version()
	s.Version = d.byte("session version")
	s.Expiry = d.uint32("session expiry")
	s.DisconnectedAt = d.varint("session disconnected at")
	s.Username = d.string("session username")
	// A subscription is at least 5 bytes: filter length, QoS, flags,
	// retain handling, subscription id.
	n := d.count("session subscription count", 5)
	s.Subs = s.Subs[:0]
	for i := 0; i < n && d.err == nil; i++ {
		var sub Subscription
		sub.Filter = d.string("subscription filter")
		sub.QoS = d.byte("subscription QoS")
		f := d.flags("subscription flags", subNoLocal|subRetainAsPublished)
		sub.NoLocal = f&subNoLocal != 0
		sub.RetainAsPublished = f&subRetainAsPublished != 0
		sub.RetainHandling = d.byte("subscription retain handling")
		sub.SubID = d.uint32("subscription identifier")
		s.Subs = append(s.Subs, sub)
	}
	if len(s.Subs) == 0 {
		s.Subs = nil
	}
	w := s.Will
	s.Will = nil
	if d.boolean("session will flag") {
		if w == nil {
			w = new(Will)
		}
		w.Delay = d.uint32("will delay")
		w.MessageExpiry, w.HasExpiry = 0, false
		d.message(&w.Msg)
		s.Will = w
	}
	s.SentTo = 0
	if d.err == nil && len(d.b) > 0 {
		s.SentTo = d.uvarint("session sent to")
	}
	if d.err == nil && len(d.b) > 0 {
		e := d.uvarint("will message expiry")
		switch {
		case e == 0: // none, written because SentIDs follow
		case s.Will == nil || e > 1<<32:
			d.fail("will message expiry")
		default:
			s.Will.MessageExpiry, s.Will.HasExpiry = uint32(e-1), true
		}
	}
	s.SentIDs = nil
	if d.err == nil && len(d.b) > 0 {
		n := d.uvarint("sent packet identifiers")
		if n == 0 || n > 65535 {
			d.fail("sent packet identifiers")
		}
		for i := uint64(0); i < n && d.err == nil; i++ {
			seq := d.uvarint("sent entry")
			pid := d.uvarint("sent packet identifier")
			if pid == 0 || pid > 65535 {
				d.fail("sent packet identifier")
			}
			s.SentIDs = append(s.SentIDs, SentID{Seq: seq, PacketID: uint16(pid)})
		}
	}
	return d.end()
}

// decodeEntryValue decodes v into e, reusing e.SubIDs; e.Seq is left alone
// (it is the key's). ref reports an entry whose message is in the message
// record of its Seq; e.Msg is then left empty.
func decodeEntryValue(v []byte, e *Entry) (ref bool, err error) {
	d := decoder{b: v}
	d.version()
	e.State = d.byte("entry state")
	e.PacketID = d.uint16("entry packet id")
	e.QoS = d.byte("entry QoS")
	f := d.flags("entry flags", entryRetain|entryShared|entryMsgRef|entryHasGroup)
	e.Retain = f&entryRetain != 0
	e.Shared = f&entryShared != 0
	n := d.count("entry subscription id count", 1)
	e.SubIDs = e.SubIDs[:0]
	for i := 0; i < n && d.err == nil; i++ {
		e.SubIDs = append(e.SubIDs, d.uint32("entry subscription id"))
	}
	if len(e.SubIDs) == 0 {
		e.SubIDs = nil
	}
	group := ""
	if f&entryHasGroup != 0 {
		// The group e holds from the entry decoded into it before, if the
		// same: a client's entries mostly come through the same groups,
		// and reads reuse their Entry.
		group = d.stringLike("entry group", e.Group)
		if !e.Shared || group == "" || len(group) > math.MaxUint16 {
			d.fail("entry group")
		}
	}
	e.Group = group
	ref = f&entryMsgRef != 0
	if ref {
		e.Msg = Message{}
	} else {
		d.message(&e.Msg)
	}
	return ref, d.end()
}

// decodeMessageValue decodes a message record's value into m.
func decodeMessageValue(v []byte, m *Message) error {
	d := decoder{b: v}
	d.version()
	d.message(m)
	return d.end()
}

// decodeRetainedValue decodes v into m; m.Topic is left nil (it is the
// key's).
func decodeRetainedValue(v []byte, m *Message) error {
	d := decoder{b: v}
	d.version()
	d.message(m)
	if m.Topic != nil {
		d.fail("retained topic: stored in the value")
	}
	return d.end()
}

// decodeMetaValue returns the meta value in v, aliasing v; never nil on
// success.
func decodeMetaValue(v []byte) ([]byte, error) {
	d := decoder{b: v}
	d.version()
	if d.err != nil {
		return nil, d.err
	}
	return d.b[:len(d.b):len(d.b)], nil
}

func decodeInboundValue(v []byte) error {
	d := decoder{b: v}
	d.version()
	return d.end()
}

// decodeFormatValue returns the format version stored under formatKey.
func decodeFormatValue(v []byte) (byte, error) {
	if len(v) != 1 {
		return 0, fmt.Errorf("%w: format value of %d bytes", errCorrupt, len(v))
	}
	return v[0], nil
}
