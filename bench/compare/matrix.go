package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/loopmq/loopmq/loadgen"
)

// scenario is one table of the comparison: a loadgen scenario and its size.
type scenario struct {
	Name  string   // file-name friendly, e.g. "fanout1000"
	Title string   // for the docs
	Args  []string // loadgen flags that select it
	// Fixed is the offered publish rate of the fixed-rate runs, chosen so
	// that both brokers sustain it without loss at QoS 1 and 1 KiB (checked
	// on every run: see record.Sustained).
	Fixed float64
	// Deliveries is how many subscribers receive each message.
	Deliveries int
}

// scenarios is the matrix's scenario list. The fan-out rates give 30,000
// deliveries/s: Mosquitto, which runs on one thread, reaches its limit at
// about 50,000/s for 1→1,000 with 1 KiB at QoS 1 on this machine (latency
// grows without bound at 50 publishes/s), and the fixed rate is meant to
// compare cost, not saturation.
var scenarios = []scenario{
	{Name: "pairs50", Title: "pairs: 50 publishers, each to its own subscriber",
		Args: []string{"-scenario", "pairs", "-n", "50"}, Fixed: 5000, Deliveries: 1},
	{Name: "fanin100", Title: "fan-in: 100 publishers → 1 wildcard subscriber",
		Args: []string{"-scenario", "fanin", "-n", "100", "-subs", "1"}, Fixed: 5000, Deliveries: 1},
	{Name: "fanout100", Title: "fan-out: 1 publisher → 100 subscribers",
		Args: []string{"-scenario", "fanout", "-n", "100"}, Fixed: 300, Deliveries: 100},
	{Name: "fanout1000", Title: "fan-out: 1 publisher → 1,000 subscribers",
		Args: []string{"-scenario", "fanout", "-n", "1000"}, Fixed: 30, Deliveries: 1000},
}

// testCase is one cell of the matrix, run once against each broker.
type testCase struct {
	Scen *scenario
	QoS  int
	Size int
	Rate float64 // offered publishes/s; 0 = as fast as loadgen's window allows
}

func (c testCase) name() string {
	r := "max"
	if c.Rate > 0 {
		r = strconv.FormatFloat(c.Rate, 'f', -1, 64)
	}
	return fmt.Sprintf("%s-q%d-%dB-%s", c.Scen.Name, c.QoS, c.Size, r)
}

// matrix returns the cases to run: every scenario at QoS 0 and 1, 64 B and
// 1 KiB, fixed and maximum rate; quick keeps QoS 1 and 64 B only.
func matrix(quick bool) []testCase {
	var out []testCase
	for i := range scenarios {
		s := &scenarios[i]
		for _, qos := range []int{0, 1} {
			for _, size := range []int{64, 1024} {
				if quick && (qos != 1 || size != 64) {
					continue
				}
				for _, rate := range []float64{s.Fixed, 0} {
					out = append(out, testCase{Scen: s, QoS: qos, Size: size, Rate: rate})
				}
			}
		}
	}
	return out
}

