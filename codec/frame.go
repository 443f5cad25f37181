package codec

import "fmt"

// MaxPacketSize is the largest frame the protocol can express: one type
// byte, a four-byte remaining length and 268,435,455 bytes of body.
const MaxPacketSize = 1 + 4 + maxVarint

// FixedHeader is the decoded first part of every frame [MQTT 5.0 section 2.1].
type FixedHeader struct {
	Type      Type
	Flags     byte // low nibble of the first byte
	Remaining int  // length of variable header and payload
	HeaderLen int  // bytes used by the fixed header itself (2 to 5)
}

// Size is the length of the whole frame.
func (h FixedHeader) Size() int { return h.HeaderLen + h.Remaining }

// Split reports whether b starts with a complete frame. It returns the
// frame's header and total size n when it does, n == 0 and no error when
// more bytes are needed, and an error when the bytes can never form an
// acceptable frame: a remaining length longer than four bytes (Malformed
// Packet [MQTT-1.5.5]), packet type 0 (reserved), or a frame larger than
// maxPacketSize (Packet Too Large [MQTT-3.1.2-24]). The size check happens as
// soon as the remaining length is readable, before the body arrives.
// maxPacketSize <= 0 means [MaxPacketSize].
//
// Split neither copies nor retains b; the frame is b[:n].
func Split(b []byte, maxPacketSize int) (h FixedHeader, n int, err error) {
	if len(b) < 2 {
		return h, 0, nil
	}
	h.Type = Type(b[0] >> 4)
	h.Flags = b[0] & 0x0F
	if h.Type == 0 {
		return h, 0, malformed(0, "packet type 0 is reserved [MQTT 5.0 section 2.1.2]")
	}
	rem, vn := decodeVarint(b[1:])
	if vn == 0 {
		return h, 0, nil
	}
	if vn < 0 {
		return h, 0, malformed(h.Type, "remaining length is longer than four bytes [MQTT 5.0 section 1.5.5]")
	}
	h.Remaining = int(rem)
	h.HeaderLen = 1 + vn
	if maxPacketSize <= 0 {
		maxPacketSize = MaxPacketSize
	}
	if h.Size() > maxPacketSize {
		return h, 0, &Error{Code: PacketTooLarge, Packet: h.Type,
			Reason: fmt.Sprintf("a frame of %d bytes exceeds the maximum packet size, %d", h.Size(), maxPacketSize)}
	}
	if len(b) < h.Size() {
		return h, 0, nil
	}
	return h, h.Size(), nil
}

// checkFlags validates the fixed-header flag bits of every type but PUBLISH
// [MQTT-2.2.2-1] [MQTT-2.2.2-2]: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry
// 0b0010 [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1], all others 0.
// MQTT 3.1 clients may also set DUP on those three when retrying.
func checkFlags(h FixedHeader, v Version) *Error {
	want := byte(0)
	switch h.Type {
	case PUBLISH:
		return nil
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		want = 0x02
		if v == V31 && h.Flags == 0x0A {
			return nil
		}
	}
	if h.Flags != want {
		return malformed(h.Type, "reserved fixed header flags are wrong [MQTT-2.2.2-2]")
	}
	return nil
}
