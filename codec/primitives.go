package codec

import "unicode/utf8"

// maxVarint is the largest value a variable byte integer holds [MQTT 5.0 section 1.5.5].
const maxVarint = 268_435_455

// reader walks a packet body. It never copies: strings and binary data are
// returned as sub-slices of b. Every method reports ok=false when the body
// is too short, which callers turn into a Malformed Packet error.
type reader struct {
	b   []byte
	off int
	t   Type // packet being decoded, for error messages
}

func (r *reader) len() int { return len(r.b) - r.off }

func (r *reader) byte() (byte, bool) {
	if r.off >= len(r.b) {
		return 0, false
	}
	c := r.b[r.off]
	r.off++
	return c, true
}

func (r *reader) uint16() (uint16, bool) {
	if len(r.b)-r.off < 2 {
		return 0, false
	}
	v := uint16(r.b[r.off])<<8 | uint16(r.b[r.off+1])
	r.off += 2
	return v, true
}

func (r *reader) uint32() (uint32, bool) {
	if len(r.b)-r.off < 4 {
		return 0, false
	}
	b := r.b[r.off:]
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	r.off += 4
	return v, true
}

// varint reads a variable byte integer of at most four bytes.
func (r *reader) varint() (uint32, bool) {
	v, n := decodeVarint(r.b[r.off:])
	if n <= 0 {
		return 0, false
	}
	r.off += n
	return v, true
}

// binary reads two-byte-length-prefixed data [MQTT 5.0 section 1.5.6].
func (r *reader) binary() ([]byte, bool) {
	n, ok := r.uint16()
	if !ok || r.len() < int(n) {
		return nil, false
	}
	s := r.b[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return s, true
}

// str reads a UTF-8 encoded string and validates it. It returns a non-nil
// error for a short body or for bytes that are not well-formed UTF-8 or
// contain U+0000.
func (r *reader) str(what string) ([]byte, *Error) {
	s, ok := r.binary()
	if !ok {
		return nil, malformed(r.t, what+" is truncated")
	}
	if !validUTF8(s) {
		// [MQTT-1.5.4-1] ill-formed UTF-8 (surrogates included) and
		// [MQTT-1.5.4-2] U+0000 make the packet malformed.
		return nil, malformed(r.t, what+" is not well-formed UTF-8 without U+0000 [MQTT-1.5.4-1/2]")
	}
	return s, nil
}

// validUTF8 reports whether s is well-formed UTF-8 (which excludes the
// surrogate code points) and contains no U+0000. ASCII, the common case for
// topics and client identifiers, is checked without decoding runes.
func validUTF8(s []byte) bool {
	for i, c := range s {
		if c == 0 {
			return false
		}
		if c >= utf8.RuneSelf {
			rest := s[i:]
			for _, c := range rest {
				if c == 0 {
					return false
				}
			}
			return utf8.Valid(rest)
		}
	}
	return true
}

// decodeVarint decodes a variable byte integer from the start of b. It
// returns the value and the number of bytes used; n == 0 means b ends
// before the integer does, n < 0 that the integer is longer than four bytes.
func decodeVarint(b []byte) (v uint32, n int) {
	var shift uint
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0
		}
		c := b[i]
		v |= uint32(c&0x7F) << shift
		if c&0x80 == 0 {
			return v, i + 1
		}
		shift += 7
	}
	return 0, -1
}

// varintLen returns the encoded size of v as a variable byte integer.
func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16_384:
		return 2
	case v < 2_097_152:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v int) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}

func appendUint16(dst []byte, v uint16) []byte { return append(dst, byte(v>>8), byte(v)) }

func appendUint32(dst []byte, v uint32) []byte {
	return append(dst, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// appendBinary appends a two-byte length and s. Callers keep len(s) within
// 65,535; longer input is truncated to keep the frame well-formed.
func appendBinary(dst []byte, s []byte) []byte {
	if len(s) > 0xFFFF {
		s = s[:0xFFFF]
	}
	dst = appendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// binaryLen is the encoded size of s as length-prefixed data.
func binaryLen(s []byte) int {
	if len(s) > 0xFFFF {
		return 2 + 0xFFFF
	}
	return 2 + len(s)
}

// grow makes room for n more bytes in dst with at most one allocation. It
// at least doubles the capacity, so a caller appending frame after frame to
// one buffer reallocates O(log n) times, not once per frame.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst
	}
	nd := make([]byte, len(dst), max(len(dst)+n, 2*cap(dst)))
	copy(nd, dst)
	return nd
}

// appendFixedHeader grows dst for the whole frame and appends its first
// byte and the remaining length.
func appendFixedHeader(dst []byte, first byte, remaining int) []byte {
	dst = grow(dst, 1+varintLen(remaining)+remaining)
	dst = append(dst, first)
	return appendVarint(dst, remaining)
}