// record is what one run measured, taken from loadgen's JSON result.
type record struct {
	Case     string  `json:"case"`
	Scenario string  `json:"scenario"`
	QoS      int     `json:"qos"`
	Size     int     `json:"size"`
	Rate     float64 `json:"rate"` // offered publishes/s, 0 = maximum
	Broker   string  `json:"broker"`
	Attempt  int     `json:"attempt"`

	SentPerSec     float64 `json:"sent_per_s"`
	ReceivedPerSec float64 `json:"delivered_per_s"`
	Expected       int64   `json:"expected"`
	Lost           int64   `json:"lost"`
	LossPct        float64 `json:"loss_pct"`
	Unsent         int64   `json:"unsent"`
	P50Us          int64   `json:"p50_us"`
	P99Us          int64   `json:"p99_us"`
	P999Us         int64   `json:"p999_us"`
	CPUWindowUs    int64   `json:"cpu_window_us"`
	CPUPerMsgUs    float64 `json:"cpu_per_msg_us"`
	// SysPerMsgUs is the kernel's part of CPUPerMsgUs (stime).
	SysPerMsgUs   float64 `json:"sys_per_msg_us"`
	RSSBaselineKB int64   `json:"rss_baseline_kb"` // before loadgen's first connection
	RSSStartKB    int64   `json:"rss_start_kb"`
	RSSEndKB      int64   `json:"rss_end_kb"`
	RSSPerConn    float64 `json:"rss_per_conn_bytes,omitempty"`
	// AnonPerConn is RSSPerConn for anonymous memory alone (RssAnon),
	// without the executable's pages mapped from the page cache.
	AnonPerConn float64 `json:"rss_anon_per_conn_bytes,omitempty"`
	Connections int64   `json:"connections"`
	// VoluntaryCSPerMsg and InvoluntaryCSPerMsg are the broker's context
	// switches per delivered message in the window, over all its threads:
	// the voluntary ones count its wake-ups.
	VoluntaryCSPerMsg   float64 `json:"voluntary_ctx_switches_per_msg"`
	InvoluntaryCSPerMsg float64 `json:"involuntary_ctx_switches_per_msg"`
	// OtherCPUPct is the CPU that processes other than the broker and
	// loadgen used while loadgen ran, in % of one core.
	OtherCPUPct float64 `json:"other_cpu_pct"`
	// BrokerCPUTotalUs is the broker's CPU over its whole life (setup and
	// drain included), read just before it was stopped.
	BrokerCPUTotalUs int64 `json:"broker_cpu_total_us"`
	Sustained        bool  `json:"sustained"` // fixed rate: no loss, nothing unsent, deliveries ≥ 98% of offered
	// Notes are loadgen's warnings and errors, and anything else a reader
	// of the figures must know.
	Notes   []string `json:"notes,omitempty"`
	JSON    string   `json:"json"`              // loadgen's raw result, relative to the results directory
	Profile string   `json:"profile,omitempty"` // loopmq's CPU profile of the run, relative too
	Err     string   `json:"error,omitempty"`
}

// runner runs loadgen against fresh brokers and keeps the records.
type runner struct {
	loadgen  string
	kinds    []brokerKind
	reg      *procs
	out      string // results directory
	scratch  string // temporary files (Mosquitto configs)
	duration time.Duration
	warmup   time.Duration
	log      func(format string, args ...any)
}

// setupTimeout bounds loadgen's connection setup; every run's total time is
// bounded by runBound.
const setupTimeout = 30 * time.Second

// Drain after the schedule: loadgen's default at a fixed rate, where
// nothing backs up; at maximum rate long enough for a broker that queued
// seconds of deliveries to hand them over, so that "lost" counts drops,
// not messages still queued when counting stopped. The drain ends as soon
// as nothing has arrived for 250 ms.
const (
	drainFixed = 3 * time.Second
	drainMax   = 15 * time.Second
)

func (r *runner) runBound(window, drain time.Duration) time.Duration {
	const loadgenGrace, margin = 5 * time.Second, 15 * time.Second
	return setupTimeout + r.warmup + window + drain + loadgenGrace + margin
}

// runCase runs c against one broker kind (a fresh process) and returns its
// record; an error means the run could not be made or read at all.
func (r *runner) runCase(ctx context.Context, c testCase, kind brokerKind, attempt int) (record, error) {
	base := fmt.Sprintf("%s-%s-%d", kind.name, c.name(), attempt)
	rec := record{Case: c.name(), Scenario: c.Scen.Name, QoS: c.QoS, Size: c.Size, Rate: c.Rate,
		Broker: kind.name, Attempt: attempt, JSON: filepath.Join("raw", base+".json")}
	profile := ""
	if kind.name == nameLoopmq {
		rec.Profile = filepath.Join("pprof", base+".pprof")
		profile = filepath.Join(r.out, rec.Profile)
	}
	args := append([]string{}, c.Scen.Args...)
	drain := drainFixed
	if c.Rate == 0 {
		drain = drainMax
	}
	args = append(args, "-qos", strconv.Itoa(c.QoS), "-size", strconv.Itoa(c.Size),
		"-rate", strconv.FormatFloat(c.Rate, 'f', -1, 64),
		"-duration", r.duration.String(), "-warmup", r.warmup.String(), "-drain", drain.String())
	res, other, brokerTotal, err := r.runLoadgen(ctx, kind, base, profile, args, r.duration, drain)
	if err != nil {
		rec.Err = err.Error()
		return rec, err
	}
	fillRecord(&rec, res, other, brokerTotal)
	if c.Rate > 0 {
		want := c.Rate * float64(c.Scen.Deliveries)
		rec.Sustained = rec.Lost == 0 && rec.Unsent == 0 && rec.ReceivedPerSec >= 0.98*want
		if !rec.Sustained {
			rec.Notes = append(rec.Notes, fmt.Sprintf("fixed rate NOT sustained: %.0f of %.0f deliveries/s, %d lost, %d unsent",
				rec.ReceivedPerSec, want, rec.Lost, rec.Unsent))
		}
	}
	return rec, nil
}

