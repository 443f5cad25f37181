package engine

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The broker's counters. Each loop keeps its own (loopStats) and only the
// owning loop writes them; readers on other goroutines (Stats, LoopStats,
// a metrics scrape) load them atomically and sum over loops, so the
// message path never contends on a shared counter.
//
// The PUBLISH counts in and out (msgsIn, msgsOut) are atomic adds by the
// owning loop, one per message, so Stats is exact for them at any time (the
// benchmarks check deliveries against them). The other counters touched
// per message, per flushed connection or per event (payload bytes, bytes
// and packets in and out, events and their durations) and
// the in-flight and queued gauges, which change several times per QoS 1/2
// message, are plain fields of the loop (loop.acc) that the loop copies
// into loopStats at the end of a batch at most once per publishEvery, and
// in its once-a-second sweep: no atomic operation per message or event (an
// atomic store is a locked instruction on amd64, as costly as an add), and
// a reader sees them at most publishEvery old while the loop is busy, at
// most a second old when it is idle. Rare events (connections, refusals,
// drops) are atomic adds where they happen, visible at once.

// RefuseReason says why a connection was refused before it became an MQTT
// session (Stats.Refused).
type RefuseReason uint8

// Refusal reasons.
const (
	RefusedBadCredentials  RefuseReason = iota // CONNACK Bad User Name or Password (also: no verified certificate with certificate identities)
	RefusedNotAuthorized                       // CONNACK Not Authorized: anonymous client refused, will topic denied, the Authenticator said so
	RefusedClientID                            // CONNACK Client Identifier Not Valid
	RefusedProtocolVersion                     // CONNACK Unsupported Protocol Version
	RefusedAuthMethod                          // CONNACK Bad Authentication Method (5.0)
	RefusedConnectTimeout                      // no CONNECT, or authentication unfinished, within ConnectTimeout
	RefusedAddressLimit                        // closed at accept by MaxConnRatePerIP / MaxAuthFailuresPerIP
	RefusedOther                               // any other CONNACK failure code
	NumRefuseReasons
)

var refuseNames = [NumRefuseReasons]string{"bad_credentials", "not_authorized", "client_id",
	"protocol_version", "auth_method", "connect_timeout", "address_limit", "other"}

// String returns the reason's metric label, e.g. "bad_credentials".
func (r RefuseReason) String() string {
	if r < NumRefuseReasons {
		return refuseNames[r]
	}
	return "unknown"
}

// EventBuckets is the number of buckets of a loop's event duration
// histogram (LoopStats.EventBuckets); the last one is unbounded.
const EventBuckets = 12

// EventBucketBound returns the upper bound of event duration bucket i:
// 1.024 µs × 4^i (about 1 µs, 4 µs, 16 µs ... 4.3 s); the last bucket has
// none (returned as 0).
func EventBucketBound(i int) time.Duration {
	if i >= EventBuckets-1 {
		return 0
	}
	return time.Duration(1024) << (2 * i)
}

// eventBucket returns the bucket of an event that took ns nanoseconds.
func eventBucket(ns int64) int {
	if ns <= 0 {
		return 0
	}
	// Bucket k holds ns < 1024·4^k, i.e. bits.Len(ns>>10) <= 2k.
	k := (bits.Len64(uint64(ns)>>10) + 1) / 2
	return min(k, EventBuckets-1)
}

// loopCounts are the counters a loop keeps as plain fields (loop.acc) and
// publishes into loopStats at the end of each batch.
type loopCounts struct {
	payloadIn  [3]uint64 // payload bytes of the PUBLISH packets received, by QoS
	payloadOut [3]uint64 // and sent, by delivered QoS
	bytesIn    uint64    // MQTT bytes read (every packet)
	bytesOut   uint64    // MQTT bytes written
	packetsIn  uint64
	packetsOut uint64
	// Events: OnTraffic calls and inbox drains, and the tasks drained.
	trafficEvents uint64
	inboxRuns     uint64
	tasks         uint64
	// Gauges: QoS 1/2 messages in flight and queued in the sessions the
	// loop owns, and their payload bytes, or rather the net changes the
	// loop made (a session queues on one loop and drains on another after
	// a takeover), so a loop's value may be negative; the sum over loops
	// is the broker's.
	inflight, queued           int64
	inflightBytes, queuedBytes int64
	// How long each traffic event and inbox drain kept the loop busy.
	eventHist  [EventBuckets]uint64
	eventNanos uint64
}

// publishEvery is how often a busy loop copies its counters for readers.
const publishEvery = int64(time.Millisecond)

