package main

import (
	"bytes"
	"cmp"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sectionTitle is the heading of the docs section this program owns.
const sectionTitle = "## loopmq vs Mosquitto (issue 6)"

// keptSubsection is a subsection of it written by people and kept when the
// section is regenerated.
const keptSubsection = "### Reading"

// machine describes where the figures come from.
type machine struct {
	Cores        int    `json:"cores"`
	CPU          string `json:"cpu"`
	Kernel       string `json:"kernel"`
	Go           string `json:"go"`
	Mosquitto    string `json:"mosquitto"`
	Commit       string `json:"commit"`
	DirtyEngine  bool   `json:"dirty_engine"` // engine/ had uncommitted changes when loopmq was built
	LoadAtStart  string `json:"load_at_start"`
	LoadAtFinish string `json:"load_at_finish"`
}

// summary is everything a run of this program produced; it is written as
// results/summary.json and rendered into the docs section.
type summary struct {
	Started  time.Time  `json:"started"`
	Elapsed  float64    `json:"elapsed_s"`
	Command  string     `json:"command"`
	Quick    bool       `json:"quick"`
	Duration string     `json:"duration"`
	Warmup   string     `json:"warmup"`
	Machine  machine    `json:"machine"`
	Runs     []record   `json:"runs"` // the kept attempt of every case and broker
	Idle     []record   `json:"idle"`
	IdleRun  idleRun    `json:"idle_run"`
	Profile  profileTop `json:"loopmq_profile_top"`
	Syscalls profileTop `json:"loopmq_profile_syscalls"` // Profile's system call time by call and caller
	// ProfiledCPUUs is the CPU time loopmq's /proc figures counted over the
	// lifetimes of the profiled processes, to compare with Profile.Total.
	ProfiledCPUUs int64 `json:"profiled_cpu_us"`
	Retried       int   `json:"retried_cases"`
}

// find returns the record of case c and broker b.
func (s *summary) find(c, b string) *record {
	for i := range s.Runs {
		if s.Runs[i].Case == c && s.Runs[i].Broker == b {
			return &s.Runs[i]
		}
	}
	return nil
}

// renderSection renders the docs section, heading included, ending in a
// newline. kept is the hand-written subsection to carry over ("" for none).
func renderSection(s *summary, cases []testCase, kept string) string {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := &s.Machine
	p("%s\n\n", sectionTitle)
	p("Command: `%s` (about %s here). It builds `cmd/loopmq`, `cmd/loadgen` and `bench/compare` into a\n", s.Command, fmtElapsed(s.Elapsed))
	p("temporary directory and runs the matrix below once against each broker; raw results are in\n")
	p("`bench/compare/results/` (`summary.json`, loadgen's JSON per run under `raw/`, loopmq's CPU\n")
	p("profiles). `make bench-compare COMPARE_FLAGS=-quick` is a two-minute smoke run that leaves this\n")
	p("section alone.\n\n")
	dirty := ""
	if m.DirtyEngine {
		dirty = " with uncommitted changes in `engine/`"
	}
	p("Machine: %d cores (%s), Linux %s, %s. loopmq at %s%s; Mosquitto %s (Debian package).\n",
		m.Cores, m.CPU, m.Kernel, m.Go, m.Commit, dirty, m.Mosquitto)
	p("Run %s; load average %s at the start, %s at the end.\n\n", s.Started.UTC().Format("2006-01-02 15:04 MST"), m.LoadAtStart, m.LoadAtFinish)

	p("**Broker CPU time per delivered message is the headline figure.** loadgen and the broker share\n")
	p("the %d cores, so messages per second at maximum rate measure the generator as much as the\n", m.Cores)
	p("broker; CPU per message (utime+stime of the broker process from `/proc/PID/stat` over the\n")
	p("measured window, divided by the messages delivered in it) depends far less on who else had\n")
	p("the cores. `/proc` counts in 10 ms ticks%s.\n", tickError(s))
	p("Ratios are loopmq / Mosquitto: below 1.00 means loopmq used less CPU per message, had the lower\n")
	p("p99, or delivered less.\n\n")

	p("How each run is made: a fresh broker on a free loopback port, one loadgen process against it\n")
	p("(`loadgen -broker 127.0.0.1:PORT -broker-pid PID -json FILE -duration %s -warmup %s` plus the\n", s.Duration, s.Warmup)
	p("scenario's flags and `-qos`, `-size`, `-rate`), then the broker is stopped: the two brokers are\n")
	p("never loaded at once. Each case runs against both brokers back to back, the order alternating\n")
	p("between cases. Latency is from each message's intended send time (open loop) to its arrival.\n")
	p("\"max\" is `-rate 0`: each publisher sends as fast as a window of 100 messages allows (QoS 1:\n")
	p("unacknowledged; QoS 0: not yet fenced by a PINGRESP), so what it measures is the broker and\n")
	p("generator saturated together; latency there is queueing. Those runs drain for up to %v\n", drainMax)
	p("(`-drain`; it ends after 250 ms without a delivery) so that loss counts messages the broker\n")
	p("dropped rather than messages still queued when counting stopped. At maximum rate the CPU per\n")
	p("delivered message also carries the work on messages a broker accepted and then dropped, so\n")
	p("where loss is high it is not a per-message cost. Fixed rates are chosen so that both brokers\n")
	p("sustain them with no loss at QoS 1 and 1 KiB (checked on every run).\n\n")

	p("| scenario | loadgen flags | fixed rate (publishes/s) | deliveries/s at fixed rate |\n|---|---|---|---|\n")
	for _, sc := range scenarios {
		p("| %s | `%s` | %s | %s |\n", sc.Title, strings.Join(sc.Args, " "), fmtInt(sc.Fixed), fmtInt(sc.Fixed*float64(sc.Deliveries)))
	}
	p("\nBroker settings, equal where both have them: in-flight window %d per client (loopmq's default;\n", maxInflight)
	p("Mosquitto's is 20), queue %s messages per client (both default to 1,000; raised so neither\n", fmtInt(maxQueued))
	p("drops at the fixed rates and drops at maximum rate come from each broker's policy, not a\n")
	p("small setting). Mosquitto also bounds a client's waiting QoS 0 packets by the same count;\n")
	p("loopmq drops QoS 0 to a client with more than 4 MiB unsent (`MaxOutbound`, no flag).\n\n")
	p("```\nloopmq %s -cpuprofile FILE   # 2 event loops (one per CPU)\n```\n\n", strings.Join(loopmqArgs(0), " "))
	p("```\n# mosquitto -c FILE\n%s```\n\n", mosquittoConfig(0))

	other := make([]float64, 0, len(s.Runs))
	for _, r := range s.Runs {
		other = append(other, r.OtherCPUPct)
	}
	if len(other) > 0 {
		slices.Sort(other)
		p("Other work on the machine during the runs (CPU used by processes other than the broker and\n")
		p("loadgen, from `/proc/stat`): median %.0f%%, max %.0f%% of one core; %d case(s) were run again\n",
			other[len(other)/2], other[len(other)-1], s.Retried)
		p("because it exceeded the limit, keeping the quieter attempt.\n\n")
	}

	for i := range scenarios {
		sc := &scenarios[i]
		var rows []testCase
		for _, c := range cases {
			if c.Scen == sc {
				rows = append(rows, c)
			}
		}
		if len(rows) == 0 {
			continue
		}
		p("### %s\n\n", upperFirst(sc.Title))
		p("Each cell: loopmq / Mosquitto (ratio).\n\n")
		p("| QoS | payload | rate | delivered/s | CPU µs per msg | p99 | p50 | loss | RSS at end |\n")
		p("|---|---|---|---|---|---|---|---|---|\n")
		var notes []string
		for _, c := range rows {
			l, mq := s.find(c.name(), nameLoopmq), s.find(c.name(), nameMosquitto)
			mark := ""
			for _, r := range []*record{l, mq} {
				if r == nil {
					continue
				}
				for _, n := range r.notes() {
					notes = append(notes, fmt.Sprintf("%s, %s: %s", caseLabel(c), brokerTitle(r.Broker), n))
					mark = fmt.Sprintf(" [%d]", len(notes))
				}
			}
			rate := "max"
			if c.Rate > 0 {
				rate = fmtInt(c.Rate) + "/s"
			}
			p("| %d | %s | %s%s | %s | %s | %s | %s | %s | %s |\n", c.QoS, fmtSize(c.Size), rate, mark,
				pair(l, mq, func(r *record) float64 { return r.ReceivedPerSec }, fmtInt, true),
				pair(l, mq, func(r *record) float64 { return r.CPUPerMsgUs }, fmt2, true),
				pair(l, mq, func(r *record) float64 { return float64(r.P99Us) }, fmtUs, true),
				pair(l, mq, func(r *record) float64 { return float64(r.P50Us) }, fmtUs, false),
				pair(l, mq, func(r *record) float64 { return r.LossPct }, fmtLoss, false),
				pair(l, mq, func(r *record) float64 { return float64(r.RSSEndKB) }, fmtKB, false))
		}
		if len(notes) > 0 {
			p("\n")
			for i, n := range notes {
				p("[%d] %s  \n", i+1, n)
			}
		}
		p("\n")
	}

	renderWorse(&b, s, cases)

	p("### loopmq CPU profile, top 15\n\n")
	p("Flat CPU per function over every loopmq run of the matrix (the kept attempts' profiles merged;\n")
	p("setup and drain included), from `bench/compare/results/loopmq-cpu.pprof`.")
	if s.ProfiledCPUUs > 0 {
		p(" The profile holds\n%.1f s of samples; `/proc` counted %.1f s for the same processes.", s.Profile.Total.Seconds(), float64(s.ProfiledCPUUs)/1e6)
	}
	var fixed, all int64
	for _, r := range s.Runs {
		if r.Broker == nameLoopmq {
			all += r.BrokerCPUTotalUs
			if r.Rate > 0 {
				fixed += r.BrokerCPUTotalUs
			}
		}
	}
	if all > 0 {
		p(" The maximum-rate\nruns used %.0f%% of that CPU, so they dominate this list; the fixed-rate runs have their own", 100*float64(all-fixed)/float64(all))
		p("\nlists in `results/loopmq-cpu-top15-by-scenario.txt`.\n\n```\n")
	} else {
		p("\nPer-scenario tops are in `results/loopmq-cpu-top15-by-scenario.txt`.\n\n```\n")
	}
	var tb bytes.Buffer
	_ = writeTop(&tb, "loopmq, whole matrix", s.Profile)
	b.Write(tb.Bytes())
	p("```\n\n")
	p("The same profile's time in system calls and thread parking (the `Syscall6` and `futex` lines\n")
	p("above), split by call and by the first caller outside the syscall packages:\n\n```\n")
	tb.Reset()
	_ = writeTop(&tb, "loopmq, whole matrix, system calls", s.Syscalls)
	b.Write(tb.Bytes())
	p("```\n\n")

	if len(s.Idle) > 0 {
		renderIdle(&b, s)
	}
	if kept != "" {
		p("\n%s", kept)
		if !strings.HasSuffix(kept, "\n") {
			p("\n")
		}
	}
	return b.String()
}

// renderWorse lists, largest ratio first, the cases in which loopmq
// needed more CPU per message, delivered less at maximum rate, or had the
// higher p99 at a fixed rate.
func renderWorse(b *bytes.Buffer, s *summary, cases []testCase) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	type row struct {
		c     testCase
		ratio float64
		l, m  *record
	}
	list := func(title string, get func(*record) float64, keep func(testCase, float64) bool,
		line func(row) string) (n, of int) {
		var rs []row
		for _, c := range cases {
			l, m := s.find(c.name(), nameLoopmq), s.find(c.name(), nameMosquitto)
			if l == nil || m == nil || l.Err != "" || m.Err != "" || get(m) <= 0 || get(l) <= 0 {
				continue
			}
			of++
			if r := get(l) / get(m); keep(c, r) {
				rs = append(rs, row{c, r, l, m})
			}
		}
		slices.SortFunc(rs, func(a, b row) int { return cmp.Compare(b.ratio, a.ratio) })
		p("%s:\n\n", title)
		for _, r := range rs {
			p("- %s\n", line(r))
		}
		if len(rs) == 0 {
			p("- none\n")
		}
		p("\n")
		return len(rs), of
	}
	p("### Where loopmq costs more\n\n")
	p("Generated from the tables above, largest ratio first.\n\n")
	n, of := list("More CPU per delivered message than Mosquitto (ratio above 1.05)",
		func(r *record) float64 { return r.CPUPerMsgUs },
		func(_ testCase, r float64) bool { return r > 1.05 },
		func(r row) string {
			return fmt.Sprintf("%s: %.2f× (%.2f vs %.2f µs per message; p99 %s vs %s)", caseLabel(r.c), r.ratio,
				r.l.CPUPerMsgUs, r.m.CPUPerMsgUs, fmtUs(float64(r.l.P99Us)), fmtUs(float64(r.m.P99Us)))
		})
	p("(%d of %d cases; in the others loopmq needed at most 1.05× Mosquitto's CPU per message.)\n\n", n, of)
	list("Fewer deliveries per second than Mosquitto at maximum rate (ratio below 0.95; largest shortfall first)",
		func(r *record) float64 { return 1 / max(r.ReceivedPerSec, 1e-9) }, // inverted so the worst sorts first
		func(c testCase, r float64) bool { return c.Rate == 0 && r > 1/0.95 },
		func(r row) string {
			return fmt.Sprintf("%s: %.2f× (%s vs %s delivered/s; loss %s vs %s; %.2f vs %.2f µs per message)",
				caseLabel(r.c), 1/r.ratio, fmtInt(r.l.ReceivedPerSec), fmtInt(r.m.ReceivedPerSec),
				fmtLoss(r.l.LossPct), fmtLoss(r.m.LossPct), r.l.CPUPerMsgUs, r.m.CPUPerMsgUs)
		})
	list("Higher p99 latency than Mosquitto at a fixed rate (ratio above 1.2)",
		func(r *record) float64 { return float64(r.P99Us) },
		func(c testCase, r float64) bool { return c.Rate > 0 && r > 1.2 },
		func(r row) string {
			return fmt.Sprintf("%s: %.2f× (%s vs %s; p50 %s vs %s)", caseLabel(r.c), r.ratio,
				fmtUs(float64(r.l.P99Us)), fmtUs(float64(r.m.P99Us)), fmtUs(float64(r.l.P50Us)), fmtUs(float64(r.m.P50Us)))
		})
}

