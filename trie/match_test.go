package trie

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// handle is the engine handle used in tests: the client it belongs to.
type handle struct{ client string }

// matchClients returns the sorted client identifiers of tr's ordinary
// deliveries for topic.
func matchClients(t *testing.T, tr *Trie[*handle], topic string) []string {
	t.Helper()
	var res Result[*handle]
	tr.Match(topic, "", &res)
	var got []string
	for _, d := range res.Deliveries {
		if d.Share == "" {
			got = append(got, d.ClientID)
		}
	}
	slices.Sort(got)
	return got
}

// wildcardCase is one filter and the topics it must and must not match.
type wildcardCase struct {
	filter  string
	match   []string
	noMatch []string
}

// checkWildcards subscribes each case's filter (as its own client) in one
// trie, then checks every listed topic against it.
func checkWildcards(t *testing.T, cases []wildcardCase) {
	t.Helper()
	tr := New[*handle]()
	for _, c := range cases {
		tr.Subscribe(c.filter, c.filter, &handle{c.filter}, Options{})
	}
	for _, c := range cases {
		for _, topic := range c.match {
			require.Contains(t, matchClients(t, tr, topic), c.filter, "filter %q must match topic %q", c.filter, topic)
		}
		for _, topic := range c.noMatch {
			require.NotContains(t, matchClients(t, tr, topic), c.filter, "filter %q must not match topic %q", c.filter, topic)
		}
	}
	// The retained index applies the same rules from the other side.
	r := NewRetained[string]()
	for _, c := range cases {
		for _, topic := range append(slices.Clone(c.match), c.noMatch...) {
			r.Set(topic, topic)
		}
	}
	for _, c := range cases {
		var got []string
		r.Match(c.filter, func(topic string, v string) bool {
			require.Equal(t, topic, v)
			got = append(got, topic)
			return true
		})
		for _, topic := range c.match {
			require.Contains(t, got, topic, "retained: filter %q must match topic %q", c.filter, topic)
		}
		for _, topic := range c.noMatch {
			require.NotContains(t, got, topic, "retained: filter %q must not match topic %q", c.filter, topic)
		}
	}
}

// MQTT 3.1.1 and 5.0 section 4.7.1.2: "#" matches any number of levels
// within a topic, including the parent level.
func TestMultiLevelWildcardMatchesParentAndAnyNumberOfChildLevels(t *testing.T) {
	checkWildcards(t, []wildcardCase{
		{filter: "sport/tennis/player1/#",
			match:   []string{"sport/tennis/player1", "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon", "sport/tennis/player1/"},
			noMatch: []string{"sport/tennis", "sport/tennis/player2", "sport/tennis/player10"}},
		{filter: "sport/#",
			match:   []string{"sport", "sport/", "sport/tennis/player1"},
			noMatch: []string{"sports", "spor"}},
		{filter: "#",
			match: []string{"a", "/", "a/b/c", "sport/tennis"}},
		{filter: "+/#",
			match: []string{"a", "a/b", "/", "/x/y"}},
	})
}

// MQTT 3.1.1 and 5.0 section 4.7.1.3: "+" matches exactly one level.
func TestSingleLevelWildcardMatchesExactlyOneLevel(t *testing.T) {
	checkWildcards(t, []wildcardCase{
		{filter: "sport/tennis/+",
			match:   []string{"sport/tennis/player1", "sport/tennis/player2", "sport/tennis/"},
			noMatch: []string{"sport/tennis/player1/ranking", "sport/tennis"}},
		{filter: "sport/+",
			match:   []string{"sport/"},
			noMatch: []string{"sport", "sport/tennis/x"}},
		{filter: "+/+",
			match:   []string{"/finance", "a/b", "/"},
			noMatch: []string{"a", "a/b/c"}},
		{filter: "/+",
			match:   []string{"/finance", "/"},
			noMatch: []string{"finance", "a/b"}},
		{filter: "+",
			match:   []string{"finance", ""},
			noMatch: []string{"/finance", "a/b"}},
		{filter: "sport/+/player1",
			match:   []string{"sport/tennis/player1", "sport//player1"},
			noMatch: []string{"sport/tennis/player2", "sport/player1"}},
	})
}

// [MQTT-4.7.2-1] The Server MUST NOT match Topic Filters starting with a
// wildcard character (# or +) with Topic Names beginning with a $ character.
func TestWildcardFirstFiltersDoNotMatchDollarTopics_MQTT_4_7_2_1(t *testing.T) {
	checkWildcards(t, []wildcardCase{
		{filter: "#",
			match:   []string{"SYS/x", "a$"},
			noMatch: []string{"$SYS/x", "$SYS", "$", "$share/g/x"}},
		{filter: "+/monitor/Clients",
			match:   []string{"x/monitor/Clients"},
			noMatch: []string{"$SYS/monitor/Clients"}},
		{filter: "+",
			noMatch: []string{"$SYS"}},
		{filter: "+/#",
			noMatch: []string{"$SYS/a"}},
		{filter: "$SYS/#",
			match:   []string{"$SYS", "$SYS/monitor/Clients"},
			noMatch: []string{"SYS/monitor"}},
		{filter: "$SYS/monitor/+",
			match: []string{"$SYS/monitor/Clients"}},
		{filter: "a/+",
			match: []string{"a/$x"}}, // the rule is about the first level only
	})
}

