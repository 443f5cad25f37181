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
// topic) always right.
func TestAliasesOutMatchesNaiveLRU(t *testing.T) {
	for _, max := range []int{1, 2, 5, 16} {
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
	}
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
