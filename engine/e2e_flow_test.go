package engine

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// windowPublisher publishes n QoS 1 messages to topic as fast as a window
// of unacknowledged messages allows, as a real publisher with an in-flight
// limit does, and returns how long it took. Payloads are the sequence
// numbers 0..n-1.
func windowPublisher(t *testing.T, c *rawClient, topic string, n, window int, deadline time.Time) time.Duration {
	t.Helper()
	start := time.Now()
	outstanding := 0
	for i := 0; i < n || outstanding > 0; {
		if i < n && outstanding < window {
			c.publish(topic, strconv.Itoa(i), 1, false, uint16(i%65535+1))
			i++
			outstanding++
			continue
		}
		p, err := c.next(time.Until(deadline))
		require.NoError(t, err, "publisher waiting for PUBACK with %d of %d sent, %d outstanding", i, n, outstanding)
		require.Equal(t, codec.PUBACK, p.Type())
		outstanding--
	}
	return time.Since(start)
}

// ackingSubscriber reads QoS 1 PUBLISH packets from c, acknowledges each
// after delay, and sends each payload to got until the connection ends.
func ackingSubscriber(c *rawClient, delay time.Duration, got chan<- string) {
	defer close(got)
	for {
		p, err := c.next(10 * time.Second)
		if err != nil {
			return
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			continue
		}
		if delay > 0 {
			time.Sleep(delay)
		}
		if err := c.trySend(&codec.Ack{PacketType: codec.PUBACK, PacketID: pub.PacketID}); err != nil {
			return
		}
		got <- string(pub.Payload)
	}
}

// TestE2EBackPressureNoQoS1Loss: a QoS 1 publisher much faster than its
// subscriber is slowed by withheld PUBACKs instead of overflowing the
// subscriber's small queue, so nothing is dropped and order is kept.
func TestE2EBackPressureNoQoS1Loss(t *testing.T) {
	s := startServer(t, Options{MaxQueued: 100, MaxInflight: 10})
	sub := connectRaw(t, s, connectPacket("bp-sub", true, 60))
	require.EqualValues(t, 1, sub.subscribe(1, "bp/#", 1))
	got := make(chan string, 100000)
	go ackingSubscriber(sub, 100*time.Microsecond, got)

	pub := connectRaw(t, s, connectPacket("bp-pub", true, 60))
	const n = 3000
	took := windowPublisher(t, pub, "bp/x", n, 20, time.Now().Add(60*time.Second))

	for i := 0; i < n; i++ {
		select {
		case v := <-got:
			require.Equal(t, strconv.Itoa(i), v, "message %d out of order or lost", i)
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber received %d of %d (dropped by the broker: %d)", i, n, s.Stats().DroppedQueueFull)
		}
	}
	require.Zero(t, s.Stats().DroppedQueueFull, "queue overflow drops")
	t.Logf("%d messages in %v through a queue of 100", n, took)
}

// TestE2EBackPressureStalledSubscriberDoesNotHoldPublisher: a subscriber
// that stops acknowledging holds its publishers back for at most about
// stallAfter plus a sweep; then its queue drops per policy, and a healthy
// subscriber of the same publisher receives everything.
func TestE2EBackPressureStalledSubscriberDoesNotHoldPublisher(t *testing.T) {
	s := startServer(t, Options{MaxQueued: 100, MaxInflight: 10})
	stuck := connectRaw(t, s, connectPacket("bp-stuck", true, 60))
	require.EqualValues(t, 1, stuck.subscribe(1, "bp/#", 1))
	// stuck never reads again: its 10 in-flight messages stay unacknowledged.

	fast := connectRaw(t, s, connectPacket("bp-fast", true, 60))
	require.EqualValues(t, 1, fast.subscribe(1, "bp/#", 1))
	got := make(chan string, 100000)
	go ackingSubscriber(fast, 0, got)

	pub := connectRaw(t, s, connectPacket("bp-pub", true, 60))
	const n = 2000
	took := windowPublisher(t, pub, "bp/y", n, 20, time.Now().Add(20*time.Second))
	require.Less(t, took, 8*time.Second, "publisher held back by a stalled subscriber")
	for i := 0; i < n; i++ {
		select {
		case v := <-got:
			require.Equal(t, strconv.Itoa(i), v)
		case <-time.After(10 * time.Second):
			t.Fatalf("healthy subscriber received %d of %d", i, n)
		}
	}
	require.NotZero(t, s.Stats().DroppedQueueFull, "the stalled subscriber's queue should have overflowed")
	t.Log(fmt.Sprintf("publisher took %v with a stalled subscriber", took))
}

// A publisher held back by a congested clean-session subscriber (flow.go)
// gets its PUBACKs as soon as that subscriber goes offline: session.end
// wakes the waiters. They waited for heldBackstop (3 s) and a sweep.
func TestE2EPressureEndsWhenCleanSubscriberLeaves(t *testing.T) {
	s := startServer(t, Options{Loops: 1, MaxQueued: 20, MaxInflight: 2})
	sub := connectRaw(t, s, connectPacket("sub", true, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "t", 1))
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	const n = 16 // 2 in flight, 10 queued turns the pressure on
	for i := uint16(1); i <= n; i++ {
		pub.publish("t", fmt.Sprintf("m%d", i), 1, false, i)
	}
	acked := 0
	for {
		pk, err := pub.next(200 * time.Millisecond)
		if err != nil {
			break
		}
		require.Equal(t, codec.PUBACK, pk.Type())
		acked++
	}
	require.Less(t, acked, n, "some PUBACKs held for the congested subscriber")
	sub.disconnect() // offline (and its clean session ends): the pressure is over
	start := time.Now()
	for ; acked < n; acked++ {
		_, err := pub.next(time.Second)
		require.NoError(t, err, "PUBACK %d still held %v after the subscriber left", acked+1, time.Since(start))
	}
}
