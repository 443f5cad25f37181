package codec

import "fmt"

// ReasonCode is an MQTT 5.0 reason code [MQTT 5.0 section 2.4]. In 3.1 and
// 3.1.1 packets the same byte carries the CONNACK return code or the SUBACK
// return code; see [ConnackCodeV3].
type ReasonCode byte

// Reason codes of MQTT 5.0, section 2.4, table 2-6.
const (
	Success                             ReasonCode = 0x00 // also Normal Disconnection, Granted QoS 0
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWill                  ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

var reasonNames = map[ReasonCode]string{
	0x00: "success", 0x01: "granted QoS 1", 0x02: "granted QoS 2", 0x04: "disconnect with will message",
	0x10: "no matching subscribers", 0x11: "no subscription existed", 0x18: "continue authentication",
	0x19: "re-authenticate", 0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password", 0x87: "not authorized",
	0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned", 0x8B: "server shutting down",
	0x8C: "bad authentication method", 0x8D: "keep alive timeout", 0x8E: "session taken over",
	0x8F: "topic filter invalid", 0x90: "topic name invalid", 0x91: "packet identifier in use",
	0x92: "packet identifier not found", 0x93: "receive maximum exceeded", 0x94: "topic alias invalid",
	0x95: "packet too large", 0x96: "message rate too high", 0x97: "quota exceeded",
	0x98: "administrative action", 0x99: "payload format invalid", 0x9A: "retain not supported",
	0x9B: "QoS not supported", 0x9C: "use another server", 0x9D: "server moved",
	0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
	0xA0: "maximum connect time", 0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

// String returns the specification's name of the code in lower case.
func (c ReasonCode) String() string {
	if s, ok := reasonNames[c]; ok {
		return s
	}
	return fmt.Sprintf("reason(0x%02x)", byte(c))
}

// IsError reports whether c signals failure (0x80 and above) [MQTT 5.0 section 2.4].
func (c ReasonCode) IsError() bool { return c >= 0x80 }

// CONNACK return codes of MQTT 3.1 and 3.1.1 [MQTT 3.1.1 section 3.2.2.3].
const (
	ConnAccepted              byte = 0x00
	ConnRefusedVersion        byte = 0x01
	ConnRefusedIdentifier     byte = 0x02
	ConnRefusedUnavailable    byte = 0x03
	ConnRefusedBadCredentials byte = 0x04
	ConnRefusedNotAuthorized  byte = 0x05
	SubackFailureV3           byte = 0x80 // 3.1.1 SUBACK failure return code
)

// Limits and flag bits of the 3.x return codes and the CONNACK flags byte.
const (
	maxConnackReturnCodeV3    byte = 0x05
	subackGrantedQoSMaxV3     byte = 0x02
	connackSessionPresentFlag byte = 0x01
	connackReservedFlagsMask  byte = 0xFE
)

// ConnackCodeV3 maps an MQTT 5.0 CONNACK reason code to the closest 3.1.1
// return code, the way a broker answers an older client.
func ConnackCodeV3(c ReasonCode) byte {
	switch c {
	case Success:
		return ConnAccepted
	case UnsupportedProtocolVersion:
		return ConnRefusedVersion
	case ClientIdentifierNotValid:
		return ConnRefusedIdentifier
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return ConnRefusedBadCredentials
	case NotAuthorized, Banned:
		return ConnRefusedNotAuthorized
	}
	return ConnRefusedUnavailable
}

// reasonSet is a set of reason codes, one bit per code.
type reasonSet [4]uint64

func newReasonSet(codes ...ReasonCode) reasonSet {
	var s reasonSet
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

func (s *reasonSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

// Reason codes each packet type may carry in MQTT 5.0 (the tables of
// sections 3.2.2.2, 3.4.2.1, 3.5.2.1, 3.6.2.1, 3.7.2.1, 3.9.3, 3.11.3,
// 3.14.2.1 and 3.15.2.1).
var (
	connackReasons = newReasonSet(0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A,
		0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F)
	pubackReasons     = newReasonSet(0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99) // PUBACK, PUBREC
	pubrelReasons     = newReasonSet(0x00, 0x92)                                           // PUBREL, PUBCOMP
	subackReasons     = newReasonSet(0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2)
	unsubackReasons   = newReasonSet(0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91)
	disconnectReasons = newReasonSet(0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F,
		0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2)
	authReasons = newReasonSet(0x00, 0x18, 0x19)
)

// Error is a decoding or validation failure. Code is the MQTT 5.0 reason
// code a broker sends for it (in a CONNACK or DISCONNECT); for 3.1.1 peers
// it decides only that the connection is closed (or, for CONNECT, which
// return code is sent, via [ConnackCodeV3]).
type Error struct {
	Code   ReasonCode
	Packet Type   // the packet being decoded, 0 when unknown
	Reason string // what was wrong, with the normative statement it breaks
}

// Error implements error.
func (e *Error) Error() string {
	if e.Packet != 0 {
		return fmt.Sprintf("%v: %s (%v)", e.Packet, e.Reason, e.Code)
	}
	return fmt.Sprintf("%s (%v)", e.Reason, e.Code)
}

func malformed(t Type, reason string) *Error {
	return &Error{Code: MalformedPacket, Packet: t, Reason: reason}
}
func protocolErr(t Type, reason string) *Error {
	return &Error{Code: ProtocolError, Packet: t, Reason: reason}
}
