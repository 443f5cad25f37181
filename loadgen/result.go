package loadgen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything a run measured. Results of several processes merge
// with Merge; the derived figures (lost, rates) are recomputed from the
// per-source counts.
type Result struct {
	Params  Config    `json:"params"` // the run's parameters, password redacted
	Procs   int       `json:"procs"`
	Started time.Time `json:"started"`
	Elapsed float64   `json:"elapsed_s"` // whole run, setup included
	Window  float64   `json:"window_s"`  // the measured window

	Connections ConnStats `json:"connections"`
	Messages    MsgStats  `json:"messages"`
	// Latency is from each message's intended send time to its first
	// arrival at a subscriber, in µs, for messages intended in the
	// measured window (duplicates add none).
	// Its censored values are lower bounds for messages that had not
	// arrived when the run ended (see the package doc).
	Latency *Histogram `json:"latency"`
	// AckLatency is from the intended send time to PUBACK (QoS 1) or
	// PUBCOMP (QoS 2) at the publisher, in µs; censored likewise.
	AckLatency *Histogram `json:"ack_latency"`
	// WriteLatency is from the time the publisher built the write carrying
	// a message to its arrival: Latency without the generator's lateness
	// in sending. Empty with payloads under 32 bytes (no room to stamp it).
	WriteLatency *Histogram `json:"write_latency"`

	Errors   []ErrorCount    `json:"errors"`
	Warnings []string        `json:"warnings,omitempty"`
	Broker   *BrokerStats    `json:"broker,omitempty"`
	Workers  []WorkerSummary `json:"workers,omitempty"`
	// Sources has the counts of every publisher stream, by source id.
	Sources []SourceStats `json:"sources"`
}

// ConnStats counts connections.
type ConnStats struct {
	Planned     int64 `json:"planned"`
	Attempted   int64 `json:"attempted"`
	Up          int64 `json:"up"`      // set up (CONNACK, and SUBACK for subscribers)
	Failed      int64 `json:"failed"`  // attempted but not set up
	Dropped     int64 `json:"dropped"` // ended by the broker or the network during the run
	Publishers  int64 `json:"publishers"`
	Subscribers int64 `json:"subscribers"`
}

// MsgStats counts messages over the whole run (warm-up and drain included)
// except the Window* figures and rates, which cover the measured window.
type MsgStats struct {
	Sent       int64   `json:"sent"`     // wholly written to the socket (a failed write's messages are unsent)
	Acked      int64   `json:"acked"`    // PUBACK/PUBCOMP received (QoS 1/2)
	Expected   int64   `json:"expected"` // deliveries due: sent × subscribers of each source
	Received   int64   `json:"received"` // deliveries, duplicates included
	Unique     int64   `json:"unique"`
	Lost       int64   `json:"lost"` // expected − unique, per source, never negative
	LossPct    float64 `json:"loss_pct"`
	Duplicated int64   `json:"duplicated"`
	Reordered  int64   `json:"reordered"`
	Stale      int64   `json:"stale,omitempty"` // too late to tell duplicate from reordered
	Foreign    int64   `json:"foreign"`         // not from this run's expected sources

	Overruns int64 `json:"overruns"`   // sends later than the overrun slack
	Unsent   int64 `json:"unsent"`     // due before the end but never sent
	MaxLagUs int64 `json:"max_lag_us"` // latest send behind its intended time

	WindowSent     int64   `json:"window_sent"`     // by when the write carrying them completed
	WindowReceived int64   `json:"window_received"` // distinct messages: duplicates are only in Duplicated
	OfferedPerSec  float64 `json:"offered_per_s"`
	SentPerSec     float64 `json:"sent_per_s"`
	ReceivedPerSec float64 `json:"received_per_s"` // distinct messages delivered per second
}

