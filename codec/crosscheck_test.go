package codec_test

// Cross-checks against two MQTT codecs nobody here wrote: Eclipse Paho's
// paho.golang/packets (MQTT 5.0) and paho.mqtt.golang/packets (3.1 and
// 3.1.1). Every random packet goes both ways: Paho encodes and loopmq
// decodes, then loopmq encodes the same packet and Paho decodes it, and the
// fields are compared each time.
//
// Where Paho departs from the specification (or cannot express something)
// the case is left out with a comment saying why:
//
//   - paho.golang packs will properties with the CONNECT property filter,
//     which drops the five message properties a will may carry (payload
//     format, message expiry, content type, response topic, correlation
//     data). Paho sends only Will Delay Interval and user properties in a
//     will; the other five are checked loopmq → Paho only.
//   - paho.golang holds one subscription identifier per packet, so PUBLISH
//     with several (server to client, [MQTT-3.3.4-3]) is not cross-checked.
//   - paho.golang never encodes an empty string or binary property (it
//     treats "" as absent), so explicitly empty properties are not sent.
//   - paho.golang packs Reason String into every packet but CONNECT,
//     PUBLISH, SUBSCRIBE and UNSUBSCRIBE included, where the specification
//     forbids it; the generators never set it there.
//   - paho.golang cannot decode a DISCONNECT with remaining length 0 (it
//     reads the reason code unconditionally and fails with EOF), although
//     [MQTT 5.0 section 3.14.2.1] allows it and loopmq sends it for reason
//     0x00 without properties; that frame is checked byte for byte instead.
//   - paho.mqtt.golang writes the CONNACK session present bit for 3.1 too,
//     where the byte is reserved; 3.1 CONNACKs are generated without it.
//
// Apart from those, paho.golang supports every MQTT 5.0 property in every
// packet that allows it.

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	paho5 "github.com/eclipse/paho.golang/packets"
	paho3 "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// xcGen draws random packet fields. Every test seeds its own, so runs are
// reproducible and independent of -run filters.
type xcGen struct {
	r   *rand.Rand
	big []byte // 256 KiB of random bytes for the large payloads
}

const xcBigPayload = 256 << 10

func newXCGen(seed uint64) *xcGen {
	g := &xcGen{r: rand.New(rand.NewPCG(seed, 0x6c6f6f706d71))}
	g.big = make([]byte, xcBigPayload)
	for i := range g.big {
		g.big[i] = byte(g.r.Uint32())
	}
	return g
}

func (g *xcGen) bool() bool { return g.r.IntN(2) == 0 }

// size picks a length up to limit: mostly short, sometimes long, and now
// and then within a few bytes of limit.
func (g *xcGen) size(limit int) int {
	switch x := g.r.IntN(100); {
	case x < 10:
		return 0
	case x < 70:
		return g.r.IntN(min(16, limit) + 1)
	case x < 92:
		return g.r.IntN(min(300, limit) + 1)
	case x < 99:
		return g.r.IntN(min(5000, limit) + 1)
	default:
		return max(0, limit-g.r.IntN(4))
	}
}

// char returns a random Unicode scalar value of any UTF-8 length: never
// U+0000 [MQTT-1.5.4-2] and never a surrogate [MQTT-1.5.4-1].
func (g *xcGen) char() rune {
	switch g.r.IntN(8) {
	case 0, 1, 2, 3:
		return rune(0x20 + g.r.IntN(0x5F)) // printable ASCII
	case 4:
		return rune(1 + g.r.IntN(0x7F)) // any ASCII but U+0000, controls included
	case 5:
		return rune(0x80 + g.r.IntN(0x800-0x80)) // two bytes
	case 6:
		c := rune(0x800 + g.r.IntN(0x10000-0x800-0x800)) // three bytes, surrogates skipped
		if c >= 0xD800 {
			c += 0x800
		}
		return c
	}
	return rune(0x10000 + g.r.IntN(0x110000-0x10000)) // four bytes
}

// text returns a string of exactly n bytes of random UTF-8 without the
// characters in exclude.
func (g *xcGen) text(n int, exclude string) string {
	var b strings.Builder
	b.Grow(n)
	for b.Len() < n {
		c := g.char()
		if strings.ContainsRune(exclude, c) {
			continue
		}
		if b.Len()+utf8.RuneLen(c) > n {
			c = rune('a' + g.r.IntN(26))
		}
		b.WriteRune(c)
	}
	return b.String()
}

