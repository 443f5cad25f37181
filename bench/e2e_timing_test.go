package bench

import (
	"testing"
)

// BenchmarkQoS0 measures QoS 0 delivery through the broker in every
// scenario; b.N is the number of messages published.
func BenchmarkQoS0(b *testing.B) { benchScenarios(b, 0) }

// BenchmarkQoS1 is BenchmarkQoS0 at QoS 1: publishers wait for PUBACKs and
// subscribers acknowledge every delivery.
func BenchmarkQoS1(b *testing.B) { benchScenarios(b, 1) }

func benchScenarios(b *testing.B, qos byte) {
	for _, sc := range scenarios {
		// The testing package calls a sub-benchmark's function once per
		// b.N it tries; the clients are connected on the first call and
		// reused by the others.
		var fx *fixture
		b.Run(sc.name, func(b *testing.B) {
			if fx == nil {
				var err error
				if fx, err = newFixture(sc, qos); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := fx.run(b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			res.report(b, fx.srv != nil)
		})
		if fx != nil {
			fx.close()
		}
	}
}
