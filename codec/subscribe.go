package codec

// Subscription is one topic filter of a SUBSCRIBE with its options
// [MQTT 5.0 section 3.8.3.1]. Filter is a view into the decoded frame.
// NoLocal, RetainAsPublished and RetainHandling exist only in 5.0.
type Subscription struct {
	Filter            []byte
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0 send retained, 1 only if new, 2 never
}

// subscription option bits [MQTT 5.0 section 3.8.3.1].
const (
	subNoLocal          = 0x04
	subRetainAsPub      = 0x08
	subRetainShift      = 4
	subReservedV3Mask   = 0xFC
	subReservedV5Mask   = 0xC0
	retainHandlingLimit = 2
)

// Subscribe is a SUBSCRIBE packet [MQTT 5.0 section 3.8]. Its views are
// valid only as long as the decoded frame.
type Subscribe struct {
	PacketID      uint16
	Properties    Properties // 5.0: subscription identifier, user properties
	Subscriptions []Subscription
}

// Type implements Packet.
func (*Subscribe) Type() Type { return SUBSCRIBE }

// Decode decodes the body of a SUBSCRIBE frame. It validates each filter's
// syntax (an invalid filter is a Malformed Packet) but leaves policy
// (authorization, whether wildcards or shared subscriptions are enabled) to
// the broker.
func (s *Subscribe) Decode(h FixedHeader, body []byte, v Version) error {
	s.Properties.Reset()
	*s = Subscribe{Properties: s.Properties, Subscriptions: s.Subscriptions[:0]}
	if err := checkFlags(h, v); err != nil {
		return err
	}
	r := reader{b: body, t: SUBSCRIBE}
	if err := decodePacketIDAndProps(&r, v, &s.PacketID, &s.Properties, ctxSubscribe); err != nil {
		return err
	}
	for r.len() > 0 {
		f, err := r.str("topic filter")
		if err != nil {
			return err
		}
		opts, ok := r.byte()
		if !ok {
			return malformed(SUBSCRIBE, "subscription options are missing")
		}
		if !ValidFilter(f) {
			return malformed(SUBSCRIBE, "topic filter is not well formed [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1] [MQTT-4.8.2-1]")
		}
		sub := Subscription{Filter: f, QoS: opts & 0x03}
		if v == V5 {
			if opts&subReservedV5Mask != 0 {
				return malformed(SUBSCRIBE, "reserved subscription option bits are set [MQTT-3.8.3-5]")
			}
			sub.NoLocal = opts&subNoLocal != 0
			sub.RetainAsPublished = opts&subRetainAsPub != 0
			sub.RetainHandling = (opts >> subRetainShift) & 0x03
			if sub.RetainHandling > retainHandlingLimit {
				return protocolErr(SUBSCRIBE, "retain handling 3 [MQTT 5.0 section 3.8.3.1]")
			}
			if _, _, shared := SplitShared(f); shared && sub.NoLocal {
				return protocolErr(SUBSCRIBE, "no local on a shared subscription [MQTT-3.8.3-4]")
			}
		} else if opts&subReservedV3Mask != 0 {
			return malformed(SUBSCRIBE, "reserved subscription option bits are set [MQTT-3-8.3-4]")
		}
		if sub.QoS == 3 {
			return malformed(SUBSCRIBE, "requested QoS 3 [MQTT-3-8.3-4]")
		}
		s.Subscriptions = append(s.Subscriptions, sub)
	}
	if len(s.Subscriptions) == 0 {
		return protocolErr(SUBSCRIBE, "no topic filters [MQTT-3.8.3-3]")
	}
	return nil
}