// idleRun is the idle-connection memory run.
type idleRun struct {
	Conns     int
	Procs     int
	SourceIPs string
}

// runIdle holds run.Conns idle connections to a fresh broker of kind.
func (r *runner) runIdle(ctx context.Context, run idleRun, kind brokerKind) (record, error) {
	base := fmt.Sprintf("%s-idle%d", kind.name, run.Conns)
	rec := record{Case: fmt.Sprintf("idle%d", run.Conns), Scenario: "conn", Broker: kind.name,
		JSON: filepath.Join("raw", base+".json")}
	const hold = 3 * time.Second
	args := []string{"-scenario", "conn", "-n", strconv.Itoa(run.Conns), "-procs", strconv.Itoa(run.Procs),
		"-duration", hold.String(), "-warmup", "2s"}
	if run.SourceIPs != "" {
		args = append(args, "-source-ips", run.SourceIPs)
	}
	res, other, brokerTotal, err := r.runLoadgen(ctx, kind, base, "", args, hold, drainFixed)
	if err != nil {
		rec.Err = err.Error()
		return rec, err
	}
	fillRecord(&rec, res, other, brokerTotal)
	if res.Connections.Up != int64(run.Conns) {
		rec.Notes = append(rec.Notes, fmt.Sprintf("only %d of %d connections up", res.Connections.Up, run.Conns))
	}
	return rec, nil
}

// runLoadgen starts a fresh broker, runs loadgen with args against it,
// stops the broker and returns loadgen's result, the CPU other processes
// used meanwhile (% of one core) and the broker's whole-life CPU time.
func (r *runner) runLoadgen(ctx context.Context, kind brokerKind, base, profile string, args []string,
	window, drain time.Duration) (res *loadgen.Result, otherPct float64, brokerTotal time.Duration, err error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, err
	}
	b, err := startBroker(r.reg, kind, r.scratch, filepath.Join(r.out, "raw", base+".broker.log"), profile)
	if err != nil {
		return nil, 0, 0, err
	}
	defer func() {
		if b.stop(r.reg) {
			r.log("  %s did not stop within %v of SIGTERM; killed", kind.name, brokerStopGrace)
		}
	}()
	jsonPath := filepath.Join(r.out, "raw", base+".json")
	args = append(args, "-broker", b.addr(), "-broker-pid", strconv.Itoa(b.pid()),
		"-setup-timeout", setupTimeout.String(), "-json", jsonPath, "-quiet")
	logf, err := os.Create(filepath.Join(r.out, "raw", base+".log"))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("loadgen log: %w", err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "$ loadgen %s\n", joinArgs(args))

	rctx, cancel := context.WithTimeout(ctx, r.runBound(window, drain))
	defer cancel()
	cmd := exec.CommandContext(rctx, r.loadgen, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	ownGroup(cmd)
	// On interrupt or timeout, stop loadgen and its workers (its own
	// process group) politely first: it then still writes its result.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second

	busy0, _ := machineBusy()
	bcpu0, _ := procCPU(b.pid())
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, 0, fmt.Errorf("start loadgen: %w", err)
	}
	r.reg.add(cmd.Process.Pid)
	runErr := cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // workers left behind, if any
	r.reg.remove(cmd.Process.Pid)
	elapsed := time.Since(start)
	busy1, _ := machineBusy()
	bcpu1, _ := procCPU(b.pid())
	brokerTotal = bcpu1 // the broker's whole life so far: loadgen has disconnected
	if st := cmd.ProcessState; st != nil && elapsed > 0 {
		// wait4's rusage includes loadgen's waited-for worker processes.
		other := (busy1 - busy0) - (bcpu1 - bcpu0) - (st.UserTime() + st.SystemTime())
		otherPct = max(0, 100*other.Seconds()/elapsed.Seconds())
	}

	if rctx.Err() != nil && ctx.Err() == nil {
		return nil, otherPct, brokerTotal, fmt.Errorf("loadgen did not finish within %v (log: raw/%s.log)", r.runBound(window, drain), base)
	}
	res, jerr := readResult(jsonPath)
	if jerr != nil {
		if runErr != nil {
			return nil, otherPct, brokerTotal, fmt.Errorf("loadgen: %v; no result (log: raw/%s.log)", runErr, base)
		}
		return nil, otherPct, brokerTotal, jerr
	}
	if runErr != nil && ctx.Err() != nil {
		return res, otherPct, brokerTotal, ctx.Err()
	}
	return res, otherPct, brokerTotal, nil
}

