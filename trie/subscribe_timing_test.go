package trie

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkSubscribeUnsubscribe is one Subscribe and one Unsubscribe per op
// on the 1M-subscription fleet.
func BenchmarkSubscribeUnsubscribe(b *testing.B) {
	tr := fleet()
	const ids = 4096
	cmd := make([]string, ids)
	clients := make([]string, ids)
	for i := range ids {
		clients[i] = fmt.Sprintf("new-%07d", i)
		cmd[i] = "devices/" + clients[i] + "/cmd"
	}
	b.Run("new-exact-filter", func(b *testing.B) {
		// A filter nobody has: creates and prunes its node each time.
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tr.Subscribe(cmd[i%ids], clients[i%ids], nil, Options{QoS: 1})
			tr.Unsubscribe(cmd[i%ids], clients[i%ids])
		}
	})
	b.Run("join-region", func(b *testing.B) {
		// Another client on fleet/r07/#, which has ~7,800 already.
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			tr.Subscribe("fleet/r07/#", clients[i%ids], nil, Options{})
			tr.Unsubscribe("fleet/r07/#", clients[i%ids])
		}
	})
	b.Run("resubscribe", func(b *testing.B) {
		// An existing subscription replaced with new options.
		existing := make([]string, ids)
		filters := make([]string, ids)
		for i := range ids {
			existing[i] = deviceID(i * (fleetDevices / ids))
			filters[i] = "devices/" + existing[i] + "/cmd"
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			tr.Subscribe(filters[i%ids], existing[i%ids], &handle{existing[i%ids]}, Options{QoS: byte(i % 3)})
		}
	})
}

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerSubscription builds a fresh 1M-subscription trie and
// reports the heap it holds per subscription (bytes/sub), everything
// included: nodes, tables, entries, filter and client identifier strings.
// ns/sub is the time to subscribe one, building from empty.
func BenchmarkMemoryPerSubscription(b *testing.B) {
	b.Run("fleet-mix", func(b *testing.B) {
		measureBuild(b, fleetTotal, buildFleet)
	})
	b.Run("exact-only", func(b *testing.B) {
		// The worst case for the mix: a million distinct exact filters,
		// one client each.
		measureBuild(b, 1_000_000, func(tr *Trie[*handle]) {
			for i := range 1_000_000 {
				id := deviceID(i)
				tr.Subscribe("devices/"+id+"/cmd", id, nil, Options{QoS: 1})
			}
		})
	})
	b.Run("wildcard-per-device", func(b *testing.B) {
		// A million per-device wildcard filters: devices/{id}/+/set, a
		// node per level.
		measureBuild(b, 1_000_000, func(tr *Trie[*handle]) {
			for i := range 1_000_000 {
				id := deviceID(i)
				tr.Subscribe("devices/"+id+"/+/set", id, nil, Options{QoS: 1})
			}
		})
	})
}

func measureBuild(b *testing.B, subs int, build func(*Trie[*handle])) {
	b.ReportAllocs()
	var perSub float64
	var elapsed time.Duration
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		tr := New[*handle]()
		start := time.Now()
		build(tr)
		elapsed += time.Since(start)
		after := heapInUse()
		if tr.Count() != subs {
			b.Fatalf("%d subscriptions, want %d", tr.Count(), subs)
		}
		perSub = float64(after-before) / float64(subs)
		runtime.KeepAlive(tr)
	}
	b.ReportMetric(perSub, "bytes/sub")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(b.N*subs), "ns/sub")
}

// BenchmarkSubscribersOnOneFilter is one Subscribe and one Unsubscribe per
// op on a filter that already has N subscribers: the time per op must not
// grow with N.
func BenchmarkSubscribersOnOneFilter(b *testing.B) {
	extra := make([]string, 256)
	for i := range extra {
		extra[i] = fmt.Sprintf("extra-%d", i)
	}
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			tr := New[*handle]()
			for i := range n {
				tr.Subscribe("alerts/#", clientName(i), nil, Options{})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c := extra[i%len(extra)]
				tr.Subscribe("alerts/#", c, nil, Options{})
				tr.Unsubscribe("alerts/#", c)
			}
		})
	}
}
