package pool

import "testing"

func BenchmarkGetPut(b *testing.B) {
	for _, size := range []int{64, 4096, 1 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			var p Bytes
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; i < b.N; i++ {
				buf := p.Get(size)
				*buf = append(*buf, 1)
				p.Put(buf)
			}
		})
	}
}

func BenchmarkGetPutParallel(b *testing.B) {
	var p Bytes
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			buf := p.Get(512)
			p.Put(buf)
		}
	})
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return "1MiB"
	case n >= 1<<10:
		return "4KiB"
	}
	return "64B"
}
