package engine

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// A store that stops making commits durable holds the acknowledgements
// that wait for them (nothing is released early), and the stall is
// counted and logged with what waits; when the store comes back the
// acknowledgements go out and the end of the stall is logged.
func TestStoreStallCountedAndLogged(t *testing.T) {
	st := openGate(t)
	var logs syncBuffer
	s := startServer(t, Options{Store: st, storeStallAfter: 300 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	sub := connectRaw(t, s, connectPacket("stall-sub", false, 0))
	sub.subscribe(1, "stall", 1)
	disconnectStored(t, st, sub, "stall-sub") // else a second stall, on its loop
	pub := connectRaw(t, s, connectPacket("stall-pub", true, 0))
	st.settle(t)

	st.setOpen(false)
	pub.publish("stall", "x", 1, false, 1)
	require.Eventually(t, func() bool { return s.Stats().StoreStalls == 1 }, e2eWait, 10*time.Millisecond, "the stall is counted")
	pub.expectNothing(e2eSilent) // still held
	require.Contains(t, logs.String(), "store commit not durable yet")
	require.Contains(t, logs.String(), "acks_held=1")

	st.setOpen(true)
	pub.expectAck(codec.PUBACK, 1)
	require.Eventually(t, func() bool { return bytes.Contains([]byte(logs.String()), []byte("store commits durable again")) },
		e2eWait, 10*time.Millisecond, "the end of the stall is logged")
	require.Equal(t, uint64(1), s.Stats().StoreStalls)
}

// A 3.1.1 publisher whose acknowledgements all wait for a stalled store
// can have at most 65,535 PUBLISHes unacknowledged (it has no packet
// identifier left); one more means it reused an identifier, and the
// broker closes the connection rather than hold acknowledgements without
// bound.
func TestStoreHeldAcksBounded(t *testing.T) {
	st := openGate(t)
	s := startServer(t, Options{Store: st})
	pub := connectRaw(t, s, connectPacket("many-pub", true, 0))
	st.settle(t)

	st.setOpen(false)
	// Retained QoS 1 messages are written, so each acknowledgement waits.
	var buf []byte
	for i := 1; i <= maxHeldAcks; i++ {
		p := codec.Publish{Topic: []byte("held/r"), Payload: []byte("x"), QoS: 1, Retain: true, PacketID: uint16(i)}
		buf = p.AppendTo(buf, codec.V311)
	}
	pub.sendBytes(buf)
	// Slow under the race detector on a loaded machine: wait until the
	// broker has taken them all.
	require.Eventually(t, func() bool { return s.Stats().MessagesIn >= maxHeldAcks }, time.Minute, 10*time.Millisecond)
	pub.expectNothing(e2eSilent)
	pub.publish("held/r", "one too many", 1, true, 1)
	pub.expectClosed(e2eWait)
	require.Eventually(t, func() bool { return s.Stats().ProtocolErrors == 1 }, e2eWait, 10*time.Millisecond)
	st.setOpen(true)
}
