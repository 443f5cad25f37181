package codec

// Publish is a PUBLISH packet [MQTT 5.0 section 3.3]. Topic, Payload and
// the property views point into the decoded frame and are valid only as
// long as it is.
type Publish struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      []byte // empty in 5.0 when Properties.TopicAlias names it
	PacketID   uint16 // only for QoS 1 and 2
	Properties Properties
	// RawProperties, when encoding a 5.0 PUBLISH, are property bytes
	// already encoded (identifier and value each, no length prefix, see
	// Properties.AppendPublishRaw) written after Properties in the same
	// property block. A broker encodes a message's forwarded properties
	// once and adds per-recipient ones (remaining expiry, subscription
	// identifiers, topic alias) in Properties. Decode leaves it nil.
	RawProperties []byte
	// ReceivedProperties is, after Decode of a 5.0 PUBLISH, the property
	// block's contents as received (a view into the frame, without the
	// length prefix); AppendForwarded copies from it. Encoding ignores it.
	ReceivedProperties []byte
	Payload            []byte
}

// Type implements Packet.
func (*Publish) Type() Type { return PUBLISH }

// PUBLISH fixed header flags [MQTT 5.0 section 3.3.1].
const (
	pubRetain   = 0x01
	pubQoSShift = 1
	pubDup      = 0x08
)

// Decode decodes the body of a PUBLISH frame with fixed header h for
// version v. It does not allocate when p is reused and its property slices
// have capacity.
func (p *Publish) Decode(h FixedHeader, body []byte, v Version) error {
	return p.decode(h, body, v, nil)
}

// decode is Decode with a UserMemo for the property block (nil for none).
func (p *Publish) decode(h FixedHeader, body []byte, v Version, memo *UserMemo) error {
	// Fields are reset one by one: copying the whole value (Properties is
	// a few hundred bytes) costs a measurable share of a 64 B decode.
	p.Properties.Reset()
	p.Retain = h.Flags&pubRetain != 0
	p.QoS = (h.Flags >> pubQoSShift) & 0x03
	p.Dup = h.Flags&pubDup != 0
	p.Topic, p.PacketID, p.Payload, p.RawProperties, p.ReceivedProperties = nil, 0, nil, nil, nil
	if p.QoS == 3 {
		return malformed(PUBLISH, "QoS 3 [MQTT-3.3.1-4]")
	}
	if p.Dup && p.QoS == 0 {
		return malformed(PUBLISH, "DUP set on a QoS 0 message [MQTT-3.3.1-2]")
	}
	r := reader{b: body, t: PUBLISH}
	topic, ok := r.binary()
	if !ok {
		return malformed(PUBLISH, "topic name is truncated")
	}
	scan := scanTopic(topic)
	if !scan.utf8OK {
		return malformed(PUBLISH, "topic name is not well-formed UTF-8 without U+0000 [MQTT-1.5.4-1/2]")
	}
	if scan.wildcard {
		return &Error{Code: TopicNameInvalid, Packet: PUBLISH, Reason: "topic name has wildcards [MQTT-3.3.2-2]"}
	}
	p.Topic = topic
	if p.QoS > 0 {
		if p.PacketID, ok = r.uint16(); !ok {
			return malformed(PUBLISH, "packet identifier is missing")
		}
		if p.PacketID == 0 {
			return protocolErr(PUBLISH, "packet identifier 0 [MQTT-2.2.1-3]")
		}
	}
	if v == V5 {
		start := r.off
		if err := p.Properties.decodeMemo(&r, ctxPublish, memo); err != nil {
			return err
		}
		if _, n := decodeVarint(body[start:]); n > 0 {
			p.ReceivedProperties = body[start+n : r.off : r.off]
		}
	}
	if len(topic) == 0 && (v != V5 || !p.Properties.Has(PropTopicAlias)) {
		// [MQTT-4.7.3-1] a topic name has at least one character; in 5.0 an
		// empty one is allowed only with a topic alias [MQTT 5.0 section 3.3.2.1].
		return protocolErr(PUBLISH, "empty topic name without a topic alias [MQTT-4.7.3-1]")
	}
	p.Payload = body[r.off:len(body):len(body)]
	return nil
}

