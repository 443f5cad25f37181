package loadgen

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestScheduleConstantRate(t *testing.T) {
	s := schedule{rate: 1000, end: time.Second}
	for k := range uint64(1000) {
		require.InDelta(t, float64(time.Duration(k)*time.Millisecond), float64(s.at(k)), 1, "message %d", k)
	}
	require.Equal(t, uint64(1000), s.dueBefore(time.Second))
	require.Equal(t, uint64(1), s.dueBefore(time.Nanosecond))
	require.Equal(t, uint64(0), s.dueBefore(0))
}

func TestSchedulePhaseShiftsByAFractionOfAPeriod(t *testing.T) {
	s := schedule{rate: 100, phase: 0.5}
	require.Equal(t, 5*time.Millisecond, s.at(0))
	require.Equal(t, 15*time.Millisecond, s.at(1))
	require.Equal(t, uint64(0), s.dueBefore(5*time.Millisecond))
	require.Equal(t, uint64(1), s.dueBefore(5*time.Millisecond+1))
}

func TestScheduleRampIsLinearThenConstant(t *testing.T) {
	s := schedule{rate: 1000, ramp: time.Second}
	// During a linear ramp to 1000/s over 1 s, 500 messages are due.
	require.Equal(t, uint64(500), s.dueBefore(time.Second))
	// After it, the full rate: 1000 more per second.
	require.Equal(t, uint64(1500), s.dueBefore(2*time.Second))
	// Half-way through the ramp, a quarter of those: rate·t²/(2R) = 125.
	require.Equal(t, uint64(125), s.dueBefore(500*time.Millisecond))
	// Intervals shrink during the ramp and are constant after it.
	require.Greater(t, s.at(11)-s.at(10), s.at(401)-s.at(400))
	require.InDelta(t, float64(time.Millisecond), float64(s.at(901)-s.at(900)), 1)
	for k := range uint64(2000) {
		require.Less(t, s.at(k), s.at(k+1), "the timetable must increase")
		require.Equal(t, k, s.dueBefore(s.at(k)), "dueBefore inverts at (message %d)", k)
	}
}

// TestPacerIsOpenLoop checks that a stalled sender neither shifts the
// timetable nor skips messages: late messages go out with their original
// intended times and count as overruns when later than the slack.
func TestPacerIsOpenLoop(t *testing.T) {
	ms := time.Millisecond
	p := pacer{sched: schedule{rate: 1000, end: 10 * ms}, slack: ms}
	var sent []time.Duration
	send := func(now time.Duration) {
		for {
			at, due, done := p.next(now)
			if done || !due {
				return
			}
			sent = append(sent, at)
			p.sent(now)
		}
	}
	for _, now := range []time.Duration{0, ms, 2 * ms, 3*ms + 100*time.Microsecond, 4 * ms} {
		send(now)
	}
	require.Equal(t, uint64(0), p.overruns, "on time, or within the slack")
	// The broker stalls the sender until 8.5 ms: messages 5 to 8 are due.
	send(8*ms + 500*time.Microsecond)
	require.Equal(t, []time.Duration{0, ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 6 * ms, 7 * ms, 8 * ms}, sent)
	// 3.5, 2.5 and 1.5 ms late are overruns; 0.5 ms is within the slack.
	require.Equal(t, uint64(3), p.overruns)
	require.Equal(t, 3500*time.Microsecond, p.maxLag)
	// The schedule did not move: message 9 is still due at 9 ms.
	at, due, done := p.next(8*ms + 600*time.Microsecond)
	require.Equal(t, 9*ms, at)
	require.False(t, due)
	require.False(t, done)
	// The run ends before it is sent: one message unsent.
	require.Equal(t, uint64(1), p.unsentBefore(p.sched.end))
	send(9 * ms)
	_, _, done = p.next(time.Hour)
	require.True(t, done, "nothing is due at or after the end")
	require.Equal(t, uint64(0), p.unsentBefore(p.sched.end))
}

func TestPhaseOfSpreadsPublishers(t *testing.T) {
	seen := make(map[int]bool)
	for i := range 10 {
		f := phaseOf(i)
		require.GreaterOrEqual(t, f, 0.0)
		require.Less(t, f, 1.0)
		seen[int(f*10)] = true
	}
	require.GreaterOrEqual(t, len(seen), 9, "ten publishers fall into nearly ten different tenths of a period")
}

// TestClockWakesOnTimeNeverEarly checks the precise clock: every wake-up
// comes, none before its time, and most well within a millisecond (Go's own
// timers would be about a millisecond late here).
func TestClockWakesOnTimeNeverEarly(t *testing.T) {
	base := time.Now()
	c := newClock(base)
	if !c.precise() {
		t.Skip("no eventfd: publishers use Go timers")
	}
	defer c.stop()
	const n = 200
	pubs := make([]*publisher, 4)
	for i := range pubs {
		pubs[i] = &publisher{wake: make(chan struct{}, 1)}
	}
	var mu sync.Mutex
	var late []time.Duration
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range n / len(pubs) {
				due := time.Since(base) + time.Duration(300+100*i+k%7*50)*time.Microsecond
				c.wakeAt(p, int64(due))
				<-p.wake
				got := time.Since(base)
				mu.Lock()
				late = append(late, got-due)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, late, n)
	within := 0
	for _, l := range late {
		require.GreaterOrEqual(t, l, time.Duration(0), "woken early")
		if l < time.Millisecond {
			within++
		}
	}
	t.Logf("%d of %d wake-ups less than 1 ms late", within, n)
	require.Greater(t, within, n/2, "most wake-ups are precise")
}

// A paced publisher sends its sources round robin: each source's clock
// gives the intended times and due counts of its own sequence numbers.
func TestSourceClockOfRoundRobinSources(t *testing.T) {
	sched := schedule{rate: 1000, ramp: 100 * time.Millisecond, phase: 0.3, end: time.Second}
	const n = 3
	for j := range uint64(n) {
		clk := sourceClock{sched: sched, n: n, j: j}
		for seq := range uint64(300) {
			require.Equal(t, sched.at(seq*n+j), clk.at(seq))
		}
		for _, tm := range []time.Duration{0, time.Millisecond, 50 * time.Millisecond, 333 * time.Millisecond, time.Second, 2 * time.Second} {
			var want uint64
			for seq := uint64(0); clk.at(seq) < min(tm, sched.end); seq++ {
				want++
			}
			require.Equal(t, want, clk.dueBefore(tm), "source %d before %v", j, tm)
		}
	}
}
