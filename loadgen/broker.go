package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// sysconf(_SC_CLK_TCK) returns 100 on every Linux architecture Go supports
// (the kernel fixes USER_HZ at 100 for user space), so it is a constant
// here rather than a cgo call.
const clockTicks = 100

// BrokerStats is the broker's CPU time and memory around the measured window.
type BrokerStats struct {
	PID         int   `json:"pid"`
	CPUWindowUs int64 `json:"cpu_window_us"` // utime+stime spent in the measured window
	// CPUPerMsgUs is CPUWindowUs per message delivered to a subscriber in
	// the window; 0 when nothing was delivered. With several brokers the
	// figures count this broker's share (loadgen spreads evenly).
	CPUPerMsgUs float64 `json:"cpu_per_msg_us"`
	// UserPerMsgUs and SysPerMsgUs split CPUPerMsgUs into user time
	// (utime: the broker's own code and its runtime) and kernel time
	// (stime: its system calls, and whatever softirq work the kernel
	// charges to it; on loopback TCP the receive path of a segment runs
	// in the sender's system call, so the broker pays for what it sends
	// its clients to receive, and they for what it receives).
	UserPerMsgUs    float64 `json:"user_per_msg_us"`
	SysPerMsgUs     float64 `json:"sys_per_msg_us"`
	Delivered       int64   `json:"delivered"`       // distinct messages delivered in the window, this broker's share
	Connections     int64   `json:"connections"`     // connections up, this broker's share
	RSSBaselineKB   int64   `json:"rss_baseline_kb"` // before any connection
	RSSStartKB      int64   `json:"rss_start_kb"`    // at the window's start
	RSSEndKB        int64   `json:"rss_end_kb"`      // at the window's end
	RSSPerConnBytes float64 `json:"rss_per_conn_bytes"`
	// The anonymous part of RSS (RssAnon: heap, stacks, the broker's own
	// memory), without the pages of its executable and libraries mapped
	// from files (RssFile), which the first connections grow too by
	// running code not run before (a Go binary's text is tens of MiB).
	AnonBaselineKB   int64   `json:"rss_anon_baseline_kb"`
	AnonEndKB        int64   `json:"rss_anon_end_kb"`
	AnonPerConnBytes float64 `json:"rss_anon_per_conn_bytes"`
	// VoluntaryCtxSwitches and InvoluntaryCtxSwitches are the context
	// switches of all the broker's threads in the window. A voluntary one
	// is a thread going to sleep (blocking in epoll_wait, a futex,
	// nanosleep), so they count the broker's wake-ups; an involuntary one
	// is a thread preempted by the kernel.
	VoluntaryCtxSwitches   int64 `json:"voluntary_ctx_switches"`
	InvoluntaryCtxSwitches int64 `json:"involuntary_ctx_switches"`
	// VoluntaryPerMsg and InvoluntaryPerMsg are those per delivered
	// message; 0 when nothing was delivered.
	VoluntaryPerMsg   float64 `json:"voluntary_ctx_switches_per_msg"`
	InvoluntaryPerMsg float64 `json:"involuntary_ctx_switches_per_msg"`
	Err               string  `json:"error,omitempty"`
}

// procSample is one reading of /proc/PID.
type procSample struct {
	cpuUs     int64 // utime+stime
	sysUs     int64 // stime
	rssKB     int64
	anonKB    int64 // RssAnon
	vcs, nvcs int64 // voluntary and involuntary context switches, summed over the threads
	err       error
}

// readProc reads a process's CPU time (utime+stime, and stime alone),
// resident set size and context switches.
func readProc(pid int) procSample {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{err: err}
	}
	// The command name in parentheses may hold spaces; fields count from
	// after its closing parenthesis: state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procSample{err: fmt.Errorf("/proc/%d/stat: no command name", pid)}
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return procSample{err: fmt.Errorf("/proc/%d/stat: too few fields", pid)}
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{err: fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)}
	}
	s := procSample{cpuUs: (ut + st) * (1e6 / clockTicks), sysUs: st * (1e6 / clockTicks)}
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{err: err}
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			s.rssKB = firstInt(v)
		} else if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			s.anonKB = firstInt(v)
		}
	}
	s.vcs, s.nvcs = ctxSwitches(pid)
	return s
}

