package trie

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

// The retained benchmarks' index: 1,000,000 topics bldg/{b}/{s}/temp for
// 10,000 buildings of 100 sensors each, so bldg/{b}/+/temp matches 100.
const (
	retBuildings = 10_000
	retSensors   = 100
)

func retTopic(b, s int) string { return fmt.Sprintf("bldg/%05d/%03d/temp", b, s) }

var retained = sync.OnceValue(func() *Retained[*string] {
	r := NewRetained[*string]()
	for b := range retBuildings {
		for s := range retSensors {
			t := retTopic(b, s)
			r.Set(t, &t)
		}
	}
	runtime.GC()
	return r
})

// BenchmarkRetainedMatch streams the retained messages matching a new
// subscription's filter.
func BenchmarkRetainedMatch(b *testing.B) {
	r := retained()
	b.Run("filter-matching-100", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 1))
		filters := make([]string, 1024)
		for i := range filters {
			filters[i] = fmt.Sprintf("bldg/%05d/+/temp", rng.IntN(retBuildings))
		}
		n := 0
		visit := func(string, *string) bool { n++; return true }
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Match(filters[i%len(filters)], visit)
		}
		b.StopTimer()
		if n != b.N*retSensors {
			b.Fatalf("visited %d, want %d", n, b.N*retSensors)
		}
	})
	b.Run("filter-matching-all", func(b *testing.B) {
		n := 0
		visit := func(string, *string) bool { n++; return true }
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Match("#", visit)
		}
		b.StopTimer()
		if n != b.N*retBuildings*retSensors {
			b.Fatalf("visited %d, want %d", n, b.N*retBuildings*retSensors)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/topic")
	})
}

func BenchmarkRetainedGet(b *testing.B) {
	r := retained()
	rng := rand.New(rand.NewPCG(2, 2))
	topics := make([]string, 1<<16)
	for i := range topics {
		topics[i] = retTopic(rng.IntN(retBuildings), rng.IntN(retSensors))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := r.Get(topics[i&(len(topics)-1)]); !ok {
			b.Fatal("missing")
		}
	}
}

// BenchmarkRetainedSetDelete is one Set of a new topic and its Delete per op
// on the 1M index.
func BenchmarkRetainedSetDelete(b *testing.B) {
	r := retained()
	topics := make([]string, 4096)
	for i := range topics {
		topics[i] = fmt.Sprintf("bldg/%05d/new-%d/temp", i%retBuildings, i)
	}
	v := "v"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := topics[i%len(topics)]
		r.Set(t, &v)
		r.Delete(t)
	}
}

// BenchmarkRetainedMemory reports the heap a fresh 1M-topic index holds per
// topic, topic strings included (bytes/topic).
func BenchmarkRetainedMemory(b *testing.B) {
	var per float64
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		r := NewRetained[*string]()
		v := "v"
		for bl := range retBuildings {
			for s := range retSensors {
				r.Set(retTopic(bl, s), &v)
			}
		}
		per = float64(heapInUse()-before) / float64(r.Count())
		runtime.KeepAlive(r)
	}
	b.ReportMetric(per, "bytes/topic")
}
