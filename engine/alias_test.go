package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAliasesOutMatchesNaiveLRU drives aliasesOut with random topics, a
// third of them repeating the one before, and checks every answer against
// a naive LRU over a list: the same alias, known exactly when the naive
// model still holds the topic, and what the client would resolve (alias →
// topic) always right. A topic sent without an alias (admission closed)
// leaves the model as it was: it must be one the model does not hold.
func TestAliasesOutMatchesNaiveLRU(t *testing.T) {
	for _, max := range []int{1, 2, 5, 16} {
		refused := 0
		a := newAliasesOut(max)
		type entry struct {
			topic string
			alias uint16
		}
		var lru []entry // most recent first
		client := map[uint16]string{}
		rng := rand.New(rand.NewPCG(1, uint64(max)))
		last := ""
		for i := 0; i < 20000; i++ {
			topic := fmt.Sprintf("t/%d", rng.IntN(3*max))
			if last != "" && rng.IntN(3) == 0 {
				topic = last // runs of one topic: alias's most-recently-used shortcut
			}
			last = topic
			alias, known := a.alias([]byte(topic))
			at := -1
			for j, e := range lru {
				if e.topic == topic {
					at = j
				}
			}
			if alias == 0 {
				require.False(t, known)
				require.Equal(t, -1, at, "step %d: topic %s has an alias but was sent without", i, topic)
				refused++
				continue
			}
			var want entry
			switch {
			case at >= 0:
				want = lru[at]
				lru = append(lru[:at], lru[at+1:]...)
			case len(lru) < max:
				want = entry{topic, uint16(len(lru) + 1)}
			default:
				want = entry{topic, lru[len(lru)-1].alias}
				lru = lru[:len(lru)-1]
			}
			lru = append([]entry{want}, lru...)
			require.Equal(t, want.alias, alias, "step %d topic %s", i, topic)
			require.Equal(t, at >= 0, known, "step %d topic %s", i, topic)
			if !known {
				client[alias] = topic
			}
			require.Equal(t, topic, client[alias], "client resolves alias %d", alias)
		}
		// More than half the lookups hit here (a third repeat the topic
		// before, and the table holds a third of the topics): admission
		// never closes, and this is plain LRU.
		require.Zero(t, refused, "max %d", max)
	}
}

// aliasClient is what a client knows of the broker's aliases: it resolves
// every PUBLISH as a receiver would and checks the topic is the one sent.
type aliasClient struct {
	t      *testing.T
	max    int
	topics map[uint16]string
	// counts of PUBLISH packets sent: with a known alias (topic left out),
	// with an alias (re)defined, with the topic only.
	known, assigned, plain int
}

func (c *aliasClient) receive(a *aliasesOut, topic string) {
	alias, known := a.alias([]byte(topic))
	require.LessOrEqual(c.t, int(alias), c.max, "[MQTT-3.3.2-10] alias above the client's maximum")
	switch {
	case alias == 0:
		require.False(c.t, known)
		c.plain++
	case known:
		require.Equal(c.t, topic, c.topics[alias], "[MQTT-3.3.2-12] alias %d resolves to another topic", alias)
		c.known++
	default:
		c.topics[alias] = topic
		c.assigned++
	}
}

// TestAliasesOutAdmission: a subscriber cycling through more topics than
// it has aliases, on which least-recently-used reassignment would miss on
// every message, soon stops having aliases reassigned: its topics go out
// without one (the aliases already assigned keep being used), and what
// the client resolves stays right. Bursts on one topic, where each
// reassignment is reused, keep plain LRU; and when the topics come to fit
// the table, aliases are assigned again.
func TestAliasesOutAdmission(t *testing.T) {
	const max, n = 16, 100
	topics := make([]string, n)
	for i := range topics {
		topics[i] = fmt.Sprintf("bench/in/%d", i)
	}

	t.Run("cycle", func(t *testing.T) {
		a := newAliasesOut(max)
		c := &aliasClient{t: t, max: max, topics: map[uint16]string{}}
		for i := 0; i < 200*n; i++ {
			c.receive(a, topics[i%n])
		}
		// Plain LRU: 20,000 reassignments and no hit. A reassignment per
		// window of the first and of each probation window remains.
		require.Less(t, c.assigned, 1000, "%+v", *c)
		require.Greater(t, c.known, 200*max*3/4, "the aliases in the table keep being used: %+v", *c)
		require.Equal(t, 200*n, c.known+c.assigned+c.plain)
	})

	t.Run("bursts", func(t *testing.T) {
		// fanin100's pattern: each publisher's messages come a few at a
		// time. Each reassignment is reused three times: admission stays
		// open.
		a := newAliasesOut(max)
		c := &aliasClient{t: t, max: max, topics: map[uint16]string{}}
		rng := rand.New(rand.NewPCG(7, 7))
		for i := 0; i < 5000; i++ {
			topic := topics[rng.IntN(n)]
			for range 4 {
				c.receive(a, topic)
			}
		}
		require.Zero(t, c.plain, "%+v", *c)
	})

	t.Run("reopens", func(t *testing.T) {
		a := newAliasesOut(max)
		c := &aliasClient{t: t, max: max, topics: map[uint16]string{}}
		for i := 0; i < 2000*n; i++ { // long enough for the longest closed period
			c.receive(a, topics[i%n])
		}
		require.True(t, a.closed)
		// Now 8 topics the table never held, at random: admission opens
		// within one closed period, at most 1,024 windows.
		rng := rand.New(rand.NewPCG(8, 8))
		few := make([]string, 8)
		for i := range few {
			few[i] = fmt.Sprintf("other/%d", i)
		}
		for range int(aliasWindow(max)) << 10 {
			c.receive(a, few[rng.IntN(len(few))])
		}
		*c = aliasClient{t: t, max: max, topics: c.topics}
		for range 1000 {
			c.receive(a, few[rng.IntN(len(few))])
		}
		require.Equal(t, 1000, c.known, "%+v", *c)
	})
}

// BenchmarkAliasesOutChurn is a subscriber receiving more topics than it
// has aliases: every message reassigns one, without allocating.
func BenchmarkAliasesOutChurn(b *testing.B) {
	a := newAliasesOut(16)
	topics := make([][]byte, 100)
	for i := range topics {
		topics[i] = []byte(fmt.Sprintf("devices/device-%06d/telemetry", i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.alias(topics[i%len(topics)])
	}
}

// BenchmarkAliasesOutSame is a subscriber of one topic: every message
// carries the alias the previous one did.
func BenchmarkAliasesOutSame(b *testing.B) {
	a := newAliasesOut(16)
	topic := []byte("bench/pair/7")
	b.ReportAllocs()
	for b.Loop() {
		a.alias(topic)
	}
}
