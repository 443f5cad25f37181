// Package loadgen drives an MQTT broker with an open-loop load and accounts
// for every message: sent, acknowledged, received, lost, duplicated and
// reordered, per publisher, with latency percentiles measured from each
// message's intended send time.
//
// It owns the scenarios (pairs, fanin, fanout, fleet, conn), the MQTT client
// side of the connections (raw sockets and [codec]; it must not import
// engine/, so it drives any broker), the open-loop schedule, the
// loss/duplicate/reorder accounting, the latency histograms
// (github.com/HdrHistogram/hdrhistogram-go), the multi-process protocol and
// the result with its table and JSON forms.
//
// # Open loop
//
// Each publishing connection has a timetable: message k is due at a fixed
// intended time (constant rate, optionally ramped up linearly). A late
// message is still sent, with its intended time in the payload, so a broker
// stall shows up in the latency percentiles instead of slowing the offered
// load down (no coordinated omission). Sends later than Config.OverrunSlack
// are counted as overruns; messages still due when the run ends are counted
// as unsent.
//
// A stall that lasts past the end of the run leaves messages that have no
// latency, and they waited longest. So for each subscriber, every message
// of the measured window after the last one it received from that
// publisher (never sent, or sent and not delivered by the end of the
// drain) is recorded at the wait it had when the drain ended: a lower
// bound, counted as censored in the histogram's JSON ("censored") and in
// the table. Publish-to-ack latencies are censored likewise for messages
// never sent or never acknowledged. A message missing before a later one of
// the same publisher arrived was dropped, not delayed: it is left out of
// the percentiles, at every QoS, counted in the loss, and the result warns.
// At QoS 0 this is how a broker drops by design; a QoS 0 message missing at
// the end of the stream is censored all the same, because it cannot be told
// from one held by a stalled broker (or sitting in a socket buffer, counted
// as sent, behind a broker that stopped reading). Without a timetable
// (Rate 0) there is no intended time: lost messages are left out and warned
// about, and messages of a publisher that was never set up are not counted.
//
// With Rate 0 publishers send as fast as a window allows, never as an
// unbounded flood that would only measure kernel socket buffers. At QoS 1 and
// 2 the window is Config.Inflight unacknowledged PUBLISH packets (lowered to
// the broker's Receive Maximum in 5.0). At QoS 0 there is no acknowledgement,
// so a publisher fences its stream with a PINGREQ every Inflight/2 messages
// and may have at most Inflight messages not yet covered by a PINGRESP. A
// broker answers PINGREQ after it has read (and routed) everything sent
// before it on the connection, so this bounds what sits between the
// publisher and the broker, works with any broker and across processes, and
// never stalls on a lost message; what the broker then drops on its way to
// slow subscribers is counted as loss.
//
// # Persistent sessions
//
// With Config.Persistent (-persistent) the subscribers connect with
// persistent sessions (3.1.1: Clean Session 0; 5.0: Clean Start 0 and a
// Session Expiry Interval of [PersistentExpiry]), so a broker with
// persistence writes every QoS 1/2 delivery to them and may hold each
// publisher's acknowledgement until the write is durable:
// Result.AckLatency shows what that costs. Client identifiers carry the
// run id, so runs never share sessions, and after the run each subscriber
// connects once more with a clean session, which makes the broker discard
// its session and queue; one that cannot is reported as a warning. These
// connections are paced as setup is: -conn-rate, -conn-parallel, and all
// within -setup-timeout.
//
// # Payload
//
// Every payload starts with a 24-byte stamp (see [PayloadHeaderSize]): run
// id, source id, sequence number and intended send time in nanoseconds since
// the run's common start T0; payloads of 32 bytes or more also carry the
// time the publisher built the write (Result.WriteLatency counts from it, so
// the generator's own lateness can be told from the broker's). Frames are
// encoded once per source and patched
// in place (packet identifier, stamp) for every send, so the per-message path
// allocates nothing.
//
// # Concurrency
//
// Every connection has one reader goroutine, which owns the read buffer,
// the decoder and the subscriber-side accounting (streams), and writes the
// acknowledgements a batch of input needs in one write. A connection that
// publishes also has one writer goroutine, which owns the timetable and the
// write buffer; the two share the in-flight window under publisher.mu, held
// once per batch. A net.Conn serialises concurrent writes, so whole frames
// never interleave. Writers wait for their next intended send time on one
// clock goroutine per process, which sleeps in ppoll with a nanosecond
// timeout: Go's timers wake about a millisecond late on Linux, which would
// put the generator's own lag into every percentile. Latencies are buffered per connection and flushed into
// a few mutex-guarded histogram shards once per read batch. Counters that
// the progress line reads are atomics; everything else is read only after
// every goroutine of the connection has ended.
//
// # Several processes
//
// One process may hold at most about 20,000 file descriptors, so RunProcs
// (Config.Procs > 1) starts that many worker processes and merges their
// results. The parent writes one JSON line with the configuration to each
// worker's stdin; a worker answers with JSON lines on stdout ("ready" once
// its connections are set up, "progress" every second, then "result"). When
// every worker is ready the parent sends the common start time T0 as a
// "go" line, so cross-process streams (fanin, fanout, fleet) share one
// timetable and one clock origin. See ServeWorker.
package loadgen