// AppendTo implements Packet.
func (s *Subscribe) AppendTo(dst []byte, v Version) []byte {
	n, ps := packetIDAndPropsSize(v, &s.Properties, ctxSubscribe)
	for i := range s.Subscriptions {
		n += binaryLen(s.Subscriptions[i].Filter) + 1
	}
	dst = appendFixedHeader(dst, byte(SUBSCRIBE)<<4|0x02, n)
	dst = appendPacketIDAndProps(dst, v, s.PacketID, &s.Properties, ctxSubscribe, ps)
	for i := range s.Subscriptions {
		sub := &s.Subscriptions[i]
		dst = appendBinary(dst, sub.Filter)
		opts := sub.QoS & 0x03
		if v == V5 {
			if sub.NoLocal {
				opts |= subNoLocal
			}
			if sub.RetainAsPublished {
				opts |= subRetainAsPub
			}
			opts |= (sub.RetainHandling & 0x03) << subRetainShift
		}
		dst = append(dst, opts)
	}
	return dst
}

// Suback is a SUBACK packet [MQTT 5.0 section 3.9]: one reason code per
// filter of the SUBSCRIBE, in order. For 3.x the codes are granted QoS 0-2
// or 0x80 (failure; 3.1 has no failure code).
type Suback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode
}

// Type implements Packet.
func (*Suback) Type() Type { return SUBACK }

// Decode decodes the body of a SUBACK frame.
func (s *Suback) Decode(h FixedHeader, body []byte, v Version) error {
	s.Properties.Reset()
	*s = Suback{Properties: s.Properties, ReasonCodes: s.ReasonCodes[:0]}
	return decodeAckList(h, body, v, &s.PacketID, &s.Properties, &s.ReasonCodes, ctxSuback)
}

// AppendTo implements Packet.
func (s *Suback) AppendTo(dst []byte, v Version) []byte {
	return appendAckList(dst, SUBACK, v, s.PacketID, &s.Properties, s.ReasonCodes, ctxSuback)
}

// Unsubscribe is an UNSUBSCRIBE packet [MQTT 5.0 section 3.10]. Filters
// are views into the decoded frame.
type Unsubscribe struct {
	PacketID   uint16
	Properties Properties
	Filters    [][]byte
}

// Type implements Packet.
func (*Unsubscribe) Type() Type { return UNSUBSCRIBE }

// Decode decodes the body of an UNSUBSCRIBE frame.
func (u *Unsubscribe) Decode(h FixedHeader, body []byte, v Version) error {
	u.Properties.Reset()
	*u = Unsubscribe{Properties: u.Properties, Filters: u.Filters[:0]}
	if err := checkFlags(h, v); err != nil {
		return err
	}
	r := reader{b: body, t: UNSUBSCRIBE}
	if err := decodePacketIDAndProps(&r, v, &u.PacketID, &u.Properties, ctxUnsubscribe); err != nil {
		return err
	}
	for r.len() > 0 {
		f, err := r.str("topic filter")
		if err != nil {
			return err
		}
		if !ValidFilter(f) {
			return malformed(UNSUBSCRIBE, "topic filter is not well formed [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3-1]")
		}
		u.Filters = append(u.Filters, f)
	}
	if len(u.Filters) == 0 {
		return protocolErr(UNSUBSCRIBE, "no topic filters [MQTT-3.10.3-2]")
	}
	return nil
}

// AppendTo implements Packet.
func (u *Unsubscribe) AppendTo(dst []byte, v Version) []byte {
	n, ps := packetIDAndPropsSize(v, &u.Properties, ctxUnsubscribe)
	for _, f := range u.Filters {
		n += binaryLen(f)
	}
	dst = appendFixedHeader(dst, byte(UNSUBSCRIBE)<<4|0x02, n)
	dst = appendPacketIDAndProps(dst, v, u.PacketID, &u.Properties, ctxUnsubscribe, ps)
	for _, f := range u.Filters {
		dst = appendBinary(dst, f)
	}
	return dst
}

// Unsuback is an UNSUBACK packet [MQTT 5.0 section 3.11]. Before 5.0 it
// carries only the packet identifier.
type Unsuback struct {
	PacketID    uint16
	Properties  Properties
	ReasonCodes []ReasonCode // 5.0 only, one per filter
}