// renderIdle renders the idle-connection subsection.
func renderIdle(b *bytes.Buffer, s *summary) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("### Idle connections\n\n")
	p("`loadgen -scenario conn -n %d -procs %d -source-ips %s -warmup 2s -duration 3s`: every connection\n",
		s.IdleRun.Conns, s.IdleRun.Procs, s.IdleRun.SourceIPs)
	p("is opened and held idle (keep-alive 60 s, so no ping in the window); RSS per connection is the\n")
	p("broker's RSS at the end of the window minus its RSS before the first connection, divided by the\n")
	p("connections. It is the broker's own cost: the kernel's socket memory (about 5 KB per idle TCP\n")
	p("socket) is not in RSS. Limits that shape the run: a process may hold at most 20,000 file\n")
	p("descriptors (hard limit, cannot be raised), and the broker needs one per client, so the run\n")
	p("stays at %s connections; loadgen spreads them over %d processes (about %s each, far from\n",
		fmtInt(float64(s.IdleRun.Conns)), s.IdleRun.Procs, fmtInt(math.Ceil(float64(s.IdleRun.Conns)/float64(max(1, s.IdleRun.Procs)))))
	p("the same limit) and dials from %d source addresses, each with its own 28,232 ephemeral ports\n",
		len(splitRange(s.IdleRun.SourceIPs)))
	p("(32768–60999) towards the broker's address, so sockets left in TIME_WAIT by the matrix never\n")
	p("run one out. \"Anonymous\" counts RssAnon alone: without the pages of the broker's executable\n")
	p("and libraries mapped from the page cache, which running code for the first time also adds.\n\n")
	p("| broker | connections up | RSS before | RSS at end | RSS per connection | anonymous per connection |\n|---|---|---|---|---|---|\n")
	for _, r := range s.Idle {
		if r.Err != "" {
			p("| %s | failed: %s | | | | |\n", brokerTitle(r.Broker), r.Err)
			continue
		}
		p("| %s | %s | %s | %s | %s B | %s B |\n", brokerTitle(r.Broker), fmtInt(float64(r.Connections)),
			fmtKB(float64(r.RSSBaselineKB)), fmtKB(float64(r.RSSEndKB)), fmtInt(r.RSSPerConn), fmtInt(r.AnonPerConn))
	}
	if len(s.Idle) == 2 && s.Idle[0].RSSPerConn > 0 && s.Idle[1].RSSPerConn > 0 {
		p("\nloopmq / Mosquitto: %.2f×", s.Idle[0].RSSPerConn/s.Idle[1].RSSPerConn)
		if s.Idle[0].AnonPerConn > 0 && s.Idle[1].AnonPerConn > 0 {
			p(" (anonymous: %.2f×)", s.Idle[0].AnonPerConn/s.Idle[1].AnonPerConn)
		}
		p(".\n")
	}
	for _, r := range s.Idle {
		for _, n := range r.notes() {
			p("\n%s: %s\n", brokerTitle(r.Broker), n)
		}
	}
}