// headerSize returns the size of the variable header (topic, packet
// identifier, properties) and of the property block contents.
func (p *Publish) headerSize(v Version) (n, ps int) {
	n = binaryLen(p.Topic)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		ps = p.Properties.size(ctxPublish) + len(p.RawProperties)
		n += varintLen(ps) + ps
	}
	return n, ps
}

// AppendTo implements Packet.
func (p *Publish) AppendTo(dst []byte, v Version) []byte {
	dst = grow(dst, p.Size(v))
	dst = p.AppendHeader(dst, v)
	return append(dst, p.Payload...)
}

// Publish0Size returns the length of the frame AppendPublish0 appends.
func Publish0Size(topic, payload []byte) int {
	n := binaryLen(topic) + len(payload)
	return 1 + varintLen(n) + n
}

// AppendPublish0 appends the MQTT 3.1/3.1.1 PUBLISH of topic and payload
// at QoS 0, without DUP or RETAIN: the frame a broker shares among its
// 3.x recipients. It is what Publish.AppendTo would encode for that
// Publish, without a Publish to fill (a few hundred bytes to clear, its
// Properties included, for every message routed).
func AppendPublish0(dst, topic, payload []byte) []byte {
	n := binaryLen(topic) + len(payload)
	dst = grow(dst, 1+varintLen(n)+n)
	dst = append(dst, byte(PUBLISH)<<4)
	dst = appendVarint(dst, n)
	dst = appendBinary(dst, topic)
	return append(dst, payload...)
}

// Size returns the length of the whole encoded frame.
func (p *Publish) Size(v Version) int {
	n, _ := p.headerSize(v)
	n += len(p.Payload)
	return 1 + varintLen(n) + n
}

// AppendHeader appends everything of the frame but the payload: fixed
// header (whose remaining length counts the payload), topic, packet
// identifier and properties. A broker encodes the header per recipient and
// writes it together with one shared payload in a vectored write.
func (p *Publish) AppendHeader(dst []byte, v Version) []byte {
	n, ps := p.headerSize(v)
	first := byte(PUBLISH)<<4 | (p.QoS&3)<<pubQoSShift
	if p.Dup {
		first |= pubDup
	}
	if p.Retain {
		first |= pubRetain
	}
	rem := n + len(p.Payload)
	dst = grow(dst, 1+varintLen(rem)+n)
	dst = append(dst, first)
	dst = appendVarint(dst, rem)
	dst = appendBinary(dst, p.Topic)
	if p.QoS > 0 {
		dst = appendUint16(dst, p.PacketID)
	}
	if v == V5 {
		dst = appendVarint(dst, ps)
		if ps > 0 {
			dst = p.Properties.appendProps(dst, ctxPublish)
			dst = append(dst, p.RawProperties...)
		}
	}
	return dst
}

// AppendForwarded appends the properties of a received 5.0 PUBLISH that a
// server forwards unchanged (everything but Message Expiry Interval, Topic
// Alias and Subscription Identifier, which are per connection or per
// recipient) in the RawProperties form, copying bytes rather than
// re-encoding: raw is Publish.ReceivedProperties of a packet Decode
// accepted. User properties keep their order [MQTT-3.3.2-18].
func AppendForwarded(dst, raw []byte) []byte {
	for off := 0; off < len(raw); {
		id := PropID(raw[off]) // every property identifier Decode accepts is one byte
		if int(id) >= len(propTable) {
			return dst // not a PUBLISH property: raw was not from Decode
		}
		n := 1
		switch propTable[id].kind {
		case propKindByte:
			n++
		case propKindU16:
			n += 2
		case propKindU32:
			n += 4
		case propKindVarint:
			_, k := decodeVarint(raw[off+1:])
			n += max(k, 1)
		case propKindString, propKindBinary:
			if off+3 > len(raw) {
				return dst
			}
			n += 2 + (int(raw[off+1])<<8 | int(raw[off+2]))
		case propKindPair:
			if off+3 > len(raw) {
				return dst
			}
			k := 2 + (int(raw[off+1])<<8 | int(raw[off+2]))
			if off+3+k > len(raw) {
				return dst
			}
			n += k + 2 + (int(raw[off+1+k])<<8 | int(raw[off+2+k]))
		default:
			return dst // not a PUBLISH property: raw was not from Decode
		}
		if off+n > len(raw) {
			return dst
		}
		switch id {
		case PropMessageExpiry, PropTopicAlias, PropSubscriptionID:
		default:
			dst = append(dst, raw[off:off+n]...)
		}
		off += n
	}
	return dst
}

