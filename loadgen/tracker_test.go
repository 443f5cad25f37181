package loadgen

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

func TestStreamAccounting(t *testing.T) {
	type counts struct{ received, unique, dup, reordered, gaps uint64 }
	f := func(name string, seqs []uint64, want counts) {
		t.Helper()
		var s stream
		for _, q := range seqs {
			s.add(q)
		}
		got := counts{s.received, s.unique, s.dup, s.reordered, s.gaps}
		require.Equal(t, want, got, name)
	}
	f("in order", []uint64{0, 1, 2, 3}, counts{4, 4, 0, 0, 0})
	f("a drop", []uint64{0, 1, 3, 4}, counts{4, 4, 0, 0, 1})
	f("a duplicate", []uint64{0, 1, 1, 2}, counts{4, 3, 1, 0, 0})
	f("a swap", []uint64{0, 2, 1, 3}, counts{4, 4, 0, 1, 1})
	f("a late duplicate", []uint64{0, 1, 2, 3, 1}, counts{5, 4, 1, 0, 0})
	f("reordered then duplicated", []uint64{0, 2, 1, 1}, counts{4, 3, 1, 1, 1})
	f("tail drop is not seen here", []uint64{0, 1, 2}, counts{3, 3, 0, 0, 0})
	f("first message lost", []uint64{1, 2}, counts{2, 2, 0, 0, 1})
	f("jump past the window", []uint64{0, 5000, 1}, counts{3, 3, 0, 0, 4999})
}

func TestStreamWindowEdge(t *testing.T) {
	var s stream
	for q := range uint64(trackWindow + 10) {
		if q != 10 {
			s.add(q)
		}
	}
	s.add(10) // exactly trackWindow behind the next: still known missing
	require.Equal(t, uint64(1), s.reordered)
	s.add(10)
	require.Equal(t, uint64(1), s.dup)
	s.add(5) // more than trackWindow behind: cannot tell
	require.Equal(t, uint64(1), s.stale)
}

// testRunner is a runner with no network, for feeding a connection's
// reader by hand. T0 is now; everything is in the measured window.
func testRunner(qos byte) *runner {
	r := &runner{cfg: Config{RunID: 0xfeed, QoS: qos, Size: 64, Inflight: 16, OverrunSlack: time.Millisecond},
		base: time.Now(), measureTo: math.MaxInt64 / 4, lat: newRecorder(), ackLat: newRecorder()}
	r.t0.Store(0)
	return r
}

