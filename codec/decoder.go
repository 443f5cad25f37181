package codec

// Decoder decodes whole frames into packet values it owns and reuses, so
// decoding allocates nothing in steady state. The packet it returns, and
// every view in it, is valid until the next call to Decode and only while
// the frame's memory is. A Decoder belongs to one connection and is not
// safe for concurrent use.
type Decoder struct {
	// Version is the connection's protocol level, set by the owner after
	// CONNECT. CONNECT itself is decoded whatever Version holds.
	Version Version
	// UserMemo, when set, is the UserMemo of the connection whose frame is
	// decoded next: the owner sets it (or nil) before each PUBLISH.
	UserMemo *UserMemo

	connect     Connect
	connack     Connack
	publish     Publish
	ack         Ack
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	pingreq     Pingreq
	pingresp    Pingresp
	disconnect  Disconnect
	auth        Auth
}

// Decode decodes frame, which must hold exactly one frame (as [Split]
// delimits it).
func (d *Decoder) Decode(frame []byte) (Packet, error) {
	h, n, err := Split(frame, 0)
	if err != nil {
		return nil, err
	}
	if n != len(frame) {
		return nil, malformed(h.Type, "frame length does not match its remaining length")
	}
	return d.DecodeBody(h, frame[h.HeaderLen:])
}

// DecodeBody decodes the body of a frame whose fixed header is h.
func (d *Decoder) DecodeBody(h FixedHeader, body []byte) (Packet, error) {
	v := d.Version
	if v == 0 {
		v = V311
	}
	var err error
	switch h.Type {
	case CONNECT:
		err = d.connect.Decode(h, body)
		return &d.connect, err
	case CONNACK:
		err = d.connack.Decode(h, body, v)
		return &d.connack, err
	case PUBLISH:
		err = d.publish.decode(h, body, v, d.UserMemo)
		return &d.publish, err
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		err = d.ack.Decode(h, body, v)
		return &d.ack, err
	case SUBSCRIBE:
		err = d.subscribe.Decode(h, body, v)
		return &d.subscribe, err
	case SUBACK:
		err = d.suback.Decode(h, body, v)
		return &d.suback, err
	case UNSUBSCRIBE:
		err = d.unsubscribe.Decode(h, body, v)
		return &d.unsubscribe, err
	case UNSUBACK:
		err = d.unsuback.Decode(h, body, v)
		return &d.unsuback, err
	case PINGREQ:
		return &d.pingreq, decodeEmpty(h, body, v)
	case PINGRESP:
		return &d.pingresp, decodeEmpty(h, body, v)
	case DISCONNECT:
		err = d.disconnect.Decode(h, body, v)
		return &d.disconnect, err
	case AUTH:
		err = d.auth.Decode(h, body, v)
		return &d.auth, err
	}
	return nil, malformed(h.Type, "reserved packet type")
}

func decodeEmpty(h FixedHeader, body []byte, v Version) error {
	if err := checkFlags(h, v); err != nil {
		return err
	}
	if len(body) != 0 {
		return malformed(h.Type, "remaining length is not 0")
	}
	return nil
}

// Decode decodes one whole frame for version v into a newly allocated
// packet. It is a convenience for tests and tools; brokers use a [Decoder].
func Decode(frame []byte, v Version) (Packet, error) {
	d := Decoder{Version: v}
	p, err := d.Decode(frame)
	if err != nil {
		return nil, err
	}
	return p, nil
}
