// Package metrics exports a running loopmq broker to Prometheus: a
// Collector that reads the engine's counters when scraped, and an HTTP
// handler serving /metrics, /healthz and /readyz.
//
// Why a package of its own and not the engine: the engine keeps its
// counters as per-loop atomics that only their loop writes (engine/stats.go)
// and must not depend on github.com/prometheus/client_golang; this package
// sums them on scrape (engine.Server.Stats, LoopStats), so nothing is added
// to the message path, and embedders who do not want Prometheus never
// import it. It imports engine and store (for the store's counters) and
// nothing else of loopmq.
//
// Concurrency: Collect runs on the HTTP server's goroutines and only calls
// the engine's goroutine-safe snapshot methods.
package metrics

import (
	"net/http"
	"regexp"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/store"
)

// Options say what to export.
type Options struct {
	// Server is the broker whose counters are exported; required.
	Server *engine.Server
	// StoreStats returns the persistent store's counters (commits, syncs,
	// commit latency, disk use); nil when there is no store.
	StoreStats func() store.Stats
	// Version is exported as loopmq_build_info{version}.
	Version string
	// Ready, when set, must also report true for /readyz to answer 200
	// (a store still recovering, for instance). The Server must be
	// listening and not stopping either way.
	Ready func() bool
}

// Collector is a prometheus.Collector over a broker's counters: every
// scrape reads one engine.Stats snapshot and the per-loop counters.
type Collector struct {
	o Options
}

// NewCollector returns a Collector for o.
func NewCollector(o Options) *Collector { return &Collector{o: o} }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("loopmq_"+name, help, labels, nil)
}

var (
	dBuildInfo      = desc("build_info", "loopmq's version; always 1.", "version")
	dConnections    = desc("connections", "Open network connections, MQTT sessions or not yet.")
	dConnected      = desc("clients_connected", "Connections with an MQTT session bound (CONNACK sent).")
	dOpened         = desc("connections_opened_total", "Network connections accepted.")
	dClosed         = desc("connections_closed_total", "Network connections closed.")
	dConnects       = desc("connects_total", "CONNECTs accepted (CONNACK success).")
	dRefused        = desc("connections_refused_total", "Connections refused before they became sessions, by reason.", "reason")
	dProtocolErrors = desc("protocol_errors_total", "Connections closed for a protocol error.")
	dPanics         = desc("panics_recovered_total", "Panics recovered on the event loops and in TLS/WebSocket connections' goroutines, each logged with its stack; any is a defect.")
	dMsgsIn         = desc("messages_received_total", "PUBLISH packets received from clients, by QoS.", "qos")
	dMsgsOut        = desc("messages_sent_total", "PUBLISH packets sent to clients, by delivered QoS.", "qos")
	dPayloadIn      = desc("payload_received_bytes_total", "Payload bytes of the PUBLISH packets received, by QoS.", "qos")
	dPayloadOut     = desc("payload_sent_bytes_total", "Payload bytes of the PUBLISH packets sent, by QoS.", "qos")
	dBytesIn        = desc("received_bytes_total", "MQTT bytes received, every packet type.")
	dBytesOut       = desc("sent_bytes_total", "MQTT bytes sent, every packet type.")
	dPacketsIn      = desc("packets_received_total", "MQTT packets received, every type.")
	dPacketsOut     = desc("packets_sent_total", "MQTT packets sent, every type.")
	dDropped        = desc("messages_dropped_total", "Messages not delivered to a subscriber, by reason.", "reason")
	dInflight       = desc("messages_inflight", "QoS 1/2 messages sent to clients and not acknowledged yet.")
	dQueued         = desc("messages_queued", "Messages queued in sessions (waiting for an in-flight slot or an offline client), in memory and on disk.")
	dRetained       = desc("retained_messages", "Retained messages.")
	dInflightBytes  = desc("messages_inflight_payload_bytes", "Payload bytes of the messages in loopmq_messages_inflight (a QoS 2 message's until its PUBREC).")
	dQueuedBytes    = desc("messages_queued_payload_bytes", "Payload bytes of the messages in loopmq_messages_queued, in memory and on disk.")
	dRetainedBytes  = desc("retained_payload_bytes", "Payload bytes of the retained messages.")
	dSessions       = desc("sessions", "Sessions, online and offline.")
	dSessionsExp    = desc("sessions_expired_total", "Offline sessions ended by their Session Expiry Interval.")
	dSubscriptions  = desc("subscriptions", "Subscriptions (one per client and filter).")
	dLoopEvents     = desc("loop_events_total", "Events an event loop handled, by kind.", "loop", "kind")
	dLoopTasks      = desc("loop_tasks_total", "Tasks other loops and goroutines handed to an event loop.", "loop")
	dLoopConns      = desc("loop_connections", "Open connections of an event loop.", "loop")
	dLoopLatency    = desc("loop_event_duration_seconds", "How long one event (a readable connection or an inbox drain) kept an event loop busy.", "loop")
	dStoreCommits   = desc("store_commits_total", "Batches committed to the persistent store.")
	dStoreSyncs     = desc("store_syncs_total", "fsyncs of the store's log.")
	dStoreRecords   = desc("store_records_total", "Records written to the store.")
	dStoreCommitSec = desc("store_commit_seconds_total", "Time from Commit to durable, summed over commits (divide by store_commits_total for the mean).")
	dStoreDisk      = desc("store_disk_bytes", "Bytes the store occupies on disk.")
	dStoreFailures  = desc("store_commit_failures_total", "Store commits that failed (their publishers were disconnected unacknowledged).")
	dStoreNotStored = desc("store_not_stored_disk_full_total", "QoS 1/2 deliveries to persistent sessions not written because the store was past its size bound.")
	dStoreStalls    = desc("store_stalls_total", "Times an event loop's store commit stayed outstanding for more than 5 s (acknowledgements wait meanwhile).")
	dStoreTakenBack = desc("store_entries_taken_back_total", "QoS 1 deliveries to persistent sessions acknowledged before their entry was committed: the entry was never written.")
	dStoreAcksEarly = desc("store_acks_early_total", "PUBACKs sent before their store batch was durable because every persistent session the message reached had acknowledged it.")
)

