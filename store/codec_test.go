package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

func codecSamples() (Session, Entry, Message) {
	s := Session{
		Version: 5, Expiry: 0xFFFFFFFF, DisconnectedAt: -7, Username: "u",
		Subs: []Subscription{{Filter: "a/#", QoS: 2, NoLocal: true, RetainAsPublished: true, RetainHandling: 1, SubID: 268435455}},
		Will: &Will{Delay: 30, Msg: Message{Topic: []byte("w"), Payload: []byte{}, QoS: 1, Retain: true, From: "c"},
			MessageExpiry: 0xFFFFFFFF, HasExpiry: true},
		SentTo:  1<<63 + 5,
		SentIDs: []SentID{{Seq: 1<<63 + 5, PacketID: 65535}, {Seq: 3, PacketID: 1}},
	}
	e := Entry{State: EntryAwaitRec, PacketID: 65535, QoS: 2, Retain: true, Shared: true, SubIDs: []uint32{1, 0xFFFFFFFF}, Group: "$share/g/t",
		Msg: Message{Topic: []byte("t"), Payload: []byte("p"), Props: []byte{1, 1}, QoS: 2, Expiry: 1 << 62, From: "f"}}
	m := Message{Payload: []byte("retained"), QoS: 1, Retain: true, Expiry: -1}
	return s, e, m
}

func TestCodecRoundTrip(t *testing.T) {
	s, e, m := codecSamples()

	var s2 Session
	require.NoError(t, decodeSessionValue(appendSessionValue(nil, &s), &s2))
	require.Equal(t, s, s2)
	// Decoding into a used Session clears what the record does not have.
	require.NoError(t, decodeSessionValue(appendSessionValue(nil, &Session{}), &s2))
	require.Equal(t, Session{}, s2)
	// A record written before SentTo existed ends after the will.
	old := s
	old.SentTo, old.SentIDs = 0, nil
	old.Will = &Will{Delay: s.Will.Delay, Msg: s.Will.Msg}
	v := appendSessionValue(nil, &old)
	require.NoError(t, decodeSessionValue(v, &s2))
	require.Equal(t, old, s2)
	// SentTo 0 is written when the will's expiry follows; an expiry of 0
	// is one.
	noSent := s
	noSent.SentTo, noSent.SentIDs = 0, nil
	noSent.Will = &Will{Msg: s.Will.Msg, HasExpiry: true}
	require.NoError(t, decodeSessionValue(appendSessionValue(nil, &noSent), &s2))
	require.Equal(t, noSent, s2)
	require.Error(t, decodeSessionValue(append(appendSessionValue(nil, &s), 0), &s2), "a byte past the last field")
	// Sent packet identifiers without a will or SentTo: both written as 0.
	ids := Session{ClientID: "x", SentIDs: []SentID{{Seq: 9, PacketID: 7}}}
	require.NoError(t, decodeSessionValue(appendSessionValue(nil, &ids), &s2))
	ids.ClientID = "" // the key holds it
	require.Equal(t, ids, s2)
	bad := appendSessionValue(nil, &Session{SentIDs: []SentID{{Seq: 9, PacketID: 7}}})
	bad[len(bad)-1] = 0 // packet identifier 0
	require.Error(t, decodeSessionValue(bad, &s2))

	var e2 Entry
	ref, err := decodeEntryValue(appendEntryValue(nil, &e), &e2)
	require.NoError(t, err)
	require.False(t, ref)
	require.Equal(t, e, e2)
	_, err = decodeEntryValue(appendEntryValue(nil, &Entry{}), &e2)
	require.NoError(t, err)
	require.Equal(t, Entry{}, e2)
	// Without its message: the flag says where it is.
	rv := appendEntryRefValue(nil, &e)
	require.True(t, entryValueIsRef(rv))
	require.False(t, entryValueIsRef(appendEntryValue(nil, &e)))
	ref, err = decodeEntryValue(rv, &e2)
	require.NoError(t, err)
	require.True(t, ref)
	noMsg := e
	noMsg.Msg = Message{}
	require.Equal(t, noMsg, e2)
	var mr Message
	require.NoError(t, decodeMessageValue(appendMessageValue(nil, &e.Msg), &mr))
	require.Equal(t, e.Msg, mr)

	var m2 Message
	require.NoError(t, decodeRetainedValue(appendRetainedValue(nil, &m), &m2))
	require.Equal(t, m, m2)

	mv, err := decodeMetaValue(appendMetaValue(nil, []byte{}))
	require.NoError(t, err)
	require.NotNil(t, mv)
	require.Empty(t, mv)
	require.NoError(t, decodeInboundValue(appendInboundValue(nil)))
}

