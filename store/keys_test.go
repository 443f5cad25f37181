package store

import (
	"bytes"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrefixEnd(t *testing.T) {
	f := func(prefix, want []byte) {
		t.Helper()
		require.Equal(t, want, prefixEnd(nil, prefix), "%q", prefix)
	}
	f([]byte("a"), []byte("b"))
	f([]byte{'e', 0, 1, 'a'}, []byte{'e', 0, 1, 'b'})
	f([]byte{'e', 0, 2, 0xFF, 0xFF}, []byte{'e', 0, 3})
	f([]byte{0xFF}, nil)
	f(nil, nil)
}

// TestClientKeysDoNotOverlap checks that no key of one client falls in the
// range DeleteSession removes for another, for ids that are prefixes of one
// another or end in 0x00 / 0xFF.
func TestClientKeysDoNotOverlap(t *testing.T) {
	ids := []string{"", "a", "ab", "a\x00", "a\xff", "a\xff\xff", "b", "\xff", "\xff\xff"}
	for _, kind := range []byte{kindEntry, kindInbound} {
		for _, del := range ids {
			lower := appendClientPrefix(nil, kind, del)
			upper := prefixEnd(nil, lower)
			for _, id := range ids {
				for _, key := range [][]byte{
					appendEntryKey(nil, id, 0), appendEntryKey(nil, id, ^uint64(0)),
					appendInboundKey(nil, id, 0), appendInboundKey(nil, id, 0xFFFF),
				} {
					if key[0] != kind {
						continue
					}
					in := bytes.Compare(key, lower) >= 0 && bytes.Compare(key, upper) < 0
					require.Equal(t, id == del, in, "kind %c: key of %q in range of %q", kind, id, del)
				}
			}
		}
	}
}

func TestEntryKeysSortBySeq(t *testing.T) {
	seqs := []uint64{0, 1, 255, 256, 1 << 32, 1<<63 + 5, ^uint64(0)}
	var keys [][]byte
	for _, s := range seqs {
		keys = append(keys, appendEntryKey(nil, "client", s))
	}
	require.True(t, slices.IsSortedFunc(keys, bytes.Compare))
	for i, k := range keys {
		id, seq, ok := parseEntryKey(k)
		require.True(t, ok)
		require.Equal(t, "client", string(id))
		require.Equal(t, seqs[i], seq)
	}
	id, pid, ok := parseInboundKey(appendInboundKey(nil, "a\x00b", 513))
	require.True(t, ok)
	require.Equal(t, "a\x00b", string(id))
	require.EqualValues(t, 513, pid)
	_, _, ok = parseEntryKey([]byte{kindEntry, 0, 5, 'a'})
	require.False(t, ok)
	_, _, ok = parseInboundKey([]byte{kindInbound, 0})
	require.False(t, ok)
}
