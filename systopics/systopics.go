// Package systopics publishes a loopmq broker's statistics as $SYS topics
// with Mosquitto's names and formats, so dashboards and scripts written
// for `mosquitto_sub -t '$SYS/#'` keep working.
//
// Why a package of its own and not the engine: $SYS is a client of the
// broker, not part of it. It reads the engine's counters through
// engine.Server.Stats (per-loop atomics summed on read) and publishes
// through engine.Server.Publish, the same routing, retained index and
// authorization as any client's message; the engine knows nothing of
// topic names, formats or intervals. It imports engine only.
//
// Concurrency: a Publisher runs on one goroutine of its own (Run); every
// field is owned by it.
package systopics

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strconv"
	"time"

	"github.com/loopmq/loopmq/engine"
)

// Options configure a Publisher.
type Options struct {
	// Server is the broker to read and publish to; required.
	Server *engine.Server
	// Interval between updates (Mosquitto's sys_interval); 0 or less
	// disables $SYS (Run returns at once).
	Interval time.Duration
	// Version is published as "loopmq version <Version>" on
	// $SYS/broker/version.
	Version string
	// Logger receives publish errors, default slog.Default().
	Logger *slog.Logger
}

// Publisher publishes $SYS topics every Options.Interval.
type Publisher struct {
	o       Options
	started time.Time
	last    map[string]string // topic → payload last published, to publish changes only

	prevAt  time.Time
	prev    counters
	loads   map[string]*[3]float64 // load topic stem → 1, 5 and 15 minute averages
	maxSeen int64                  // clients/maximum: the most clients/total seen at an update
	maxHeap uint64
}

// counters are the monotonic counters the load averages are computed from.
type counters struct {
	msgsIn, msgsOut, pubIn, pubOut, dropped, bytesIn, bytesOut, conns uint64
}

// New returns a Publisher; the broker's start time is now.
func New(o Options) *Publisher {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Publisher{o: o, started: time.Now(), last: make(map[string]string), loads: make(map[string]*[3]float64)}
}

// Run publishes at once, then every Interval, until ctx ends.
func (p *Publisher) Run(ctx context.Context) {
	if p.o.Interval <= 0 {
		return
	}
	p.Update(time.Now())
	t := time.NewTicker(p.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.Update(now)
		}
	}
}