// SourceStats are the counts of one publisher stream, over every
// subscriber that expects it.
type SourceStats struct {
	ID         uint32 `json:"id"`
	Sent       int64  `json:"sent"`
	Due        int64  `json:"due"` // due by the end of the schedule (or the cancel); 0 without a timetable
	Acked      int64  `json:"acked"`
	Sinks      int64  `json:"sinks"` // subscribers that expect it and were set up
	Received   int64  `json:"received"`
	Unique     int64  `json:"unique"`
	Lost       int64  `json:"lost"`
	Duplicated int64  `json:"duplicated"`
	Reordered  int64  `json:"reordered"`
	Stale      int64  `json:"stale,omitempty"`
	Gaps       int64  `json:"gaps"` // skipped sequences seen in flight (some arrive later)
}

// WorkerSummary is one worker process's share of a multi-process run.
type WorkerSummary struct {
	Index    int    `json:"index"`
	Up       int64  `json:"up"`
	Sent     int64  `json:"sent"`
	Received int64  `json:"received"`
	Errors   int64  `json:"errors"`
	Exit     string `json:"exit,omitempty"` // why the worker failed, if it did
}

func newResult(cfg Config) *Result {
	return &Result{Params: cfg.redacted(), Procs: 1, Window: cfg.Duration.Seconds(),
		Latency: NewHistogram(), AckLatency: NewHistogram(), WriteLatency: NewHistogram(), Sources: []SourceStats{}, Errors: []ErrorCount{}}
}

// Merge adds o's figures into r (as from another process of the same run)
// and recomputes the derived ones.
func (r *Result) Merge(o *Result) {
	c, oc := &r.Connections, &o.Connections
	c.Planned += oc.Planned
	c.Attempted += oc.Attempted
	c.Up += oc.Up
	c.Failed += oc.Failed
	c.Dropped += oc.Dropped
	c.Publishers += oc.Publishers
	c.Subscribers += oc.Subscribers
	m, om := &r.Messages, &o.Messages
	m.Foreign += om.Foreign
	m.Overruns += om.Overruns
	m.Unsent += om.Unsent
	m.MaxLagUs = max(m.MaxLagUs, om.MaxLagUs)
	m.WindowSent += om.WindowSent
	m.WindowReceived += om.WindowReceived
	r.Latency.Merge(o.Latency)
	r.AckLatency.Merge(o.AckLatency)
	if o.WriteLatency != nil {
		r.WriteLatency.Merge(o.WriteLatency)
	}
	r.Errors = mergeErrors(r.Errors, o.Errors)
	for _, w := range o.Warnings {
		if !slices.Contains(r.Warnings, w) {
			r.Warnings = append(r.Warnings, w)
		}
	}
	r.Workers = append(r.Workers, o.Workers...)
	byID := make(map[uint32]int, len(r.Sources))
	for i, s := range r.Sources {
		byID[s.ID] = i
	}
	for _, s := range o.Sources {
		i, ok := byID[s.ID]
		if !ok {
			byID[s.ID] = len(r.Sources)
			r.Sources = append(r.Sources, s)
			continue
		}
		t := &r.Sources[i]
		t.Sent += s.Sent
		t.Due += s.Due
		t.Acked += s.Acked
		t.Sinks += s.Sinks
		t.Received += s.Received
		t.Unique += s.Unique
		t.Duplicated += s.Duplicated
		t.Reordered += s.Reordered
		t.Stale += s.Stale
		t.Gaps += s.Gaps
	}
	r.finalize()
}

