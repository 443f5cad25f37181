package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// The worker protocol: JSON values, one per line.
//
// Parent to worker (stdin): a workerHello, then a parentMsg with Go set to
// T0 (Unix ns) once every worker is ready. Closing stdin aborts the worker.
//
// Worker to parent (stdout): workerMsg values: "ready" once its connections
// are set up, "progress" every second, and finally "result" (or "error").

type workerHello struct {
	Config Config `json:"config"`
	Worker int    `json:"worker"`
	Procs  int    `json:"procs"`
}

type parentMsg struct {
	Go int64 `json:"go"`
}

type workerMsg struct {
	Kind     string        `json:"kind"` // ready, progress, result, error
	Progress *progressSnap `json:"progress,omitempty"`
	Result   *Result       `json:"result,omitempty"`
	Censor   *censorInput  `json:"censor,omitempty"` // with result
	Error    string        `json:"error,omitempty"`
}

// workerSlack is what the parent allows a worker beyond the run's own bound
// (process start and exit) before killing it.
const workerSlack = 5 * time.Second

// ServeWorker runs one worker process of a multi-process run: it reads its
// configuration from in, sets up its share of the connections, waits for
// the common start time, runs, and writes its result to out. A CLI calls it
// when started with its hidden worker flag.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	var hello workerHello
	if err := dec.Decode(&hello); err != nil {
		return fmt.Errorf("read worker configuration: %w", err)
	}
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m workerMsg) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(m)
	}
	cfg := hello.Config
	cfg.Procs = hello.Procs
	if p := hello.Procs; p > 1 {
		// -conn-rate and -conn-parallel are the run's: each worker paces
		// its share of the connections at its share of them.
		cfg.ConnRate /= float64(p)
		cfg.ConnParallel = max(1, (cfg.ConnParallel+p-1)/p)
	}
	r, err := newRunner(cfg, hello.Worker, hello.Procs)
	if err != nil {
		send(workerMsg{Kind: "error", Error: err.Error()})
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, r.maxTime())
	defer cancel()

	// The parent's go message; then stdin stays open until the parent ends,
	// and its EOF aborts the run.
	goAt := make(chan int64, 1)
	go func() {
		var m parentMsg
		if err := dec.Decode(&m); err == nil && m.Go > 0 {
			goAt <- m.Go
			_, _ = io.Copy(io.Discard, in)
		}
		cancel()
	}()

	done := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s := r.snapshot(true)
				send(workerMsg{Kind: "progress", Progress: &s})
			}
		}
	}()

	s := r.snapshot(false)
	send(workerMsg{Kind: "progress", Progress: &s})
	r.setup(ctx)
	s = r.snapshot(false)
	send(workerMsg{Kind: "progress", Progress: &s})
	send(workerMsg{Kind: "ready"})
	select {
	case t0 := <-goAt:
		r.start(t0)
		r.finish(ctx)
	case <-ctx.Done():
		r.stop()
	}
	close(done)
	<-ticked
	res, undelivered := r.result()
	res.Workers = []WorkerSummary{{Index: hello.Worker, Up: res.Connections.Up, Sent: res.Messages.Sent,
		Received: res.Messages.Received, Errors: r.errs.count()}}
	send(workerMsg{Kind: "result", Result: res, Censor: &undelivered})
	return nil
}

// worker is the parent's handle on one worker process.
type worker struct {
	index  int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  bool
	exited bool
	result *Result
	censor *censorInput
	last   progressSnap
	fail   string
}

type workerEvent struct {
	index int
	msg   workerMsg
	exit  error // set with exited
	ended bool
}