// maybePublishCounts publishes the loop's counters when publishEvery has
// passed since it last did. Runs on the loop, at the end of each batch.
func (l *loop) maybePublishCounts() {
	if l.mono-l.accAt >= publishEvery {
		l.publishCounts()
	}
}

// publishCounts stores the fields of l.acc that changed since the last
// call into l.stats. Runs on the loop.
func (l *loop) publishCounts() {
	l.accAt = l.mono
	a, p, s := &l.acc, &l.accPub, &l.stats
	if *a == *p {
		return
	}
	for b := range a.eventHist {
		storeIfChanged(&s.eventHist[b], a.eventHist[b], p.eventHist[b])
	}
	storeIfChanged(&s.eventNanos, a.eventNanos, p.eventNanos)
	for q := range 3 {
		storeIfChanged(&s.payloadIn[q], a.payloadIn[q], p.payloadIn[q])
		storeIfChanged(&s.payloadOut[q], a.payloadOut[q], p.payloadOut[q])
	}
	storeIfChanged(&s.bytesIn, a.bytesIn, p.bytesIn)
	storeIfChanged(&s.bytesOut, a.bytesOut, p.bytesOut)
	storeIfChanged(&s.packetsIn, a.packetsIn, p.packetsIn)
	storeIfChanged(&s.packetsOut, a.packetsOut, p.packetsOut)
	storeIfChanged(&s.trafficEvents, a.trafficEvents, p.trafficEvents)
	storeIfChanged(&s.inboxRuns, a.inboxRuns, p.inboxRuns)
	storeIfChanged(&s.tasks, a.tasks, p.tasks)
	if a.inflight != p.inflight {
		s.inflight.Store(a.inflight)
	}
	if a.queued != p.queued {
		s.queued.Store(a.queued)
	}
	if a.inflightBytes != p.inflightBytes {
		s.inflightBytes.Store(a.inflightBytes)
	}
	if a.queuedBytes != p.queuedBytes {
		s.queuedBytes.Store(a.queuedBytes)
	}
	*p = *a
}

// storeIfChanged sets v to val unless it was old already.
func storeIfChanged(v *atomic.Uint64, val, old uint64) {
	if val != old {
		v.Store(val)
	}
}

// loopStats are one loop's counters as other goroutines read them. Only
// the owning loop writes them.
type loopStats struct {
	_       [64]byte         // keep counters of different loops off one cache line
	msgsIn  [3]atomic.Uint64 // PUBLISH packets received, by QoS
	msgsOut [3]atomic.Uint64 // PUBLISH packets sent, by delivered QoS
	// Published from loop.acc (see loopCounts).
	payloadIn  [3]atomic.Uint64
	payloadOut [3]atomic.Uint64
	bytesIn    atomic.Uint64
	bytesOut   atomic.Uint64
	packetsIn  atomic.Uint64
	packetsOut atomic.Uint64

	droppedSlow      atomic.Uint64 // QoS 0 dropped: client's outbound bound reached
	droppedQueueFull atomic.Uint64 // dropped: session queue full
	droppedOffline0  atomic.Uint64 // QoS 0 for an offline persistent session
	droppedTooLarge  atomic.Uint64 // larger than the client's Maximum Packet Size [MQTT-3.1.2-25]
	droppedExpired   atomic.Uint64 // Message Expiry Interval passed before delivery [MQTT-3.3.2-5]
	takenBack        atomic.Uint64 // store entries acknowledged before their batch was committed (takeBackPut)
	acksEarly        atomic.Uint64 // PUBACKs sent before their batch was durable, every persistent delivery acknowledged (earlyack.go)

	connsOpened     atomic.Uint64
	connsClosed     atomic.Uint64
	connects        atomic.Uint64 // CONNECTs accepted (CONNACK 0)
	protocolErrors  atomic.Uint64
	sessionsExpired atomic.Uint64
	panics          atomic.Uint64 // recovered on this loop (guard.go)
	refused         [NumRefuseReasons]atomic.Uint64

	// Gauges: this loop's contribution, which may be negative (a session
	// queues on one loop and drains on another after a takeover); the sum
	// over loops is the broker's value.
	connected     atomic.Int64 // connections in stateConnected
	subscriptions atomic.Int64
	inflight      atomic.Int64 // published from loop.acc
	queued        atomic.Int64 // published from loop.acc
	inflightBytes atomic.Int64 // published from loop.acc
	queuedBytes   atomic.Int64 // published from loop.acc

	// Published from loop.acc.
	trafficEvents atomic.Uint64
	inboxRuns     atomic.Uint64
	tasks         atomic.Uint64
	// Published from loop.acc.
	eventHist  [EventBuckets]atomic.Uint64
	eventNanos atomic.Uint64
}

