package bench

import (
	"testing"

	"github.com/loopmq/loopmq/codec"
)

// BenchmarkQoS0 measures QoS 0 delivery through the broker in every
// scenario; b.N is the number of messages published.
func BenchmarkQoS0(b *testing.B) { benchScenarios(b, 0, codec.V311) }

// BenchmarkQoS1 is BenchmarkQoS0 at QoS 1: publishers wait for PUBACKs and
// subscribers acknowledge every delivery.
func BenchmarkQoS1(b *testing.B) { benchScenarios(b, 1, codec.V311) }

// BenchmarkQoS0V5 and BenchmarkQoS1V5 are the same with MQTT 5.0 clients:
// every PUBLISH carries three user properties, publishers use a topic
// alias, and subscribers accept topic aliases, so the broker forwards the
// properties and assigns outbound aliases (issue 7: within 15% of the
// 3.1.1 CPU per message).
func BenchmarkQoS0V5(b *testing.B) { benchScenarios(b, 0, codec.V5) }

func BenchmarkQoS1V5(b *testing.B) { benchScenarios(b, 1, codec.V5) }

func benchScenarios(b *testing.B, qos byte, ver codec.Version) {
	for _, sc := range scenarios {
		// The testing package calls a sub-benchmark's function once per
		// b.N it tries; the clients are connected on the first call and
		// reused by the others.
		var fx *fixture
		b.Run(sc.name, func(b *testing.B) {
			if fx == nil {
				var err error
				if fx, err = newFixture(sc, qos, ver); err != nil {
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