// str returns a random string of random length, up to the 65,535 bytes a
// UTF-8 string can hold [MQTT 5.0 section 1.5.4].
func (g *xcGen) str() string { return g.text(g.size(0xFFFF), "") }

func (g *xcGen) binary() []byte {
	b := make([]byte, g.size(0xFFFF))
	for i := range b {
		b[i] = byte(g.r.Uint32())
	}
	return b
}

// payload returns an empty, a 256 KiB or a random-sized application payload.
func (g *xcGen) payload() []byte {
	switch x := g.r.IntN(100); {
	case x < 15:
		return nil
	case x < 19:
		return g.big
	}
	return g.big[:g.r.IntN(2000)]
}

// topic returns a valid topic name: non-empty, no wildcards [MQTT-3.3.2-2].
func (g *xcGen) topic() string {
	t := g.text(g.size(0xFFFF), "+#")
	if t == "" {
		t = "t"
	}
	return t
}

// filter returns a valid topic filter, sometimes with '+' levels, a final
// '#' or a shared subscription prefix.
func (g *xcGen) filter() (f string, shared bool) {
	levels := make([]string, 1+g.r.IntN(5))
	for i := range levels {
		switch {
		case g.r.IntN(8) == 0:
			levels[i] = "+"
		case i == len(levels)-1 && g.r.IntN(6) == 0:
			levels[i] = "#"
		default:
			levels[i] = g.text(g.r.IntN(12), "/+#")
		}
	}
	f = strings.Join(levels, "/")
	if f == "" {
		f = "f"
	}
	if g.r.IntN(8) == 0 {
		return codec.SharePrefix + g.text(1+g.r.IntN(8), "/+#") + "/" + f, true
	}
	return f, false
}

func (g *xcGen) u16() uint16 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 0xFFFF
	}
	return uint16(g.r.Uint32())
}

func (g *xcGen) u32() uint32 {
	switch g.r.IntN(6) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 0xFFFFFFFF
	}
	return g.r.Uint32()
}

func (g *xcGen) nonZero16() uint16 { return max(1, g.u16()) }
func (g *xcGen) nonZero32() uint32 { return max(1, g.u32()) }

// varint returns a subscription identifier, favouring the values where the
// variable byte integer grows a byte.
func (g *xcGen) varint() uint32 {
	edges := []uint32{1, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455}
	if g.r.IntN(2) == 0 {
		return edges[g.r.IntN(len(edges))]
	}
	return 1 + g.r.Uint32N(268_435_455)
}

func (g *xcGen) pick(codes []byte) byte { return codes[g.r.IntN(len(codes))] }