// Update publishes, as retained QoS 0 messages, every $SYS value that
// changed since the last update (all of them the first time). Not safe
// for concurrent use: Run calls it.
func (p *Publisher) Update(now time.Time) {
	st := p.o.Server.Stats()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// Mosquitto's clients/maximum is the largest clients/total it has
	// seen at an update (sys_tree.c: client_max follows count_total, every
	// client it knows, connected or not), so it is never below
	// clients/total: after a restart it counts the persistent sessions
	// restored, and it keeps the peak while clients come and go.
	p.maxSeen = max(p.maxSeen, int64(st.Sessions), st.Connected)
	p.maxHeap = max(p.maxHeap, ms.HeapAlloc)
	dropped := st.DroppedSlowConsumer + st.DroppedQueueFull + st.DroppedQoS0Offline + st.DroppedTooLarge + st.DroppedExpired
	cur := counters{msgsIn: st.PacketsIn, msgsOut: st.PacketsOut, pubIn: st.MessagesIn, pubOut: st.MessagesOut,
		dropped: dropped, bytesIn: st.BytesIn, bytesOut: st.BytesOut, conns: st.ConnectionsOpened}
	sum3 := func(a [3]uint64) uint64 { return a[0] + a[1] + a[2] }
	u := strconv.FormatUint
	i := func(v int64) string { return strconv.FormatInt(v, 10) }

	const b = "$SYS/broker/"
	p.set(b+"version", "loopmq version "+p.o.Version)
	p.set(b+"uptime", fmt.Sprintf("%d seconds", int64(now.Sub(p.started)/time.Second)))
	p.set(b+"clients/total", strconv.Itoa(st.Sessions))
	p.set(b+"clients/connected", i(st.Connected))
	p.set(b+"clients/active", i(st.Connected)) // deprecated in Mosquitto, still published
	disconnected := max(int64(st.Sessions)-st.Connected, 0)
	p.set(b+"clients/disconnected", i(disconnected))
	p.set(b+"clients/inactive", i(disconnected))
	p.set(b+"clients/maximum", i(p.maxSeen))
	p.set(b+"clients/expired", u(st.SessionsExpired, 10))
	p.set(b+"messages/received", u(cur.msgsIn, 10))
	p.set(b+"messages/sent", u(cur.msgsOut, 10))
	// Mosquitto's message store holds the retained messages and those
	// owed to clients. loopmq counts the latter per session: a message
	// queued for two sessions counts twice (Mosquitto stores it once), one
	// spilled to disk counts too.
	stored := int64(st.Retained) + st.Queued + st.Inflight
	p.set(b+"messages/stored", i(stored))
	p.set(b+"store/messages/count", i(stored))
	p.set(b+"store/messages/bytes", i(st.RetainedBytes+st.QueuedBytes+st.InflightBytes))
	p.set(b+"subscriptions/count", i(st.Subscriptions))
	p.set(b+"retained messages/count", strconv.Itoa(st.Retained))
	p.set(b+"heap/current", u(ms.HeapAlloc, 10))
	p.set(b+"heap/maximum", u(p.maxHeap, 10))
	p.set(b+"publish/messages/received", u(cur.pubIn, 10))
	p.set(b+"publish/messages/sent", u(cur.pubOut, 10))
	p.set(b+"publish/messages/dropped", u(dropped, 10))
	p.set(b+"publish/bytes/received", u(sum3(st.PayloadBytesIn), 10))
	p.set(b+"publish/bytes/sent", u(sum3(st.PayloadBytesOut), 10))
	p.set(b+"bytes/received", u(cur.bytesIn, 10))
	p.set(b+"bytes/sent", u(cur.bytesOut, 10))

	if !p.prevAt.IsZero() {
		if secs := now.Sub(p.prevAt).Seconds(); secs > 0 {
			p.load("messages/received", cur.msgsIn-p.prev.msgsIn, secs)
			p.load("messages/sent", cur.msgsOut-p.prev.msgsOut, secs)
			p.load("publish/received", cur.pubIn-p.prev.pubIn, secs)
			p.load("publish/sent", cur.pubOut-p.prev.pubOut, secs)
			p.load("publish/dropped", cur.dropped-p.prev.dropped, secs)
			p.load("bytes/received", cur.bytesIn-p.prev.bytesIn, secs)
			p.load("bytes/sent", cur.bytesOut-p.prev.bytesOut, secs)
			p.load("connections", cur.conns-p.prev.conns, secs)
			p.load("sockets", cur.conns-p.prev.conns, secs)
		}
	}
	p.prevAt, p.prev = now, cur
}

// loadWindows are the averaging windows of the load topics, in minutes.
var loadWindows = [3]struct {
	name string
	mins float64
}{{"1min", 1}, {"5min", 5}, {"15min", 15}}

// load updates the exponentially weighted averages of a rate per minute
// as Mosquitto does (sys_tree.c, calc_load): the rate over the last
// interval, weighted by exp(-interval/window) against the previous
// average, published with two decimals.
func (p *Publisher) load(stem string, delta uint64, secs float64) {
	avg := p.loads[stem]
	initial := avg == nil
	if initial {
		avg = new([3]float64)
		p.loads[stem] = avg
	}
	rate := float64(delta) * 60 / secs
	for k, w := range loadWindows {
		exp := math.Exp(-secs / (60 * w.mins))
		avg[k] = rate + exp*(avg[k]-rate)
		p.set("$SYS/broker/load/"+stem+"/"+w.name, strconv.FormatFloat(avg[k], 'f', 2, 64))
	}
}

// set publishes payload on topic, retained, unless it is what was
// published there last.
func (p *Publisher) set(topic, payload string) {
	if p.last[topic] == payload {
		return
	}
	if err := p.o.Server.Publish(topic, []byte(payload), 0, true); err != nil {
		p.o.Logger.Debug("$SYS publish", "topic", topic, "error", err)
		return
	}
	p.last[topic] = payload
}