// observeEvent records an event of l that started at start (loop clock).
// Runs on the loop.
func (l *loop) observeEvent(start int64) {
	ns := int64(time.Since(l.srv.started)) - start
	l.acc.eventHist[eventBucket(ns)]++
	if ns > 0 {
		l.acc.eventNanos += uint64(ns)
	}
}

// refused counts a connection refused for reason r. Runs on l.
func (l *loop) refused(r RefuseReason) { l.stats.refused[r].Add(1) }

// Stats is a snapshot of the broker's counters, summed over the loops.
//
// MessagesIn, MessagesOut, their split by QoS, and the connection,
// refusal and drop counters are exact at any time; the byte, packet and
// event counters and the Inflight and Queued gauges are as each loop last
// published them: at most a millisecond old while it is busy, a second
// when it is idle.
type Stats struct {
	// MessagesIn and MessagesOut count PUBLISH packets received from
	// clients and sent to them (MessagesInByQoS, MessagesOutByQoS split
	// them by QoS; outgoing by delivered QoS). Messages the broker
	// publishes itself (Publish) are not in MessagesIn.
	MessagesIn, MessagesOut               uint64
	MessagesInByQoS, MessagesOutByQoS     [3]uint64
	PayloadBytesIn, PayloadBytesOut       [3]uint64 // their payload bytes, by QoS
	BytesIn, BytesOut                     uint64    // MQTT bytes read and written, every packet
	PacketsIn, PacketsOut                 uint64    // MQTT packets of any type
	DroppedSlowConsumer, DroppedQueueFull uint64
	DroppedQoS0Offline, DroppedTooLarge   uint64
	DroppedExpired                        uint64
	ConnectionsOpened, ConnectionsClosed  uint64
	// Connects counts accepted CONNECTs (CONNACK success).
	Connects       uint64
	ProtocolErrors uint64
	// Refused counts connections refused before they became sessions, by
	// RefuseReason.
	Refused [NumRefuseReasons]uint64
	// RefusedByAddressLimit is Refused[RefusedAddressLimit].
	RefusedByAddressLimit uint64
	// SessionsExpired counts offline sessions ended by their Session
	// Expiry Interval.
	SessionsExpired uint64
	// Panics counts panics recovered on the event loops and in TLS and
	// WebSocket connections' goroutines (each logged at error level with
	// its stack; the connection it came from is closed).
	// Any is a defect, in the broker or in a hook such as an Authorizer,
	// and the broker's state may have been left inconsistent by it.
	Panics uint64

	// Connected is the number of connections with an MQTT session bound
	// (CONNACK sent, not closed); Connections the open network
	// connections, MQTT or not yet.
	Connected, Connections int64
	Sessions               int   // sessions, online and offline
	Subscriptions          int64 // subscriptions (a client's filter counts once)
	Retained               int   // retained messages
	Inflight, Queued       int64 // QoS 1/2 messages in flight to clients, and queued in sessions (in memory and on disk)
	// Payload bytes: of the retained messages, and of the messages in
	// Inflight and Queued (a message held for several sessions counts in
	// each; a QoS 2 message whose PUBREC came in holds none).
	RetainedBytes, InflightBytes, QueuedBytes int64
	// Store (Options.Store): batches committed and fsyncs, commits that
	// failed, deliveries not written because the store was past
	// MaxStoreBytes, and its size on disk. StoreStalls counts the times
	// a loop's commit stayed outstanding for more than 5 s (each logged).
	// StoreEntriesTakenBack counts QoS 1 deliveries to persistent sessions
	// acknowledged before their entry's batch was committed, so that the
	// entry was never written (nor deleted). StoreAcksEarly counts the
	// PUBACKs sent before their batch was durable because every persistent
	// session the message reached had acknowledged it.
	StoreCommits, StoreSyncs, StoreFailures, NotStoredDiskFull uint64
	StoreDiskBytes, StoreStalls, StoreEntriesTakenBack         uint64
	StoreAcksEarly                                             uint64
}

