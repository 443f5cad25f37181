package bench

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/internal/allocsites"
)

// startFixture starts sc's fixture for the test, closed when the test ends.
func startFixture(t *testing.T, sc scenario, qos byte, ver codec.Version) *fixture {
	t.Helper()
	fx, err := newFixture(sc, qos, ver)
	require.NoError(t, err)
	t.Cleanup(fx.close)
	return fx
}

// fanOut returns how many subscribers receive each of sc's publishers'
// messages; it is the same for every publisher of a scenario.
func fanOut(sc scenario) int {
	n := 0
	for sub := range sc.subs {
		if sc.hears(sub, 0) {
			n++
		}
	}
	return n
}

// smokeMessages is how many messages a test publishes in sc: 2,000, or
// fewer when each is delivered many times (fan-out: 200 messages, 20,000
// deliveries), so that the tests stay quick under -race.
func smokeMessages(sc scenario) int { return max(2000/fanOut(sc), 200) }

// TestScenariosDeliverEverything runs each benchmark scenario briefly and
// checks that every message reached every subscriber that should get it,
// once and in order (the subscribers check sequence numbers), at QoS 0
// too: with the publishers' windows nothing may be dropped. The runs reuse
// the clients with message counts that do not divide evenly over the
// publishers, as the benchmarks' successive b.N do.
func TestScenariosDeliverEverything(t *testing.T) {
	for _, ver := range []codec.Version{codec.V311, codec.V5} {
		for _, qos := range []byte{0, 1} {
			for _, sc := range scenarios {
				t.Run(fmt.Sprintf("%v/qos%d/%s", ver, qos, sc.name), func(t *testing.T) {
					t.Parallel() // mostly to overlap the brokers' shutdowns (0.5 s each)
					fx := startFixture(t, sc, qos, ver)
					var st0 engine.Stats
					if fx.srv != nil {
						st0 = fx.srv.Stats()
					}
					total := smokeMessages(sc)
					published, delivered := 0, 0
					for _, n := range []int{1, total/2 - 1, total - total/2} {
						res, err := fx.run(n)
						require.NoError(t, err)
						published += res.published
						delivered += res.deliveries
					}
					require.Equal(t, total, published)
					require.Equal(t, total*fanOut(sc), delivered)
					require.Equal(t, uint64(delivered), fx.delivered())
					if fx.srv == nil {
						return
					}
					st := fx.srv.Stats()
					require.Equal(t, uint64(published), st.MessagesIn-st0.MessagesIn, "broker's messages in")
					require.Equal(t, uint64(delivered), st.MessagesOut-st0.MessagesOut, "broker's messages out")
					require.Zero(t, st.DroppedSlowConsumer-st0.DroppedSlowConsumer)
					require.Zero(t, st.DroppedQueueFull-st0.DroppedQueueFull)
					require.Zero(t, st.DroppedQoS0Offline-st0.DroppedQoS0Offline)
				})
			}
		}
	}
}

// TestHarnessDoesNotAllocate records every heap allocation of a run
// (MemProfileRate 1) and requires that none was made by this package's
// code: the clients and the run bookkeeping. The benchmarks rely on it to
// attribute allocs/delivery to the broker.
func TestHarnessDoesNotAllocate(t *testing.T) {
	if *externalBroker != "" {
		t.Skip("nothing to attribute with an external broker")
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
	for _, qos := range []byte{0, 1} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("qos%d/%s", qos, sc.name), func(t *testing.T) {
				fx := startFixture(t, sc, qos, codec.V311)
				// Warm up: first messages size the clients' buffers and
				// the profiler's sampling state.
				_, err := fx.run(smokeMessages(sc) / 4)
				require.NoError(t, err)
				before := harnessAllocs()
				_, err = fx.run(smokeMessages(sc) / 2)
				require.NoError(t, err)
				_, sites := allocsites.Diff(before, harnessAllocs())
				require.Empty(t, sites, "the harness allocated during a run")
			})
		}
	}
}

// harnessAllocs returns the allocation counts recorded so far at every
// allocation site whose stack passes through this package, keyed by the
// stack.
func harnessAllocs() map[string]int64 {
	const pkg = "github.com/loopmq/loopmq/bench."
	return allocsites.Read(func(stack []runtime.Frame) bool {
		ours := false
		for _, f := range stack {
			// Not counted: the snapshots themselves, and the runtime's
			// sudogs. Every GC empties the sudog caches and the next
			// blocking channel operations refill them, so those are a
			// few hundred allocations per GC cycle at most (one per
			// goroutine blocked at once), never per message.
			if f.Function == pkg+"harnessAllocs" || f.Function == "runtime.acquireSudog" {
				return false
			}
			ours = ours || strings.HasPrefix(f.Function, pkg)
		}
		return ours
	})
}