// TestCodecEntryGolden: entry values byte for byte. Those without a group
// are what store format 4 wrote (so it reads them, and this reads its
// records); a shared entry with its group has the entryHasGroup flag and
// the group after the subscription identifiers.
func TestCodecEntryGolden(t *testing.T) {
	e := Entry{State: EntryAwaitAck, PacketID: 0x1234, QoS: 1, Retain: true, SubIDs: []uint32{7},
		Msg: Message{Topic: []byte("a/b"), Payload: []byte("pl"), QoS: 1, Expiry: 5, From: "p"}}
	shared, grouped := e, e
	shared.Shared = true
	grouped.Shared, grouped.Group = true, "$share/g/a/+"
	ignored := e // a group is kept only with Shared
	ignored.Group = "$share/g/a/+"
	msg := "04612f6203706c0001000a0170" // topic, payload, props, QoS, flags, expiry, from
	for _, c := range []struct {
		name     string
		e        *Entry
		val, ref string
	}{
		{"plain", &e, "0101123401" + "01" + "0107" + msg, "0101123401" + "05" + "0107"},
		{"group ignored", &ignored, "0101123401" + "01" + "0107" + msg, "0101123401" + "05" + "0107"},
		{"shared", &shared, "0101123401" + "03" + "0107" + msg, "0101123401" + "07" + "0107"},
		{"shared with group", &grouped,
			"0101123401" + "0b" + "0107" + "0c" + hex.EncodeToString([]byte("$share/g/a/+")) + msg,
			"0101123401" + "0f" + "0107" + "0c" + hex.EncodeToString([]byte("$share/g/a/+"))},
	} {
		require.Equal(t, c.val, hex.EncodeToString(appendEntryValue(nil, c.e)), c.name)
		require.Equal(t, c.ref, hex.EncodeToString(appendEntryRefValue(nil, c.e)), c.name+": reference")
		want := *c.e
		if !want.Shared {
			want.Group = ""
		}
		for _, v := range []string{c.val, c.ref} {
			b, err := hex.DecodeString(v)
			require.NoError(t, err)
			var got Entry
			ref, err := decodeEntryValue(b, &got)
			require.NoError(t, err, c.name)
			if ref {
				want.Msg = Message{}
			}
			require.Equal(t, want, got, c.name)
		}
	}
	// A group longer than an MQTT string is not kept: the record stays
	// readable, with the group unknown.
	long := grouped
	long.Group = "$share/g/" + strings.Repeat("x", 65536)
	require.Equal(t, hex.EncodeToString(appendEntryValue(nil, &shared)), hex.EncodeToString(appendEntryValue(nil, &long)))
}

// TestDecodeEntryKeepsItsGroup: decoding an entry of the group the Entry
// holds already (a reader reuses its Entry for a client's entries, which
// mostly come through the same groups) keeps that string rather than
// allocate a copy; another group is a copy of its own.
func TestDecodeEntryKeepsItsGroup(t *testing.T) {
	v := appendEntryValue(nil, &Entry{Shared: true, Group: "$share/g/t", Msg: Message{Topic: []byte("t")}})
	var e Entry
	_, err := decodeEntryValue(v, &e)
	require.NoError(t, err)
	g := e.Group
	require.Equal(t, "$share/g/t", g)
	require.Zero(t, testing.AllocsPerRun(20, func() { _, _ = decodeEntryValue(v, &e) }))
	require.Same(t, unsafe.StringData(g), unsafe.StringData(e.Group))
	other := appendEntryValue(nil, &Entry{Shared: true, Group: "$share/g/u", Msg: Message{Topic: []byte("t")}})
	_, err = decodeEntryValue(other, &e)
	require.NoError(t, err)
	require.Equal(t, "$share/g/u", e.Group)
	require.Equal(t, "$share/g/t", g, "the first entry's group is left as it was")
}

