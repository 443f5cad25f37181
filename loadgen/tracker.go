package loadgen

// trackWindow is how many sequence numbers behind the highest one seen a
// stream remembers exactly. A message older than that cannot be told apart
// as a duplicate or a late arrival; it is counted as stale (and as unique,
// see stream.add). On one TCP connection from one broker, reordering beyond
// a thousand messages does not happen in practice.
const trackWindow = 1024

// stream accounts for the messages one subscriber receives from one source.
// Sequences start at 0. Owned by the subscriber's reader goroutine.
type stream struct {
	next uint64                   // one past the highest sequence seen
	seen [trackWindow / 64]uint64 // ring bitmap of sequences in [next-trackWindow, next)

	received  uint64 // every arrival, duplicates included
	unique    uint64 // distinct sequences
	dup       uint64 // arrivals of a sequence already seen
	reordered uint64 // arrivals after a higher sequence (late, not duplicate)
	stale     uint64 // arrivals too far behind to classify
	gaps      uint64 // sequences skipped when a higher one arrived (some may come later)
	measured  uint64 // distinct arrivals intended in the measured window; counted by the reader
}

func (s *stream) bit(seq uint64) (word int, mask uint64) {
	i := seq % trackWindow
	return int(i / 64), 1 << (i % 64)
}

// add accounts for the arrival of seq.
func (s *stream) add(seq uint64) {
	s.received++
	switch {
	case seq >= s.next:
		// Forget the sequences that leave the window as next advances.
		if seq-s.next >= trackWindow {
			s.seen = [trackWindow / 64]uint64{}
		} else {
			for q := s.next; q < seq; q++ {
				w, m := s.bit(q)
				s.seen[w] &^= m
			}
		}
		s.gaps += seq - s.next
		w, m := s.bit(seq)
		s.seen[w] |= m
		s.next = seq + 1
		s.unique++
	case s.next-seq > trackWindow:
		s.stale++
		s.unique++ // more likely late than duplicate; lost is clamped at 0
	default:
		w, m := s.bit(seq)
		if s.seen[w]&m != 0 {
			s.dup++
			return
		}
		s.seen[w] |= m
		s.reordered++
		s.unique++
	}
}
