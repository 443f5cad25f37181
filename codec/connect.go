package codec

import "bytes"

// Will is the will message carried in CONNECT. Its []byte fields are views
// into the decoded frame (see the package doc).
type Will struct {
	QoS        byte
	Retain     bool
	Properties Properties // MQTT 5.0 only
	Topic      []byte
	Payload    []byte
}

// Connect is a CONNECT packet [MQTT 5.0 section 3.1]. Its []byte fields are
// views into the decoded frame, valid only as long as the frame.
type Connect struct {
	ProtocolName []byte  // "MQIsdp" for 3.1, "MQTT" for 3.1.1 and 5.0; defaulted when encoding if empty
	Version      Version // protocol level
	CleanStart   bool    // Clean Session in 3.1/3.1.1
	KeepAlive    uint16  // seconds
	Properties   Properties
	ClientID     []byte
	WillFlag     bool
	Will         Will
	UsernameFlag bool
	Username     []byte
	PasswordFlag bool
	Password     []byte
}

// Type implements Packet.
func (*Connect) Type() Type { return CONNECT }

// connect flags [MQTT 5.0 section 3.1.2.3].
const (
	connReserved     = 0x01
	connCleanStart   = 0x02
	connWill         = 0x04
	connWillQoSShift = 3
	connWillRetain   = 0x20
	connPassword     = 0x40
	connUsername     = 0x80
)

var (
	protoMQTT   = []byte("MQTT")
	protoMQIsdp = []byte("MQIsdp")
)

// Decode decodes the body of a CONNECT frame with fixed header h. The
// protocol version comes from the packet itself. On an unsupported protocol
// level the error's code is UnsupportedProtocolVersion and c.Version holds
// the level the client asked for, so the broker can answer with CONNACK
// 0x01 (3.1.1) or 0x84 (5.0) [MQTT-3.1.2-2].
func (c *Connect) Decode(h FixedHeader, body []byte) error {
	props, willProps := c.Properties, c.Will.Properties
	props.Reset()
	willProps.Reset()
	*c = Connect{Properties: props, Will: Will{Properties: willProps}}
	if err := checkFlags(h, V311); err != nil {
		return err
	}
	r := reader{b: body, t: CONNECT}
	name, ok := r.binary()
	if !ok {
		return malformed(CONNECT, "protocol name is truncated")
	}
	c.ProtocolName = name
	level, ok := r.byte()
	if !ok {
		return malformed(CONNECT, "protocol level is missing")
	}
	c.Version = Version(level)
	switch {
	case bytes.Equal(name, protoMQTT) && (c.Version == V311 || c.Version == V5):
	case bytes.Equal(name, protoMQIsdp) && c.Version == V31:
	case bytes.Equal(name, protoMQTT) || bytes.Equal(name, protoMQIsdp):
		return &Error{Code: UnsupportedProtocolVersion, Packet: CONNECT,
			Reason: "unsupported protocol level [MQTT-3.1.2-2]"}
	default:
		return protocolErr(CONNECT, "unknown protocol name [MQTT-3.1.2-1]")
	}
	flags, ok := r.byte()
	if !ok {
		return malformed(CONNECT, "connect flags are missing")
	}
	if flags&connReserved != 0 {
		return malformed(CONNECT, "reserved connect flag is set [MQTT-3.1.2-3]")
	}
	c.CleanStart = flags&connCleanStart != 0
	c.WillFlag = flags&connWill != 0
	c.Will.QoS = (flags >> connWillQoSShift) & 0x03
	c.Will.Retain = flags&connWillRetain != 0
	c.UsernameFlag = flags&connUsername != 0
	c.PasswordFlag = flags&connPassword != 0
	if c.Will.QoS == 3 {
		return malformed(CONNECT, "will QoS 3 [MQTT-3.1.2-12]")
	}
	if !c.WillFlag && (c.Will.QoS != 0 || c.Will.Retain) {
		return malformed(CONNECT, "will QoS or retain set without the will flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]")
	}
	if c.Version != V5 && c.PasswordFlag && !c.UsernameFlag {
		// 5.0 allows a password without a user name; 3.1.1 does not.
		return malformed(CONNECT, "password flag set without user name flag [MQTT-3.1.2-22]")
	}
	if c.KeepAlive, ok = r.uint16(); !ok {
		return malformed(CONNECT, "keep alive is missing")
	}
	if c.Version == V5 {
		if err := c.Properties.decode(&r, ctxConnect); err != nil {
			return err
		}
		if c.Properties.AuthData != nil && c.Properties.AuthMethod == nil {
			return protocolErr(CONNECT, "authentication data without authentication method [MQTT-3.1.2-29]")
		}
	}
	var err *Error
	// [MQTT-3.1.3-4] the client identifier is a UTF-8 string; whether an
	// empty or long one is acceptable is the broker's decision.
	if c.ClientID, err = r.str("client identifier"); err != nil {
		return err
	}
	if c.WillFlag {
		if c.Version == V5 {
			if err := c.Will.Properties.decode(&r, ctxWill); err != nil {
				return err
			}
		}
		if c.Will.Topic, err = r.str("will topic"); err != nil {
			return err
		}
		if !ValidTopicName(c.Will.Topic) {
			return &Error{Code: TopicNameInvalid, Packet: CONNECT,
				Reason: "will topic is empty or has wildcards [MQTT-3.1.3-11]"}
		}
		if c.Will.Payload, ok = r.binary(); !ok {
			return malformed(CONNECT, "will payload is truncated")
		}
	}
	if c.UsernameFlag {
		if c.Username, err = r.str("user name"); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, ok = r.binary(); !ok {
			return malformed(CONNECT, "password is truncated")
		}
	}
	if r.len() != 0 {
		return malformed(CONNECT, "bytes after the payload")
	}
	return nil
}

