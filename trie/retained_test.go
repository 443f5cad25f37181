package trie

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func retainedMatch(r *Retained[string], filter string) []string {
	var got []string
	r.Match(filter, func(topic string, _ string) bool {
		got = append(got, topic)
		return true
	})
	slices.Sort(got)
	return got
}

func TestRetainedSetGetDeleteCount(t *testing.T) {
	r := NewRetained[string]()
	require.False(t, r.Set("a/b", "1"))
	require.True(t, r.Set("a/b", "2"))
	require.False(t, r.Set("a", "3"))
	require.Equal(t, 2, r.Count())

	v, ok := r.Get("a/b")
	require.True(t, ok)
	require.Equal(t, "2", v)
	_, ok = r.Get("a/c")
	require.False(t, ok)
	_, ok = r.Get("a/b/c")
	require.False(t, ok)

	require.True(t, r.Delete("a"))
	require.False(t, r.Delete("a"))
	_, ok = r.Get("a")
	require.False(t, ok)
	v, ok = r.Get("a/b")
	require.True(t, ok)
	require.Equal(t, "2", v)
	require.True(t, r.Delete("a/b"))
	require.Equal(t, 0, r.Count())
	require.Equal(t, 1, r.nodeCount())
}

func TestRetainedMatchWalksOnlyMatchingBranches(t *testing.T) {
	r := NewRetained[string]()
	topics := []string{"a", "a/b", "a/c", "a/b/c", "x/b", "$SYS/up", "/", "a/"}
	for _, tp := range topics {
		r.Set(tp, tp)
	}
	require.Equal(t, []string{"a/b", "x/b"}, retainedMatch(r, "+/b"))
	require.Equal(t, []string{"a", "a/", "a/b", "a/b/c", "a/c"}, retainedMatch(r, "a/#"))
	require.Equal(t, []string{"a/", "a/b", "a/c"}, retainedMatch(r, "a/+"))
	require.Equal(t, []string{"/", "a", "a/", "a/b", "a/b/c", "a/c", "x/b"}, retainedMatch(r, "#"))
	require.Equal(t, []string{"$SYS/up"}, retainedMatch(r, "$SYS/#"))
	require.Equal(t, []string{"a/b/c"}, retainedMatch(r, "a/b/c"))
	require.Empty(t, retainedMatch(r, "nothing/#"))
	require.Empty(t, retainedMatch(r, "$share/g/a")) // never passed one; must not panic
}

func TestRetainedMatchStopsWhenVisitReturnsFalse(t *testing.T) {
	r := NewRetained[string]()
	for i := range 100 { // past the list limit: a kid table
		r.Set("a/"+clientName(i), "v")
	}
	for _, f := range []string{"#", "a/+", "a/#"} {
		calls := 0
		r.Match(f, func(string, string) bool {
			calls++
			return calls < 5
		})
		require.Equal(t, 5, calls, f)
	}
}

func TestRetainedManyTopicsPruneToTheRoot(t *testing.T) {
	r := NewRetained[string]()
	for i := range 500 {
		r.Set("a/"+clientName(i)+"/x", "v")
		r.Set("b/"+clientName(i), "v")
	}
	require.Equal(t, 1000, r.Count())
	require.Len(t, retainedMatch(r, "a/+/x"), 500)
	for i := range 500 {
		require.True(t, r.Delete("a/"+clientName(i)+"/x"))
		require.True(t, r.Delete("b/"+clientName(i)))
		require.Zero(t, r.tree.emptyNodes())
	}
	require.Equal(t, 1, r.nodeCount())
}
