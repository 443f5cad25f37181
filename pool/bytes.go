package pool

import (
	"math/bits"
	"sync"
)

// Size classes: 1<<minShift (64 B) to 1<<maxShift (1 MiB).
const (
	minShift = 6
	maxShift = 20
	// MaxSize is the largest capacity kept by the pool. Larger requests
	// are allocated and dropped by Put.
	MaxSize = 1 << maxShift
	classes = maxShift - minShift + 1
)

// Bytes is a size-classed pool of byte slices. The zero value is ready to use.
type Bytes struct {
	classes [classes]sync.Pool
}

// class returns the index of the smallest class holding n bytes.
func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length 0 and capacity at least n. Its capacity is
// a power of two when n <= MaxSize. The caller owns it until Put.
func (p *Bytes) Get(n int) *[]byte {
	if n > MaxSize {
		b := make([]byte, 0, n)
		return &b
	}
	c := class(n)
	if v := p.classes[c].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:0]
		return b
	}
	b := make([]byte, 0, 1<<(c+minShift))
	return &b
}

// Put returns b to the pool. Buffers whose capacity is not a size class
// (grown by append past their class, or larger than MaxSize) are dropped
// for the garbage collector, so appending to a pooled buffer is safe.
func (p *Bytes) Put(b *[]byte) {
	if b == nil {
		return
	}
	c := cap(*b)
	if c < 1<<minShift || c > MaxSize || c&(c-1) != 0 {
		return
	}
	p.classes[class(c)].Put(b)
}
