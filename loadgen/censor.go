package loadgen

import (
	"fmt"
	"time"
)

// Censoring: a message due in the measured window that a subscriber never
// received has no latency, yet it is the one that waited longest; leaving it
// out hides a broker stall that lasts until the end of the run. Such a
// message is recorded at the wait it had when the run ended (a lower bound,
// counted as censored in its histogram). See the package doc for which
// messages are, and which are left out.
//
// A subscriber's process knows what it received, the process of the
// source's publisher whether the publisher was set up and how far its
// schedule ran: the end-to-end latencies are censored once the results of
// every process are merged (Result.censor). Publish-to-ack latencies need
// only the publisher's process (runner.censorAcks).

// censorInput is what one process's subscribers were still owed when it
// stopped reading.
type censorInput struct {
	End   int64        `json:"end_ns"` // ns since T0 when its drain ended; 0: the run never started
	Tails []streamTail `json:"tails,omitempty"`
}

// streamTail is one subscriber's stream of one paced source that misses
// messages of the measured window.
type streamTail struct {
	Source uint32 `json:"source"`
	Next   uint64 `json:"next"` // one past the highest sequence received: nothing from here on arrived
	Gaps   int64  `json:"gaps"` // messages of the window missing below Next: dropped, not censored
}

// tail returns the tail of subscriber stream st of source id, when the
// source is paced and the stream misses messages of the window.
func (r *runner) tail(clocks map[uint32]sourceClock, id uint32, st *stream) (streamTail, bool) {
	clk, ok := clocks[id]
	if !ok {
		return streamTail{}, false
	}
	first := clk.dueBefore(time.Duration(r.measureFrom))
	last := clk.dueBefore(time.Duration(r.measureTo))
	var gaps int64
	if below := min(st.next, last); below > first {
		// Stale arrivals count as distinct, so measured may be too high.
		gaps = max(int64(below-first)-int64(st.measured), 0)
	}
	if st.next >= last && gaps == 0 {
		return streamTail{}, false
	}
	return streamTail{Source: id, Next: st.next, Gaps: gaps}, true
}

// censorAcks records in h, for each of p's messages due in the measured
// window and never acknowledged (never sent, or still awaiting PUBACK or
// PUBCOMP), the wait it had when the drain ended. Only after stop.
func (r *runner) censorAcks(p *publisher, h *Histogram) {
	inWindow := func(at int64) bool { return at >= r.measureFrom && at < r.measureTo }
	for i := range p.slots {
		if sl := &p.slots[i]; sl.state != slotFree && inWindow(sl.at) {
			h.RecordCensored(max(r.ended-sl.at, 0) / 1000)
		}
	}
	if !p.paced {
		return
	}
	due := p.pace.sched.dueBefore(min(r.scheduleEnd(), p.pace.sched.end))
	for k := p.pace.k; k < due; k++ {
		if at := int64(p.pace.sched.at(k)); inWindow(at) {
			h.RecordCensored(max(r.ended-at, 0) / 1000)
		}
	}
}

// censor records in r.Latency, for every subscriber stream in ins, each
// message of its source due in the measured window (which starts at from)
// after the last one the subscriber received: never sent, or not delivered
// by the end of the drain. Each is recorded at the wait it had then and
// counted as censored. It warns about the messages still left out. Call it
// once, on the merged result of every process of the run.
func (r *Result) censor(clocks map[uint32]sourceClock, from time.Duration, ins []censorInput) {
	due := make(map[uint32]uint64, len(r.Sources))
	var unpacedLost int64
	for _, s := range r.Sources {
		due[s.ID] = uint64(s.Due)
		if _, paced := clocks[s.ID]; !paced {
			unpacedLost += s.Lost
		}
	}
	var gaps int64
	for _, in := range ins {
		if in.End <= 0 {
			continue
		}
		for _, t := range in.Tails {
			gaps += t.Gaps
			clk, ok := clocks[t.Source]
			if !ok {
				continue
			}
			// Due is 0 when the source's publisher was never set up: its
			// messages were never meant to be sent (the failure is counted).
			for seq := max(t.Next, clk.dueBefore(from)); seq < due[t.Source]; seq++ {
				r.Latency.RecordCensored(max(in.End-int64(clk.at(seq)), 0) / 1000)
			}
		}
	}
	if r.Latency.Count() == 0 {
		return
	}
	if gaps > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the latency percentiles leave out %s lost before a later "+
			"message of the same publisher arrived: dropped, not delayed (they are in 'lost')", plural(gaps, "message")))
	}
	if unpacedLost > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("the latency percentiles leave out %s never delivered: "+
			"without a timetable (-rate 0) they have no intended send time to count a wait from", plural(unpacedLost, "message")))
	}
}

func plural(n int64, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