// MQTT 3.1.1 and 5.0 section 4.7.3: a leading or trailing "/" makes a
// distinct topic; empty levels are levels; a lone "/" is valid.
func TestEmptyLevelsAreDistinctLevels(t *testing.T) {
	checkWildcards(t, []wildcardCase{
		{filter: "a//b", match: []string{"a//b"}, noMatch: []string{"a/b", "a///b"}},
		{filter: "/a", match: []string{"/a"}, noMatch: []string{"a", "a/"}},
		{filter: "a/", match: []string{"a/"}, noMatch: []string{"a", "/a"}},
		{filter: "/", match: []string{"/"}, noMatch: []string{"", "//"}},
		{filter: "a/+/b", match: []string{"a//b"}},
		{filter: "/#", match: []string{"/", "/a", "//"}, noMatch: []string{"a"}},
	})
}

// MQTT 3.1.1 and 5.0 section 4.7.3: topic names and filters are case
// sensitive and may contain spaces.
func TestTopicsAreCaseSensitiveAndMayContainSpaces(t *testing.T) {
	checkWildcards(t, []wildcardCase{
		{filter: "ACCOUNTS", match: []string{"ACCOUNTS"}, noMatch: []string{"Accounts", "accounts"}},
		{filter: "Accounts payable", match: []string{"Accounts payable"}, noMatch: []string{"Accounts"}},
		{filter: "Accounts payable/+", match: []string{"Accounts payable/x y"}},
	})
}

// [MQTT-3.3.4-2] the Server MUST deliver the message to the Client respecting
// the maximum QoS of all the matching subscriptions; [MQTT-3.3.4-3] and
// [MQTT-3.3.4-4]: a single copy carries the Subscription Identifiers of all
// matching subscriptions.
func TestOverlappingSubscriptionsGiveOneDeliveryWithMaxQoSAndAllIDs_MQTT_3_3_4_2(t *testing.T) {
	tr := New[*handle]()
	h := &handle{"c"}
	tr.Subscribe("a/b", "c", h, Options{QoS: 0, SubscriptionID: 1})
	tr.Subscribe("a/+", "c", h, Options{QoS: 2, SubscriptionID: 2, RetainAsPublished: true})
	tr.Subscribe("#", "c", h, Options{QoS: 1, SubscriptionID: 2}) // IDs may repeat
	tr.Subscribe("a/#", "c", h, Options{QoS: 1})                  // no ID
	tr.Subscribe("a/b", "other", &handle{"other"}, Options{QoS: 1, SubscriptionID: 9})

	var res Result[*handle]
	tr.Match("a/b", "", &res)
	require.Len(t, res.Deliveries, 2)
	var d Delivery[*handle]
	for _, x := range res.Deliveries {
		if x.ClientID == "c" {
			d = x
		}
	}
	require.Equal(t, byte(2), d.QoS)
	require.Same(t, h, d.Handle)
	require.Len(t, d.Subs, 4)
	var ids []uint32
	rap := 0
	for _, o := range d.Subs {
		if o.SubscriptionID != 0 {
			ids = append(ids, o.SubscriptionID)
		}
		if o.RetainAsPublished {
			rap++
		}
	}
	slices.Sort(ids)
	require.Equal(t, []uint32{1, 2, 2}, ids)
	require.Equal(t, 1, rap)
}

// MQTT 5.0 [MQTT-3.8.3-3]: with No Local set, Application Messages MUST NOT
// be forwarded to a connection with a ClientID equal to the ClientID of the
// publishing connection.
func TestNoLocalExcludesThePublishersOwnSubscription_MQTT_3_8_3_3(t *testing.T) {
	tr := New[*handle]()
	tr.Subscribe("a/b", "me", &handle{"me"}, Options{QoS: 2, NoLocal: true, SubscriptionID: 7})
	tr.Subscribe("a/+", "me", &handle{"me"}, Options{QoS: 1, SubscriptionID: 8})
	tr.Subscribe("a/b", "you", &handle{"you"}, Options{NoLocal: true})

	var res Result[*handle]
	tr.Match("a/b", "me", &res)
	require.Len(t, res.Deliveries, 2)
	for _, d := range res.Deliveries {
		if d.ClientID == "me" {
			require.Equal(t, byte(1), d.QoS, "the No Local subscription's QoS 2 must not count")
			require.Equal(t, []Options{{QoS: 1, SubscriptionID: 8}}, d.Subs)
		}
	}

	tr.Unsubscribe("a/+", "me")
	tr.Match("a/b", "me", &res)
	require.Len(t, res.Deliveries, 1)
	require.Equal(t, "you", res.Deliveries[0].ClientID)
}

