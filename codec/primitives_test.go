package codec

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// refValidUTF8 is validUTF8's definition, without its fast path.
func refValidUTF8(s []byte) bool { return utf8.Valid(s) && bytes.IndexByte(s, 0) < 0 }

// TestValidUTF8WordBoundaries puts each byte that matters to the word-at-a-
// time test (U+0000, the ASCII edges, continuation and lead bytes) at every
// position of ASCII strings of every length up to four words, alone and
// after another such byte, so each of asciiNoNUL's paths (byte by byte,
// two overlapping halves, whole words and the overlapping last word) sees
// it, and compares with the plain definition.
func TestValidUTF8WordBoundaries(t *testing.T) {
	special := []byte{0x00, 0x01, 0x7F, 0x80, 0xBF, 0xC3, 0xE0, 0xED, 0xF0, 0xFF}
	f := func(s []byte) {
		require.Equal(t, refValidUTF8(s), validUTF8(s), "% x", s)
		if asciiNoNUL(s) {
			require.True(t, refValidUTF8(s), "asciiNoNUL accepted % x", s)
		}
	}
	for n := 0; n <= 33; n++ {
		base := bytes.Repeat([]byte{'a'}, n)
		f(base)
		for i := range n {
			for _, c := range special {
				s := bytes.Clone(base)
				s[i] = c
				f(s)
				for j := i + 1; j < n; j++ {
					s2 := bytes.Clone(s)
					s2[j] = 0xA9 // é is C3 A9: a lead byte before it makes a valid pair
					f(s2)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			s[i] = byte(rng.IntN(0x80))
			if rng.IntN(16) == 0 {
				s[i] = byte(rng.IntN(256))
			}
		}
		f(s)
	}
}

// TestNonASCIIInPlace checks nonASCIIIn against asciiNoNUL for strings of
// 0 to 16 bytes at every offset that leaves at least eight bytes before
// their end, with each special byte at every position of the string and
// with bytes before and after it that would fail the test themselves
// (0x00, as a length prefix usually has, and 0xFF), which must not count.
func TestNonASCIIInPlace(t *testing.T) {
	special := []byte{0x00, 0x01, 0x7F, 0x80, 0xFF}
	f := func(buf []byte, s, e int) {
		want := asciiNoNUL(buf[s:e])
		require.Equal(t, want, nonASCIIIn(buf, s, e) == 0, "string % x in % x", buf[s:e], buf)
	}
	for n := 0; n <= 16; n++ {
		for s := max(0, 8-n); s <= 10; s++ {
			for _, around := range []byte{0x00, 0xFF, 'a'} {
				buf := bytes.Repeat([]byte{around}, s+n+8)
				copy(buf[s:], bytes.Repeat([]byte{'a'}, n))
				f(buf, s, s+n)
				for i := range n {
					for _, c := range special {
						b := bytes.Clone(buf)
						b[s+i] = c
						f(b, s, s+n)
					}
				}
			}
		}
	}
}
