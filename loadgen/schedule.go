package loadgen

import (
	"math"
	"time"
)

// schedule is one publisher's open-loop timetable: the intended send time of
// message k, as an offset from T0, depends only on k, never on when earlier
// messages actually went out.
//
// With a ramp R the rate grows linearly from 0 to rate over [0, R], so the
// number of messages due by t is rate·t²/(2R) during the ramp and
// rate·(t − R/2) after it. phase ∈ [0, 1) shifts each publisher by a fraction
// of its period so that publishers do not all fire at the same instant.
type schedule struct {
	rate  float64       // messages per second, > 0
	ramp  time.Duration // 0 for none
	phase float64       // fraction of a period
	end   time.Duration // no message is due at or after end
}

// at returns the intended send time of message k.
func (s *schedule) at(k uint64) time.Duration {
	x := (float64(k) + s.phase) / s.rate // seconds at full rate
	if s.ramp > 0 {
		r := s.ramp.Seconds()
		if x < r/2 {
			x = math.Sqrt(2 * r * x)
		} else {
			x += r / 2
		}
	}
	return time.Duration(x * 1e9)
}

// dueBefore returns how many messages are due before t: the k with at(k) < t.
func (s *schedule) dueBefore(t time.Duration) uint64 {
	if t <= 0 {
		return 0
	}
	x := t.Seconds()
	if s.ramp > 0 {
		r := s.ramp.Seconds()
		if x < r {
			x = x * x / (2 * r)
		} else {
			x -= r / 2
		}
	}
	n := x*s.rate - s.phase
	if n <= 0 {
		return 0
	}
	k := uint64(math.Ceil(n))
	// Float rounding can put the boundary one message off either way;
	// settle it with the exact function.
	for k > 0 && s.at(k-1) >= t {
		k--
	}
	for s.at(k) < t {
		k++
	}
	return k
}

// sourceClock is the timetable of one source of a paced publisher, which
// sends its n sources round robin: message k of the connection is source
// k mod n's sequence k div n.
type sourceClock struct {
	sched schedule
	n, j  uint64 // the publisher's sources; this one's position among them
}

// at returns the intended send time of the source's sequence seq.
func (c *sourceClock) at(seq uint64) time.Duration { return c.sched.at(seq*c.n + c.j) }

// dueBefore returns how many of the source's messages are due before t
// (and before the schedule's end).
func (c *sourceClock) dueBefore(t time.Duration) uint64 {
	k := c.sched.dueBefore(min(t, c.sched.end))
	if k <= c.j {
		return 0
	}
	return (k - c.j + c.n - 1) / c.n
}

// pacer walks a schedule and counts how far behind it the sends fall.
// It belongs to one writer goroutine.
type pacer struct {
	sched    schedule
	slack    time.Duration
	k        uint64        // next message
	overruns uint64        // sends later than slack after their intended time
	maxLag   time.Duration // the latest send, relative to its intended time
}

// next returns the intended time of the next message and whether it is due
// at now. done is true when the schedule has ended (the next message would
// be at or after end).
func (p *pacer) next(now time.Duration) (at time.Duration, due, done bool) {
	at = p.sched.at(p.k)
	if at >= p.sched.end {
		return at, false, true
	}
	return at, at <= now, false
}

// sent records that the next message went out at now.
func (p *pacer) sent(now time.Duration) {
	lag := now - p.sched.at(p.k)
	if lag > p.slack {
		p.overruns++
	}
	p.maxLag = max(p.maxLag, lag)
	p.k++
}

// unsentBefore returns how many messages were due before end (the
// schedule's end, or the run's cancel) but never sent (because the window
// stayed full or the connection failed).
func (p *pacer) unsentBefore(end time.Duration) uint64 {
	due := p.sched.dueBefore(min(end, p.sched.end))
	if due < p.k {
		return 0
	}
	return due - p.k
}

// phaseOf spreads n publishers evenly over one period by their index, in an
// order that keeps neighbours apart (the golden ratio's low discrepancy).
func phaseOf(i int) float64 {
	_, f := math.Modf(float64(i) * 0.6180339887498949)
	return f
}
