package trie

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkMatch matches single topics against the 1M-subscription fleet.
func BenchmarkMatch(b *testing.B) {
	tr := fleet()
	topics := randomCmdTopics(1<<16, 1)
	cases := []struct {
		name  string
		topic func(i int) string
		want  int
	}{
		// A command to a random device: its own subscription and the
		// monitors. Random over the fleet, so mostly cache misses.
		{"exact-random", func(i int) string { return topics[i&(len(topics)-1)] }, 1 + fleetMonitor},
		// The same topic over and over: the trie's own cost, cache-warm.
		{"exact-hot", func(int) string { return topics[0] }, 1 + fleetMonitor},
		// Telemetry: 16 backends, one shared member, the monitors.
		{"telemetry", func(i int) string { return "devices/" + deviceID(i%fleetDevices) + "/telemetry" }, fleetTelem + 1 + fleetMonitor},
		// A broadcast to a region: ~7,800 devices.
		{"region-fanout", func(i int) string { return fmt.Sprintf("fleet/r%02d/ota", i%fleetRegions) }, -1},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			pre := make([]string, 1024)
			for i := range pre {
				pre[i] = c.topic(i)
			}
			var res Result[*handle]
			tr.Match(pre[0], "", &res)
			if c.want >= 0 && len(res.Deliveries) != c.want {
				b.Fatalf("%s: %d deliveries, want %d", pre[0], len(res.Deliveries), c.want)
			}
			deliveries := 0
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if c.name == "exact-random" {
					tr.Match(topics[i&(len(topics)-1)], "", &res)
				} else {
					tr.Match(pre[i&(len(pre)-1)], "", &res)
				}
				deliveries += len(res.Deliveries)
			}
			b.ReportMetric(float64(deliveries)/float64(b.N), "deliveries/op")
		})
	}
}

// BenchmarkMatchParallel matches from every P at once. Run with -cpu 1,2:
// ns/op is wall time per match over all goroutines, so perfect scaling halves
// it at -cpu 2.
//
// The -rwmutex variants take a shared sync.RWMutex's read lock around each
// Match, as a trie guarded by one RWMutex would: the design not taken,
// measured here so the choice stays checkable.
func BenchmarkMatchParallel(b *testing.B) {
	tr := fleet()
	random := randomCmdTopics(1<<16, 2)
	hot := random[:1]
	var mu sync.RWMutex
	for _, c := range []struct {
		name   string
		topics []string
		locked bool
	}{
		{"exact-random", random, false},
		{"exact-hot", hot, false},
		{"exact-random-rwmutex", random, true},
		{"exact-hot-rwmutex", hot, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			var seed atomic.Uint64
			mask := len(c.topics) - 1
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var res Result[*handle]
				i := int(seed.Add(7919))
				for pb.Next() {
					if c.locked {
						mu.RLock()
					}
					tr.Match(c.topics[i&mask], "", &res)
					if c.locked {
						mu.RUnlock()
					}
					i++
				}
			})
		})
	}
}

// BenchmarkMatchParallelWithWriter is BenchmarkMatchParallel/exact-random
// while one more goroutine subscribes and unsubscribes (a new device's
// command and region filters), reported as writes/s:
//
//   - unthrottled: the writer never pauses. It competes for the same CPUs:
//     at -cpu 2 there are three busy goroutines on two cores, and at -cpu 1
//     the readers get about half of the one core.
//   - 20k-writes/s: a heavy but realistic churn of subscriptions.
//   - *-rwmutex: the same with the trie behind a shared sync.RWMutex
//     (readers RLock, the writer Lock), the design not taken.
//
// B/op and allocs/op count the writer's allocations too (Match makes none).
func BenchmarkMatchParallelWithWriter(b *testing.B) {
	for _, c := range []struct {
		name   string
		rate   int // writes per second; 0 is unthrottled
		locked bool
	}{
		{"unthrottled", 0, false},
		{"20k-writes/s", 20_000, false},
		{"unthrottled-rwmutex", 0, true},
		{"20k-writes/s-rwmutex", 20_000, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			matchWithWriter(b, c.rate, c.locked)
		})
	}
}

func matchWithWriter(b *testing.B, rate int, locked bool) {
	tr := fleet()
	topics := randomCmdTopics(1<<16, 3)
	var (
		mu     sync.RWMutex
		stop   atomic.Bool
		writes atomic.Int64
		wg     sync.WaitGroup
	)
	const n = 4096
	var ids, cmds, regions [n]string
	for i := range n {
		ids[i] = fmt.Sprintf("new-%d", i)
		cmds[i] = "devices/" + ids[i] + "/cmd"
		regions[i] = fmt.Sprintf("fleet/r%02d/#", i%fleetRegions)
	}
	write := func(f func()) {
		if locked {
			mu.Lock()
			defer mu.Unlock()
		}
		f()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for i := 0; !stop.Load(); i = (i + 1) % n {
			write(func() { tr.Subscribe(cmds[i], ids[i], nil, Options{}) })
			write(func() { tr.Subscribe(regions[i], ids[i], nil, Options{}) })
			write(func() { tr.Unsubscribe(cmds[i], ids[i]) })
			write(func() { tr.Unsubscribe(regions[i], ids[i]) })
			w := writes.Add(4)
			if rate > 0 {
				if ahead := time.Duration(w)*time.Second/time.Duration(rate) - time.Since(start); ahead > 0 {
					time.Sleep(ahead)
				}
			}
		}
	}()
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var res Result[*handle]
		i := int(seed.Add(7919))
		for pb.Next() {
			if locked {
				mu.RLock()
			}
			tr.Match(topics[i&(len(topics)-1)], "", &res)
			if locked {
				mu.RUnlock()
			}
			i++
		}
	})
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	b.ReportMetric(float64(writes.Load())/b.Elapsed().Seconds(), "writes/s")
}