// notes returns what a reader must know about r besides its figures.
func (r *record) notes() []string {
	if r.Err != "" {
		return []string{"run failed: " + r.Err}
	}
	return r.Notes
}

// pair formats "loopmq / Mosquitto (ratio×)"; the ratio only when asked
// for and both are positive.
func pair(l, m *record, get func(*record) float64, format func(float64) string, ratio bool) string {
	val := func(r *record) (float64, string) {
		if r == nil || r.Err != "" {
			return 0, "–"
		}
		v := get(r)
		return v, format(v)
	}
	lv, ls := val(l)
	mv, ms := val(m)
	s := ls + " / " + ms
	if ratio && lv > 0 && mv > 0 {
		s += fmt.Sprintf(" (%.2f×)", lv/mv)
	}
	return s
}

// replaceSection returns doc with the section titled sectionTitle replaced
// by section (appended at the end when missing), and the kept subsection
// of the old section ("" when none). Everything outside the section is
// returned unchanged.
func replaceSection(doc, section string) string {
	start, end := findSection(doc)
	if start < 0 {
		sep := ""
		if doc != "" && !strings.HasSuffix(doc, "\n") {
			sep = "\n"
		}
		if doc != "" {
			sep += "\n"
		}
		return doc + sep + section
	}
	rest := doc[end:]
	if rest != "" && !strings.HasSuffix(section, "\n\n") {
		section += "\n"
	}
	return doc[:start] + section + rest
}

