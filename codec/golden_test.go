package codec

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// b is shorthand for a byte-slice literal in expected packets.
func b(s string) []byte { return []byte(s) }

// props returns Properties with the Present bits of ids set, for decoded
// expectations.
func present(ids ...PropID) PropSet {
	var s PropSet
	for _, id := range ids {
		s.Add(id)
	}
	return s
}

// TestGolden checks every packet type in every version it exists in both
// ways: decode(raw) equals the packet and encode(packet) equals raw.
func TestGolden(t *testing.T) {
	f := func(name string, v Version, want Packet, raw []byte) {
		t.Run(name, func(t *testing.T) {
			got, err := Decode(raw, v)
			require.NoError(t, err)
			if p, ok := got.(*Publish); ok {
				// The received block is a view of raw's properties:
				// re-encoding the decoded properties gives it back.
				if v == V5 {
					require.Equal(t, p.Properties.AppendPublishRaw(nil), p.ReceivedProperties)
				}
				p.ReceivedProperties = nil
			}
			require.Equal(t, want, got)
			require.Equal(t, raw, want.AppendTo(nil, v), "encode")
			// Encoding into a buffer with room must not reallocate.
			buf := make([]byte, 0, len(raw))
			out := want.AppendTo(buf, v)
			require.Equal(t, &buf[:1][0], &out[:1][0], "AppendTo reallocated a buffer that had room")
		})
	}

	f("CONNECT/3.1", V31, &Connect{ProtocolName: b("MQIsdp"), Version: V31, CleanStart: true, KeepAlive: 60,
		ClientID: b("c1")}, []byte{
		0x10, 16, // fixed header: CONNECT, remaining length
		0, 6, 'M', 'Q', 'I', 's', 'd', 'p', // protocol name
		3,     // protocol level 3
		0x02,  // flags: clean session
		0, 60, // keep alive
		0, 2, 'c', '1', // client id
	})
	f("CONNECT/3.1.1 will user password", V311, &Connect{ProtocolName: b("MQTT"), Version: V311, KeepAlive: 10,
		ClientID: b("dev"), WillFlag: true, Will: Will{QoS: 1, Retain: true, Topic: b("w"), Payload: b("bye")},
		UsernameFlag: true, Username: b("u"), PasswordFlag: true, Password: b("p")}, []byte{
		0x10, 29, // fixed header
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4,                  // protocol level 4
		0x80 | 0x40 | 0x2C, // flags: username, password, will retain, will QoS 1, will
		0, 10,              // keep alive
		0, 3, 'd', 'e', 'v', // client id
		0, 1, 'w', // will topic
		0, 3, 'b', 'y', 'e', // will payload
		0, 1, 'u', // user name
		0, 1, 'p', // password
	})
	f("CONNECT/3.1.1 empty client id", V311, &Connect{ProtocolName: b("MQTT"), Version: V311, CleanStart: true,
		ClientID: []byte{}}, []byte{
		0x10, 12, // fixed header
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		4, 0x02, 0, 0, // level, clean session, keep alive 0
		0, 0, // empty client id
	})
	f("CONNECT/5.0 properties will auth", V5, &Connect{ProtocolName: b("MQTT"), Version: V5, CleanStart: true,
		KeepAlive: 30,
		Properties: Properties{Present: present(PropSessionExpiry, PropAuthMethod, PropReceiveMaximum, PropUser),
			SessionExpiry: 3600, AuthMethod: b("SCRAM"), ReceiveMaximum: 10,
			User: []UserProperty{{Key: b("k"), Value: b("v")}}},
		ClientID: b("c"), WillFlag: true,
		Will: Will{QoS: 2, Topic: b("t/w"), Payload: b("x"),
			Properties: Properties{Present: present(PropWillDelay, PropContentType), WillDelay: 5, ContentType: b("t")}},
		PasswordFlag: true, Password: b("pw")}, []byte{
		0x10, 59, // fixed header
		0, 4, 'M', 'Q', 'T', 'T', // protocol name
		5,     // protocol level 5
		0x56,  // flags: password, will QoS 2, will, clean start
		0, 30, // keep alive
		23,                     // properties length
		0x11, 0, 0, 0x0E, 0x10, // session expiry 3600
		0x15, 0, 5, 'S', 'C', 'R', 'A', 'M', // authentication method
		0x21, 0, 10, // receive maximum
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
		0, 1, 'c', // client id
		9,               // will properties length
		0x03, 0, 1, 't', // content type
		0x18, 0, 0, 0, 5, // will delay interval
		0, 3, 't', '/', 'w', // will topic
		0, 1, 'x', // will payload
		0, 2, 'p', 'w', // password without user name (allowed in 5.0)
	})

	f("CONNACK/3.1", V31, &Connack{ReasonCode: ReasonCode(ConnRefusedIdentifier)}, []byte{
		0x20, 2, // fixed header
		0x00, // reserved flags (3.1 has no session present)
		0x02, // return code: identifier rejected
	})
	f("CONNACK/3.1.1", V311, &Connack{SessionPresent: true}, []byte{
		0x20, 2, // fixed header
		0x01, // session present
		0x00, // accepted
	})
	f("CONNACK/5.0", V5, &Connack{ReasonCode: Success,
		Properties: Properties{Present: present(PropAssignedClientID, PropTopicAliasMaximum, PropMaximumQoS,
			PropRetainAvailable), AssignedClientID: b("auto-1"), TopicAliasMaximum: 16, MaximumQoS: 1}}, []byte{
		0x20, 19, // fixed header
		0x00, 0x00, // flags, reason code
		16,                                       // properties length
		0x12, 0, 6, 'a', 'u', 't', 'o', '-', '1', // assigned client identifier
		0x22, 0, 16, // topic alias maximum
		0x24, 1, // maximum QoS 1
		0x25, 0, // retain available 0 (explicitly present)
	})

	f("PUBLISH/3.1.1 QoS 0", V311, &Publish{Topic: b("a/b"), Payload: b("hi")}, []byte{
		0x30, 7, // fixed header: PUBLISH QoS 0
		0, 3, 'a', '/', 'b', // topic
		'h', 'i', // payload
	})
	f("PUBLISH/3.1 QoS 1 dup retain", V31, &Publish{Dup: true, QoS: 1, Retain: true, Topic: b("t"), PacketID: 7,
		Payload: []byte{}}, []byte{
		0x3B, 5, // fixed header: PUBLISH, DUP, QoS 1, RETAIN
		0, 1, 't', // topic
		0, 7, // packet identifier
	})
	f("PUBLISH/5.0 QoS 2 properties", V5, &Publish{QoS: 2, Topic: b("s/1"), PacketID: 0x0102,
		Properties: Properties{Present: present(PropPayloadFormat, PropMessageExpiry, PropSubscriptionID, PropUser),
			PayloadFormat: 1, MessageExpiry: 30, SubscriptionIDs: []uint32{1, 200},
			User: []UserProperty{{Key: b("a"), Value: b("1")}, {Key: b("a"), Value: b("2")}}},
		Payload: b("{}")}, []byte{
		0x34, 36, // fixed header: PUBLISH QoS 2
		0, 3, 's', '/', '1', // topic
		0x01, 0x02, // packet identifier
		26,      // properties length
		0x01, 1, // payload format indicator
		0x02, 0, 0, 0, 30, // message expiry interval
		0x0B, 1, // subscription identifier 1
		0x0B, 0xC8, 0x01, // subscription identifier 200 (varint)
		0x26, 0, 1, 'a', 0, 1, '1', // user property a=1
		0x26, 0, 1, 'a', 0, 1, '2', // user property a=2
		'{', '}', // payload
	})
	f("PUBLISH/5.0 topic alias only", V5, &Publish{Topic: []byte{},
		Properties: Properties{Present: present(PropTopicAlias), TopicAlias: 3}, Payload: b("x")}, []byte{
		0x30, 7, // fixed header
		0, 0, // empty topic
		3, 0x23, 0, 3, // properties: topic alias 3
		'x', // payload
	})

	for _, tc := range []struct {
		typ   Type
		first byte
	}{{PUBACK, 0x40}, {PUBREC, 0x50}, {PUBREL, 0x62}, {PUBCOMP, 0x70}} {
		name := tc.typ.String()
		f(name+"/3.1.1", V311, &Ack{PacketType: tc.typ, PacketID: 0x1234}, []byte{
			tc.first, 2, // fixed header
			0x12, 0x34, // packet identifier
		})
		f(name+"/5.0 success short form", V5, &Ack{PacketType: tc.typ, PacketID: 1}, []byte{
			tc.first, 2, // fixed header: reason code omitted means success
			0, 1, // packet identifier
		})
	}
	f("PUBACK/5.0 reason code", V5, &Ack{PacketType: PUBACK, PacketID: 9, ReasonCode: NoMatchingSubscribers}, []byte{
		0x40, 3, // fixed header
		0, 9, // packet identifier
		0x10, // no matching subscribers
	})
	f("PUBREC/5.0 reason string", V5, &Ack{PacketType: PUBREC, PacketID: 9, ReasonCode: NotAuthorized,
		Properties: Properties{Present: present(PropReasonString), ReasonString: b("no")}}, []byte{
		0x50, 9, // fixed header
		0, 9, // packet identifier
		0x87,                    // not authorized
		5, 0x1F, 0, 2, 'n', 'o', // properties: reason string
	})
	f("PUBCOMP/5.0 not found", V5, &Ack{PacketType: PUBCOMP, PacketID: 2, ReasonCode: PacketIdentifierNotFound}, []byte{
		0x70, 3, // fixed header
		0, 2, // packet identifier
		0x92, // packet identifier not found
	})

	f("SUBSCRIBE/3.1.1", V311, &Subscribe{PacketID: 10, Subscriptions: []Subscription{
		{Filter: b("a/+"), QoS: 1}, {Filter: b("#"), QoS: 2}}}, []byte{
		0x82, 12, // fixed header: SUBSCRIBE, flags 0010
		0, 10, // packet identifier
		0, 3, 'a', '/', '+', 1, // filter, QoS 1
		0, 1, '#', 2, // filter, QoS 2
	})
	f("SUBSCRIBE/5.0 options", V5, &Subscribe{PacketID: 11,
		Properties: Properties{Present: present(PropSubscriptionID), SubscriptionIDs: []uint32{5}},
		Subscriptions: []Subscription{
			{Filter: b("x/#"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
			{Filter: b("$share/g/y"), QoS: 0, RetainHandling: 1}}}, []byte{
		0x82, 24, // fixed header
		0, 11, // packet identifier
		2, 0x0B, 5, // properties: subscription identifier 5
		0, 3, 'x', '/', '#', 0x2D, // filter, options: RH 2, RAP, NL, QoS 1
		0, 10, '$', 's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'y', 0x10, // shared filter, RH 1, QoS 0
	})
	f("SUBACK/3.1.1", V311, &Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS1, 0x80}}, []byte{
		0x90, 4, // fixed header
		0, 10, // packet identifier
		0x01, 0x80, // granted QoS 1, failure
	})
	f("SUBACK/5.0", V5, &Suback{PacketID: 11, ReasonCodes: []ReasonCode{GrantedQoS2, NotAuthorized,
		SharedSubscriptionsNotSupported}, Properties: Properties{Present: present(PropReasonString),
		ReasonString: b("r")}}, []byte{
		0x90, 10, // fixed header
		0, 11, // packet identifier
		4, 0x1F, 0, 1, 'r', // properties: reason string
		0x02, 0x87, 0x9E, // reason codes
	})
	f("UNSUBSCRIBE/3.1.1", V311, &Unsubscribe{PacketID: 3, Filters: [][]byte{b("a"), b("b/#")}}, []byte{
		0xA2, 10, // fixed header: UNSUBSCRIBE, flags 0010
		0, 3, // packet identifier
		0, 1, 'a', // filter
		0, 3, 'b', '/', '#', // filter
	})
	f("UNSUBSCRIBE/5.0", V5, &Unsubscribe{PacketID: 4, Filters: [][]byte{b("a")},
		Properties: Properties{Present: present(PropUser), User: []UserProperty{{Key: b("k"), Value: []byte{}}}}}, []byte{
		0xA2, 12, // fixed header
		0, 4, // packet identifier
		6, 0x26, 0, 1, 'k', 0, 0, // properties: user property k=""
		0, 1, 'a', // filter
	})
	f("UNSUBACK/3.1.1", V311, &Unsuback{PacketID: 3}, []byte{
		0xB0, 2, // fixed header
		0, 3, // packet identifier
	})
	f("UNSUBACK/5.0", V5, &Unsuback{PacketID: 4, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}, []byte{
		0xB0, 5, // fixed header
		0, 4, // packet identifier
		0,          // properties length
		0x00, 0x11, // success, no subscription existed
	})
	for _, v := range []Version{V31, V311, V5} {
		f("PINGREQ/"+v.String(), v, &Pingreq{}, []byte{0xC0, 0})
		f("PINGRESP/"+v.String(), v, &Pingresp{}, []byte{0xD0, 0})
	}
	f("DISCONNECT/3.1.1", V311, &Disconnect{}, []byte{0xE0, 0})
	f("DISCONNECT/5.0 normal", V5, &Disconnect{}, []byte{0xE0, 0})
	f("DISCONNECT/5.0 with will", V5, &Disconnect{ReasonCode: DisconnectWithWill}, []byte{
		0xE0, 1, // fixed header
		0x04, // disconnect with will message
	})
	f("DISCONNECT/5.0 properties", V5, &Disconnect{ReasonCode: SessionTakenOver,
		Properties: Properties{Present: present(PropSessionExpiry, PropServerReference), SessionExpiry: 0,
			ServerReference: b("h")}}, []byte{
		0xE0, 11, // fixed header
		0x8E,             // session taken over
		9,                // properties length
		0x11, 0, 0, 0, 0, // session expiry 0 (explicitly present)
		0x1C, 0, 1, 'h', // server reference
	})
	f("AUTH/5.0 continue", V5, &Auth{ReasonCode: ContinueAuthentication,
		Properties: Properties{Present: present(PropAuthMethod, PropAuthData), AuthMethod: b("M"),
			AuthData: []byte{1, 2}}}, []byte{
		0xF0, 11, // fixed header
		0x18,            // continue authentication
		9,               // properties length
		0x15, 0, 1, 'M', // authentication method
		0x16, 0, 2, 1, 2, // authentication data
	})
	f("AUTH/5.0 success", V5, &Auth{}, []byte{0xF0, 0})
}

