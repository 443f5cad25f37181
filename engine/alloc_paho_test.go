package engine

import (
	"context"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	paho5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/internal/allocsites"
	"github.com/loopmq/loopmq/store"
)

// TestPaho5AllocationFree sends messages one at a time from a paho.golang
// publisher to a paho.golang subscriber on the other loop, QoS 0 and 1,
// with the 5.0 properties a real client sends (content type, response
// topic, correlation data, message expiry, user properties; the
// subscriber sets Receive Maximum, Maximum Packet Size and Topic Alias
// Maximum), and requires the broker to allocate nothing per message: each
// message is an event of its own, the case that gnet's Execute made cost
// two allocations per hand-off between loops (third_party/gnet/LOOPMQ.md).
// Allocations are attributed by stack: the broker's are those made on a
// stack through loopmq's or gnet's code and through no test file. Not
// under the race detector, which makes sync.Pool drop objects; `make
// alloc-check` runs it.
func TestPaho5AllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops objects under the race detector; make alloc-check runs this")
	}
	s := startServer(t, Options{})
	cp := paho5Connect("af-sub", true, u32(300))
	cp.Properties.ReceiveMaximum = u16(20)
	cp.Properties.MaximumPacketSize = u32(1 << 20)
	cp.Properties.TopicAliasMaximum = u16(10)
	sub := connectPaho5(t, s, cp)
	sub.subscribe(t, "af/#", 1)
	pub := connectPaho5(t, s, paho5Connect("af-pub", true, u32(300)))
	require.NotEqual(t, sessionOwnerLoop(s, "af-sub"), sessionOwnerLoop(s, "af-pub"), "publisher and subscriber on one loop")

	expiry := uint32(600)
	props := &paho5.PublishProperties{ContentType: "application/json", ResponseTopic: "af/reply",
		CorrelationData: []byte("c-1"), MessageExpiry: &expiry,
		User: paho5.UserProperties{{Key: "device-type", Value: "thermostat"}, {Key: "site", Value: "plant-7"}}}
	requireFewBrokerAllocs(t, pub, sub, []byte{0, 1}, props, 0.1)
}

// TestPaho5PersistentAllocationFree is TestPaho5AllocationFree with the
// on-disk store and a persistent subscriber, QoS 1: every message is
// written, committed and deleted, one commit each. Before its commit's
// completion was reused, its pending list kept and its deletes' keys built
// in place, that came to 8.1-8.6 broker allocations per message; now
// about 0.1.
func TestPaho5PersistentAllocationFree(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops objects under the race detector; make alloc-check runs this")
	}
	st, err := store.OpenPebble(t.TempDir(), store.PebbleOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	s := startServer(t, Options{Store: st})
	sub := connectPaho5(t, s, paho5Connect("pf-sub", false, u32(3000)))
	sub.subscribe(t, "af/#", 1)
	pub := connectPaho5(t, s, paho5Connect("pf-pub", true, u32(300)))
	require.NotEqual(t, sessionOwnerLoop(s, "pf-sub"), sessionOwnerLoop(s, "pf-pub"), "publisher and subscriber on one loop")
	requireFewBrokerAllocs(t, pub, sub, []byte{1}, nil, 0.5)
}

// requireFewBrokerAllocs has pub send messages one at a time on topics
// under af/, once at each of qoses per round, each received by sub before
// the next, and requires the broker to allocate fewer than bound times
// per message. The clients allocate for every message, and each garbage
// collection they would cause empties the broker's sync.Pools (pooled
// messages and buffers, refilled by allocating): collections happen here
// only in the snapshots. Each snapshot collects garbage twice, which
// empties the pools, so every phase after one begins by refilling them:
// of two phases of different lengths, what grows with the number of
// messages is the difference.
func requireFewBrokerAllocs(t *testing.T, pub, sub *paho5Client, qoses []byte, props *paho5.PublishProperties, bound float64) {
	t.Helper()
	topics := []string{"af/1", "af/2", "af/3"}
	send := func(n int) {
		for i := range n {
			for _, qos := range qoses {
				_, err := pub.Publish(context.Background(), &paho5.Publish{Topic: topics[i%len(topics)], QoS: qos,
					Payload: []byte(`{"t":21.5}`), Properties: props})
				require.NoError(t, err)
				sub.recv(t, "the message")
			}
		}
	}
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	t.Cleanup(func() { runtime.MemProfileRate = old })
	gcPercent := debug.SetGCPercent(-1)
	t.Cleanup(func() { debug.SetGCPercent(gcPercent) })
	send(500) // warm up buffers, aliases and the user property memo
	phase := func(n int) (int64, []string) {
		before := brokerAllocs()
		send(n)
		return allocsites.Diff(before, brokerAllocs())
	}
	const short, long = 500, 2500
	a, _ := phase(short)
	b, sites := phase(long)
	k := len(qoses)
	perMessage := float64(b-a) / float64(k*(long-short))
	t.Logf("broker allocations: %d for %d messages, %d for %d: %.3f per message", a, k*short, b, k*long, perMessage)
	require.Less(t, perMessage, bound, "the broker allocated %d times for %d messages, %d for %d:\n%s",
		a, k*short, b, k*long, strings.Join(sites, "\n"))
}

// brokerAllocs returns the allocation counts recorded so far at every
// allocation site whose stack passes through loopmq's or gnet's code and
// through no test file, keyed by the stack.
func brokerAllocs() map[string]int64 {
	return allocsites.Read(func(stack []runtime.Frame) bool {
		broker := false
		for _, f := range stack {
			if strings.HasSuffix(f.File, "_test.go") {
				return false
			}
			broker = broker || strings.HasPrefix(f.Function, "github.com/loopmq/loopmq/") ||
				strings.HasPrefix(f.Function, "github.com/panjf2000/gnet/")
		}
		return broker
	})
}