// Reason codes each packet may carry [MQTT 5.0 section 2.4, table 2-6].
var (
	xcConnackCodes = []byte{0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
		0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
	xcPubackCodes     = []byte{0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
	xcPubrelCodes     = []byte{0x00, 0x92}
	xcSubackCodes     = []byte{0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
	xcUnsubackCodes   = []byte{0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}
	xcDisconnectCodes = []byte{0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F,
		0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2}
	xcAuthCodes = []byte{0x00, 0x18, 0x19}
)

// The properties each packet allows [MQTT 5.0 section 2.2.2.2, table 2-4],
// in the order the generator draws them (a method before its data).
var (
	xcConnectProps = []codec.PropID{codec.PropSessionExpiry, codec.PropReceiveMaximum,
		codec.PropMaximumPacketSize, codec.PropTopicAliasMaximum, codec.PropRequestResponseInfo,
		codec.PropRequestProblemInfo, codec.PropUser, codec.PropAuthMethod, codec.PropAuthData}
	xcWillProps = []codec.PropID{codec.PropWillDelay, codec.PropPayloadFormat, codec.PropMessageExpiry,
		codec.PropContentType, codec.PropResponseTopic, codec.PropCorrelationData, codec.PropUser}
	xcConnackProps = []codec.PropID{codec.PropSessionExpiry, codec.PropReceiveMaximum, codec.PropMaximumQoS,
		codec.PropRetainAvailable, codec.PropMaximumPacketSize, codec.PropAssignedClientID,
		codec.PropTopicAliasMaximum, codec.PropReasonString, codec.PropUser, codec.PropWildcardSubAvailable,
		codec.PropSubIDAvailable, codec.PropSharedSubAvailable, codec.PropServerKeepAlive,
		codec.PropResponseInfo, codec.PropServerReference, codec.PropAuthMethod, codec.PropAuthData}
	xcPublishProps = []codec.PropID{codec.PropPayloadFormat, codec.PropMessageExpiry, codec.PropTopicAlias,
		codec.PropResponseTopic, codec.PropCorrelationData, codec.PropUser, codec.PropSubscriptionID,
		codec.PropContentType}
	xcAckProps         = []codec.PropID{codec.PropReasonString, codec.PropUser} // PUBACK … PUBCOMP, SUBACK, UNSUBACK
	xcSubscribeProps   = []codec.PropID{codec.PropSubscriptionID, codec.PropUser}
	xcUnsubscribeProps = []codec.PropID{codec.PropUser}
	xcDisconnectProps  = []codec.PropID{codec.PropSessionExpiry, codec.PropReasonString, codec.PropUser,
		codec.PropServerReference}
	xcAuthProps = []codec.PropID{codec.PropAuthMethod, codec.PropAuthData, codec.PropReasonString, codec.PropUser}
)

// props draws a random subset of ids and returns it both as Paho and as
// loopmq properties. A property is marked Present exactly when Paho encodes
// it, so the decoded Present set is compared too.
func (g *xcGen) props(ids []codec.PropID) (*paho5.Properties, codec.Properties) {
	pp := &paho5.Properties{}
	var cp codec.Properties
	flag := func() (*byte, byte) { v := byte(g.r.IntN(2)); return &v, v }
	for _, id := range ids {
		if g.bool() {
			continue
		}
		switch id {
		case codec.PropPayloadFormat:
			pp.PayloadFormat, cp.PayloadFormat = flag()
		case codec.PropMessageExpiry:
			v := g.u32()
			pp.MessageExpiry, cp.MessageExpiry = &v, v
		case codec.PropContentType, codec.PropResponseTopic, codec.PropAssignedClientID, codec.PropAuthMethod,
			codec.PropResponseInfo, codec.PropServerReference, codec.PropReasonString:
			s := g.str()
			if s == "" {
				continue // Paho does not send empty strings
			}
			switch id {
			case codec.PropContentType:
				pp.ContentType, cp.ContentType = s, []byte(s)
			case codec.PropResponseTopic:
				s = g.topic() // a topic name: no wildcards [MQTT-3.3.2-14]
				pp.ResponseTopic, cp.ResponseTopic = s, []byte(s)
			case codec.PropAssignedClientID:
				pp.AssignedClientID, cp.AssignedClientID = s, []byte(s)
			case codec.PropAuthMethod:
				pp.AuthMethod, cp.AuthMethod = s, []byte(s)
			case codec.PropResponseInfo:
				pp.ResponseInfo, cp.ResponseInfo = s, []byte(s)
			case codec.PropServerReference:
				pp.ServerReference, cp.ServerReference = s, []byte(s)
			case codec.PropReasonString:
				pp.ReasonString, cp.ReasonString = s, []byte(s)
			}
		case codec.PropCorrelationData, codec.PropAuthData:
			b := g.binary()
			if len(b) == 0 {
				continue // Paho does not send empty binary data
			}
			if id == codec.PropCorrelationData {
				pp.CorrelationData, cp.CorrelationData = b, b
				break
			}
			if pp.AuthMethod == "" {
				continue // data needs a method [MQTT-3.1.2-29]
			}
			pp.AuthData, cp.AuthData = b, b
		case codec.PropSubscriptionID:
			v := g.varint()
			iv := int(v)
			pp.SubscriptionIdentifier, cp.SubscriptionIDs = &iv, []uint32{v}
		case codec.PropSessionExpiry:
			v := g.u32()
			pp.SessionExpiryInterval, cp.SessionExpiry = &v, v
		case codec.PropServerKeepAlive:
			v := g.u16()
			pp.ServerKeepAlive, cp.ServerKeepAlive = &v, v
		case codec.PropRequestProblemInfo:
			pp.RequestProblemInfo, cp.RequestProblemInfo = flag()
		case codec.PropWillDelay:
			v := g.u32()
			pp.WillDelayInterval, cp.WillDelay = &v, v
		case codec.PropRequestResponseInfo:
			pp.RequestResponseInfo, cp.RequestResponseInfo = flag()
		case codec.PropReceiveMaximum:
			v := g.nonZero16() // 0 is a Protocol Error [MQTT 5.0 section 3.1.2.11.3]
			pp.ReceiveMaximum, cp.ReceiveMaximum = &v, v
		case codec.PropTopicAliasMaximum:
			v := g.u16()
			pp.TopicAliasMaximum, cp.TopicAliasMaximum = &v, v
		case codec.PropTopicAlias:
			v := g.nonZero16() // 0 is not a valid alias [MQTT-3.3.2-8]
			pp.TopicAlias, cp.TopicAlias = &v, v
		case codec.PropMaximumQoS:
			pp.MaximumQOS, cp.MaximumQoS = flag()
		case codec.PropRetainAvailable:
			pp.RetainAvailable, cp.RetainAvailable = flag()
		case codec.PropMaximumPacketSize:
			v := g.nonZero32() // 0 is a Protocol Error [MQTT 5.0 section 3.1.2.11.4]
			pp.MaximumPacketSize, cp.MaximumPacketSize = &v, v
		case codec.PropWildcardSubAvailable:
			pp.WildcardSubAvailable, cp.WildcardSubAvailable = flag()
		case codec.PropSubIDAvailable:
			pp.SubIDAvailable, cp.SubIDAvailable = flag()
		case codec.PropSharedSubAvailable:
			pp.SharedSubAvailable, cp.SharedSubAvailable = flag()
		case codec.PropUser:
			// Several pairs, repeated names allowed; order must survive
			// [MQTT-3.3.2-18].
			for range 1 + g.r.IntN(5) {
				k, v := g.text(g.size(64), ""), g.text(g.size(300), "")
				if g.r.IntN(4) == 0 && len(pp.User) > 0 {
					k = pp.User[0].Key
				}
				pp.User = append(pp.User, paho5.User{Key: k, Value: v})
				cp.User = append(cp.User, codec.UserProperty{Key: []byte(k), Value: []byte(v)})
			}
		default:
			panic(fmt.Sprintf("BUG: no generator for property %v", id))
		}
		cp.Present.Add(id)
	}
	return pp, cp
}

// xc5Case is one random MQTT 5.0 packet in both codecs' types.
type xc5Case struct {
	paho paho5.Packet // what Paho encodes, and what it must decode from loopmq's frame
	want codec.Packet // what loopmq must decode from Paho's frame
	send codec.Packet // what loopmq encodes; nil means want
}

func (c xc5Case) check(t *testing.T) {
	t.Helper()
	var buf bytes.Buffer
	_, err := c.paho.WriteTo(&buf)
	require.NoError(t, err)
	got, err := codec.Decode(buf.Bytes(), codec.V5)
	require.NoError(t, err, "decode Paho's frame %s", xcHead(buf.Bytes()))
	require.Equal(t, xcNormalize(c.want), xcNormalize(got), "decode Paho's frame %s", xcHead(buf.Bytes()))

	send := c.send
	if send == nil {
		send = c.want
	}
	frame := send.AppendTo(nil, codec.V5)
	if d, ok := send.(*codec.Disconnect); ok && d.ReasonCode == codec.Success && len(frame) == 2 {
		// Paho cannot read a DISCONNECT without a body (see the file comment).
		require.Equal(t, []byte{0xE0, 0x00}, frame)
		return
	}
	rd := bytes.NewReader(frame)
	back, err := paho5.ReadPacket(rd)
	require.NoError(t, err, "Paho reads loopmq's frame %s", xcHead(frame))
	require.Zero(t, rd.Len(), "Paho left bytes of loopmq's frame %s", xcHead(frame))
	require.Equal(t, xcNormalize(c.paho), xcNormalize(back.Content), "Paho reads loopmq's frame %s", xcHead(frame))
}

func xcConnect5(g *xcGen) xc5Case {
	pp, cp := g.props(xcConnectProps)
	p := &paho5.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, KeepAlive: g.u16(), CleanStart: g.bool(),
		ClientID: g.str(), Properties: pp}
	c := &codec.Connect{ProtocolName: []byte("MQTT"), Version: codec.V5, KeepAlive: p.KeepAlive,
		CleanStart: p.CleanStart, ClientID: []byte(p.ClientID), Properties: cp}
	if g.bool() {
		wpp, wcp := g.props(xcWillProps)
		p.WillFlag, p.WillQOS, p.WillRetain = true, byte(g.r.IntN(3)), g.bool()
		p.WillTopic, p.WillMessage, p.WillProperties = g.topic(), g.binary(), wpp
		c.WillFlag = true
		c.Will = codec.Will{QoS: p.WillQOS, Retain: p.WillRetain, Topic: []byte(p.WillTopic),
			Payload: p.WillMessage, Properties: wcp}
	}
	// 5.0 allows a password without a user name [MQTT 5.0 section 3.1.2.9].
	if g.bool() {
		p.UsernameFlag, p.Username = true, g.str()
		c.UsernameFlag, c.Username = true, []byte(p.Username)
	}
	if g.bool() {
		p.PasswordFlag, p.Password = true, g.binary()
		c.PasswordFlag, c.Password = true, p.Password
	}
	// Paho drops the will's message properties (see the file comment), so
	// loopmq sees them only in its own frame.
	want := *c
	for _, id := range []codec.PropID{codec.PropPayloadFormat, codec.PropMessageExpiry, codec.PropContentType,
		codec.PropResponseTopic, codec.PropCorrelationData} {
		want.Will.Properties.Present.Remove(id)
	}
	wp := &want.Will.Properties
	wp.PayloadFormat, wp.MessageExpiry, wp.ContentType, wp.ResponseTopic, wp.CorrelationData = 0, 0, nil, nil, nil
	return xc5Case{paho: p, want: &want, send: c}
}

func xcConnack5(g *xcGen) xc5Case {
	pp, cp := g.props(xcConnackProps)
	p := &paho5.Connack{SessionPresent: g.bool(), ReasonCode: g.pick(xcConnackCodes), Properties: pp}
	return xc5Case{paho: p, want: &codec.Connack{SessionPresent: p.SessionPresent,
		ReasonCode: codec.ReasonCode(p.ReasonCode), Properties: cp}}
}

func xcPublish5(g *xcGen) xc5Case {
	pp, cp := g.props(xcPublishProps)
	p := &paho5.Publish{QoS: byte(g.r.IntN(3)), Retain: g.bool(), Topic: g.topic(), Payload: g.payload(),
		Properties: pp}
	if p.QoS > 0 {
		p.PacketID = g.nonZero16()
		p.Duplicate = g.bool() // DUP only with QoS > 0 [MQTT-3.3.1-2]
	}
	if pp.TopicAlias != nil && g.bool() {
		p.Topic = "" // the alias names the topic [MQTT 5.0 section 3.3.2.3.4]
	}
	return xc5Case{paho: p, want: &codec.Publish{Dup: p.Duplicate, QoS: p.QoS, Retain: p.Retain,
		Topic: []byte(p.Topic), PacketID: p.PacketID, Properties: cp, Payload: p.Payload}}
}

func xcAck5(t codec.Type) func(g *xcGen) xc5Case {
	return func(g *xcGen) xc5Case {
		pp, cp := g.props(xcAckProps)
		codes := xcPubackCodes
		if t == codec.PUBREL || t == codec.PUBCOMP {
			codes = xcPubrelCodes
		}
		id, code := g.nonZero16(), g.pick(codes)
		want := &codec.Ack{PacketType: t, PacketID: id, ReasonCode: codec.ReasonCode(code), Properties: cp}
		switch t {
		case codec.PUBACK:
			return xc5Case{paho: &paho5.Puback{PacketID: id, ReasonCode: code, Properties: pp}, want: want}
		case codec.PUBREC:
			return xc5Case{paho: &paho5.Pubrec{PacketID: id, ReasonCode: code, Properties: pp}, want: want}
		case codec.PUBREL:
			return xc5Case{paho: &paho5.Pubrel{PacketID: id, ReasonCode: code, Properties: pp}, want: want}
		}
		return xc5Case{paho: &paho5.Pubcomp{PacketID: id, ReasonCode: code, Properties: pp}, want: want}
	}
}

func xcSubscribe5(g *xcGen) xc5Case {
	pp, cp := g.props(xcSubscribeProps)
	p := &paho5.Subscribe{PacketID: g.nonZero16(), Properties: pp}
	c := &codec.Subscribe{PacketID: p.PacketID, Properties: cp}
	for range 1 + g.r.IntN(6) {
		f, shared := g.filter()
		// No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4].
		o := paho5.SubOptions{Topic: f, QoS: byte(g.r.IntN(3)), RetainHandling: byte(g.r.IntN(3)),
			NoLocal: g.bool() && !shared, RetainAsPublished: g.bool()}
		p.Subscriptions = append(p.Subscriptions, o)
		c.Subscriptions = append(c.Subscriptions, codec.Subscription{Filter: []byte(f), QoS: o.QoS,
			NoLocal: o.NoLocal, RetainAsPublished: o.RetainAsPublished, RetainHandling: o.RetainHandling})
	}
	return xc5Case{paho: p, want: c}
}

func xcSuback5(g *xcGen) xc5Case {
	pp, cp := g.props(xcAckProps)
	p := &paho5.Suback{PacketID: g.nonZero16(), Properties: pp}
	c := &codec.Suback{PacketID: p.PacketID, Properties: cp}
	for range 1 + g.r.IntN(6) {
		code := g.pick(xcSubackCodes)
		p.Reasons = append(p.Reasons, code)
		c.ReasonCodes = append(c.ReasonCodes, codec.ReasonCode(code))
	}
	return xc5Case{paho: p, want: c}
}

func xcUnsubscribe5(g *xcGen) xc5Case {
	pp, cp := g.props(xcUnsubscribeProps)
	p := &paho5.Unsubscribe{PacketID: g.nonZero16(), Properties: pp}
	c := &codec.Unsubscribe{PacketID: p.PacketID, Properties: cp}
	for range 1 + g.r.IntN(6) {
		f, _ := g.filter()
		p.Topics = append(p.Topics, f)
		c.Filters = append(c.Filters, []byte(f))
	}
	return xc5Case{paho: p, want: c}
}

func xcUnsuback5(g *xcGen) xc5Case {
	pp, cp := g.props(xcAckProps)
	p := &paho5.Unsuback{PacketID: g.nonZero16(), Properties: pp}
	c := &codec.Unsuback{PacketID: p.PacketID, Properties: cp}
	for range 1 + g.r.IntN(6) {
		code := g.pick(xcUnsubackCodes)
		p.Reasons = append(p.Reasons, code)
		c.ReasonCodes = append(c.ReasonCodes, codec.ReasonCode(code))
	}
	return xc5Case{paho: p, want: c}
}

func xcDisconnect5(g *xcGen) xc5Case {
	pp, cp := g.props(xcDisconnectProps)
	p := &paho5.Disconnect{ReasonCode: g.pick(xcDisconnectCodes), Properties: pp}
	return xc5Case{paho: p, want: &codec.Disconnect{ReasonCode: codec.ReasonCode(p.ReasonCode), Properties: cp}}
}

func xcAuth5(g *xcGen) xc5Case {
	pp, cp := g.props(xcAuthProps)
	p := &paho5.Auth{ReasonCode: g.pick(xcAuthCodes), Properties: pp}
	return xc5Case{paho: p, want: &codec.Auth{ReasonCode: codec.ReasonCode(p.ReasonCode), Properties: cp}}
}

func TestCrossCheckPahoMQTT5(t *testing.T) {
	cases := []struct {
		name string
		n    int
		gen  func(*xcGen) xc5Case
	}{
		{"CONNECT", 300, xcConnect5},
		{"CONNACK", 200, xcConnack5},
		{"PUBLISH", 400, xcPublish5},
		{"PUBACK", 100, xcAck5(codec.PUBACK)},
		{"PUBREC", 100, xcAck5(codec.PUBREC)},
		{"PUBREL", 100, xcAck5(codec.PUBREL)},
		{"PUBCOMP", 100, xcAck5(codec.PUBCOMP)},
		{"SUBSCRIBE", 200, xcSubscribe5},
		{"SUBACK", 100, xcSuback5},
		{"UNSUBSCRIBE", 100, xcUnsubscribe5},
		{"UNSUBACK", 100, xcUnsuback5},
		{"PINGREQ", 1, func(*xcGen) xc5Case { return xc5Case{paho: &paho5.Pingreq{}, want: &codec.Pingreq{}} }},
		{"PINGRESP", 1, func(*xcGen) xc5Case { return xc5Case{paho: &paho5.Pingresp{}, want: &codec.Pingresp{}} }},
		{"DISCONNECT", 150, xcDisconnect5},
		{"AUTH", 150, xcAuth5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newXCGen(uint64(500 + i))
			for range tc.n {
				tc.gen(g).check(t)
			}
		})
	}
}

// xc3Case is one random MQTT 3.1 or 3.1.1 packet in both codecs' types.
type xc3Case struct {
	paho paho3.ControlPacket
	want codec.Packet
}

func (c xc3Case) check(t *testing.T, v codec.Version) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, c.paho.Write(&buf))
	pahoFrame := buf.Bytes()
	got, err := codec.Decode(pahoFrame, v)
	require.NoError(t, err, "decode Paho's frame %s", xcHead(pahoFrame))
	require.Equal(t, xcNormalize(c.want), xcNormalize(got), "decode Paho's frame %s", xcHead(pahoFrame))

	// 3.1 and 3.1.1 leave no encoding choices, so the frames must match.
	frame := c.want.AppendTo(nil, v)
	require.Equal(t, pahoFrame, frame)
	rd := bytes.NewReader(frame)
	back, err := paho3.ReadPacket(rd)
	require.NoError(t, err)
	require.Zero(t, rd.Len(), "Paho left bytes of loopmq's frame %s", xcHead(frame))
	require.Equal(t, xcNormalize(c.paho), xcNormalize(back))
}