func (c *Connect) protocolName() []byte {
	if len(c.ProtocolName) > 0 {
		return c.ProtocolName
	}
	if c.Version == V31 {
		return protoMQIsdp
	}
	return protoMQTT
}

// AppendTo implements Packet. The version is c.Version; v is ignored
// unless c.Version is zero.
func (c *Connect) AppendTo(dst []byte, v Version) []byte {
	if c.Version != 0 {
		v = c.Version
	}
	name := c.protocolName()
	n := binaryLen(name) + 1 + 1 + 2 + binaryLen(c.ClientID)
	var ps, wps int
	if v == V5 {
		ps = c.Properties.size(ctxConnect)
		n += varintLen(ps) + ps
	}
	if c.WillFlag {
		if v == V5 {
			wps = c.Will.Properties.size(ctxWill)
			n += varintLen(wps) + wps
		}
		n += binaryLen(c.Will.Topic) + binaryLen(c.Will.Payload)
	}
	if c.UsernameFlag {
		n += binaryLen(c.Username)
	}
	if c.PasswordFlag {
		n += binaryLen(c.Password)
	}
	dst = appendFixedHeader(dst, byte(CONNECT)<<4, n)
	dst = appendBinary(dst, name)
	var flags byte
	if c.CleanStart {
		flags |= connCleanStart
	}
	if c.WillFlag {
		flags |= connWill | (c.Will.QoS&3)<<connWillQoSShift
		if c.Will.Retain {
			flags |= connWillRetain
		}
	}
	if c.UsernameFlag {
		flags |= connUsername
	}
	if c.PasswordFlag {
		flags |= connPassword
	}
	dst = append(dst, byte(v), flags)
	dst = appendUint16(dst, c.KeepAlive)
	if v == V5 {
		dst = c.Properties.appendTo(dst, ctxConnect, ps)
	}
	dst = appendBinary(dst, c.ClientID)
	if c.WillFlag {
		if v == V5 {
			dst = c.Will.Properties.appendTo(dst, ctxWill, wps)
		}
		dst = appendBinary(dst, c.Will.Topic)
		dst = appendBinary(dst, c.Will.Payload)
	}
	if c.UsernameFlag {
		dst = appendBinary(dst, c.Username)
	}
	if c.PasswordFlag {
		dst = appendBinary(dst, c.Password)
	}
	return dst
}

// Connack is a CONNACK packet [MQTT 5.0 section 3.2]. For 3.1 and 3.1.1,
// ReasonCode carries the return code (0 to 5, see [ConnackCodeV3]) and
// Properties are not encoded.
type Connack struct {
	SessionPresent bool
	ReasonCode     ReasonCode
	Properties     Properties
}

// Type implements Packet.
func (*Connack) Type() Type { return CONNACK }

// Decode decodes the body of a CONNACK frame for version v.
func (c *Connack) Decode(h FixedHeader, body []byte, v Version) error {
	c.Properties.Reset()
	*c = Connack{Properties: c.Properties}
	if err := checkFlags(h, v); err != nil {
		return err
	}
	r := reader{b: body, t: CONNACK}
	flags, ok1 := r.byte()
	code, ok2 := r.byte()
	if !ok1 || !ok2 {
		return malformed(CONNACK, "acknowledge flags or return code missing")
	}
	if flags&connackReservedFlagsMask != 0 {
		return malformed(CONNACK, "reserved acknowledge flags are set [MQTT-3.2.2-1]")
	}
	// 3.1 has no session present flag (AppendTo does not write it either).
	c.SessionPresent = v != V31 && flags&connackSessionPresentFlag != 0
	c.ReasonCode = ReasonCode(code)
	if v == V5 {
		if !connackReasons.has(c.ReasonCode) {
			return protocolErr(CONNACK, "reason code not allowed in CONNACK [MQTT 5.0 section 3.2.2.2]")
		}
		if err := c.Properties.decode(&r, ctxConnack); err != nil {
			return err
		}
	} else if code > maxConnackReturnCodeV3 {
		return protocolErr(CONNACK, "unknown return code [MQTT 3.1.1 section 3.2.2.3]")
	}
	if r.len() != 0 {
		return malformed(CONNACK, "bytes after the variable header")
	}
	return nil
}

// AppendTo implements Packet.
func (c *Connack) AppendTo(dst []byte, v Version) []byte {
	n, ps := 2, 0
	if v == V5 {
		ps = c.Properties.size(ctxConnack)
		n += varintLen(ps) + ps
	}
	dst = appendFixedHeader(dst, byte(CONNACK)<<4, n)
	var flags byte
	if c.SessionPresent && v != V31 { // 3.1 has no session present flag
		flags = connackSessionPresentFlag
	}
	dst = append(dst, flags, byte(c.ReasonCode))
	if v == V5 {
		dst = c.Properties.appendTo(dst, ctxConnack, ps)
	}
	return dst
}
