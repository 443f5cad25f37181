package codec

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

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
// Written to stay within the inliner's budget: str and the property
// decoder call it per string.
func (r *reader) binary() ([]byte, bool) {
	b := r.b[r.off:]
	if len(b) < 2 {
		return nil, false
	}
	n := 2 + (int(b[0])<<8 | int(b[1]))
	if len(b) < n {
		return nil, false
	}
	r.off += n
	return b[2:n:n], true
}

// str reads a UTF-8 encoded string and validates it. It returns a non-nil
// error for a short body or for bytes that are not well-formed UTF-8 or
// contain U+0000. The common all-ASCII string costs one call (asciiNoNUL).
func (r *reader) str(what string) ([]byte, *Error) {
	s, ok := r.binary()
	if ok && asciiNoNUL(s) {
		return s, nil
	}
	return r.strSlow(s, ok, what)
}

// strSlow finishes str for a string that is not all ASCII or is truncated.
func (r *reader) strSlow(s []byte, complete bool, what string) ([]byte, *Error) {
	if !complete {
		return nil, malformed(r.t, what+" is truncated")
	}
	if !validUTF8Slow(s) {
		// [MQTT-1.5.4-1] ill-formed UTF-8 (surrogates included) and
		// [MQTT-1.5.4-2] U+0000 make the packet malformed.
		return nil, malformed(r.t, what+" is not well-formed UTF-8 without U+0000 [MQTT-1.5.4-1/2]")
	}
	return s, nil
}

// ValidString reports whether s may be sent as an MQTT UTF-8 Encoded
// String: at most 65,535 bytes, well-formed UTF-8 without U+0000
// [MQTT-1.5.4-1/2]. For strings from configuration; decoding checks its own.
func ValidString(s []byte) bool {
	return len(s) <= 65535 && validUTF8(s)
}

// validUTF8 reports whether s is well-formed UTF-8 (which excludes the
// surrogate code points) and contains no U+0000. ASCII, the common case for
// topics, client identifiers and user properties, is recognised by
// asciiNoNUL without looking at one byte at a time.
func validUTF8(s []byte) bool {
	return asciiNoNUL(s) || validUTF8Slow(s)
}

// validUTF8Slow is validUTF8 for strings that are not all ASCII.
func validUTF8Slow(s []byte) bool {
	return bytes.IndexByte(s, 0) < 0 && utf8.Valid(s)
}

// asciiNoNUL reports whether every byte of s is in 0x01..0x7F: ASCII
// without U+0000, hence well-formed UTF-8 without U+0000.
//
// It tests eight bytes at a time. For a word x, each byte of x | (x-lo)
// has its top bit set when that byte of x is 0x80 or above, or is 0x00 (the
// subtraction takes 0x00 to 0xFF); with every byte in 0x01..0x7F no byte
// borrows and none sets it. A borrow can also set top bits of bytes above
// a 0x00 byte, which is already a failure, so the test is exact. Shorter
// tails and strings are read as overlapping words (four to seven bytes:
// the first and the last four) or byte by byte (one to three), so a user
// property of a few bytes costs a handful of instructions
// (BenchmarkValidUTF8, byte at a time before: 7-11 bytes 6.0-8.4 ns
// before, 3.8-4.8 ns after, most of it the call; 31 bytes 19.4 -> 6.1 ns;
// 256 bytes 148 -> 28 ns).
func asciiNoNUL(s []byte) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	var acc uint64
	switch n := len(s); {
	case n >= 8:
		x := binary.LittleEndian.Uint64(s[n-8:]) // the last word, overlapping the one before
		acc = x | (x - lo)
		for i := 0; i+8 < n; i += 8 {
			x := binary.LittleEndian.Uint64(s[i:])
			acc |= x | (x - lo)
		}
	case n >= 4:
		x := uint64(binary.LittleEndian.Uint32(s)) | uint64(binary.LittleEndian.Uint32(s[n-4:]))<<32
		acc = x | (x - lo)
	default:
		for _, c := range s {
			acc |= uint64(c | (c - 1)) // c-1 wraps 0x00 to 0xFF
		}
	}
	return acc&hi == 0
}

// nonASCIIIn tests b[s:e], at most 16 bytes ending 8 or more bytes into b,
// for bytes outside 0x01..0x7F in place: its result is 0 exactly when
// asciiNoNUL(b[s:e]) holds. A string of more than eight bytes is two
// overlapping words, as in asciiNoNUL. One of at most eight is the word
// that ends where it ends, shifted so that the string is its low bytes:
// bytes before the string (its length prefix, typically with a 0x00) are
// shifted out and the bytes shifted in are outside the mask; a borrow only
// moves upwards, from a 0x00 byte of the string, which fails anyway. Small
// enough to inline, so that a user property's name and value cost a load
// or two and a few operations each, not a call each
// (BenchmarkPublishDecodeUser3).
func nonASCIIIn(b []byte, s, e int) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	if e-s <= 8 {
		sh := uint(8-(e-s)) * 8
		y := binary.LittleEndian.Uint64(b[e-8:e]) >> sh
		return (y | (y - lo)) & (hi >> sh)
	}
	x, y := binary.LittleEndian.Uint64(b[s:s+8]), binary.LittleEndian.Uint64(b[e-8:e])
	return (x | (x - lo) | y | (y - lo)) & hi
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