func xcConnect3(g *xcGen, v codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Connect).(*paho3.ConnectPacket)
	p.ProtocolName, p.ProtocolVersion = "MQTT", byte(v)
	if v == codec.V31 {
		p.ProtocolName = "MQIsdp"
	}
	p.CleanSession, p.Keepalive, p.ClientIdentifier = g.bool(), g.u16(), g.str()
	c := &codec.Connect{ProtocolName: []byte(p.ProtocolName), Version: v, CleanStart: p.CleanSession,
		KeepAlive: p.Keepalive, ClientID: []byte(p.ClientIdentifier)}
	if g.bool() {
		p.WillFlag, p.WillQos, p.WillRetain = true, byte(g.r.IntN(3)), g.bool()
		p.WillTopic, p.WillMessage = g.topic(), g.binary()
		c.WillFlag = true
		c.Will = codec.Will{QoS: p.WillQos, Retain: p.WillRetain, Topic: []byte(p.WillTopic), Payload: p.WillMessage}
	}
	if g.bool() {
		p.UsernameFlag, p.Username = true, g.str()
		c.UsernameFlag, c.Username = true, []byte(p.Username)
		if g.bool() { // a password needs a user name [MQTT-3.1.2-22]
			p.PasswordFlag, p.Password = true, g.binary()
			c.PasswordFlag, c.Password = true, p.Password
		}
	}
	return xc3Case{paho: p, want: c}
}