// TestLossyStreamThroughReader feeds a subscriber's reader a deliberately
// lossy stream of real PUBLISH frames, cut at arbitrary points: sequence 3
// dropped, 5 duplicated, 8 and 9 swapped, 12 and 13 lost at the tail, and a
// foreign message. The per-source counts must come out exact.
func TestLossyStreamThroughReader(t *testing.T) {
	for _, qos := range []byte{0, 1, 2} {
		r := testRunner(qos)
		spec := &connSpec{clientID: "s", filter: "t/+", expectLo: 10, expectHi: 12}
		c := newConn(r, spec, nil)

		tmplA := newFrameTemplate("t/a", qos, 64, codec.V311)
		tmplB := newFrameTemplate("t/b", qos, 64, codec.V311)
		var wire []byte
		pid := uint16(0)
		put := func(tm *frameTemplate, run, src uint32, seq uint64) {
			pid++
			wire = tm.appendTo(wire, pid, stamp{run: run, source: src, seq: seq, at: 0})
		}
		for _, q := range []uint64{0, 1, 2, 4, 5, 5, 6, 7, 9, 8, 10, 11} {
			put(&tmplA, r.cfg.RunID, 10, q)
		}
		for q := range uint64(5) {
			put(&tmplB, r.cfg.RunID, 11, q)
		}
		put(&tmplB, r.cfg.RunID+1, 11, 5) // another run's message
		put(&tmplB, r.cfg.RunID, 99, 0)   // a source nobody expects here

		// Feed it in random chunks, as TCP might deliver it.
		rng := rand.New(rand.NewPCG(1, uint64(qos)))
		buf := make([]byte, 0, len(wire))
		for off := 0; off < len(wire); {
			n := min(len(wire)-off, 1+rng.IntN(150))
			buf = append(buf, wire[off:off+n]...)
			off += n
			used, _, err := c.consume(buf)
			require.NoError(t, err)
			buf = append(buf[:0], buf[used:]...)
		}
		require.Empty(t, buf, "every frame consumed")

		a, b := c.streams[0], c.streams[1]
		require.Equal(t, uint64(12), a.received)
		require.Equal(t, uint64(11), a.unique)
		require.Equal(t, uint64(1), a.dup)
		require.Equal(t, uint64(1), a.reordered)
		require.Equal(t, uint64(5), b.unique)
		require.Equal(t, uint64(2), c.foreign)

		// One acknowledgement per PUBLISH at QoS 1 (PUBACK) and 2 (PUBREC).
		acks := 0
		for rest := c.abuf; len(rest) > 0; {
			h, n, err := codec.Split(rest, 0)
			require.NoError(t, err)
			require.Equal(t, map[byte]codec.Type{1: codec.PUBACK, 2: codec.PUBREC}[qos], h.Type)
			rest = rest[n:]
			acks++
		}
		if qos == 0 {
			require.Zero(t, acks)
		} else {
			require.Equal(t, 19, acks)
		}

		// The publisher side said it sent 14 messages of source 10 (so 12
		// and 13 never arrived) and 5 of source 11.
		res := newResult(r.cfg)
		res.Sources = []SourceStats{{ID: 10, Sent: 14}, {ID: 11, Sent: 5}}
		sub := newResult(r.cfg)
		for i, st := range c.streams {
			sub.Sources = append(sub.Sources, SourceStats{ID: spec.expectLo + uint32(i), Sinks: 1,
				Received: int64(st.received), Unique: int64(st.unique), Duplicated: int64(st.dup), Reordered: int64(st.reordered)})
		}
		res.Merge(sub)
		require.Equal(t, int64(3), res.Sources[0].Lost, "3, 12 and 13")
		require.Equal(t, int64(0), res.Sources[1].Lost)
		m := res.Messages
		require.Equal(t, int64(19), m.Sent)
		require.Equal(t, int64(17), m.Received)
		require.Equal(t, int64(3), m.Lost)
		require.Equal(t, int64(1), m.Duplicated)
		require.Equal(t, int64(1), m.Reordered)
		require.Equal(t, m.Expected, m.Unique+m.Lost)
		require.Equal(t, m.Received, m.Unique+m.Duplicated)
	}
}

func TestReaderHandlesQoS2ReceiverFlow(t *testing.T) {
	r := testRunner(2)
	c := newConn(r, &connSpec{clientID: "s", filter: "t", expectLo: 0, expectHi: 1}, nil)
	rel := codec.Ack{PacketType: codec.PUBREL, PacketID: 42}
	_, _, err := c.consume(rel.AppendTo(nil, codec.V311))
	require.NoError(t, err)
	got, err := codec.Decode(c.abuf, codec.V311)
	require.NoError(t, err)
	require.Equal(t, &codec.Ack{PacketType: codec.PUBCOMP, PacketID: 42}, got)
}

func TestReaderReportsBrokerMisbehaviour(t *testing.T) {
	r := testRunner(1)
	r.cfg.Version = 5
	c := newConn(r, &connSpec{clientID: "s", filter: "t", expectLo: 0, expectHi: 1}, nil)
	d := codec.Disconnect{ReasonCode: codec.ServerBusy}
	_, _, err := c.consume(d.AppendTo(nil, codec.V5))
	var re refusedError
	require.ErrorAs(t, err, &re)
	kind, _ := classify("run", err)
	require.Equal(t, "run refused (broker sent DISCONNECT: "+codec.ServerBusy.String()+")", kind)

	_, _, err = c.consume([]byte{0x00, 0x00}) // packet type 0
	kind, _ = classify("run", err)
	require.Equal(t, "run: malformed frame from broker", kind)
}
