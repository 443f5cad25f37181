package codec

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

// frame builds a frame from its first byte and body parts, computing the
// remaining length.
func frame(first byte, parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(appendVarint([]byte{first}, len(body)), body...)
}

// str encodes s as a length-prefixed string.
func str(s string) []byte { return appendBinary(nil, []byte(s)) }

// raw is shorthand for literal bytes.
func raw(bs ...byte) []byte { return bs }

// connectV5 is a minimal 5.0 CONNECT with the given property block
// contents, for property validation cases.
func connectV5(props ...byte) []byte {
	return frame(0x10, str("MQTT"), raw(5, 0x02, 0, 0), appendVarint(nil, len(props)), props, str("c"))
}

// requireCode asserts that err is an *Error with the given reason code.
func requireCode(t *testing.T, err error, want ReasonCode) {
	t.Helper()
	require.Error(t, err)
	var e *Error
	require.True(t, errors.As(err, &e), "error %v is not a *codec.Error", err)
	require.Equal(t, want, e.Code, "error: %v", err)
}

// TestValidation has one case per validation rule the specification
// requires; each names the normative statement it checks.
func TestValidation(t *testing.T) {
	f := func(name string, v Version, in []byte, want ReasonCode) {
		t.Run(name, func(t *testing.T) {
			_, err := Decode(in, v)
			requireCode(t, err, want)
		})
	}
	// Fixed header.
	f("MQTT-2.2.2-2 PUBACK reserved flags", V311, frame(0x41, raw(0, 1)), MalformedPacket)
	f("MQTT-3.8.1-1 SUBSCRIBE flags 0000", V311, frame(0x80, raw(0, 1), str("a"), raw(0)), MalformedPacket)
	f("MQTT-3.6.1-1 PUBREL flags 0000", V5, frame(0x60, raw(0, 1)), MalformedPacket)
	f("MQTT-3.10.1-1 UNSUBSCRIBE flags 0000", V311, frame(0xA0, raw(0, 1), str("a")), MalformedPacket)
	f("MQTT-2.2.2-2 PINGREQ flags", V311, frame(0xC1), MalformedPacket)
	f("PINGREQ with a body", V311, frame(0xC0, raw(0)), MalformedPacket)
	f("DISCONNECT 3.1.1 with a body", V311, frame(0xE0, raw(0)), MalformedPacket)
	f("AUTH before 5.0", V311, frame(0xF0), MalformedPacket)

	// PUBLISH.
	f("MQTT-3.3.1-4 QoS 3", V311, frame(0x36, str("t"), raw(0, 1)), MalformedPacket)
	f("MQTT-3.3.1-2 DUP on QoS 0", V311, frame(0x38, str("t")), MalformedPacket)
	f("MQTT-3.3.2-2 topic with +", V311, frame(0x30, str("a/+")), TopicNameInvalid)
	f("MQTT-3.3.2-2 topic with #", V5, frame(0x30, str("a/#"), raw(0)), TopicNameInvalid)
	f("MQTT-3.3.2-2 wildcard after non-ASCII", V311, frame(0x30, str("é/#")), TopicNameInvalid)
	f("MQTT-4.7.3-1 empty topic 3.1.1", V311, frame(0x30, str("")), ProtocolError)
	f("MQTT-4.7.3-1 empty topic without alias 5.0", V5, frame(0x30, str(""), raw(0)), ProtocolError)
	f("MQTT-1.5.4-1 ill-formed UTF-8 topic", V311, frame(0x30, raw(0, 2, 0xC3, 0x28)), MalformedPacket)
	f("MQTT-1.5.4-1 surrogate in topic", V311, frame(0x30, raw(0, 3, 0xED, 0xA0, 0x80)), MalformedPacket)
	f("MQTT-1.5.4-2 U+0000 in topic", V311, frame(0x30, raw(0, 3, 'a', 0, 'b')), MalformedPacket)
	f("MQTT-1.5.4-2 U+0000 after non-ASCII", V311, frame(0x30, raw(0, 4, 0xC3, 0xA9, 0, 'b')), MalformedPacket)
	f("MQTT-2.2.1-3 PUBLISH packet id 0", V311, frame(0x32, str("t"), raw(0, 0)), ProtocolError)
	f("PUBLISH truncated topic", V311, frame(0x30, raw(0, 5, 'a')), MalformedPacket)
	f("PUBLISH missing packet id", V311, frame(0x32, str("t"), raw(1)), MalformedPacket)
	f("MQTT-3.3.2-8 topic alias 0", V5, frame(0x30, str("t"), raw(3, 0x23, 0, 0)), TopicAliasInvalid)
	f("property length beyond packet", V5, frame(0x30, str("t"), raw(9, 0x01)), MalformedPacket)
	// 0x81 0x00 would be identifier 1 (payload format) in two bytes; a
	// broker that accepted it crashed copying the block to subscribers.
	f("MQTT-1.5.5-1 property identifier not in the fewest bytes", V5,
		frame(0x30, str("t"), raw(3, 0x81, 0x00, 0x01), raw('x')), MalformedPacket)
	f("property identifier above 0x7F", V5, frame(0x30, str("t"), raw(3, 0xA6, 0x01, 0x01), raw('x')), MalformedPacket)

	// Packet identifiers and acks.
	for _, first := range []byte{0x40, 0x50, 0x62, 0x70} {
		name := Type(first >> 4).String()
		f("MQTT-2.2.1-3 "+name+" packet id 0", V5, frame(first, raw(0, 0)), ProtocolError)
		f(name+" truncated", V311, frame(first, raw(0)), MalformedPacket)
		f(name+" 3.1.1 extra bytes", V311, frame(first, raw(0, 1, 0)), MalformedPacket)
	}
	f("MQTT-3.4.2-1 PUBACK reason 0x92", V5, frame(0x40, raw(0, 1, 0x92)), ProtocolError)
	f("MQTT-3.6.2-1 PUBREL reason 0x10", V5, frame(0x62, raw(0, 1, 0x10)), ProtocolError)
	f("PUBACK property not allowed", V5, frame(0x40, raw(0, 1, 0, 2, 0x01, 1)), MalformedPacket)

	// SUBSCRIBE / UNSUBSCRIBE.
	sub := func(filter string, opts byte) []byte { return frame(0x82, raw(0, 1), str(filter), raw(opts)) }
	sub5 := func(filter string, opts byte) []byte { return frame(0x82, raw(0, 1, 0), str(filter), raw(opts)) }
	f("MQTT-4.7.1-2 # not last", V311, sub("a/#/b", 0), MalformedPacket)
	f("MQTT-4.7.1-2 # inside a level", V311, sub("a/b#", 0), MalformedPacket)
	f("MQTT-4.7.1-3 + inside a level", V311, sub("a+", 0), MalformedPacket)
	f("MQTT-4.7.1-3 + inside a level 5.0", V5, sub5("a/+b/c", 0), MalformedPacket)
	f("MQTT-4.7.3-1 empty filter", V311, sub("", 0), MalformedPacket)
	f("MQTT-4.8.2-1 empty share name", V5, sub5("$share//a", 0), MalformedPacket)
	f("MQTT-4.8.2-1 wildcard in share name", V5, sub5("$share/g+/a", 0), MalformedPacket)
	f("MQTT-4.8.2-2 share without filter", V5, sub5("$share/g", 0), MalformedPacket)
	f("MQTT-4.8.2-2 share with empty filter", V5, sub5("$share/g/", 0), MalformedPacket)
	f("MQTT-3-8.3-4 requested QoS 3", V311, sub("a", 3), MalformedPacket)
	f("MQTT-3-8.3-4 3.1.1 reserved option bits", V311, sub("a", 0x04), MalformedPacket)
	f("MQTT-3.8.3-5 5.0 reserved option bits", V5, sub5("a", 0x40), MalformedPacket)
	f("retain handling 3", V5, sub5("a", 0x30), ProtocolError)
	f("MQTT-3.8.3-4 no local on shared subscription", V5, sub5("$share/g/a", 0x04), ProtocolError)
	f("MQTT-2.2.1-3 SUBSCRIBE packet id 0", V311, frame(0x82, raw(0, 0), str("a"), raw(0)), ProtocolError)
	f("MQTT-3.8.3-3 SUBSCRIBE without filters", V311, frame(0x82, raw(0, 1)), ProtocolError)
	f("SUBSCRIBE missing options byte", V311, frame(0x82, raw(0, 1), str("a")), MalformedPacket)
	f("SUBSCRIBE two subscription identifiers", V5, frame(0x82, raw(0, 1, 4, 0x0B, 1, 0x0B, 2), str("a"), raw(0)),
		ProtocolError)
	f("subscription identifier 0", V5, frame(0x82, raw(0, 1, 2, 0x0B, 0), str("a"), raw(0)), ProtocolError)
	f("MQTT-3.10.3-2 UNSUBSCRIBE without filters", V311, frame(0xA2, raw(0, 1)), ProtocolError)
	f("MQTT-4.7.1-2 UNSUBSCRIBE bad filter", V311, frame(0xA2, raw(0, 1), str("#/a")), MalformedPacket)
	f("MQTT-2.2.1-3 UNSUBSCRIBE packet id 0", V5, frame(0xA2, raw(0, 0, 0), str("a")), ProtocolError)
	f("MQTT-3.9.3-2 SUBACK 3.1.1 bad return code", V311, frame(0x90, raw(0, 1, 0x03)), ProtocolError)
	f("SUBACK 5.0 reason not allowed", V5, frame(0x90, raw(0, 1, 0, 0x10)), ProtocolError)
	f("UNSUBACK 5.0 reason not allowed", V5, frame(0xB0, raw(0, 1, 0, 0x02)), ProtocolError)

	// CONNECT.
	conn := func(level byte, flags byte, rest ...[]byte) []byte {
		return frame(0x10, append([][]byte{str("MQTT"), raw(level, flags, 0, 0)}, rest...)...)
	}
	f("MQTT-3.1.2-1 unknown protocol name", V311, frame(0x10, str("MQXX"), raw(4, 2, 0, 0), str("c")), ProtocolError)
	f("MQTT-3.1.2-2 unsupported level", V311, conn(6, 2, str("c")), UnsupportedProtocolVersion)
	f("MQTT-3.1.2-2 MQIsdp with level 4", V311, frame(0x10, str("MQIsdp"), raw(4, 2, 0, 0), str("c")),
		UnsupportedProtocolVersion)
	f("MQTT-3.1.2-3 reserved flag", V311, conn(4, 0x03, str("c")), MalformedPacket)
	f("MQTT-3.1.2-11 will QoS without will flag", V311, conn(4, 0x08, str("c")), MalformedPacket)
	f("MQTT-3.1.2-13 will retain without will flag", V311, conn(4, 0x20, str("c")), MalformedPacket)
	f("MQTT-3.1.2-12 will QoS 3", V311, conn(4, 0x1C, str("c"), str("w"), str("p")), MalformedPacket)
	f("MQTT-3.1.2-22 password without user name in 3.1.1", V311, conn(4, 0x40, str("c"), str("p")), MalformedPacket)
	f("MQTT-3.1.3-11 will topic with wildcard", V311, conn(4, 0x04, str("c"), str("a/#"), str("p")), TopicNameInvalid)
	f("MQTT-1.5.4-1 client id not UTF-8", V311, conn(4, 0x02, raw(0, 1, 0xFF)), MalformedPacket)
	f("MQTT-1.5.4-1 user name not UTF-8", V311, conn(4, 0x82, str("c"), raw(0, 1, 0xFE)), MalformedPacket)
	f("CONNECT user name missing", V311, conn(4, 0x80, str("c")), MalformedPacket)
	f("CONNECT trailing bytes", V311, conn(4, 0x02, str("c"), raw(1)), MalformedPacket)
	f("CONNECT truncated keep alive", V311, frame(0x10, str("MQTT"), raw(4, 2, 0)), MalformedPacket)

	// Properties (CONNECT carries them here; the rules are the same in every packet).
	f("duplicate session expiry", V5, connectV5(0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2), ProtocolError)
	f("duplicate receive maximum", V5, connectV5(0x21, 0, 1, 0x21, 0, 2), ProtocolError)
	f("unknown property identifier", V5, connectV5(0x05, 1), MalformedPacket)
	f("property identifier beyond table", V5, connectV5(0x7F, 1), MalformedPacket)
	f("topic alias not allowed in CONNECT", V5, connectV5(0x23, 0, 1), MalformedPacket)
	f("truncated four-byte property", V5, connectV5(0x11, 0, 0), MalformedPacket)
	f("receive maximum 0", V5, connectV5(0x21, 0, 0), ProtocolError)
	f("maximum packet size 0", V5, connectV5(0x27, 0, 0, 0, 0), ProtocolError)
	f("request problem information 2", V5, connectV5(0x17, 2), ProtocolError)
	f("request response information 2", V5, connectV5(0x19, 2), ProtocolError)
	f("MQTT-3.1.2-29 authentication data without method", V5, connectV5(0x16, 0, 1, 'x'), ProtocolError)
	f("MQTT-1.5.4-1 user property key not UTF-8", V5, connectV5(0x26, 0, 1, 0xFF, 0, 0), MalformedPacket)
	f("user property value truncated", V5, connectV5(0x26, 0, 1, 'k', 0, 9), MalformedPacket)
	f("payload format indicator 2", V5, frame(0x30, str("t"), raw(2, 0x01, 2)), ProtocolError)
	f("will property not allowed", V5, frame(0x10, str("MQTT"), raw(5, 0x06, 0, 0, 0), str("c"),
		raw(2, 0x21, 0), str("w"), str("p")), MalformedPacket)

	// CONNACK, DISCONNECT, AUTH.
	f("MQTT-3.2.2-1 CONNACK reserved flags", V311, frame(0x20, raw(0x02, 0)), MalformedPacket)
	f("CONNACK 3.1.1 return code 6", V311, frame(0x20, raw(0, 6)), ProtocolError)
	f("CONNACK 5.0 reason not allowed", V5, frame(0x20, raw(0, 0x04, 0)), ProtocolError)
	f("MQTT-3.14.2-1 DISCONNECT reason not allowed", V5, frame(0xE0, raw(0x02)), ProtocolError)
	f("MQTT-3.15.2-1 AUTH reason not allowed", V5, frame(0xF0, raw(0x80)), ProtocolError)
	f("AUTH data without method", V5, frame(0xF0, raw(0x18, 4, 0x16, 0, 1, 'x')), ProtocolError)
}