// TestEncodeOmitsPropertiesBeforeV5 checks that properties never leak into
// 3.x frames and that properties not allowed in a packet are not written.
func TestEncodeOmitsPropertiesBeforeV5(t *testing.T) {
	p := &Publish{Topic: b("t"), Payload: b("p"), Properties: Properties{MessageExpiry: 5,
		SessionExpiry: 9 /* not allowed in PUBLISH */}}
	require.Equal(t, []byte{0x30, 4, 0, 1, 't', 'p'}, p.AppendTo(nil, V311))
	require.Equal(t, []byte{0x30, 10, 0, 1, 't', 5, 0x02, 0, 0, 0, 5, 'p'}, p.AppendTo(nil, V5))
	u := &Unsuback{PacketID: 1, ReasonCodes: []ReasonCode{Success}}
	require.Equal(t, []byte{0xB0, 2, 0, 1}, u.AppendTo(nil, V311))
}

// TestPublishAppendHeader checks that header plus payload is the whole frame.
func TestPublishAppendHeader(t *testing.T) {
	p := &Publish{QoS: 1, PacketID: 5, Topic: b("a/b"), Payload: make([]byte, 300),
		Properties: Properties{User: []UserProperty{{Key: b("k"), Value: b("v")}}}}
	for _, v := range []Version{V311, V5} {
		h := p.AppendHeader(nil, v)
		require.Equal(t, p.AppendTo(nil, v), append(h, p.Payload...))
		require.Equal(t, p.Size(v), len(h)+len(p.Payload))
	}
}

