package engine

import (
	"fmt"
	"testing"
)

// BenchmarkAuthorizeCached measures a Read check that the session's cache
// answers: the cost every delivery pays with an Authorizer installed. It
// must not allocate.
func BenchmarkAuthorizeCached(b *testing.B) {
	cf := &authzConf{a: AuthorizerFunc(func(Identity, string, Access) bool { return true }), gen: 1}
	s := &session{id: "bench"}
	topics := make([][]byte, 64)
	for i := range topics {
		topics[i] = []byte(fmt.Sprintf("sensors/building-%d/floor/temperature", i))
		s.authorize(cf, topics[i], Read)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if !s.authorize(cf, topics[i%len(topics)], Read) {
			b.Fatal("denied")
		}
	}
}

// TestAuthorizeCachedDoesNotAllocate is BenchmarkAuthorizeCached's
// allocation check as a test.
func TestAuthorizeCachedDoesNotAllocate(t *testing.T) {
	cf := &authzConf{a: AuthorizerFunc(func(Identity, string, Access) bool { return true }), gen: 1}
	s := &session{id: "t"}
	topic := []byte("a/b/c")
	s.authorize(cf, topic, Read)
	s.authorize(cf, topic, Write)
	if n := testing.AllocsPerRun(100, func() {
		s.authorize(cf, topic, Read)
		s.authorize(cf, topic, Write)
	}); n != 0 {
		t.Fatalf("%v allocations per cached check", n)
	}
}