// findSection returns the byte range of the section titled sectionTitle:
// from its heading to the next level-2 heading or the end; -1 when absent.
func findSection(doc string) (start, end int) {
	start = -1
	off := 0
	for line := range strings.SplitAfterSeq(doc, "\n") {
		t := strings.TrimRight(line, "\r\n")
		switch {
		case start < 0 && t == sectionTitle:
			start = off
		case start >= 0 && strings.HasPrefix(t, "## "):
			return start, off
		}
		off += len(line)
	}
	if start < 0 {
		return -1, -1
	}
	return start, len(doc)
}

// keptPart returns the kept subsection of doc's section, from its heading
// to the next level-3 heading or the section's end, trailing blank lines
// trimmed; "" when absent.
func keptPart(doc string) string {
	start, end := findSection(doc)
	if start < 0 {
		return ""
	}
	sec := doc[start:end]
	i := strings.Index(sec, "\n"+keptSubsection)
	if i < 0 {
		return ""
	}
	sec = sec[i+1:]
	if j := strings.Index(sec[len(keptSubsection):], "\n### "); j >= 0 {
		sec = sec[:len(keptSubsection)+j+1]
	}
	return strings.TrimRight(sec, "\n") + "\n"
}

// writeDocs rewrites this program's section of the docs file at path.
func writeDocs(path string, s *summary, cases []testCase) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	doc := replaceSection(string(old), renderSection(s, cases, keptPart(string(old))))
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	if err := os.WriteFile(path, []byte(doc), st.Mode().Perm()); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	return nil
}