// RunProcs runs cfg over cfg.Procs worker processes started by
// cfg.WorkerCommand and merges their results. Each worker owns the
// connections whose group (pair, device, connection) modulo Procs is its
// index. It returns within the same bound as Run plus a few seconds for
// the processes to start and end; a worker that overstays is killed.
func RunProcs(ctx context.Context, cfg Config) (*Result, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.WorkerCommand == nil {
		return nil, errors.New("RunProcs needs Config.WorkerCommand")
	}
	bound := cfg.runBound()
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	hardStop := time.After(bound + workerSlack)
	started := time.Now()
	bs := newBrokerSampler(cfg.BrokerPID)
	bs.sample(&bs.baseline)

	events := make(chan workerEvent, 16*cfg.Procs)
	quit := make(chan struct{})
	defer close(quit)
	ws := make([]*worker, cfg.Procs)
	wire := cfg
	wire.Progress, wire.WorkerCommand = nil, nil
	for i := range ws {
		w := &worker{index: i, cmd: cfg.WorkerCommand()}
		ws[i] = w
		if err := w.start(wire, cfg.Procs, events, quit); err != nil {
			w.exited, w.fail = true, err.Error()
		}
	}
	defer func() {
		for _, w := range ws {
			if !w.exited && w.cmd.Process != nil {
				_ = w.cmd.Process.Kill()
			}
		}
	}()
	// abort asks every worker to stop now: a closed stdin ends its run,
	// and it still sends its result.
	abort := func() {
		for _, w := range ws {
			if w.stdin != nil {
				_ = w.stdin.Close()
			}
		}
	}

	live := func() (n int) {
		for _, w := range ws {
			if !w.exited {
				n++
			}
		}
		return n
	}
	allReady := func() bool {
		for _, w := range ws {
			if !w.ready && !w.exited {
				return false
			}
		}
		return true
	}
	handle := func(ev workerEvent) {
		w := ws[ev.index]
		if ev.ended {
			w.exited = true
			if w.result == nil && w.fail == "" {
				w.fail = "exited without a result"
				if ev.exit != nil {
					w.fail += ": " + ev.exit.Error()
				}
			}
			return
		}
		switch ev.msg.Kind {
		case "ready":
			w.ready = true
		case "progress":
			if ev.msg.Progress != nil {
				w.last = *ev.msg.Progress
			}
		case "result":
			w.result, w.censor = ev.msg.Result, ev.msg.Censor
		case "error":
			w.fail = ev.msg.Error
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var prev progressSnap
	lastTick := started
	progress := func(now time.Time) {
		if cfg.Progress == nil {
			return
		}
		var s progressSnap
		for _, w := range ws {
			s.add(w.last)
		}
		fmt.Fprintln(cfg.Progress, formatProgress(now.Sub(started), now.Sub(lastTick), s, prev))
		prev, lastTick = s, now
	}

	// Setup: wait until every worker is ready (each bounds its own setup).
	setupEnd := time.After(cfg.SetupTimeout + workerSlack)
wait:
	for !allReady() {
		select {
		case ev := <-events:
			handle(ev)
		case now := <-tick.C:
			progress(now)
		case <-setupEnd:
			break wait
		case <-ctx.Done():
			break wait
		case <-hardStop:
			break wait
		}
	}
	t0 := time.Now().Add(100 * time.Millisecond)
	for _, w := range ws {
		if w.ready && !w.exited {
			if err := json.NewEncoder(w.stdin).Encode(parentMsg{Go: t0.UnixNano()}); err != nil {
				w.fail = "cannot start: " + err.Error()
			}
		}
	}
	sctx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	bs.sampleWindow(sctx, t0, cfg.Warmup, cfg.Duration)
	aborting := ctx.Done()
collect:
	for live() > 0 {
		select {
		case ev := <-events:
			handle(ev)
		case now := <-tick.C:
			progress(now)
		case <-aborting:
			abort()
			aborting = nil
		case <-hardStop:
			break collect
		}
	}
	stopSampling()
	bs.wait()

	res := newResult(cfg)
	res.Procs = cfg.Procs
	res.Started = started
	var undelivered []censorInput
	window := -1.0 // the longest window a worker measured
	for _, w := range ws {
		if w.result != nil {
			res.Merge(w.result)
			window = max(window, w.result.Window)
			if w.censor != nil {
				undelivered = append(undelivered, *w.censor)
			}
			continue
		}
		if w.fail == "" {
			w.fail = "did not finish in time; killed"
		}
		res.Workers = append(res.Workers, WorkerSummary{Index: w.index, Exit: w.fail})
		res.Errors = mergeErrors(res.Errors, []ErrorCount{{Kind: "worker process failed", Count: 1,
			Example: fmt.Sprintf("worker %d: %s", w.index, w.fail)}})
	}
	if window >= 0 {
		// A cancelled run's workers measured less than -duration (each
		// says so in its warning): rates are over what they measured.
		res.Window = window
	}
	res.finalize()
	pl := buildPlan(&cfg)
	res.censor(pl.sourceClocks(&cfg), cfg.Warmup, undelivered)
	res.Elapsed = time.Since(started).Seconds()
	res.Broker = bs.stats(res)
	if res.Connections.Up == 0 && res.Connections.Planned > 0 {
		return res, ErrNoConnections
	}
	return res, nil
}

// start starts the worker process, sends its configuration and forwards
// its messages to events.
func (w *worker) start(cfg Config, procs int, events chan<- workerEvent, quit <-chan struct{}) error {
	if w.cmd.Stderr == nil {
		w.cmd.Stderr = os.Stderr
	}
	stdin, err := w.cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := w.cmd.Start(); err != nil {
		return fmt.Errorf("start worker %d: %w", w.index, err)
	}
	w.stdin = stdin
	if err := json.NewEncoder(stdin).Encode(workerHello{Config: cfg, Worker: w.index, Procs: procs}); err != nil {
		return fmt.Errorf("configure worker %d: %w", w.index, err)
	}
	go func() {
		dec := json.NewDecoder(stdout)
		for {
			var m workerMsg
			if err := dec.Decode(&m); err != nil {
				break
			}
			select {
			case events <- workerEvent{index: w.index, msg: m}:
			case <-quit:
			}
		}
		ev := workerEvent{index: w.index, ended: true, exit: w.cmd.Wait()}
		select {
		case events <- ev:
		case <-quit:
		}
	}()
	return nil
}
