package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line's settings.
type options struct {
	loopmq, loadgen, mosquitto string
	out, docs                  string
	quick                      bool
	duration, warmup           time.Duration
	only                       string
	busyLimit                  float64
	retries                    int
	fromSummary                bool
	idle                       idleRun
	command                    string // how the docs say the run was made
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.loopmq, "loopmq", "", "loopmq binary (default: go build ./cmd/loopmq into a temporary directory)")
	fs.StringVar(&o.loadgen, "loadgen", "", "loadgen binary (default: go build ./cmd/loadgen into a temporary directory)")
	fs.StringVar(&o.mosquitto, "mosquitto", "/usr/sbin/mosquitto", "Mosquitto binary")
	fs.StringVar(&o.out, "out", "", "results `directory` (default bench/compare/results, with -quick bench/compare/results/quick)")
	fs.StringVar(&o.docs, "docs", "docs/benchmarks.md", "docs `file` whose \""+sectionTitle+"\" section is rewritten; \"\" for none (-quick: none unless given)")
	fs.BoolVar(&o.quick, "quick", false, "reduced matrix (QoS 1, 64 B), 2 s windows, 3,000 idle connections: a smoke run of about 2 minutes")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measured window of each run (-quick: 2s)")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "warm-up before each window (-quick: 500ms)")
	fs.StringVar(&o.only, "only", "", "run only the cases whose name contains this (e.g. fanout1000-q1); skips the idle run and the docs")
	fs.Float64Var(&o.busyLimit, "busy-limit", 25, "re-run a case when other processes used more than this `percent` of one core during it")
	fs.IntVar(&o.retries, "retries", 1, "re-runs of a case allowed by -busy-limit")
	fs.BoolVar(&o.fromSummary, "from-summary", false, "run nothing: rewrite the docs section from the results directory's summary.json")
	fs.IntVar(&o.idle.Conns, "idle-conns", 19000, "idle connections of the memory run (-quick: 3000); 0 skips it")
	fs.IntVar(&o.idle.Procs, "idle-procs", 3, "loadgen processes of the idle run")
	fs.StringVar(&o.idle.SourceIPs, "idle-source-ips", "127.0.0.2-4", "source addresses of the idle run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		if !set["duration"] {
			o.duration = 2 * time.Second
		}
		if !set["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
		if !set["idle-conns"] {
			o.idle.Conns = 3000
		}
	}
	if o.out == "" {
		o.out = filepath.Join("bench", "compare", "results")
		if o.quick || o.only != "" {
			o.out = filepath.Join(o.out, "quick")
		}
	}
	if (o.quick || o.only != "") && !set["docs"] {
		o.docs = ""
	}
	if o.only != "" {
		o.idle.Conns = 0
	}
	if o.duration <= 0 || o.warmup < 0 {
		return nil, errors.New("-duration must be positive and -warmup not negative")
	}
	// The docs quote the command without the binaries' temporary paths.
	var extra []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "loopmq", "loadgen", "mosquitto", "out", "docs":
		default:
			extra = append(extra, "-"+f.Name+"="+f.Value.String())
		}
	})
	o.command = "make bench-compare"
	if len(extra) > 0 {
		o.command += " COMPARE_FLAGS='" + strings.Join(extra, " ") + "'"
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reg := newProcs()
	defer reg.killAll()
	if err := compare(ctx, o, reg, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "compare:", err)
		if ctx.Err() != nil {
			return 130
		}
		return 1
	}
	return 0
}

