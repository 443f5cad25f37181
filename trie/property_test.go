package trie

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// naiveMatch is the reference matcher: the rules of MQTT section 4.7 written
// as plainly as possible, on split strings.
func naiveMatch(filter, topic []string) bool {
	if isDollar(topic[0]) && (filter[0] == "+" || filter[0] == "#") { // [MQTT-4.7.2-1]
		return false
	}
	for i, f := range filter {
		if f == "#" { // this level and all below, the parent included
			return true
		}
		if i >= len(topic) || (f != "+" && f != topic[i]) {
			return false
		}
	}
	return len(filter) == len(topic)
}

// levelPool is drawn from for random topics and filters: few common levels
// so that things match, and enough rare ones to push nodes past kidListMax.
var levelPool = []string{"a", "b", "", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"}

func randomLevel(rng *rand.Rand) string {
	if rng.IntN(2) == 0 {
		return levelPool[rng.IntN(3)]
	}
	return levelPool[rng.IntN(len(levelPool))]
}

func randomTopic(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = randomLevel(rng)
	}
	switch rng.IntN(8) {
	case 0:
		levels[0] = "$SYS"
	case 1:
		levels[0] = "$x"
	}
	return strings.Join(levels, "/")
}

func randomFilter(rng *rand.Rand) string {
	n := 1 + rng.IntN(4)
	levels := make([]string, n)
	for i := range levels {
		switch rng.IntN(5) {
		case 0:
			levels[i] = "+"
		default:
			levels[i] = randomLevel(rng)
		}
	}
	if rng.IntN(4) == 0 {
		levels[n-1] = "#"
	}
	if rng.IntN(10) == 0 {
		levels[0] = "$SYS"
	}
	return strings.Join(levels, "/")
}

// model is the reference state: what is subscribed, plainly.
type model struct {
	subs   map[[2]string]Options         // (filter, client) → options
	shared map[[2]string]map[string]bool // (share, filter) → members
}

type modelSub struct {
	filter []string
	client string
	opts   Options
}

// prefixes returns the node keys a set of level paths needs.
func addPrefixes(set map[string]bool, path string) {
	levels := strings.Split(path, "/")
	for i := 1; i <= len(levels); i++ {
		set[strings.Join(levels[:i], "/")] = true
	}
}

// scaled returns full, or a tenth of it under -short.
func scaled(full int) int {
	if testing.Short() {
		return full / 10
	}
	return full
}