func TestCodecRejects(t *testing.T) {
	s, e, _ := codecSamples()
	sv := appendSessionValue(nil, &s)
	ev := appendEntryValue(nil, &e)
	f := func(name string, v []byte) {
		t.Helper()
		var ss Session
		var ee Entry
		err1 := decodeSessionValue(v, &ss)
		_, err2 := decodeEntryValue(v, &ee)
		require.True(t, errors.Is(err1, errCorrupt) && errors.Is(err2, errCorrupt), "%s: %v / %v", name, err1, err2)
	}
	f("empty", nil)
	f("version only", []byte{codecVersion})
	f("other version", append([]byte{codecVersion + 1}, sv[1:]...))
	f("session truncated", sv[:len(sv)-1])
	f("entry truncated", ev[:len(ev)-1])
	f("session trailing byte", append(bytes.Clone(sv), 0))
	f("entry trailing byte", append(bytes.Clone(ev), 0))
	// A count far beyond what the value holds fails before allocating.
	f("huge count", []byte{codecVersion, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F})
	// Unknown flag bits.
	bad := bytes.Clone(ev)
	bad[5] |= 0x80
	f("entry flags", bad)
	// A group without the shared flag, an empty one, one longer than an
	// MQTT string.
	bad = bytes.Clone(ev)
	bad[5] &^= entryShared
	f("group of an entry not shared", bad)
	noGroup := e
	noGroup.Group = ""
	bad = appendEntryRefValue(nil, &noGroup)
	bad[5] |= entryHasGroup
	f("group flag without a group", bad)
	f("empty group", append(bytes.Clone(bad), 0))
	long := binary.AppendUvarint(bytes.Clone(bad), 65536)
	f("group too long", append(long, bytes.Repeat([]byte{'x'}, 65536)...))
	ok := binary.AppendUvarint(bytes.Clone(bad), 65535)
	_, err := decodeEntryValue(append(ok, bytes.Repeat([]byte{'x'}, 65535)...), new(Entry))
	require.NoError(t, err, "a group of 65,535 bytes")
	_, err = decodeMetaValue(nil)
	require.ErrorIs(t, err, errCorrupt)
	require.ErrorIs(t, decodeInboundValue([]byte{codecVersion, 0}), errCorrupt)
}

// FuzzDecodeValue feeds arbitrary bytes to every value decoder: none may
// panic, and whatever one accepts must encode to a value it decodes to the
// same record again. Seeds: testdata/fuzz/FuzzDecodeValue and the encoded
// samples.
func FuzzDecodeValue(f *testing.F) {
	s, e, m := codecSamples()
	f.Add(appendSessionValue(nil, &s))
	f.Add(appendSessionValue(nil, &Session{}))
	f.Add(appendEntryValue(nil, &e))
	f.Add(appendEntryValue(nil, &Entry{}))
	f.Add(appendRetainedValue(nil, &m))
	f.Add(appendMetaValue(nil, []byte("meta")))
	f.Add(appendInboundValue(nil))
	f.Add(appendEntryRefValue(nil, &e))
	f.Add(appendMessageValue(nil, &m))
	f.Fuzz(func(t *testing.T, v []byte) {
		roundTrip(t, v, decodeSessionValue, appendSessionValue)
		var e1, e2 Entry
		if ref, err := decodeEntryValue(v, &e1); err == nil {
			re := appendEntryValue(nil, &e1)
			if ref {
				re = appendEntryRefValue(nil, &e1)
			}
			ref2, err := decodeEntryValue(re, &e2)
			require.NoError(t, err)
			require.Equal(t, ref, ref2)
			require.Equal(t, e1, e2)
		} else {
			require.ErrorIs(t, err, errCorrupt)
		}
		roundTrip(t, v, decodeMessageValue, appendMessageValue)
		roundTrip(t, v, decodeRetainedValue, appendRetainedValue)
		if mv, err := decodeMetaValue(v); err == nil {
			require.Equal(t, v[1:], mv)
		}
		_ = decodeInboundValue(v)
		_, _ = decodeFormatValue(v)
	})
}

// roundTrip requires that a value decode accepts encodes back to an equal
// one, and that decode refuses the others as errCorrupt.
func roundTrip[T any](t *testing.T, v []byte, decode func([]byte, *T) error, encode func([]byte, *T) []byte) {
	t.Helper()
	var a, b T
	if err := decode(v, &a); err != nil {
		require.ErrorIs(t, err, errCorrupt)
		return
	}
	require.NoError(t, decode(encode(nil, &a), &b))
	require.Equal(t, a, b)
}

// BenchmarkEntryValue: encoding and decoding one entry value as the
// committer and reads do (appendEntryValue, appendEntryRefValue,
// decodeEntryValue), a 100-byte payload, for an entry delivered through
// a subscription of the client's own and one delivered through a shared
// subscription group.
func BenchmarkEntryValue(b *testing.B) {
	plain := Entry{State: EntryQueued, QoS: 1, SubIDs: []uint32{7},
		Msg: Message{Topic: []byte("sensors/42/temp"), Payload: bytes.Repeat([]byte{'x'}, 100), QoS: 1, From: "publisher-1"}}
	shared := plain
	shared.Shared, shared.Group = true, "$share/workers/sensors/+/temp"
	for _, c := range []struct {
		name string
		e    *Entry
	}{{"plain", &plain}, {"shared", &shared}} {
		var buf []byte
		b.Run(c.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = appendEntryValue(buf[:0], c.e)
			}
			b.ReportMetric(float64(len(buf)), "value-bytes")
		})
		b.Run(c.name+"/encode-ref", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = appendEntryRefValue(buf[:0], c.e)
			}
			b.ReportMetric(float64(len(buf)), "value-bytes")
		})
		v := appendEntryValue(nil, c.e)
		b.Run(c.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			var e Entry
			for b.Loop() {
				if _, err := decodeEntryValue(v, &e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
