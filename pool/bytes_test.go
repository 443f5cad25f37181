package pool

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGetCapacityIsSmallestClass(t *testing.T) {
	var p Bytes
	f := func(n, wantCap int) {
		t.Helper()
		b := p.Get(n)
		require.Equal(t, 0, len(*b))
		require.Equal(t, wantCap, cap(*b), "Get(%d)", n)
		p.Put(b)
	}
	f(0, 64)
	f(1, 64)
	f(64, 64)
	f(65, 128)
	f(4096, 4096)
	f(4097, 8192)
	f(MaxSize, MaxSize)
	f(MaxSize+1, MaxSize+1)
}

func TestPutDropsForeignCapacities(t *testing.T) {
	var p Bytes
	odd := make([]byte, 0, 100)
	p.Put(&odd) // not a class: dropped, no panic
	p.Put(nil)
	big := make([]byte, 0, 2*MaxSize)
	p.Put(&big)
	b := p.Get(100)
	require.Equal(t, 128, cap(*b))
}

func TestReusedBufferIsEmpty(t *testing.T) {
	var p Bytes
	b := p.Get(10)
	*b = append(*b, "hello"...)
	p.Put(b)
	b2 := p.Get(10)
	require.Equal(t, 0, len(*b2))
}
