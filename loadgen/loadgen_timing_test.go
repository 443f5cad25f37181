package loadgen

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// publishBatch is 100 QoS 1 PUBLISH frames of one source, as a subscriber
// reads them in one batch.
func publishBatch(r *runner) []byte {
	tm := newFrameTemplate("loadgen/pairs/0", 1, 64, codec.V311)
	var b []byte
	for i := range 100 {
		b = tm.appendTo(b, uint16(i+1), stamp{run: r.cfg.RunID, source: 0, seq: uint64(i), at: 0})
	}
	return b
}

// consumeOnce runs the subscriber's per-batch work without a socket.
func consumeOnce(c *conn, batch []byte) {
	if _, _, err := c.consume(batch); err != nil {
		panic(err)
	}
	c.abuf = c.abuf[:0]
	c.lat = c.lat[:0]
	c.recvN = 0
}

func subscriberConn(r *runner) *conn {
	return newConn(r, &connSpec{clientID: "s", filter: "loadgen/pairs/0", expectLo: 0, expectHi: 1}, nil)
}

// publisherConn is a paced QoS 1 publisher far behind its schedule, so
// every fill sends a full window.
func publisherConn(r *runner) *conn {
	r.cfg.Duration, r.measureTo = time.Hour, int64(time.Hour)
	return newConn(r, &connSpec{clientID: "p", sources: []sourceSpec{{0, "loadgen/pairs/0"}}, rate: 1e6}, nil)
}

// fillAndAck sends a window of messages and acknowledges them all.
func fillAndAck(c *conn, now time.Duration) int {
	p := c.pub
	p.wbuf = p.wbuf[:0]
	n, _, _, _ := p.fill(now)
	var a codec.Ack
	a.PacketType = codec.PUBACK
	for id := 1; id <= n; id++ {
		a.PacketID = uint16(id)
		p.onAck(&a, int64(now))
	}
	c.ackLat = c.ackLat[:0]
	return n
}

// TestPerMessagePathDoesNotAllocate checks the claim of the package doc:
// encoding a message, and reading, accounting and acknowledging one,
// allocate nothing in steady state.
func TestPerMessagePathDoesNotAllocate(t *testing.T) {
	r := testRunner(1)
	tm := newFrameTemplate("t", 1, 256, codec.V5)
	buf := make([]byte, 0, 4096)
	require.Zero(t, testing.AllocsPerRun(100, func() {
		buf = tm.appendTo(buf[:0], 7, stamp{run: 1, source: 2, seq: 3, at: 4})
	}))

	sub := subscriberConn(r)
	batch := publishBatch(r)
	consumeOnce(sub, batch) // grow the buffers once
	require.Zero(t, testing.AllocsPerRun(50, func() { consumeOnce(sub, batch) }))

	pub := publisherConn(r)
	now := time.Second
	require.Equal(t, r.cfg.Inflight, fillAndAck(pub, now))
	require.Zero(t, testing.AllocsPerRun(50, func() {
		now += 100 * time.Microsecond
		fillAndAck(pub, now)
	}))
}

func BenchmarkConsumePublish(b *testing.B) {
	r := testRunner(1)
	c := subscriberConn(r)
	batch := publishBatch(r)
	b.ReportAllocs()
	b.SetBytes(int64(len(batch)) / 100)
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			consumeOnce(c, batch)
		}
	}
}

func BenchmarkFillPublish(b *testing.B) {
	r := testRunner(1)
	c := publisherConn(r)
	now := time.Second
	b.ReportAllocs()
	b.SetBytes(int64(len(c.pub.srcs[0].tmpl.frame)))
	sent := 0
	for b.Loop() {
		if sent == 0 {
			now += time.Millisecond
			sent = fillAndAck(c, now)
		}
		sent--
	}
}
