package bench

import (
	"os"
	"testing"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// BenchmarkQoS1Persist measures QoS 1 delivery to persistent subscribers
// (issue 9): with no store (state in memory only), and with the on-disk
// store under each sync policy. Every delivery is written as an entry and
// deleted when acknowledged; the publisher's PUBACK waits until its batch
// is durable. Reports fsyncs/s and deliveries per fsync besides the usual
// figures. Target: "always" at least half the deliveries/s of "memory".
//
// Against an external broker (-bench.broker, e.g. Mosquitto with
// persistence true) only the "memory" case runs: the subscribers are
// persistent there too.
func BenchmarkQoS1Persist(b *testing.B) {
	cases := []struct {
		name string
		sync store.SyncPolicy
		disk bool
	}{
		{name: "memory"},
		{name: "always", sync: store.SyncAlways, disk: true},
		{name: "interval", sync: store.SyncInterval, disk: true},
		{name: "none", sync: store.SyncNone, disk: true},
	}
	for _, sc := range scenarios {
		for _, cs := range cases {
			if cs.disk && *externalBroker != "" {
				continue
			}
			var (
				fx  *fixture
				st  *store.Pebble
				dir string
			)
			b.Run(sc.name+"/"+cs.name, func(b *testing.B) {
				if fx == nil {
					cfg := fixtureConfig{persistent: true}
					if cs.disk {
						var err error
						// Not b.TempDir: the fixture outlives this call.
						if dir, err = os.MkdirTemp("", "bench-persist"); err != nil {
							b.Fatal(err)
						}
						st, err = store.OpenPebble(dir, store.PebbleOptions{Sync: cs.sync})
						if err != nil {
							b.Fatal(err)
						}
						cfg.store = st
					}
					var err error
					if fx, err = newFixtureWith(sc, 1, codec.V311, cfg); err != nil {
						b.Fatal(err)
					}
				}
				var s0 store.Stats
				var back0, early0 uint64
				if st != nil {
					s0 = st.Stats()
					back0 = fx.srv.Stats().StoreEntriesTakenBack
					early0 = fx.srv.Stats().StoreAcksEarly
				}
				b.ReportAllocs()
				b.ResetTimer()
				res, err := fx.run(b.N)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				res.report(b, fx.srv != nil)
				if st != nil {
					s1 := st.Stats()
					syncs := float64(s1.Syncs - s0.Syncs)
					b.ReportMetric(syncs/res.elapsed.Seconds(), "fsyncs/s")
					if syncs > 0 {
						b.ReportMetric(float64(res.deliveries)/syncs, "deliveries/fsync")
					}
					if res.deliveries > 0 {
						back := fx.srv.Stats().StoreEntriesTakenBack - back0
						b.ReportMetric(float64(back)/float64(res.deliveries), "taken-back/delivery")
						early := fx.srv.Stats().StoreAcksEarly - early0
						b.ReportMetric(float64(early)/float64(res.deliveries), "acks-early/delivery")
					}
				}
			})
			if fx != nil {
				fx.close()
			}
			if st != nil {
				_ = st.Close()
				_ = os.RemoveAll(dir)
			}
		}
	}
}