func compare(ctx context.Context, o *options, reg *procs, stdout, stderr io.Writer) error {
	if o.fromSummary {
		return rewriteFromSummary(o, stderr)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	scratch, err := os.MkdirTemp("", "loopmq-compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	if o.loopmq == "" || o.loadgen == "" {
		logf("building cmd/loopmq and cmd/loadgen into %s", scratch)
		build := exec.CommandContext(ctx, "go", "build", "-o", scratch+string(os.PathSeparator), "./cmd/loopmq", "./cmd/loadgen")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("go build: %w", err)
		}
		o.loopmq, o.loadgen = filepath.Join(scratch, "loopmq"), filepath.Join(scratch, "loadgen")
	}
	for _, bin := range []string{o.loopmq, o.loadgen, o.mosquitto} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	if o.docs != "" {
		if _, err := os.Stat(o.docs); err != nil {
			return fmt.Errorf("docs: %w (run from the repository's root, or pass -docs)", err)
		}
	}
	// raw/ and pprof/ hold this run's files only.
	for _, d := range []string{"raw", "pprof"} {
		if err := os.RemoveAll(filepath.Join(o.out, d)); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(o.out, d), 0o755); err != nil {
			return err
		}
	}

	cases := matrix(o.quick)
	if o.only != "" {
		cases = slices.DeleteFunc(cases, func(c testCase) bool { return !strings.Contains(c.name(), o.only) })
		if len(cases) == 0 {
			return fmt.Errorf("-only %q matches no case", o.only)
		}
	}
	s := &summary{Started: time.Now(), Command: o.command, Quick: o.quick,
		Duration: o.duration.String(), Warmup: o.warmup.String(), Machine: describeMachine(o.mosquitto), IdleRun: o.idle}
	logf("%d cases × 2 brokers, %v windows; load average %s; results in %s", len(cases), o.duration, s.Machine.LoadAtStart, o.out)

	r := &runner{loadgen: o.loadgen, kinds: []brokerKind{loopmqKind(o.loopmq), mosquittoKind(o.mosquitto)},
		reg: reg, out: o.out, scratch: scratch, duration: o.duration, warmup: o.warmup, log: logf}
	var runErr error
	for i, c := range cases {
		kinds := slices.Clone(r.kinds)
		if i%2 == 1 {
			slices.Reverse(kinds) // alternate who goes first
		}
		var best []record
		bestBusy := 0.0
		for attempt := 1; attempt <= 1+o.retries; attempt++ {
			var recs []record
			busy := 0.0
			for _, k := range kinds {
				rec, err := r.runCase(ctx, c, k, attempt)
				if ctx.Err() != nil {
					runErr = errInterrupted
					break
				}
				if err != nil {
					logf("[%d/%d] %s %s: %v", i+1, len(cases), c.name(), k.name, err)
				} else {
					logf("[%d/%d] %s", i+1, len(cases), oneLine(&rec))
				}
				recs = append(recs, rec)
				busy = max(busy, rec.OtherCPUPct)
			}
			if runErr != nil {
				break
			}
			if best == nil || busy < bestBusy {
				best, bestBusy = recs, busy
			}
			if busy <= o.busyLimit {
				break
			}
			if attempt <= o.retries {
				s.Retried++
				logf("  other processes used %.0f%% of a core during %s: running it again", busy, c.name())
			}
		}
		s.Runs = append(s.Runs, best...)
		if runErr != nil {
			break
		}
	}
	if runErr == nil && o.idle.Conns > 0 {
		for _, k := range r.kinds {
			rec, err := r.runIdle(ctx, o.idle, k)
			if ctx.Err() != nil {
				runErr = errInterrupted
				break
			}
			if err != nil {
				logf("idle %d %s: %v", o.idle.Conns, k.name, err)
			} else {
				logf("idle %d %s: %s B per connection (%d up), RSS %s → %s", o.idle.Conns, k.name,
					fmtInt(rec.RSSPerConn), rec.Connections, fmtKB(float64(rec.RSSStartKB)), fmtKB(float64(rec.RSSEndKB)))
			}
			s.Idle = append(s.Idle, rec)
		}
	}
	s.Machine.LoadAtFinish = loadAverage()
	s.Elapsed = time.Since(s.Started).Seconds()

	if err := writeProfiles(o.out, s, logf); err != nil {
		logf("CPU profile: %v", err)
	}
	if err := writeSummary(filepath.Join(o.out, "summary.json"), s); err != nil {
		return err
	}
	section := renderSection(s, cases, "")
	fmt.Fprint(stdout, section)
	if runErr != nil {
		return fmt.Errorf("%w: partial results in %s; docs not written", runErr, o.out)
	}
	if o.docs != "" {
		if err := writeDocs(o.docs, s, cases); err != nil {
			return err
		}
		logf("wrote section %q of %s", sectionTitle, o.docs)
	}
	return nil
}

// oneLine is a run's progress line.
func oneLine(r *record) string {
	rate := "max"
	if r.Rate > 0 {
		rate = fmtInt(r.Rate) + "/s"
	}
	s := fmt.Sprintf("%s %-9s rate %-7s delivered %9s/s  %6.2f µs/msg  %5.2f wake-ups/msg  p99 %9s  loss %s  other %2.0f%%",
		r.Case, r.Broker, rate, fmtInt(r.ReceivedPerSec), r.CPUPerMsgUs, r.VoluntaryCSPerMsg, fmtUs(float64(r.P99Us)), fmtLoss(r.LossPct), r.OtherCPUPct)
	for _, n := range r.Notes {
		s += "\n    note: " + n
	}
	return s
}