func readResult(path string) (*loadgen.Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read loadgen result: %w", err)
	}
	var res loadgen.Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("decode loadgen result %s: %w", path, err)
	}
	if res.Latency == nil {
		res.Latency = loadgen.NewHistogram()
	}
	return &res, nil
}

// fillRecord copies the figures of res into rec.
func fillRecord(rec *record, res *loadgen.Result, otherPct float64, brokerTotal time.Duration) {
	m := &res.Messages
	rec.SentPerSec, rec.ReceivedPerSec = m.SentPerSec, m.ReceivedPerSec
	rec.Expected, rec.Lost, rec.LossPct, rec.Unsent = m.Expected, m.Lost, m.LossPct, m.Unsent
	s := res.Latency.Summary()
	rec.P50Us, rec.P99Us, rec.P999Us = s.P50, s.P99, s.P999
	rec.Connections = res.Connections.Up
	rec.OtherCPUPct = otherPct
	rec.BrokerCPUTotalUs = brokerTotal.Microseconds()
	if b := res.Broker; b != nil {
		if b.Err != "" {
			rec.Notes = append(rec.Notes, "broker sampling: "+b.Err)
		}
		rec.CPUWindowUs, rec.CPUPerMsgUs, rec.SysPerMsgUs = b.CPUWindowUs, b.CPUPerMsgUs, b.SysPerMsgUs
		rec.RSSBaselineKB, rec.RSSStartKB, rec.RSSEndKB = b.RSSBaselineKB, b.RSSStartKB, b.RSSEndKB
		rec.RSSPerConn = b.RSSPerConnBytes
		rec.AnonPerConn = b.AnonPerConnBytes
		rec.VoluntaryCSPerMsg, rec.InvoluntaryCSPerMsg = b.VoluntaryPerMsg, b.InvoluntaryPerMsg
	} else {
		rec.Notes = append(rec.Notes, "no broker figures in loadgen's result")
	}
	rec.Notes = append(rec.Notes, res.Warnings...)
	for _, e := range res.Errors {
		rec.Notes = append(rec.Notes, fmt.Sprintf("%d × %s (e.g. %s)", e.Count, e.Kind, e.Example))
	}
	for _, w := range res.Workers {
		if w.Exit != "" {
			rec.Notes = append(rec.Notes, fmt.Sprintf("worker %d failed: %s", w.Index, w.Exit))
		}
	}
}

// errInterrupted is returned when SIGINT or SIGTERM ended the matrix.
var errInterrupted = errors.New("interrupted")

// joinArgs quotes a command line for a log, as a shell would read it.
func joinArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = a
		if a == "" || strings.ContainsAny(a, " \t\"'\\$*?") {
			q[i] = strconv.Quote(a)
		}
	}
	return strings.Join(q, " ")
}
