package loadgen

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// The write time rides in payloads of 32 bytes or more; smaller payloads
// keep the 24-byte stamp and read back a zero write time.
func TestStampWriteTime(t *testing.T) {
	f := func(size int, wantWrote int64) {
		t.Helper()
		tmpl := newFrameTemplate("t", 1, size, codec.V311)
		s := stamp{run: 7, source: 3, seq: 42, at: 1000, wrote: 1500}
		frame := tmpl.appendTo(nil, 9, s)
		got, ok := readStamp(frame[tmpl.payOff:])
		require.True(t, ok)
		require.Equal(t, stamp{run: 7, source: 3, seq: 42, at: 1000, wrote: wantWrote}, got)
		require.Len(t, frame[tmpl.payOff:], size)
	}
	f(24, 0)
	f(31, 0)
	f(32, 1500)
	f(1024, 1500)
}