// Stats sums the counters of every loop. Safe for concurrent use.
func (s *Server) Stats() Stats {
	var st Stats
	for _, l := range s.loopsSnapshot() {
		ls := &l.stats
		for q := range 3 {
			st.MessagesInByQoS[q] += ls.msgsIn[q].Load()
			st.MessagesOutByQoS[q] += ls.msgsOut[q].Load()
			st.PayloadBytesIn[q] += ls.payloadIn[q].Load()
			st.PayloadBytesOut[q] += ls.payloadOut[q].Load()
		}
		st.BytesIn += ls.bytesIn.Load()
		st.BytesOut += ls.bytesOut.Load()
		st.PacketsIn += ls.packetsIn.Load()
		st.PacketsOut += ls.packetsOut.Load()
		st.DroppedSlowConsumer += ls.droppedSlow.Load()
		st.DroppedQueueFull += ls.droppedQueueFull.Load()
		st.DroppedQoS0Offline += ls.droppedOffline0.Load()
		st.DroppedTooLarge += ls.droppedTooLarge.Load()
		st.DroppedExpired += ls.droppedExpired.Load()
		st.StoreEntriesTakenBack += ls.takenBack.Load()
		st.StoreAcksEarly += ls.acksEarly.Load()
		st.ConnectionsOpened += ls.connsOpened.Load()
		st.ConnectionsClosed += ls.connsClosed.Load()
		st.Connects += ls.connects.Load()
		st.ProtocolErrors += ls.protocolErrors.Load()
		st.SessionsExpired += ls.sessionsExpired.Load()
		st.Panics += ls.panics.Load()
		for r := range ls.refused {
			st.Refused[r] += ls.refused[r].Load()
		}
		st.Connected += ls.connected.Load()
		st.Subscriptions += ls.subscriptions.Load()
		st.Inflight += ls.inflight.Load()
		st.Queued += ls.queued.Load()
		st.InflightBytes += ls.inflightBytes.Load()
		st.QueuedBytes += ls.queuedBytes.Load()
	}
	if ps := s.ps; ps != nil {
		ss := ps.st.Stats()
		st.StoreCommits, st.StoreSyncs, st.StoreDiskBytes = ss.Commits, ss.Syncs, ss.DiskBytes
		st.StoreFailures, st.NotStoredDiskFull = ps.failures.Load(), ps.notStored.Load()
		st.StoreStalls = ps.stalls.Load()
	}
	for q := range 3 {
		st.MessagesIn += st.MessagesInByQoS[q]
		st.MessagesOut += st.MessagesOutByQoS[q]
	}
	st.RefusedByAddressLimit = st.Refused[RefusedAddressLimit]
	st.Panics += s.bridgePanics.Load()
	st.Connections = int64(st.ConnectionsOpened) - int64(st.ConnectionsClosed)
	st.Sessions = s.reg.count()
	st.Retained = s.retainedCount()
	st.RetainedBytes = s.idx.retainedBytes.Load()
	return st
}

// LoopStats are one event loop's own counters.
type LoopStats struct {
	Index int
	// Connections open on the loop now.
	Connections int64
	// Events handled: readable connections (OnTraffic), inbox drains
	// (work handed over by other loops and goroutines), the tasks those
	// drains ran, accepted and closed connections.
	TrafficEvents, InboxRuns, Tasks, Opens, Closes uint64
	// EventBuckets counts traffic events and inbox drains by how long they
	// kept the loop busy: bucket i holds those shorter than
	// EventBucketBound(i) and not shorter than the bound of i-1 (not
	// cumulative). EventTime is their total duration.
	EventBuckets [EventBuckets]uint64
	EventTime    time.Duration
}

// LoopStats returns every loop's counters, by loop index. Loops appear once
// they served their first connection. Safe for concurrent use.
func (s *Server) LoopStats() []LoopStats {
	loops := s.loopsSnapshot()
	out := make([]LoopStats, len(loops))
	for i, l := range loops {
		ls := &l.stats
		o := &out[i]
		o.Index = l.idx
		o.Opens, o.Closes = ls.connsOpened.Load(), ls.connsClosed.Load()
		o.Connections = int64(o.Opens) - int64(o.Closes)
		o.TrafficEvents = ls.trafficEvents.Load()
		o.InboxRuns = ls.inboxRuns.Load()
		o.Tasks = ls.tasks.Load()
		for b := range o.EventBuckets {
			o.EventBuckets[b] = ls.eventHist[b].Load()
		}
		o.EventTime = time.Duration(ls.eventNanos.Load())
	}
	return out
}

// Ready reports whether the server is listening and not stopping.
func (s *Server) Ready() bool {
	select {
	case <-s.booted:
		return !s.stopped.Load()
	default:
		return false
	}
}