func caseLabel(c testCase) string {
	rate := "max rate"
	if c.Rate > 0 {
		rate = fmtInt(c.Rate) + "/s"
	}
	return fmt.Sprintf("%s QoS %d %s %s", c.Scen.Name, c.QoS, fmtSize(c.Size), rate)
}

func brokerTitle(name string) string {
	if name == nameMosquitto {
		return "Mosquitto"
	}
	return name
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// tickError says how much /proc's 10 ms ticks weigh on the smallest
// broker CPU time of any run's window.
func tickError(s *summary) string {
	least := int64(math.MaxInt64)
	for _, r := range s.Runs {
		if r.Err == "" && r.CPUWindowUs > 0 {
			least = min(least, r.CPUWindowUs)
		}
	}
	if least == math.MaxInt64 {
		return ""
	}
	return fmt.Sprintf(": the least broker CPU in any window here was %.2f s, so ±%.1f%%",
		float64(least)/1e6, 100*float64(time.Second/userHZ/time.Microsecond)/float64(least))
}

// fmtInt formats v rounded to an integer with thousands separators.
func fmtInt(v float64) string {
	n := int64(math.Round(v))
	neg := n < 0
	if neg {
		n = -n
	}
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func fmt2(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func fmtUs(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0f µs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2f ms", us/1e3)
	default:
		return fmt.Sprintf("%.2f s", us/1e6)
	}
}

func fmtKB(kb float64) string { return fmt.Sprintf("%.1f MiB", kb/1024) }

// fmtLoss formats a loss percentage; 0 is exact (nothing lost).
func fmtLoss(pct float64) string {
	switch {
	case pct == 0:
		return "0"
	case pct < 0.01:
		return "<0.01%"
	default:
		return fmt.Sprintf("%.2f%%", pct)
	}
}

func fmtSize(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func fmtElapsed(s float64) string {
	if s < 90 {
		return fmt.Sprintf("%.0f s", s)
	}
	return fmt.Sprintf("%.0f minutes", s/60)
}

// splitRange counts the addresses of a -source-ips value such as
// "127.0.0.2-4" (for the docs only).
func splitRange(s string) []string {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return strings.Split(s, ",")
	}
	i := strings.LastIndexByte(lo, '.')
	a, err1 := strconv.Atoi(lo[i+1:])
	z, err2 := strconv.Atoi(hi)
	if i < 0 || err1 != nil || err2 != nil || z < a {
		return []string{s}
	}
	out := make([]string, 0, z-a+1)
	for v := a; v <= z; v++ {
		out = append(out, lo[:i+1]+strconv.Itoa(v))
	}
	return out
}