func xcConnack3(g *xcGen, v codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Connack).(*paho3.ConnackPacket)
	p.ReturnCode = byte(g.r.IntN(6))
	p.SessionPresent = v != codec.V31 && g.bool() // 3.1 has no session present flag
	return xc3Case{paho: p, want: &codec.Connack{SessionPresent: p.SessionPresent, ReasonCode: codec.ReasonCode(p.ReturnCode)}}
}

func xcPublish3(g *xcGen, _ codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Publish).(*paho3.PublishPacket)
	p.Qos, p.Retain, p.TopicName, p.Payload = byte(g.r.IntN(3)), g.bool(), g.topic(), g.payload()
	if p.Qos > 0 {
		p.MessageID, p.Dup = g.nonZero16(), g.bool()
	}
	return xc3Case{paho: p, want: &codec.Publish{Dup: p.Dup, QoS: p.Qos, Retain: p.Retain, Topic: []byte(p.TopicName),
		PacketID: p.MessageID, Payload: p.Payload}}
}

func xcAck3(t codec.Type) func(*xcGen, codec.Version) xc3Case {
	return func(g *xcGen, _ codec.Version) xc3Case {
		id := g.nonZero16()
		want := &codec.Ack{PacketType: t, PacketID: id}
		switch p := paho3.NewControlPacket(byte(t)).(type) {
		case *paho3.PubackPacket:
			p.MessageID = id
			return xc3Case{paho: p, want: want}
		case *paho3.PubrecPacket:
			p.MessageID = id
			return xc3Case{paho: p, want: want}
		case *paho3.PubrelPacket:
			p.MessageID = id
			return xc3Case{paho: p, want: want}
		case *paho3.PubcompPacket:
			p.MessageID = id
			return xc3Case{paho: p, want: want}
		}
		panic("BUG: not an acknowledgement: " + t.String())
	}
}