// finalize derives the totals, losses and rates from the per-source counts.
func (r *Result) finalize() {
	slices.SortFunc(r.Sources, func(a, b SourceStats) int { return cmp.Compare(a.ID, b.ID) })
	m := &r.Messages
	m.Sent, m.Acked, m.Expected, m.Received, m.Unique, m.Lost = 0, 0, 0, 0, 0, 0
	m.Duplicated, m.Reordered, m.Stale = 0, 0, 0
	for i := range r.Sources {
		s := &r.Sources[i]
		s.Lost = max(0, s.Sent*s.Sinks-s.Unique)
		m.Sent += s.Sent
		m.Acked += s.Acked
		m.Expected += s.Sent * s.Sinks
		m.Received += s.Received
		m.Unique += s.Unique
		m.Lost += s.Lost
		m.Duplicated += s.Duplicated
		m.Reordered += s.Reordered
		m.Stale += s.Stale
	}
	m.LossPct = 0
	if m.Expected > 0 {
		m.LossPct = 100 * float64(m.Lost) / float64(m.Expected)
	}
	if r.Window > 0 {
		m.SentPerSec = float64(m.WindowSent) / r.Window
		m.ReceivedPerSec = float64(m.WindowReceived) / r.Window
	}
	m.OfferedPerSec = r.Params.Rate
	if r.Params.Scenario == ScenarioFleet {
		m.OfferedPerSec += r.Params.CmdRate
	}
}