// TestMatchAgreesWithNaiveMatcher compares Trie.Match and Retained.Match with
// naiveMatch on random trees, filters and topics, and checks after each
// random subscribe/unsubscribe sequence that no empty node is left.
func TestMatchAgreesWithNaiveMatcher(t *testing.T) {
	const perRound = 100
	total := scaled(100_000)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	clients := make([]string, 12)
	for i := range clients {
		clients[i] = fmt.Sprintf("c%d", i)
	}
	var res Result[*handle]
	matches, retainedChecks := 0, 0
	for round := 0; matches < total || retainedChecks < total; round++ {
		tr := New[*handle]()
		m := model{subs: map[[2]string]Options{}, shared: map[[2]string]map[string]bool{}}
		filters := make([]string, 6+rng.IntN(10))
		for i := range filters {
			filters[i] = randomFilter(rng)
		}

		// A random sequence of subscribes, re-subscribes and unsubscribes.
		for range 20 + rng.IntN(60) {
			f := filters[rng.IntN(len(filters))]
			c := clients[rng.IntN(len(clients))]
			share := ""
			if rng.IntN(6) == 0 {
				share = []string{"g1", "g2"}[rng.IntN(2)]
			}
			full := f
			if share != "" {
				full = sharePrefix + share + "/" + f
			}
			if rng.IntN(4) == 0 {
				var existed bool
				if share == "" {
					_, existed = m.subs[[2]string{f, c}]
					delete(m.subs, [2]string{f, c})
				} else {
					existed = m.shared[[2]string{share, f}][c]
					delete(m.shared[[2]string{share, f}], c)
				}
				require.Equal(t, existed, tr.Unsubscribe(full, c), "seed %d unsubscribe %q %q", seed, full, c)
				continue
			}
			o := Options{QoS: byte(rng.IntN(3)), NoLocal: share == "" && rng.IntN(5) == 0, SubscriptionID: uint32(rng.IntN(4))}
			var existed bool
			if share == "" {
				_, existed = m.subs[[2]string{f, c}]
				m.subs[[2]string{f, c}] = o
			} else {
				g := m.shared[[2]string{share, f}]
				if g == nil {
					g = map[string]bool{}
					m.shared[[2]string{share, f}] = g
				}
				existed = g[c]
				g[c] = true
			}
			require.Equal(t, existed, tr.Subscribe(full, c, &handle{c}, o), "seed %d subscribe %q %q", seed, full, c)
		}

		// Structure: exactly the nodes the current filters need.
		nodes := map[string]bool{}
		var subs []modelSub
		count := 0
		need := func(filter string) {
			if isExact(filter) {
				nodes["exact:"+filter] = true // one node for the whole filter
			} else {
				addPrefixes(nodes, filter)
			}
		}
		for k, o := range m.subs {
			need(k[0])
			subs = append(subs, modelSub{strings.Split(k[0], "/"), k[1], o})
			count++
		}
		for k, g := range m.shared {
			if len(g) > 0 {
				need(k[1])
				count += len(g)
			}
		}
		require.Equal(t, count, tr.Count(), "seed %d", seed)
		require.Equal(t, 1+len(nodes), tr.nodeCount(), "seed %d", seed)
		require.Zero(t, tr.emptyNodes(), "seed %d", seed)

		// Matching.
		for range perRound {
			topic := randomTopic(rng)
			tl := strings.Split(topic, "/")
			publisher := clients[rng.IntN(len(clients))]
			type want struct {
				qos  byte
				opts []Options
			}
			wantOrdinary := map[string]*want{}
			for _, s := range subs {
				if !naiveMatch(s.filter, tl) || (s.opts.NoLocal && s.client == publisher) {
					continue
				}
				w := wantOrdinary[s.client]
				if w == nil {
					w = &want{}
					wantOrdinary[s.client] = w
				}
				w.qos = max(w.qos, s.opts.QoS)
				w.opts = append(w.opts, s.opts)
			}
			wantShared := map[string][]map[string]bool{} // share → member sets of matching groups
			for k, g := range m.shared {
				if len(g) > 0 && naiveMatch(strings.Split(k[1], "/"), tl) {
					wantShared[k[0]] = append(wantShared[k[0]], g)
				}
			}

			tr.Match(topic, publisher, &res)
			gotShared := map[string]int{}
			gotOrdinary := 0
			for _, d := range res.Deliveries {
				require.Equal(t, d.ClientID, d.Handle.client)
				if d.Share != "" {
					gotShared[d.Share]++
					inSome := false
					for _, g := range wantShared[d.Share] {
						inSome = inSome || g[d.ClientID]
					}
					require.True(t, inSome, "seed %d topic %q: shared delivery to non-member %q", seed, topic, d.ClientID)
					require.Len(t, d.Subs, 1)
					continue
				}
				gotOrdinary++
				w := wantOrdinary[d.ClientID]
				require.NotNil(t, w, "seed %d topic %q publisher %q: unexpected delivery to %q", seed, topic, publisher, d.ClientID)
				require.Equal(t, w.qos, d.QoS, "seed %d topic %q client %q", seed, topic, d.ClientID)
				require.ElementsMatch(t, w.opts, d.Subs, "seed %d topic %q client %q", seed, topic, d.ClientID)
			}
			require.Equal(t, len(wantOrdinary), gotOrdinary, "seed %d topic %q publisher %q", seed, topic, publisher)
			for share, groups := range wantShared {
				require.Equal(t, len(groups), gotShared[share], "seed %d topic %q share %q", seed, topic, share)
			}
			require.Len(t, gotShared, len(wantShared), "seed %d topic %q", seed, topic)
			matches++
		}

		// The retained index, against the same reference.
		r := NewRetained[string]()
		stored := map[string]bool{}
		for range 10 + rng.IntN(40) {
			topic := randomTopic(rng)
			if rng.IntN(4) == 0 {
				require.Equal(t, stored[topic], r.Delete(topic), "seed %d", seed)
				delete(stored, topic)
				continue
			}
			require.Equal(t, stored[topic], r.Set(topic, topic), "seed %d", seed)
			stored[topic] = true
		}
		rnodes := map[string]bool{}
		for tp := range stored {
			addPrefixes(rnodes, tp)
		}
		require.Equal(t, len(stored), r.Count(), "seed %d", seed)
		require.Equal(t, 1+len(rnodes), r.nodeCount(), "seed %d", seed)
		require.Zero(t, r.tree.emptyNodes(), "seed %d", seed)
		for range perRound {
			filter := randomFilter(rng)
			fl := strings.Split(filter, "/")
			var want []string
			for tp := range stored {
				if naiveMatch(fl, strings.Split(tp, "/")) {
					want = append(want, tp)
				}
			}
			slices.Sort(want)
			got := retainedMatch(r, filter)
			require.Equal(t, want, got, "seed %d filter %q", seed, filter)
			if len(want) > 0 {
				v, ok := r.Get(want[0])
				require.True(t, ok)
				require.Equal(t, want[0], v)
			}
			retainedChecks++
		}

		// Everything gone: back to a bare root.
		for k := range m.subs {
			require.True(t, tr.Unsubscribe(k[0], k[1]), "seed %d", seed)
		}
		for k, g := range m.shared {
			for c := range g {
				require.True(t, tr.Unsubscribe(sharePrefix+k[0]+"/"+k[1], c), "seed %d", seed)
			}
		}
		require.Zero(t, tr.Count())
		require.Equal(t, 1, tr.nodeCount(), "seed %d", seed)
		require.Nil(t, tr.tree.root.ext.Load())
		require.Nil(t, tr.exact.ext.Load())
		for tp := range stored {
			require.True(t, r.Delete(tp))
		}
		require.Zero(t, r.Count())
		require.Equal(t, 1, r.nodeCount(), "seed %d", seed)
	}
	t.Logf("%d matches and %d retained lookups compared", matches, retainedChecks)
}