func xcSubscribe3(g *xcGen, _ codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Subscribe).(*paho3.SubscribePacket)
	p.MessageID = g.nonZero16()
	c := &codec.Subscribe{PacketID: p.MessageID}
	for range 1 + g.r.IntN(6) {
		f, _ := g.filter()
		qos := byte(g.r.IntN(3))
		p.Topics, p.Qoss = append(p.Topics, f), append(p.Qoss, qos)
		c.Subscriptions = append(c.Subscriptions, codec.Subscription{Filter: []byte(f), QoS: qos})
	}
	return xc3Case{paho: p, want: c}
}

func xcSuback3(g *xcGen, _ codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Suback).(*paho3.SubackPacket)
	p.MessageID = g.nonZero16()
	c := &codec.Suback{PacketID: p.MessageID}
	for range 1 + g.r.IntN(6) {
		code := g.pick([]byte{0x00, 0x01, 0x02, codec.SubackFailureV3})
		p.ReturnCodes = append(p.ReturnCodes, code)
		c.ReasonCodes = append(c.ReasonCodes, codec.ReasonCode(code))
	}
	return xc3Case{paho: p, want: c}
}

func xcUnsubscribe3(g *xcGen, _ codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Unsubscribe).(*paho3.UnsubscribePacket)
	p.MessageID = g.nonZero16()
	c := &codec.Unsubscribe{PacketID: p.MessageID}
	for range 1 + g.r.IntN(6) {
		f, _ := g.filter()
		p.Topics = append(p.Topics, f)
		c.Filters = append(c.Filters, []byte(f))
	}
	return xc3Case{paho: p, want: c}
}