// writeProfiles merges the kept loopmq runs' CPU profiles and writes the
// merged profile and its top functions, overall and per scenario.
func writeProfiles(out string, s *summary, logf func(string, ...any)) error {
	byGroup := map[string][]string{} // scenario, fixed or max rate
	var all []string
	for _, r := range s.Runs {
		if r.Broker != nameLoopmq || r.Profile == "" || r.Err != "" {
			continue
		}
		path := filepath.Join(out, r.Profile)
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			logf("no CPU profile for %s (%s)", r.Case, path)
			continue
		}
		all = append(all, path)
		byGroup[rateGroup(r.Scenario, r.Rate)] = append(byGroup[rateGroup(r.Scenario, r.Rate)], path)
		s.ProfiledCPUUs += r.BrokerCPUTotalUs
	}
	p, err := readProfiles(all)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "loopmq-cpu.pprof"))
	if err != nil {
		return err
	}
	if err := p.Write(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write merged profile: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	s.Profile = topFunctions(p, 15)
	s.Profile.Profiles = len(all)
	s.Syscalls = syscallCallers(p, 10)
	s.Syscalls.Profiles = len(all)
	var top strings.Builder
	_ = writeTop(&top, "loopmq CPU, every run of the matrix merged (bench/compare)", s.Profile)
	top.WriteString("\n")
	_ = writeTop(&top, "of which in system calls and thread parking, by call ← caller", s.Syscalls)
	if err := os.WriteFile(filepath.Join(out, "loopmq-cpu-top15.txt"), []byte(top.String()), 0o644); err != nil {
		return err
	}
	var per strings.Builder
	for _, sc := range scenarios {
		for _, rate := range []float64{sc.Fixed, 0} {
			paths := byGroup[rateGroup(sc.Name, rate)]
			if len(paths) == 0 {
				continue
			}
			sp, err := readProfiles(paths)
			if err != nil {
				return err
			}
			t := topFunctions(sp, 15)
			t.Profiles = len(paths)
			_ = writeTop(&per, "loopmq CPU, "+rateGroup(sc.Title, rate), t)
			per.WriteString("\n")
			sys := syscallCallers(sp, 10)
			sys.Profiles = len(paths)
			_ = writeTop(&per, "of which in system calls and thread parking, by call ← caller", sys)
			per.WriteString("\n\n")
		}
	}
	return os.WriteFile(filepath.Join(out, "loopmq-cpu-top15-by-scenario.txt"), []byte(per.String()), 0o644)
}

// rateGroup names a scenario's fixed-rate or maximum-rate runs.
func rateGroup(scen string, rate float64) string {
	if rate > 0 {
		return scen + ", fixed rate"
	}
	return scen + ", maximum rate"
}

// rewriteFromSummary renders the docs section again from a saved
// summary, e.g. after the renderer or the kept subsection changed.
func rewriteFromSummary(o *options, stderr io.Writer) error {
	b, err := os.ReadFile(filepath.Join(o.out, "summary.json"))
	if err != nil {
		return err
	}
	var s summary
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("summary: %w", err)
	}
	cases := slices.DeleteFunc(matrix(s.Quick), func(c testCase) bool { return s.find(c.name(), nameLoopmq) == nil })
	if o.docs == "" {
		return errors.New("-from-summary needs -docs")
	}
	if err := writeDocs(o.docs, &s, cases); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote section %q of %s from %s\n", sectionTitle, o.docs, filepath.Join(o.out, "summary.json"))
	return nil
}

func writeSummary(path string, s *summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// describeMachine collects what the docs say about the machine.
func describeMachine(mosquitto string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), LoadAtStart: loadAverage()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if out, _ := exec.Command(mosquitto, "-h").CombinedOutput(); len(out) > 0 {
		first, _, _ := strings.Cut(string(out), "\n")
		m.Mosquitto = strings.TrimPrefix(strings.TrimSpace(first), "mosquitto version ")
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "status", "--porcelain", "--", "engine").Output(); err == nil {
		m.DirtyEngine = len(strings.TrimSpace(string(out))) > 0
	}
	return m
}

// loadAverage is /proc/loadavg's 1, 5 and 15 minute figures.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " / ")
}
