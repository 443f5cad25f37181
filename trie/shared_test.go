package trie

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// sharedCounts matches topic n times and counts deliveries per client for the
// share name.
func sharedCounts(tr *Trie[*handle], res *Result[*handle], topic, publisher, share string, n int) map[string]int {
	counts := map[string]int{}
	for range n {
		tr.Match(topic, publisher, res)
		for _, d := range res.Deliveries {
			if d.Share == share {
				counts[d.ClientID]++
			}
		}
	}
	return counts
}

// MQTT 5.0 section 4.8.2: each message matching a shared subscription goes to
// only one of the group's members, and each group gets its own copy.
func TestSharedSubscriptionDeliversOncePerGroup(t *testing.T) {
	for _, members := range []int{1, 3, entryListMax, entryListMax + 1, 50} {
		tr := New[*handle]()
		for i := range members {
			tr.Subscribe("$share/g1/sensors/+", clientName(i), &handle{clientName(i)}, Options{QoS: 1, SubscriptionID: 3})
			tr.Subscribe("$share/g2/sensors/#", clientName(i), &handle{clientName(i)}, Options{QoS: 2})
		}
		tr.Subscribe("sensors/t", clientName(0), &handle{clientName(0)}, Options{})
		require.Equal(t, 2*members+1, tr.Count())

		var res Result[*handle]
		tr.Match("sensors/t", "", &res)
		require.Len(t, res.Deliveries, 3)
		seen := map[string]Delivery[*handle]{}
		for _, d := range res.Deliveries {
			seen[d.Share] = d
		}
		require.Equal(t, byte(1), seen["g1"].QoS)
		require.Equal(t, []Options{{QoS: 1, SubscriptionID: 3}}, seen["g1"].Subs)
		require.Equal(t, byte(2), seen["g2"].QoS)
		require.Equal(t, clientName(0), seen[""].ClientID, "the client's own subscription is a separate delivery")
	}
}

// A client that gets a message more than once (its own subscription and
// shared groups, or several groups) is Again on all of those deliveries
// but one, with few deliveries and past linearMax (the dedup table).
func TestSharedDeliveryAgain(t *testing.T) {
	for _, others := range []int{0, linearMax + 2} {
		tr := New[*handle]()
		for i := range others {
			tr.Subscribe("jobs/+", clientName(100+i), &handle{clientName(100 + i)}, Options{})
		}
		tr.Subscribe("jobs/1", "a", &handle{"a"}, Options{})
		tr.Subscribe("$share/g/jobs/+", "a", &handle{"a"}, Options{})
		tr.Subscribe("$share/h/jobs/#", "a", &handle{"a"}, Options{})
		tr.Subscribe("$share/k/jobs/1", "b", &handle{"b"}, Options{})
		tr.Subscribe("$share/m/jobs/+", "b", &handle{"b"}, Options{})
		tr.Subscribe("$share/n/jobs/#", "c", &handle{"c"}, Options{})

		var res Result[*handle]
		tr.Match("jobs/1", "", &res)
		require.Len(t, res.Deliveries, others+6)
		once := map[string]int{}
		for i, d := range res.Deliveries {
			if !res.Again(i) {
				once[d.ClientID]++
			}
			if d.Share == "" {
				require.False(t, res.Again(i), "an ordinary delivery is the client's first")
			}
		}
		require.Equal(t, 1, once["a"], "%d others", others)
		require.Equal(t, 1, once["b"], "%d others", others)
		require.Equal(t, 1, once["c"], "%d others", others)
		for i := range others {
			require.Equal(t, 1, once[clientName(100+i)])
		}
	}
}

func TestSharedRoundRobinVisitsEveryMemberInTurn(t *testing.T) {
	for _, members := range []int{3, 20} { // list and array shapes
		tr := New[*handle]()
		for i := range members {
			tr.Subscribe("$share/g/a", clientName(i), &handle{clientName(i)}, Options{})
		}
		var res Result[*handle]
		counts := sharedCounts(tr, &res, "a", "", "g", 10*members)
		require.Len(t, counts, members)
		for c, n := range counts {
			require.Equal(t, 10, n, "member %s", c)
		}
	}
}

func TestSharedMemberThatLeavesDoesNotBreakDelivery(t *testing.T) {
	for _, members := range []int{3, 20} {
		tr := New[*handle]()
		for i := range members {
			tr.Subscribe("$share/g/a/+", clientName(i), &handle{clientName(i)}, Options{})
		}
		var res Result[*handle]
		for i := range members - 1 {
			require.True(t, tr.Unsubscribe("$share/g/a/+", clientName(i)))
			counts := sharedCounts(tr, &res, "a/x", "", "g", 3*members)
			require.NotContains(t, counts, clientName(i))
			total := 0
			for _, n := range counts {
				total += n
			}
			require.Equal(t, 3*members, total, "every message still goes to one member")
		}
		require.True(t, tr.Unsubscribe("$share/g/a/+", clientName(members-1)))
		tr.Match("a/x", "", &res)
		require.Empty(t, res.Deliveries)
		require.Equal(t, 1, tr.nodeCount())
	}
}