// [MQTT-3.8.4-3] a SUBSCRIBE with a Topic Filter identical to an existing
// Subscription's MUST replace that Subscription; the trie reports that it
// existed, which the engine needs for Retain Handling 1.
func TestSubscribeAgainReplacesTheSubscription_MQTT_3_8_4_3(t *testing.T) {
	for _, n := range []int{1, entryListMax + 5} { // list and array shapes
		tr := New[*handle]()
		for i := range n {
			require.False(t, tr.Subscribe("a/+", clientName(i), &handle{clientName(i)}, Options{QoS: 0}))
		}
		h := &handle{"new"}
		require.True(t, tr.Subscribe("a/+", clientName(0), h, Options{QoS: 2, SubscriptionID: 5}))
		require.Equal(t, n, tr.Count())
		var res Result[*handle]
		tr.Match("a/x", "", &res)
		require.Len(t, res.Deliveries, n)
		for _, d := range res.Deliveries {
			if d.ClientID == clientName(0) {
				require.Same(t, h, d.Handle)
				require.Equal(t, []Options{{QoS: 2, SubscriptionID: 5}}, d.Subs)
			}
		}
	}
}

func TestUnsubscribeReportsWhetherTheSubscriptionExisted(t *testing.T) {
	tr := New[*handle]()
	require.False(t, tr.Unsubscribe("a/b", "c"))
	tr.Subscribe("a/b", "c", nil, Options{})
	require.False(t, tr.Unsubscribe("a/b", "d"))
	require.False(t, tr.Unsubscribe("a/+", "c"))
	require.False(t, tr.Unsubscribe("a", "c"))
	require.False(t, tr.Unsubscribe("a/b/c", "c"))
	require.True(t, tr.Unsubscribe("a/b", "c"))
	require.False(t, tr.Unsubscribe("a/b", "c"))
	require.Equal(t, 0, tr.Count())
	require.Equal(t, 1, tr.nodeCount())
}

func TestAllUnsubscribedLeavesOnlyTheRoot(t *testing.T) {
	tr := New[*handle]()
	filters := []string{"a/b/c", "a/+/c", "a/#", "#", "+", "+/+", "/", "a//b", "$SYS/#", "$share/g/a/b", "$share/h/#"}
	for _, f := range filters {
		for i := range 40 { // past both list limits: arrays and kid tables
			tr.Subscribe(f, clientName(i), nil, Options{})
			tr.Subscribe(f+"/"+clientName(i), clientName(i), nil, Options{})
		}
	}
	require.Equal(t, 2*40*len(filters), tr.Count())
	require.Zero(t, tr.emptyNodes())
	for _, f := range filters {
		for i := range 40 {
			require.True(t, tr.Unsubscribe(f, clientName(i)))
			require.True(t, tr.Unsubscribe(f+"/"+clientName(i), clientName(i)))
			require.Zero(t, tr.emptyNodes())
		}
	}
	require.Equal(t, 0, tr.Count())
	require.Equal(t, 1, tr.nodeCount())
	require.Nil(t, tr.tree.root.ext.Load())
	require.Nil(t, tr.exact.ext.Load())
	require.Nil(t, tr.exact.kids.Load())
}

// Nothing here may panic, whatever the string: the codec validates, but a
// bug there must not take the broker down.
func TestOddStringsDoNotPanic(t *testing.T) {
	odd := []string{"", "/", "//", "#", "+", "a/#/b", "#/a", "a+", "+a", "$share/", "$share//", "$share/g", "$share/g/", "$share//a", "$", "\x00", "a/\xff/b"}
	tr := New[*handle]()
	r := NewRetained[int]()
	var res Result[*handle]
	for i, s := range odd {
		tr.Subscribe(s, "c", nil, Options{})
		r.Set(s, i)
	}
	for _, s := range odd {
		tr.Match(s, "c", &res)
		r.Match(s, func(string, int) bool { return true })
		r.Get(s)
		tr.PickShared(s, "c", nil)
	}
	for _, s := range odd {
		tr.Unsubscribe(s, "c")
		r.Delete(s)
	}
	require.Equal(t, 0, tr.Count())
	require.Equal(t, 1, tr.nodeCount())
	require.Equal(t, 0, r.Count())
	require.Equal(t, 1, r.nodeCount())
}

func clientName(i int) string {
	const digits = "0123456789"
	b := []byte("client-")
	if i == 0 {
		return string(append(b, '0'))
	}
	var tmp [20]byte
	n := len(tmp)
	for ; i > 0; i /= 10 {
		n--
		tmp[n] = digits[i%10]
	}
	return string(append(b, tmp[n:]...))
}