// TestPublishRawProperties checks that pre-encoded properties follow the
// per-recipient ones in one property block, and decode back as if they
// had been encoded together.
func TestPublishRawProperties(t *testing.T) {
	fwd := Properties{ContentType: b("json"), User: []UserProperty{{Key: b("k"), Value: b("v")}}}
	raw := fwd.AppendPublishRaw(nil)
	require.Equal(t, fwd.PublishRawSize(), len(raw))
	require.Equal(t, []byte{
		0x03, 0, 4, 'j', 's', 'o', 'n', // content type
		0x26, 0, 1, 'k', 0, 1, 'v', // user property
	}, raw)
	p := &Publish{QoS: 1, PacketID: 9, Topic: b("t"), Payload: b("p"), RawProperties: raw,
		Properties: Properties{MessageExpiry: 7, SubscriptionIDs: []uint32{3}}}
	frame := p.AppendTo(nil, V5)
	require.Equal(t, []byte{
		0x32, 28, // PUBLISH QoS 1, remaining length
		0, 1, 't', // topic
		0, 9, // packet identifier
		21,               // property block length
		0x02, 0, 0, 0, 7, // message expiry
		0x0B, 3, // subscription identifier
		0x03, 0, 4, 'j', 's', 'o', 'n', // content type (raw)
		0x26, 0, 1, 'k', 0, 1, 'v', // user property (raw)
		'p',
	}, frame)
	require.Equal(t, p.Size(V5), len(frame))
	pkt, err := Decode(frame, V5)
	require.NoError(t, err)
	q := pkt.(*Publish)
	require.Equal(t, uint32(7), q.Properties.MessageExpiry)
	require.Equal(t, []uint32{3}, q.Properties.SubscriptionIDs)
	require.Equal(t, b("json"), q.Properties.ContentType)
	require.Nil(t, q.RawProperties)
	require.Equal(t, []byte{0x30, 4, 0, 1, 't', 'p'}, (&Publish{Topic: b("t"), Payload: b("p"), RawProperties: raw}).AppendTo(nil, V311),
		"3.x frames carry no properties")
}