// MQTT 5.0 section 4.8.2: a message for a member that cannot take it (its
// connection broke) should go to another member; Eligible lets the engine say
// which members can.
func TestSharedEligiblePredicateSkipsUnavailableMembers(t *testing.T) {
	for _, members := range []int{4, 20} {
		tr := New[*handle]()
		for i := range members {
			tr.Subscribe("$share/g/a", clientName(i), &handle{clientName(i)}, Options{})
		}
		down := map[string]bool{clientName(0): true, clientName(2): true}
		var res Result[*handle]
		res.Eligible = func(h *handle) bool { return !down[h.client] }
		counts := sharedCounts(tr, &res, "a", "", "g", 10*members)
		require.NotContains(t, counts, clientName(0))
		require.NotContains(t, counts, clientName(2))
		require.Len(t, counts, members-2)

		m, ok := tr.PickShared("$share/g/a", "", res.Eligible)
		require.True(t, ok)
		require.False(t, down[m.ClientID])

		res.Eligible = func(*handle) bool { return false }
		tr.Match("a", "", &res)
		require.Len(t, res.Deliveries, 1)
		require.True(t, res.Deliveries[0].Unavailable)
		_, ok = tr.PickShared("$share/g/a", "", res.Eligible)
		require.False(t, ok)
	}
}

func TestSharedStickyKeepsOnePublisherOnOneMember(t *testing.T) {
	tr := New[*handle](WithShareStrategy(Sticky{}))
	for i := range 10 {
		tr.Subscribe("$share/g/a", clientName(i), &handle{clientName(i)}, Options{})
	}
	var res Result[*handle]
	spread := map[string]bool{}
	for p := range 50 {
		counts := sharedCounts(tr, &res, "a", clientName(p), "g", 5)
		require.Len(t, counts, 1, "publisher %d", p)
		for c := range counts {
			spread[c] = true
		}
	}
	require.Greater(t, len(spread), 3, "different publishers land on different members")
}

func TestSharedRandomReachesEveryMember(t *testing.T) {
	tr := New[*handle](WithShareStrategy(Random{}))
	for i := range 5 {
		tr.Subscribe("$share/g/a", clientName(i), &handle{clientName(i)}, Options{})
	}
	var res Result[*handle]
	counts := sharedCounts(tr, &res, "a", "", "g", 500)
	require.Len(t, counts, 5)
}

// A strategy returning any int must not make Match panic.
type wildStrategy struct{ v int }

func (s wildStrategy) Start(*Cursor, string, int) int { return s.v }

func TestSharedStrategyOutOfRangeIsTakenModulo(t *testing.T) {
	for _, v := range []int{-7, 1 << 40, 3} {
		tr := New[*handle](WithShareStrategy(wildStrategy{v}))
		for i := range 3 {
			tr.Subscribe("$share/g/a", clientName(i), &handle{clientName(i)}, Options{})
		}
		var res Result[*handle]
		tr.Match("a", "", &res)
		require.Len(t, res.Deliveries, 1)
	}
}

// [MQTT-4.8.2-1] a shared filter needs a ShareName of at least one character
// and [MQTT-4.8.2-2] a "/" and a filter after it. The codec rejects the
// others; if one arrives anyway it is an ordinary filter, not a panic.
func TestMalformedSharedFiltersAreOrdinaryFilters_MQTT_4_8_2_1(t *testing.T) {
	for _, f := range []string{"$share/g", "$share//a", "$share/"} {
		share, rest := splitShare(f)
		require.Empty(t, share)
		require.Equal(t, f, rest)
	}
	share, rest := splitShare("$share/g/a/+/#")
	require.Equal(t, "g", share)
	require.Equal(t, "a/+/#", rest)
	share, rest = splitShare("$share/g/")
	require.Equal(t, "g", share)
	require.Equal(t, "", rest)
}

// A shared group with more than entryListMax members (entryArray shape):
// pick walks from the strategy's start upward and wraps, so a removal that
// moves the last member into a slot already passed would hide that member.
// The only online member exists throughout the match and must be chosen;
// the delivery came back Unavailable (the engine then queued the message
// for an offline member).
func TestSharedPickSeesMemberPresentThroughout(t *testing.T) {
	tr := New[*handle](WithShareStrategy(wildStrategy{0})) // start at slot 0
	const members = entryListMax + 2
	for i := range members {
		tr.Subscribe("$share/g/jobs", clientName(i), &handle{clientName(i)}, Options{QoS: 1})
	}
	x := tr.exact.child("jobs").ext.Load()
	g := (*x.shared.Load())[0]
	a := g.big.Load()
	require.NotNil(t, a, "group must be an entryArray")
	n := int(a.n.Load())
	online := a.slots[n-1].Load().key // the last slot: the only online member
	scanned := a.slots[0].Load().key  // slot 0 is offered first
	require.NotEqual(t, online, scanned)

	var res Result[*handle]
	calls := 0
	res.Eligible = func(h *handle) bool {
		calls++
		if calls == 2 {
			// Meanwhile, on another loop, the member already passed over
			// (slot 0) unsubscribes: the last member moves into slot 0.
			require.True(t, tr.Unsubscribe("$share/g/jobs", scanned))
		}
		return h.client == online
	}
	tr.Match("jobs", "", &res)
	require.Len(t, res.Deliveries, 1)
	d := res.Deliveries[0]
	require.False(t, d.Unavailable, "online member %s existed throughout the match but was not offered the message (got %s, Unavailable)", online, d.ClientID)
	require.Equal(t, online, d.ClientID)
}
