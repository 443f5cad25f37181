package trie

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The indexes hold the engine's values (sessions, retained messages) and must
// let go of one as soon as it leaves: only the garbage collector frees them.
// Readers that found a value just before it left may still use it until
// they finish; the index itself must not keep it.

// payload stands for a retained message or a session: something big that the
// index must let go of once it no longer holds it.
type payload struct {
	name string
	buf  []byte
}

// watch returns a value whose collection closes the returned channel.
func watch(name string) (*payload, <-chan struct{}) {
	v := &payload{name: name, buf: make([]byte, 1<<20)}
	done := make(chan struct{})
	runtime.AddCleanup(v, func(c chan struct{}) { close(c) }, done)
	return v, done
}

// collected reports whether done closes within a few GC cycles.
func collected(done <-chan struct{}) bool {
	for range 10 {
		runtime.GC()
		select {
		case <-done:
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// A retained message replaced by a newer one on the same topic becomes
// garbage: the engine's retained messages are pinned and freed only by the
// GC (engine/index.go). The first message of a topic lived in one block
// with its node, whose entry kept it after it was replaced.
func TestRetainedReplacedMessageIsFreed(t *testing.T) {
	r := NewRetained[*payload]()
	var done <-chan struct{}
	func() {
		var v *payload
		v, done = watch("first")
		r.Set("plant/1/temp", v)
	}()
	r.Set("plant/1/temp", &payload{name: "second"})
	require.True(t, collected(done), "replaced retained message (1 MiB) still reachable through the topic's leafBlock")
	runtime.KeepAlive(r)
}

// A retained message deleted by an empty payload becomes garbage even when
// its topic's node stays because topics below it hold messages.
func TestRetainedDeletedMessageIsFreed(t *testing.T) {
	r := NewRetained[*payload]()
	var done <-chan struct{}
	func() {
		var v *payload
		v, done = watch("a")
		r.Set("a", v)
	}()
	r.Set("a/b", &payload{name: "a/b"})
	require.True(t, r.Delete("a"))
	require.True(t, collected(done), "deleted retained message (1 MiB) still reachable through node a's leafBlock")
	runtime.KeepAlive(r)
}

// The handle (the engine's *session, its queues and buffers) of a client
// that unsubscribed from a filter with many subscribers (entryArray shape)
// becomes garbage. The array held copies of its entries in one chunk, and a
// removed entry's handle stayed reachable while any other entry of the
// chunk was in the array.
func TestUnsubscribedHandleIsFreedFromEntryArray(t *testing.T) {
	tr := New[*payload]()
	// c0 is not the filter's first subscriber: that one is c1.
	tr.Subscribe("broadcast", "c1", &payload{name: "c1"}, Options{})
	var done <-chan struct{}
	func() {
		var v *payload
		v, done = watch("c0")
		tr.Subscribe("broadcast", "c0", v, Options{})
	}()
	for i := 2; i <= entryListMax+2; i++ { // list -> array: one chunk
		c := fmt.Sprintf("c%d", i)
		tr.Subscribe("broadcast", c, &payload{name: c}, Options{})
	}
	// c0 leaves; another client takes its place, so the array is neither
	// grown nor shrunk (a churning fleet).
	require.True(t, tr.Unsubscribe("broadcast", "c0"))
	tr.Subscribe("broadcast", "new", &payload{name: "new"}, Options{})
	require.True(t, collected(done), "unsubscribed client's handle still reachable through the entryArray")
	runtime.KeepAlive(tr)
}
