package loadgen

import (
	"fmt"
	"strings"
	"time"
)

// progressSnap is one process's counters for the progress line; workers
// send theirs to the parent, which adds them up.
type progressSnap struct {
	Phase     string     `json:"phase"`
	Planned   int64      `json:"planned"`
	Attempted int64      `json:"attempted"`
	Up        int64      `json:"up"` // set up and not dropped
	Sent      int64      `json:"sent"`
	Received  int64      `json:"received"` // distinct messages
	Acked     int64      `json:"acked"`
	Inflight  int64      `json:"inflight"`
	Errors    int64      `json:"errors"`
	Latency   *Histogram `json:"latency,omitempty"` // measured window so far
}

// add sums o into s (the phase of the least advanced process wins).
func (s *progressSnap) add(o progressSnap) {
	if o.Phase != "" && (s.Phase == "" || phaseRank(o.Phase) < phaseRank(s.Phase)) {
		s.Phase = o.Phase
	}
	s.Planned += o.Planned
	s.Attempted += o.Attempted
	s.Up += o.Up
	s.Sent += o.Sent
	s.Received += o.Received
	s.Acked += o.Acked
	s.Inflight += o.Inflight
	s.Errors += o.Errors
	if o.Latency != nil {
		if s.Latency == nil {
			s.Latency = NewHistogram()
		}
		s.Latency.Merge(o.Latency)
	}
}

func phaseRank(p string) int {
	return strings.Index("setup warmup run drain", p)
}

// formatProgress renders one progress line; rates are over dt since prev.
func formatProgress(elapsed, dt time.Duration, s, prev progressSnap) string {
	rate := func(now, before int64) float64 {
		if dt <= 0 {
			return 0
		}
		return float64(now-before) / dt.Seconds()
	}
	phase := s.Phase
	if phase == "" {
		phase = "start"
	}
	p99 := "-"
	if s.Latency != nil && s.Latency.Count() > 0 {
		p99 = fmtUs(s.Latency.Quantile(0.99))
	}
	return fmt.Sprintf("[%6.1fs] %-6s conns %d/%d  sent %.0f/s  recv %.0f/s  p99 %s  inflight %d  errors %d",
		elapsed.Seconds(), phase, s.Up, s.Planned, rate(s.Sent, prev.Sent), rate(s.Received, prev.Received),
		p99, s.Inflight, s.Errors)
}