// TestAppendForwarded checks that forwarding a received property block
// drops exactly the per-recipient properties and keeps the others, user
// properties in order, byte for byte as encoding them would.
func TestAppendForwarded(t *testing.T) {
	in := Properties{PayloadFormat: 1, MessageExpiry: 30, ContentType: b("json"), ResponseTopic: b("r"),
		CorrelationData: []byte{0, 1}, TopicAlias: 4,
		User: []UserProperty{{Key: b("z"), Value: b("1")}, {Key: b("a"), Value: b("2")}}}
	frame := (&Publish{QoS: 1, PacketID: 1, Topic: b("t"), Properties: in, Payload: b("p")}).AppendTo(nil, V5)
	pkt, err := Decode(frame, V5)
	require.NoError(t, err)
	got := AppendForwarded(nil, pkt.(*Publish).ReceivedProperties)
	want := in
	want.MessageExpiry, want.TopicAlias = 0, 0
	require.Equal(t, want.AppendPublishRaw(nil), got)
	require.Empty(t, AppendForwarded(nil, nil))
}

// TestAppendForwardedOrders feeds AppendForwarded and
// Publish.AppendForwarded property blocks in orders the encoder does not
// produce (per-recipient properties first, last, next to each other,
// alone), as other clients may send them.
func TestAppendForwardedOrders(t *testing.T) {
	alias := []byte{0x23, 0, 1}
	expiry := []byte{0x02, 0, 0, 0, 30}
	user := []byte{0x26, 0, 1, 'k', 0, 1, 'v'}
	ctype := []byte{0x03, 0, 1, 'c'}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	f := func(name string, block, want []byte) {
		t.Run(name, func(t *testing.T) {
			frame := frame(0x30, str("t"), appendVarint(nil, len(block)), block, raw('p'))
			pkt, err := Decode(frame, V5)
			require.NoError(t, err)
			pub := pkt.(*Publish)
			require.Equal(t, want, AppendForwarded([]byte{}, pub.ReceivedProperties))
			require.Equal(t, want, pub.AppendForwarded([]byte{}), "Publish.AppendForwarded")
		})
	}
	f("none per recipient", cat(ctype, user, user), cat(ctype, user, user))
	f("alias first", cat(alias, user, user), cat(user, user))
	f("alias last", cat(user, ctype, alias), cat(user, ctype))
	f("alias and expiry together", cat(user, alias, expiry, ctype), cat(user, ctype))
	f("expiry between user properties", cat(user, expiry, user, alias), cat(user, user))
	f("only per recipient", cat(expiry, alias), []byte{})
}