// ctxSwitches sums the voluntary and involuntary context switches of a
// process's threads. /proc/PID/status counts the main thread's only; the
// counts of threads that have exited are lost, which for the brokers
// measured here (Go keeps its threads, Mosquitto has one) loses nothing.
// A thread that exits between the listing and its read is skipped.
func ctxSwitches(pid int) (vcs, nvcs int64) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				vcs += firstInt(v)
			} else if v, ok := strings.CutPrefix(line, "nonvoluntary_ctxt_switches:"); ok {
				nvcs += firstInt(v)
			}
		}
	}
	return vcs, nvcs
}

// firstInt parses the first field of s as an integer; 0 if it is none.
func firstInt(s string) int64 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// brokerSampler samples the broker before setup and at both ends of the
// measured window.
type brokerSampler struct {
	pid                  int
	baseline, start, end procSample
	wg                   sync.WaitGroup
}

func newBrokerSampler(pid int) *brokerSampler { return &brokerSampler{pid: pid} }

func (b *brokerSampler) sample(into *procSample) {
	if b.pid > 0 {
		*into = readProc(b.pid)
	}
}

// sampleWindow samples at T0+warmup and at T0+warmup+duration, in the
// background; wait waits for both.
func (b *brokerSampler) sampleWindow(ctx context.Context, t0 time.Time, warmup, duration time.Duration) {
	if b.pid <= 0 {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if sleepUntil(ctx, t0.Add(warmup)) {
			b.sample(&b.start)
		}
		if sleepUntil(ctx, t0.Add(warmup+duration)) {
			b.sample(&b.end)
		}
	}()
}

func (b *brokerSampler) wait() { b.wg.Wait() }

// stats derives the per-message and per-connection figures from res.
func (b *brokerSampler) stats(res *Result) *BrokerStats {
	if b.pid <= 0 {
		return nil
	}
	s := &BrokerStats{PID: b.pid}
	for _, p := range []procSample{b.baseline, b.start, b.end} {
		if p.err != nil {
			s.Err = "cannot sample the broker: " + p.err.Error()
			return s
		}
	}
	if b.end.cpuUs == 0 && b.end.rssKB == 0 {
		s.Err = "the run ended before the measured window did"
		return s
	}
	nb := int64(max(1, len(res.Params.Brokers)))
	s.CPUWindowUs = b.end.cpuUs - b.start.cpuUs
	s.Delivered = res.Messages.WindowReceived / nb
	s.VoluntaryCtxSwitches = b.end.vcs - b.start.vcs
	s.InvoluntaryCtxSwitches = b.end.nvcs - b.start.nvcs
	if s.Delivered > 0 {
		s.CPUPerMsgUs = float64(s.CPUWindowUs) / float64(s.Delivered)
		s.SysPerMsgUs = float64(b.end.sysUs-b.start.sysUs) / float64(s.Delivered)
		s.UserPerMsgUs = s.CPUPerMsgUs - s.SysPerMsgUs
		s.VoluntaryPerMsg = float64(s.VoluntaryCtxSwitches) / float64(s.Delivered)
		s.InvoluntaryPerMsg = float64(s.InvoluntaryCtxSwitches) / float64(s.Delivered)
	}
	s.RSSBaselineKB, s.RSSStartKB, s.RSSEndKB = b.baseline.rssKB, b.start.rssKB, b.end.rssKB
	s.Connections = res.Connections.Up / nb
	if s.Connections > 0 {
		s.RSSPerConnBytes = float64(s.RSSEndKB-s.RSSBaselineKB) * 1024 / float64(s.Connections)
	}
	s.AnonBaselineKB, s.AnonEndKB = b.baseline.anonKB, b.end.anonKB
	if s.Connections > 0 && s.AnonEndKB > 0 {
		s.AnonPerConnBytes = float64(s.AnonEndKB-s.AnonBaselineKB) * 1024 / float64(s.Connections)
	}
	return s
}