// TestSplit covers the frame splitter's three outcomes.
func TestSplit(t *testing.T) {
	pub := frame(0x30, str("a/b"), make([]byte, 200)) // two-byte remaining length
	for k := 0; k < len(pub); k++ {
		_, n, err := Split(pub[:k], 0)
		require.NoError(t, err, "prefix %d", k)
		require.Zero(t, n, "prefix %d", k)
	}
	h, n, err := Split(append(pub, 0xC0, 0), 0)
	require.NoError(t, err)
	require.Equal(t, len(pub), n)
	require.Equal(t, FixedHeader{Type: PUBLISH, Remaining: 205, HeaderLen: 3}, h)

	// MQTT 5.0 section 1.5.5: at most four bytes of remaining length.
	_, _, err = Split(raw(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), 0)
	requireCode(t, err, MalformedPacket)
	_, _, err = Split(raw(0x00, 0x00), 0)
	requireCode(t, err, MalformedPacket)

	// MQTT-3.1.2-24: too large is known from the header alone, before the body.
	_, _, err = Split(raw(0x30, 0x80, 0x80, 0x01), 1024)
	requireCode(t, err, PacketTooLarge)
	_, n, err = Split(raw(0x30, 0x80, 0x08), 1024) // 1024 body + 3 header > 1024
	requireCode(t, err, PacketTooLarge)
	require.Zero(t, n)
	_, n, err = Split(raw(0x30, 0xFD, 0x07), 1024) // 1021 + 3 = 1024: allowed, needs more
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestValidFilter(t *testing.T) {
	for _, ok := range []string{"#", "+", "a", "/", "a/b", "a/+", "+/+", "a/#", "/#", "a//b", "+/#", "$SYS/#",
		"$share/g/a/#", "$share/g/#", "$share/g//", "é/+", "$share/g/$share/x"} {
		require.True(t, ValidFilter([]byte(ok)), ok)
	}
	for _, bad := range []string{"", "a#", "#/a", "a/#/b", "+a", "a+/b", "a/b+", "$share/", "$share//a",
		"$share/g", "$share/g/", "$share/g#/a", "a\x00b", "\xff"} {
		require.False(t, ValidFilter([]byte(bad)), bad)
	}
}

func TestValidTopicName(t *testing.T) {
	for _, ok := range []string{"a", "/", "a//b", "$SYS/x", "é"} {
		require.True(t, ValidTopicName([]byte(ok)), ok)
	}
	for _, bad := range []string{"", "+", "a/#", "a\x00", "\xed\xa0\x80"} {
		require.False(t, ValidTopicName([]byte(bad)), bad)
	}
}

func TestConnackCodeV3(t *testing.T) {
	require.Equal(t, ConnAccepted, ConnackCodeV3(Success))
	require.Equal(t, ConnRefusedVersion, ConnackCodeV3(UnsupportedProtocolVersion))
	require.Equal(t, ConnRefusedIdentifier, ConnackCodeV3(ClientIdentifierNotValid))
	require.Equal(t, ConnRefusedBadCredentials, ConnackCodeV3(BadUserNameOrPassword))
	require.Equal(t, ConnRefusedNotAuthorized, ConnackCodeV3(NotAuthorized))
	require.Equal(t, ConnRefusedUnavailable, ConnackCodeV3(ServerBusy))
}

func TestErrorMessageNamesPacketAndCode(t *testing.T) {
	_, err := Decode(frame(0x36, str("t"), raw(0, 1)), V311)
	require.EqualError(t, err, "PUBLISH: QoS 3 [MQTT-3.3.1-4] (malformed packet)")
}