// TestAppendPublish0MatchesPublish checks AppendPublish0 and Publish0Size
// against the general encoder, across the remaining length's byte counts,
// and one golden frame.
func TestAppendPublish0MatchesPublish(t *testing.T) {
	require.Equal(t, []byte{0x30, 0x07, 0x00, 0x03, 'a', '/', 'b', 'h', 'i'},
		AppendPublish0(nil, b("a/b"), b("hi")))
	for _, size := range []int{0, 1, 122, 123, 124, 16378, 16379, 16380, 2097146, 2097147} {
		for _, topic := range [][]byte{b("a/b"), nil} {
			payload := make([]byte, size)
			p := Publish{Topic: topic, Payload: payload}
			want := p.AppendTo(nil, V311)
			require.Equal(t, want, AppendPublish0([]byte{}, topic, payload), "payload %d, topic %q", size, topic)
			require.Equal(t, len(want), Publish0Size(topic, payload), "payload %d, topic %q", size, topic)
		}
	}
}

// TestForwardHeaderMatchesPublish checks ForwardHeader (its bytes and its
// Size) against the general encoder for every combination of per-recipient
// properties.
func TestForwardHeaderMatchesPublish(t *testing.T) {
	raw := (&Properties{ContentType: b("c"), User: []UserProperty{{Key: b("k"), Value: b("v")}}}).AppendPublishRaw(nil)
	payload := make([]byte, 200)
	for _, qos := range []byte{0, 1, 2} {
		for _, exp := range []bool{false, true} {
			for _, ids := range [][]uint32{nil, {5}, {1, 300, 70000}} {
				for _, alias := range []uint16{0, 9} {
					for _, topic := range [][]byte{b("a/b"), nil} {
						if topic == nil && alias == 0 {
							continue
						}
						p := Publish{Dup: qos > 0, QoS: qos, Retain: true, Topic: topic, RawProperties: raw, Payload: payload}
						h := ForwardHeader{Dup: qos > 0, QoS: qos, Retain: true, Topic: topic, Raw: raw, PayloadLen: len(payload),
							TopicAlias: alias, SubIDs: ids, HasExpiry: exp, Expiry: 77}
						if qos > 0 {
							p.PacketID, h.PacketID = 513, 513
						}
						if exp {
							p.Properties.MessageExpiry = 77
							p.Properties.Present.Add(PropMessageExpiry)
						}
						p.Properties.SubscriptionIDs = ids
						p.Properties.TopicAlias = alias
						want := p.AppendHeader(nil, V5)
						require.Equal(t, want, h.AppendTo(nil), "qos %d expiry %v ids %v alias %d", qos, exp, ids, alias)
						require.Equal(t, len(want), h.Size(), "qos %d expiry %v ids %v alias %d", qos, exp, ids, alias)
					}
				}
			}
		}
	}
}
