package store

import (
	"bytes"
	"errors"
	"testing"

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
	e := Entry{State: EntryAwaitRec, PacketID: 65535, QoS: 2, Retain: true, Shared: true, SubIDs: []uint32{1, 0xFFFFFFFF},
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
	_, err := decodeMetaValue(nil)
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