// Type implements Packet.
func (*Unsuback) Type() Type { return UNSUBACK }

// Decode decodes the body of an UNSUBACK frame.
func (u *Unsuback) Decode(h FixedHeader, body []byte, v Version) error {
	u.Properties.Reset()
	*u = Unsuback{Properties: u.Properties, ReasonCodes: u.ReasonCodes[:0]}
	return decodeAckList(h, body, v, &u.PacketID, &u.Properties, &u.ReasonCodes, ctxUnsuback)
}

// AppendTo implements Packet.
func (u *Unsuback) AppendTo(dst []byte, v Version) []byte {
	codes := u.ReasonCodes
	if v != V5 {
		codes = nil
	}
	return appendAckList(dst, UNSUBACK, v, u.PacketID, &u.Properties, codes, ctxUnsuback)
}

// decodePacketIDAndProps reads a non-zero packet identifier and, in 5.0,
// the property block.
func decodePacketIDAndProps(r *reader, v Version, id *uint16, p *Properties, ctx propContext) error {
	var ok bool
	if *id, ok = r.uint16(); !ok {
		return malformed(r.t, "packet identifier is missing")
	}
	if *id == 0 {
		return protocolErr(r.t, "packet identifier 0 [MQTT-2.2.1-3]")
	}
	if v == V5 {
		if err := p.decode(r, ctx); err != nil {
			return err
		}
	}
	return nil
}

func packetIDAndPropsSize(v Version, p *Properties, ctx propContext) (n, ps int) {
	n = 2
	if v == V5 {
		ps = p.size(ctx)
		n += varintLen(ps) + ps
	}
	return n, ps
}

func appendPacketIDAndProps(dst []byte, v Version, id uint16, p *Properties, ctx propContext, ps int) []byte {
	dst = appendUint16(dst, id)
	if v == V5 {
		dst = p.appendTo(dst, ctx, ps)
	}
	return dst
}

// decodeAckList decodes SUBACK and UNSUBACK bodies: packet identifier,
// properties (5.0) and a list of reason codes (SUBACK always, UNSUBACK in 5.0).
func decodeAckList(h FixedHeader, body []byte, v Version, id *uint16, p *Properties, codes *[]ReasonCode,
	ctx propContext) error {
	if err := checkFlags(h, v); err != nil {
		return err
	}
	r := reader{b: body, t: h.Type}
	if err := decodePacketIDAndProps(&r, v, id, p, ctx); err != nil {
		return err
	}
	if h.Type == UNSUBACK && v != V5 {
		if r.len() != 0 {
			return malformed(UNSUBACK, "remaining length is not 2")
		}
		return nil
	}
	for r.len() > 0 {
		c, _ := r.byte()
		rc := ReasonCode(c)
		switch {
		case v == V5 && h.Type == SUBACK && !subackReasons.has(rc),
			v == V5 && h.Type == UNSUBACK && !unsubackReasons.has(rc):
			return protocolErr(h.Type, "reason code not allowed in this packet [MQTT-3.9.3-2] [MQTT-3.11.3-2]")
		case v != V5 && c > subackGrantedQoSMaxV3 && c != SubackFailureV3:
			return protocolErr(h.Type, "return code not allowed in SUBACK [MQTT-3.9.3-2]")
		}
		*codes = append(*codes, rc)
	}
	if len(*codes) == 0 {
		return protocolErr(h.Type, "no reason codes")
	}
	return nil
}

func appendAckList(dst []byte, t Type, v Version, id uint16, p *Properties, codes []ReasonCode,
	ctx propContext) []byte {
	n, ps := packetIDAndPropsSize(v, p, ctx)
	n += len(codes)
	dst = appendFixedHeader(dst, byte(t)<<4, n)
	dst = appendPacketIDAndProps(dst, v, id, p, ctx, ps)
	for _, c := range codes {
		dst = append(dst, byte(c))
	}
	return dst
}
