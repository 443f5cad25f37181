package codec

// Ack is one of the four QoS acknowledgements: PUBACK, PUBREC, PUBREL or
// PUBCOMP [MQTT 5.0 sections 3.4 to 3.7]. ReasonCode and Properties exist
// only in 5.0; the encoder omits them when they are Success and empty, as
// the specification allows [MQTT 5.0 section 3.4.2.1].
type Ack struct {
	PacketType Type // PUBACK, PUBREC, PUBREL or PUBCOMP
	PacketID   uint16
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (a *Ack) Type() Type { return a.PacketType }

// Decode decodes the body of a PUBACK, PUBREC, PUBREL or PUBCOMP frame.
func (a *Ack) Decode(h FixedHeader, body []byte, v Version) error {
	a.Properties.Reset()
	*a = Ack{PacketType: h.Type, Properties: a.Properties}
	if err := checkFlags(h, v); err != nil {
		return err
	}
	r := reader{b: body, t: h.Type}
	var ok bool
	if a.PacketID, ok = r.uint16(); !ok {
		return malformed(h.Type, "packet identifier is missing")
	}
	if a.PacketID == 0 {
		return protocolErr(h.Type, "packet identifier 0 [MQTT-2.2.1-3]")
	}
	if v != V5 {
		if r.len() != 0 {
			return malformed(h.Type, "remaining length is not 2")
		}
		return nil
	}
	if r.len() == 0 {
		return nil // reason code 0x00 and no properties [MQTT 5.0 section 3.4.2.1]
	}
	code, _ := r.byte()
	a.ReasonCode = ReasonCode(code)
	allowed := &pubackReasons
	if h.Type == PUBREL || h.Type == PUBCOMP {
		allowed = &pubrelReasons
	}
	if !allowed.has(a.ReasonCode) {
		return protocolErr(h.Type, "reason code not allowed in this packet [MQTT-3.4.2-1]")
	}
	if r.len() == 0 {
		return nil // no properties [MQTT 5.0 section 3.4.2.2.1]
	}
	if err := a.Properties.decode(&r, ctxPubResp); err != nil {
		return err
	}
	if r.len() != 0 {
		return malformed(h.Type, "bytes after the properties")
	}
	return nil
}

// AppendTo implements Packet.
func (a *Ack) AppendTo(dst []byte, v Version) []byte {
	first := byte(a.PacketType) << 4
	if a.PacketType == PUBREL {
		first |= 0x02
	}
	n, ps := 2, 0
	if v == V5 {
		ps = a.Properties.size(ctxPubResp)
		switch {
		case ps > 0:
			n += 1 + varintLen(ps) + ps
		case a.ReasonCode != Success:
			n++
		}
	}
	dst = appendFixedHeader(dst, first, n)
	dst = appendUint16(dst, a.PacketID)
	if n > 2 {
		dst = append(dst, byte(a.ReasonCode))
	}
	if ps > 0 {
		dst = a.Properties.appendTo(dst, ctxPubResp, ps)
	}
	return dst
}

// Pingreq is a PINGREQ packet. It has no body.
type Pingreq struct{}

// Type implements Packet.
func (*Pingreq) Type() Type { return PINGREQ }

// AppendTo implements Packet.
func (*Pingreq) AppendTo(dst []byte, _ Version) []byte { return append(dst, byte(PINGREQ)<<4, 0) }

// Pingresp is a PINGRESP packet. It has no body.
type Pingresp struct{}

// Type implements Packet.
func (*Pingresp) Type() Type { return PINGRESP }

// AppendTo implements Packet.
func (*Pingresp) AppendTo(dst []byte, _ Version) []byte { return append(dst, byte(PINGRESP)<<4, 0) }

// Disconnect is a DISCONNECT packet [MQTT 5.0 section 3.14]. Before 5.0 it
// has no body and ReasonCode and Properties are ignored.
type Disconnect struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Disconnect) Type() Type { return DISCONNECT }

// Decode decodes the body of a DISCONNECT frame.
func (d *Disconnect) Decode(h FixedHeader, body []byte, v Version) error {
	d.Properties.Reset()
	*d = Disconnect{Properties: d.Properties}
	return decodeReasonAndProps(h, body, v, &d.ReasonCode, &d.Properties, &disconnectReasons, ctxDisconnect)
}

// AppendTo implements Packet.
func (d *Disconnect) AppendTo(dst []byte, v Version) []byte {
	return appendReasonAndProps(dst, DISCONNECT, v, d.ReasonCode, &d.Properties, ctxDisconnect)
}

// Auth is an AUTH packet, MQTT 5.0 only [MQTT 5.0 section 3.15].
type Auth struct {
	ReasonCode ReasonCode
	Properties Properties
}

// Type implements Packet.
func (*Auth) Type() Type { return AUTH }

// Decode decodes the body of an AUTH frame.
func (a *Auth) Decode(h FixedHeader, body []byte, v Version) error {
	a.Properties.Reset()
	*a = Auth{Properties: a.Properties}
	if v != V5 {
		return malformed(AUTH, "AUTH exists only in MQTT 5.0 [MQTT 3.1.1 section 2.2.1]")
	}
	if err := decodeReasonAndProps(h, body, v, &a.ReasonCode, &a.Properties, &authReasons, ctxAuth); err != nil {
		return err
	}
	if a.Properties.AuthData != nil && a.Properties.AuthMethod == nil {
		return protocolErr(AUTH, "authentication data without authentication method [MQTT 5.0 section 3.15.2.2.3]")
	}
	return nil
}

// AppendTo implements Packet.
func (a *Auth) AppendTo(dst []byte, v Version) []byte {
	return appendReasonAndProps(dst, AUTH, v, a.ReasonCode, &a.Properties, ctxAuth)
}

// decodeReasonAndProps decodes the body shared by DISCONNECT and AUTH: an
// optional reason code and optional properties (5.0), or nothing (3.x).
func decodeReasonAndProps(h FixedHeader, body []byte, v Version, code *ReasonCode, p *Properties,
	allowed *reasonSet, ctx propContext) error {
	if err := checkFlags(h, v); err != nil {
		return err
	}
	if v != V5 {
		if len(body) != 0 {
			return malformed(h.Type, "remaining length is not 0 [MQTT 3.1.1 section 3.14.1]")
		}
		return nil
	}
	if len(body) == 0 {
		return nil // reason code 0x00, no properties [MQTT 5.0 section 3.14.2.1]
	}
	r := reader{b: body, t: h.Type}
	c, _ := r.byte()
	*code = ReasonCode(c)
	if !allowed.has(*code) {
		return protocolErr(h.Type, "reason code not allowed in this packet [MQTT-3.14.2-1] [MQTT-3.15.2-1]")
	}
	if r.len() == 0 {
		return nil
	}
	if err := p.decode(&r, ctx); err != nil {
		return err
	}
	if r.len() != 0 {
		return malformed(h.Type, "bytes after the properties")
	}
	return nil
}

func appendReasonAndProps(dst []byte, t Type, v Version, code ReasonCode, p *Properties, ctx propContext) []byte {
	if v != V5 {
		return append(dst, byte(t)<<4, 0)
	}
	ps := p.size(ctx)
	n := 0
	switch {
	case ps > 0:
		n = 1 + varintLen(ps) + ps
	case code != Success:
		n = 1
	}
	dst = appendFixedHeader(dst, byte(t)<<4, n)
	if n > 0 {
		dst = append(dst, byte(code))
	}
	if ps > 0 {
		dst = p.appendTo(dst, ctx, ps)
	}
	return dst
}
