package engine

import "sync/atomic"

// loopStats are one loop's counters. Only the owning loop adds to them;
// readers on other goroutines load them atomically and sum over loops, so
// the message path never contends on a shared counter.
type loopStats struct {
	_                [64]byte // keep counters of different loops off one cache line
	msgsIn           atomic.Uint64
	msgsOut          atomic.Uint64
	droppedSlow      atomic.Uint64 // QoS 0 dropped: client's outbound bound reached
	droppedQueueFull atomic.Uint64 // dropped: session queue full
	droppedOffline0  atomic.Uint64 // QoS 0 for an offline persistent session
	droppedTooLarge  atomic.Uint64 // larger than the client's Maximum Packet Size [MQTT-3.1.2-25]
	connsOpened      atomic.Uint64
	connsClosed      atomic.Uint64
	protocolErrors   atomic.Uint64
	refusedByIP      atomic.Uint64 // connections closed at accept by the per-address limits
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	MessagesIn, MessagesOut                                   uint64
	DroppedSlowConsumer, DroppedQueueFull, DroppedQoS0Offline uint64
	DroppedTooLarge                                           uint64
	ConnectionsOpened, ConnectionsClosed, ProtocolErrors      uint64
	RefusedByAddressLimit                                     uint64
	Sessions                                                  int
	Retained                                                  int
	// Store (Options.Store): batches committed and fsyncs, commits that
	// failed, deliveries not written because the store was past
	// MaxStoreBytes, and its size on disk.
	StoreCommits, StoreSyncs, StoreFailures, NotStoredDiskFull uint64
	StoreDiskBytes                                             uint64
}

// Stats sums the counters of every loop. Safe for concurrent use.
func (s *Server) Stats() Stats {
	var st Stats
	for _, l := range s.loopsSnapshot() {
		st.MessagesIn += l.stats.msgsIn.Load()
		st.MessagesOut += l.stats.msgsOut.Load()
		st.DroppedSlowConsumer += l.stats.droppedSlow.Load()
		st.DroppedQueueFull += l.stats.droppedQueueFull.Load()
		st.DroppedQoS0Offline += l.stats.droppedOffline0.Load()
		st.DroppedTooLarge += l.stats.droppedTooLarge.Load()
		st.ConnectionsOpened += l.stats.connsOpened.Load()
		st.ConnectionsClosed += l.stats.connsClosed.Load()
		st.ProtocolErrors += l.stats.protocolErrors.Load()
		st.RefusedByAddressLimit += l.stats.refusedByIP.Load()
	}
	if ps := s.ps; ps != nil {
		ss := ps.st.Stats()
		st.StoreCommits, st.StoreSyncs, st.StoreDiskBytes = ss.Commits, ss.Syncs, ss.DiskBytes
		st.StoreFailures, st.NotStoredDiskFull = ps.failures.Load(), ps.notStored.Load()
	}
	st.Sessions = s.reg.count()
	st.Retained = s.retainedCount()
	return st
}