// TestLargeSetsAgreeWithModel drives sets past the list limits in both
// directions: subscriber arrays that grow and shrink, kid tables that are
// built, rebuilt larger and smaller and dropped, checking matches against a
// plain model all along.
func TestLargeSetsAgreeWithModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	const levels, clients = 300, 400
	filters := []string{"x/+", "x/#", "+/y"}
	for k := range levels {
		// exact filters (the exact index) and wildcard ones (tree nodes)
		filters = append(filters, fmt.Sprintf("x/%d", k), fmt.Sprintf("x/%d/+", k))
	}
	tr := New[*handle]()
	r := NewRetained[string]()
	subs := map[[2]string]bool{}
	var res Result[*handle]
	ops := scaled(60_000)
	for i := range ops {
		// Grow for the first half, then shrink: tables go both ways.
		grow := i < ops/2
		f := filters[rng.IntN(len(filters))]
		if rng.IntN(3) == 0 {
			f = filters[rng.IntN(3)] // crowd the wildcard filters: big arrays
		}
		c := clientName(rng.IntN(clients))
		key := [2]string{f, c}
		if (grow && rng.IntN(4) > 0) || (!grow && rng.IntN(4) == 0) {
			require.Equal(t, subs[key], tr.Subscribe(f, c, &handle{c}, Options{}))
			subs[key] = true
			if isExact(f) {
				r.Set(f+"/"+c, c)
			}
		} else {
			require.Equal(t, subs[key], tr.Unsubscribe(f, c))
			delete(subs, key)
			r.Delete(f + "/" + c)
		}
		if i%97 != 0 {
			continue
		}
		topic := fmt.Sprintf("x/%d", rng.IntN(levels))
		if rng.IntN(2) == 0 {
			topic += "/y"
		}
		tl := strings.Split(topic, "/")
		want := map[string]int{}
		for k := range subs {
			if naiveMatch(strings.Split(k[0], "/"), tl) {
				want[k[1]]++
			}
		}
		tr.Match(topic, "", &res)
		got := map[string]int{}
		for _, d := range res.Deliveries {
			got[d.ClientID] = len(d.Subs)
		}
		require.Equal(t, want, got, "seed %d op %d topic %q", seed, i, topic)
		require.Zero(t, tr.emptyNodes())
	}
	require.Equal(t, len(subs), tr.Count())
	for k := range subs {
		require.True(t, tr.Unsubscribe(k[0], k[1]))
	}
	require.Equal(t, 1, tr.nodeCount())
	var topics []string
	r.Match("#", func(topic string, _ string) bool {
		topics = append(topics, topic)
		return true
	})
	require.Len(t, topics, r.Count())
	for _, tp := range topics {
		require.True(t, r.Delete(tp))
	}
	require.Equal(t, 1, r.nodeCount())
}