var qosLabels = [3]string{"0", "1", "2"}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dBuildInfo, dConnections, dConnected, dOpened, dClosed, dConnects,
		dRefused, dProtocolErrors, dPanics, dMsgsIn, dMsgsOut, dPayloadIn, dPayloadOut, dBytesIn, dBytesOut,
		dPacketsIn, dPacketsOut, dDropped, dInflight, dQueued, dRetained,
		dInflightBytes, dQueuedBytes, dRetainedBytes, dSessions, dSessionsExp,
		dSubscriptions, dLoopEvents, dLoopTasks, dLoopConns, dLoopLatency} {
		ch <- d
	}
	if c.o.StoreStats != nil {
		for _, d := range []*prometheus.Desc{dStoreCommits, dStoreSyncs, dStoreRecords, dStoreCommitSec, dStoreDisk,
			dStoreFailures, dStoreNotStored, dStoreStalls, dStoreTakenBack, dStoreAcksEarly} {
			ch <- d
		}
	}
}

// Collect reads the broker's counters once and sends them.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(dBuildInfo, 1, c.o.Version)
	st := c.o.Server.Stats()
	gauge(dConnections, float64(st.Connections))
	gauge(dConnected, float64(st.Connected))
	counter(dOpened, st.ConnectionsOpened)
	counter(dClosed, st.ConnectionsClosed)
	counter(dConnects, st.Connects)
	for r := range engine.NumRefuseReasons {
		counter(dRefused, st.Refused[r], r.String())
	}
	counter(dProtocolErrors, st.ProtocolErrors)
	counter(dPanics, st.Panics)
	for q, l := range qosLabels {
		counter(dMsgsIn, st.MessagesInByQoS[q], l)
		counter(dMsgsOut, st.MessagesOutByQoS[q], l)
		counter(dPayloadIn, st.PayloadBytesIn[q], l)
		counter(dPayloadOut, st.PayloadBytesOut[q], l)
	}
	counter(dBytesIn, st.BytesIn)
	counter(dBytesOut, st.BytesOut)
	counter(dPacketsIn, st.PacketsIn)
	counter(dPacketsOut, st.PacketsOut)
	counter(dDropped, st.DroppedSlowConsumer, "slow_consumer")
	counter(dDropped, st.DroppedQueueFull, "queue_full")
	counter(dDropped, st.DroppedExpired, "expired")
	counter(dDropped, st.DroppedTooLarge, "too_large")
	counter(dDropped, st.DroppedQoS0Offline, "qos0_offline")
	gauge(dInflight, float64(st.Inflight))
	gauge(dQueued, float64(st.Queued))
	gauge(dRetained, float64(st.Retained))
	gauge(dInflightBytes, float64(st.InflightBytes))
	gauge(dQueuedBytes, float64(st.QueuedBytes))
	gauge(dRetainedBytes, float64(st.RetainedBytes))
	gauge(dSessions, float64(st.Sessions))
	counter(dSessionsExp, st.SessionsExpired)
	gauge(dSubscriptions, float64(st.Subscriptions))

	for _, ls := range c.o.Server.LoopStats() {
		loop := strconv.Itoa(ls.Index)
		counter(dLoopEvents, ls.TrafficEvents, loop, "traffic")
		counter(dLoopEvents, ls.InboxRuns, loop, "inbox")
		counter(dLoopEvents, ls.Opens, loop, "open")
		counter(dLoopEvents, ls.Closes, loop, "close")
		counter(dLoopTasks, ls.Tasks, loop)
		gauge(dLoopConns, float64(ls.Connections), loop)
		buckets := make(map[float64]uint64, engine.EventBuckets-1)
		var cum uint64
		for i, n := range ls.EventBuckets {
			cum += n
			if b := engine.EventBucketBound(i); b > 0 {
				buckets[b.Seconds()] = cum
			}
		}
		ch <- prometheus.MustNewConstHistogram(dLoopLatency, cum, ls.EventTime.Seconds(), buckets, loop)
	}

	if c.o.StoreStats != nil {
		ss := c.o.StoreStats()
		counter(dStoreCommits, ss.Commits)
		counter(dStoreSyncs, ss.Syncs)
		counter(dStoreRecords, ss.Records)
		ch <- prometheus.MustNewConstMetric(dStoreCommitSec, prometheus.CounterValue, float64(ss.CommitNanos)/1e9)
		gauge(dStoreDisk, float64(ss.DiskBytes))
		counter(dStoreFailures, st.StoreFailures)
		counter(dStoreNotStored, st.NotStoredDiskFull)
		counter(dStoreStalls, st.StoreStalls)
		counter(dStoreTakenBack, st.StoreEntriesTakenBack)
		counter(dStoreAcksEarly, st.StoreAcksEarly)
	}
}

// schedLatencies adds go_sched_latencies_seconds to the Go collector's
// defaults: how long goroutines waited runnable for a P. The event loops
// hold their Ps while they wait in epoll_wait and yield them at most every
// 5 ms (third_party/gnet/LOOPMQ.md), so a goroutine they or the network
// make runnable (the store's committer, TLS and WebSocket connections,
// this endpoint, timers) may wait for one; this histogram shows it.
var schedLatencies = collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/sched/latencies:seconds$`)}

// Registry returns a registry with the broker's Collector and Go's
// runtime and process collectors.
func Registry(o Options) *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(NewCollector(o),
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(schedLatencies)),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Handler serves /metrics (Prometheus text and protobuf formats), /healthz
// (200 while the process serves HTTP) and /readyz (200 while the broker
// listens and is not stopping, and Options.Ready agrees; 503 otherwise).
func Handler(o Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(Registry(o), promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !o.Server.Ready() || (o.Ready != nil && !o.Ready()) {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