// AppendForwarded appends the properties of p, a 5.0 PUBLISH Decode
// accepted, that a server forwards: the package's AppendForwarded of
// p.ReceivedProperties, without walking the block when it holds no
// per-recipient property, or only a Topic Alias and that first (where
// encoders that write properties in identifier order put it before User
// Properties). Then it is one copy (BenchmarkAppendForwarded: 20 ns
// walking, 5 ns copying).
func (p *Publish) AppendForwarded(dst []byte) []byte {
	const perRecipient = 1<<PropMessageExpiry | 1<<PropTopicAlias | 1<<PropSubscriptionID
	raw := p.ReceivedProperties
	switch p.Properties.Present & perRecipient {
	case 0:
		return append(dst, raw...)
	case 1 << PropTopicAlias:
		// Decode accepted one Topic Alias: identifier and two bytes.
		if len(raw) >= 3 && raw[0] == byte(PropTopicAlias) {
			return append(dst, raw[3:]...)
		}
	}
	return AppendForwarded(dst, raw)
}

// ForwardHeader is what a server varies per recipient of a 5.0 PUBLISH it
// forwards: AppendTo encodes the header (everything but the payload) the
// way Publish.AppendHeader would for the equivalent Publish, without
// going through the general property encoder.
type ForwardHeader struct {
	Dup        bool
	QoS        byte
	Retain     bool
	Topic      []byte // empty when TopicAlias stands for it
	PacketID   uint16
	Expiry     uint32 // remaining Message Expiry Interval, sent when HasExpiry
	HasExpiry  bool
	SubIDs     []uint32 // Subscription Identifiers
	TopicAlias uint16   // 0 for none
	Raw        []byte   // forwarded properties (RawProperties form)
	PayloadLen int
}

// lengths returns the length of h's property block (without its own
// length prefix) and of its variable header (topic, packet identifier and
// property block with its prefix).
func (h *ForwardHeader) lengths() (ps, n int) {
	ps = len(h.Raw)
	if h.HasExpiry {
		ps += 5
	}
	for _, id := range h.SubIDs {
		ps += 1 + varintLen(int(id))
	}
	if h.TopicAlias != 0 {
		ps += 3
	}
	n = binaryLen(h.Topic) + varintLen(ps) + ps
	if h.QoS > 0 {
		n += 2
	}
	return ps, n
}

// Size returns the length of the header AppendTo appends: the frame's
// length is Size() + PayloadLen.
func (h *ForwardHeader) Size() int {
	_, n := h.lengths()
	return 1 + varintLen(n+h.PayloadLen) + n
}

// AppendTo appends the 5.0 PUBLISH header described by h.
func (h *ForwardHeader) AppendTo(dst []byte) []byte {
	ps, n := h.lengths()
	first := byte(PUBLISH)<<4 | (h.QoS&3)<<pubQoSShift
	if h.Dup {
		first |= pubDup
	}
	if h.Retain {
		first |= pubRetain
	}
	dst = grow(dst, 1+varintLen(n+h.PayloadLen)+n)
	dst = append(dst, first)
	dst = appendVarint(dst, n+h.PayloadLen)
	dst = appendBinary(dst, h.Topic)
	if h.QoS > 0 {
		dst = appendUint16(dst, h.PacketID)
	}
	dst = appendVarint(dst, ps)
	// Same order as the general encoder: by property identifier.
	if h.HasExpiry {
		dst = appendUint32(append(dst, byte(PropMessageExpiry)), h.Expiry)
	}
	for _, id := range h.SubIDs {
		dst = appendVarint(append(dst, byte(PropSubscriptionID)), int(id))
	}
	if h.TopicAlias != 0 {
		dst = appendUint16(append(dst, byte(PropTopicAlias)), h.TopicAlias)
	}
	return append(dst, h.Raw...)
}