// WriteJSON writes r as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the human summary of r.
func (r *Result) WriteTable(out io.Writer) error {
	p := &r.Params
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	ver := "3.1.1"
	if p.Version == 5 {
		ver = "5.0"
	}
	rate := "window"
	if p.Rate > 0 {
		rate = fmt.Sprintf("%g/s", p.Rate)
	}
	fmt.Fprintf(w, "run\t%s  n=%d", p.Scenario, p.N)
	if p.Scenario == ScenarioFanIn {
		fmt.Fprintf(w, "  subs=%d", p.Subs)
	}
	fmt.Fprintf(w, "  MQTT %s", ver)
	if p.Scenario != ScenarioConn {
		fmt.Fprintf(w, "  QoS %d  %d B  rate %s", p.QoS, p.Size, rate)
	}
	if p.Scenario == ScenarioFleet {
		fmt.Fprintf(w, "  cmd-rate %g/s", p.CmdRate)
	}
	fmt.Fprintf(w, "  window %v", p.Duration)
	if p.Warmup > 0 {
		fmt.Fprintf(w, " (+%v warm-up)", p.Warmup)
	}
	fmt.Fprintf(w, "  procs %d\n", r.Procs)
	fmt.Fprintf(w, "broker\t%s", strings.Join(p.Brokers, ", "))
	if p.TLS {
		fmt.Fprint(w, "  (TLS)")
	}
	fmt.Fprintln(w)
	c := &r.Connections
	fmt.Fprintf(w, "connections\tplanned %d  up %d  failed %d  dropped %d  (publishers %d, subscribers %d)\n",
		c.Planned, c.Up, c.Failed, c.Dropped, c.Publishers, c.Subscribers)
	m := &r.Messages
	if p.Scenario != ScenarioConn {
		fmt.Fprintf(w, "messages\tsent %d  acked %d  expected %d  received %d\n", m.Sent, m.Acked, m.Expected, m.Received)
		fmt.Fprintf(w, "accounting\tlost %d (%.3f%%)  duplicated %d  reordered %d  foreign %d",
			m.Lost, m.LossPct, m.Duplicated, m.Reordered, m.Foreign)
		if m.Stale > 0 {
			fmt.Fprintf(w, "  stale %d", m.Stale)
		}
		fmt.Fprintln(w)
		fmt.Fprintf(w, "schedule\toverruns %d  unsent %d  max lag %s\n", m.Overruns, m.Unsent, fmtUs(m.MaxLagUs))
		fmt.Fprintf(w, "throughput\tsent %.0f/s  received %.0f/s  (window %gs)\n", m.SentPerSec, m.ReceivedPerSec, r.Window)
		fmt.Fprintln(w, "latency\tcount\tp50\tp90\tp99\tp99.9\tmax\tmean")
		row := func(name string, h *Histogram) {
			s := h.Summary()
			fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\t%s", name, s.Count, fmtUs(s.P50), fmtUs(s.P90),
				fmtUs(s.P99), fmtUs(s.P999), fmtUs(s.Max), fmtUs(int64(s.Mean)))
			if s.Clamped > 0 {
				fmt.Fprintf(w, "\t(%d above 10 min, counted as 10 min)", s.Clamped)
			}
			fmt.Fprintln(w)
		}
		row("end-to-end", r.Latency)
		if r.WriteLatency != nil && r.WriteLatency.Count() > 0 {
			row("from write", r.WriteLatency)
		}
		if p.QoS > 0 {
			row("publish-to-ack", r.AckLatency)
		}
		if e2e, ack := r.Latency.censored, r.AckLatency.censored; e2e+ack > 0 {
			fmt.Fprintf(w, "censored\t%d end-to-end", e2e)
			if p.QoS > 0 {
				fmt.Fprintf(w, ", %d publish-to-ack", ack)
			}
			fmt.Fprintln(w, " of these values are lower bounds: messages never sent, or not delivered (acknowledged) "+
				"when the drain ended, at their wait then")
		}
	}
	if b := r.Broker; b != nil {
		if b.Err != "" {
			fmt.Fprintf(w, "broker pid %d\t%s\n", b.PID, b.Err)
		} else {
			fmt.Fprintf(w, "broker pid %d\tcpu %.3f s in window", b.PID, float64(b.CPUWindowUs)/1e6)
			if b.CPUPerMsgUs > 0 {
				fmt.Fprintf(w, "  = %.2f µs per delivered message (%d delivered): %.2f user + %.2f kernel",
					b.CPUPerMsgUs, b.Delivered, b.UserPerMsgUs, b.SysPerMsgUs)
			}
			fmt.Fprintf(w, "\n\trss %s before setup, %s at window start, %s at end",
				fmtKB(b.RSSBaselineKB), fmtKB(b.RSSStartKB), fmtKB(b.RSSEndKB))
			if b.RSSPerConnBytes != 0 {
				fmt.Fprintf(w, "  = %.0f B per connection (%d)", b.RSSPerConnBytes, b.Connections)
				if b.AnonPerConnBytes != 0 {
					fmt.Fprintf(w, "; anonymous %s → %s = %.0f B per connection",
						fmtKB(b.AnonBaselineKB), fmtKB(b.AnonEndKB), b.AnonPerConnBytes)
				}
			}
			fmt.Fprintf(w, "\n\tcontext switches in window %d voluntary (wake-ups), %d involuntary",
				b.VoluntaryCtxSwitches, b.InvoluntaryCtxSwitches)
			if b.Delivered > 0 {
				fmt.Fprintf(w, "  = %.2f + %.2f per delivered message", b.VoluntaryPerMsg, b.InvoluntaryPerMsg)
			}
			fmt.Fprintln(w)
		}
	}
	for _, wk := range r.Workers {
		fmt.Fprintf(w, "worker %d\tup %d  sent %d  received %d  errors %d", wk.Index, wk.Up, wk.Sent, wk.Received, wk.Errors)
		if wk.Exit != "" {
			fmt.Fprintf(w, "  FAILED: %s", wk.Exit)
		}
		fmt.Fprintln(w)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "warning\t%s\n", s)
	}
	if len(r.Errors) == 0 {
		fmt.Fprintln(w, "errors\tnone")
	}
	for i, e := range r.Errors {
		label := ""
		if i == 0 {
			label = "errors"
		}
		fmt.Fprintf(w, "%s\t%d × %s — e.g. %s\n", label, e.Count, e.Kind, e.Example)
		if e.Hint != "" {
			fmt.Fprintf(w, "\t  hint: %s\n", e.Hint)
		}
	}
	return w.Flush()
}

// fmtUs formats microseconds for people.
func fmtUs(us int64) string {
	switch {
	case us == 0:
		return "-"
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1000000:
		return fmt.Sprintf("%.2fms", float64(us)/1e3)
	default:
		return fmt.Sprintf("%.2fs", float64(us)/1e6)
	}
}

func fmtKB(kb int64) string {
	if kb >= 10*1024 {
		return fmt.Sprintf("%.1f MiB", float64(kb)/1024)
	}
	return fmt.Sprintf("%d KiB", kb)
}
