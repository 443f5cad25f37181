package engine

// A client needs a write batch only between its first write of an event
// and the flush at the event's end, so the batches belong to the loop: a
// client takes one for the event and gives it back when it is written. An
// idle connection holds none, and a connection storm needs a handful per
// loop rather than one per connection for as long as it takes the sweep to
// notice the connection is idle (issue 6: per-connection memory). The
// spare batches keep their slices' capacity, so a busy loop allocates
// nothing for them.
//
// Owned by the loop: getBatch and putBatch run on it only.

// getBatch returns an empty write batch for one of l's clients.
func (l *loop) getBatch() *writeBatch {
	l.batchesOut++
	l.batchesPeak = max(l.batchesPeak, l.batchesOut)
	if n := len(l.spareBatches); n > 0 {
		b := l.spareBatches[n-1]
		l.spareBatches[n-1] = nil
		l.spareBatches = l.spareBatches[:n-1]
		return b
	}
	return &writeBatch{}
}

// putBatch takes back a written (empty) batch.
func (l *loop) putBatch(b *writeBatch) {
	l.batchesOut--
	l.spareBatches = append(l.spareBatches, b)
}

// trimBatches, run by the sweep, keeps as many spare batches as were in
// use at once since the previous sweep and lets the rest go: a fan-out to
// every client keeps its batches while it lasts, and they go once it stops.
func (l *loop) trimBatches() {
	keep := max(l.batchesPeak-l.batchesOut, 0)
	if keep < len(l.spareBatches) {
		clear(l.spareBatches[keep:])
		l.spareBatches = l.spareBatches[:keep]
		if cap(l.spareBatches) > 2*keep+16 {
			l.spareBatches = append([]*writeBatch(nil), l.spareBatches...)
		}
	}
	l.batchesPeak = l.batchesOut
}