func xcUnsuback3(g *xcGen, _ codec.Version) xc3Case {
	p := paho3.NewControlPacket(paho3.Unsuback).(*paho3.UnsubackPacket)
	p.MessageID = g.nonZero16()
	return xc3Case{paho: p, want: &codec.Unsuback{PacketID: p.MessageID}}
}

func TestCrossCheckPahoMQTT3(t *testing.T) {
	empty := func(pt byte, want codec.Packet) func(*xcGen, codec.Version) xc3Case {
		return func(*xcGen, codec.Version) xc3Case { return xc3Case{paho: paho3.NewControlPacket(pt), want: want} }
	}
	cases := []struct {
		name string
		n    int
		gen  func(*xcGen, codec.Version) xc3Case
	}{
		{"CONNECT", 200, xcConnect3},
		{"CONNACK", 20, xcConnack3},
		{"PUBLISH", 300, xcPublish3},
		{"PUBACK", 20, xcAck3(codec.PUBACK)},
		{"PUBREC", 20, xcAck3(codec.PUBREC)},
		{"PUBREL", 20, xcAck3(codec.PUBREL)},
		{"PUBCOMP", 20, xcAck3(codec.PUBCOMP)},
		{"SUBSCRIBE", 150, xcSubscribe3},
		{"SUBACK", 50, xcSuback3},
		{"UNSUBSCRIBE", 100, xcUnsubscribe3},
		{"UNSUBACK", 20, xcUnsuback3},
		{"PINGREQ", 1, empty(paho3.Pingreq, &codec.Pingreq{})},
		{"PINGRESP", 1, empty(paho3.Pingresp, &codec.Pingresp{})},
		{"DISCONNECT", 1, empty(paho3.Disconnect, &codec.Disconnect{})},
	}
	for _, v := range []codec.Version{codec.V31, codec.V311} {
		for i, tc := range cases {
			t.Run(v.String()+"/"+tc.name, func(t *testing.T) {
				g := newXCGen(uint64(300 + 100*int(v) + i))
				for range tc.n {
					tc.gen(g, v).check(t, v)
				}
			})
		}
	}
}

// xcNormalize makes every empty slice in the value v points to nil, in
// place, and returns v: decoders differ in whether an absent or empty field
// is nil or empty, which no caller can observe through len.
func xcNormalize(v any) any {
	if p, ok := v.(*codec.Publish); ok {
		p.ReceivedProperties = nil // a view of the frame, not a field Paho has
	}
	xcNormalizeValue(reflect.ValueOf(v))
	return v
}

func xcNormalizeValue(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			xcNormalizeValue(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				xcNormalizeValue(f)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			if !v.IsNil() && v.CanSet() {
				v.SetZero()
			}
			return
		}
		switch v.Type().Elem().Kind() {
		case reflect.Struct, reflect.Slice, reflect.Pointer, reflect.Interface:
			for i := range v.Len() {
				xcNormalizeValue(v.Index(i))
			}
		}
	}
}

// xcHead formats the start of a frame for failure messages.
func xcHead(frame []byte) string {
	if len(frame) > 64 {
		return fmt.Sprintf("[% x …] (%d bytes)", frame[:64], len(frame))
	}
	return fmt.Sprintf("[% x]", frame)
}