// TestBrokerSurvivesSubscriberResets resets every subscriber's connection
// (SO_LINGER 0) in the middle of a QoS 0 fan-out, so that the broker's
// writes to them fail, and checks that the broker still serves clients.
// gnet calls OnClose from inside the failing Writev, in the middle of the
// broker's batch flush: until c9dce2a that crashed the broker.
func TestBrokerSurvivesSubscriberResets(t *testing.T) {
	if *externalBroker != "" {
		t.Skip("checks the in-process broker")
	}
	fx := startFixture(t, scenarios[2], 0, codec.V311) // fanout100
	runErr := make(chan error, 1)
	go func() {
		_, err := fx.run(1 << 20)
		runErr <- err
	}()
	require.Eventually(t, func() bool { return fx.delivered() > 10000 }, 10*time.Second, time.Millisecond)
	for _, s := range fx.subs {
		_ = s.mc.nc.SetLinger(0)
		_ = s.mc.nc.Close()
	}
	require.Error(t, <-runErr, "the run cannot complete without its subscribers")
	time.Sleep(100 * time.Millisecond) // let the broker write to the reset sockets
	mc, err := dialMQTT(fx.srv.Addr().String(), "after-resets", codec.V311)
	require.NoError(t, err, "the broker stopped accepting clients")
	defer mc.nc.Close()
	require.NoError(t, mc.subscribe("after/resets", 0))
}

// TestLargeBatchDelivered publishes bursts of 1,000 QoS 0 messages to one
// subscriber, so that one event's batch for it holds more than 512
// PUBLISHes (a header and a payload each: over IOV_MAX = 1024 iovecs in
// one writev), and checks that every message arrives.
func TestLargeBatchDelivered(t *testing.T) {
	if *externalBroker != "" {
		t.Skip("checks the in-process broker")
	}
	sc := scenarios[0] // pairs10
	sc.window = 2000   // bursts of 1,000 messages
	fx := startFixture(t, sc, 0, codec.V311)
	_, err := fx.run(100_000)
	require.NoError(t, err)
}

// TestQoS0AllocationFree requires the in-process broker's QoS 0 path to
// make no heap allocation per delivery, in every scenario, for 3.1.1 and
// 5.0 subscribers, the latter with and without a Maximum Packet Size
// (whose check once encoded each header into a fresh buffer: one
// allocation per delivery): in steady state under load, and sparse, with
// one message per publisher at a time, where most hand-offs to another
// loop are an event of their own (gnet's Execute allocated a closure and a
// queue node for each: 0.48 allocations per delivery in pairs10 before
// the poller's slot, third_party/gnet/LOOPMQ.md). The bounds leave room
// for the runtime's own allocations and, under load (0.25 per delivery),
// for the message pools growing to more messages in flight: a fan-in run
// next to two busy processes came to 0.10, where 0.01 is usual. Sparse
// runs, after those, allow 0.1. Not under the race detector, which makes
// sync.Pool drop objects; `make test` runs it without (alloc-check).
func TestQoS0AllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops objects under the race detector; make alloc-check runs this")
	}
	if *externalBroker != "" {
		t.Skip("the allocations of an external broker are not counted")
	}
	type variant struct {
		ver       codec.Version
		maxPacket uint32
	}
	for _, v := range []variant{{codec.V311, 0}, {codec.V5, 0}, {codec.V5, 1 << 16}} {
		for _, sc := range scenarios {
			t.Run(fmt.Sprintf("%v/maxpacket%d/%s", v.ver, v.maxPacket, sc.name), func(t *testing.T) {
				fx, err := newFixtureWith(sc, 0, v.ver, fixtureConfig{maxPacket: v.maxPacket})
				require.NoError(t, err)
				t.Cleanup(fx.close)
				_, err = fx.run(smokeMessages(sc)) // warm up pools, buffers and aliases
				require.NoError(t, err)
				res, err := fx.run(smokeMessages(sc) * 5)
				require.NoError(t, err)
				perDelivery := float64(res.mallocs) / float64(res.deliveries)
				require.Less(t, perDelivery, 0.25, "%d allocations for %d deliveries", res.mallocs, res.deliveries)
				// Sparse: one message per publisher per run, most of them an
				// event of their own.
				var mallocs uint64
				deliveries := 0
				for range 200 {
					res, err := fx.run(sc.pubs)
					require.NoError(t, err)
					mallocs += res.mallocs
					deliveries += res.deliveries
				}
				require.Less(t, float64(mallocs)/float64(deliveries), 0.1, "sparse: %d allocations for %d deliveries", mallocs, deliveries)
			})
		}
	}
}
