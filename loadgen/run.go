package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// ErrNoConnections is returned (with the result) when not one connection of
// the run could be set up; the result's errors say why.
var ErrNoConnections = errors.New("no connection could be set up")

// stopGrace bounds closing the connections and joining their goroutines
// after the drain; the run's total time is at most Config.runBound.
const stopGrace = 5 * time.Second

// runBound is the longest a run may take: SetupTimeout + Warmup + Duration
// + Drain + stopGrace, and with Persistent another SetupTimeout to end the
// sessions at ConnRate.
func (c *Config) runBound() time.Duration {
	d := c.SetupTimeout + c.Warmup + c.Duration + c.Drain + stopGrace
	if c.Persistent {
		d += c.SetupTimeout
	}
	return d
}

// drainQuiet is how long nothing may arrive, with nothing in flight, before
// the drain ends early.
const drainQuiet = 250 * time.Millisecond

// Run runs the configured scenario and returns its result. With Procs > 1
// it runs worker processes (see RunProcs). It returns within
// SetupTimeout + Warmup + Duration + Drain + 5 s whatever the broker does
// (with Persistent, plus SetupTimeout to end the sessions); cancelling ctx
// ends it early with the result so far.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Procs > 1 {
		return RunProcs(ctx, cfg)
	}
	r, err := newRunner(cfg, 0, 1)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.maxTime())
	defer cancel()
	started := time.Now()
	bs := newBrokerSampler(cfg.BrokerPID)
	bs.sample(&bs.baseline)
	stopProgress := r.progress(started, cfg.Progress)
	r.setup(ctx)
	t0 := time.Now().Add(20 * time.Millisecond)
	r.start(t0.UnixNano())
	sctx, stopSampling := context.WithCancel(ctx)
	bs.sampleWindow(sctx, t0, cfg.Warmup, cfg.Duration)
	r.finish(ctx)
	stopProgress()
	stopSampling() // the run may have ended before the window did
	bs.wait()
	res, undelivered := r.result()
	res.censor(r.plan.sourceClocks(&r.cfg), cfg.Warmup, []censorInput{undelivered})
	res.Started = started
	res.Elapsed = time.Since(started).Seconds()
	res.Broker = bs.stats(res)
	if res.Connections.Up == 0 && res.Connections.Planned > 0 {
		return res, ErrNoConnections
	}
	return res, nil
}

// runner runs one process's share of a scenario.
type runner struct {
	cfg           Config
	worker, procs int
	plan          plan
	mine          []*connSpec
	dialer        *dialer
	base          time.Time    // monotonic origin of this process
	t0            atomic.Int64 // ns since base at the run's T0
	measureFrom   int64        // ns since T0: start of the measured window
	measureTo     int64        // ns since T0: end of the window and of the schedule
	clock         *clock
	lat, ackLat   *recorder
	writeLat      *recorder
	errs          errorLog
	warnings      []string
	drainedQuiet  bool  // the drain ended by drainQuiet, not by -drain or a cancel
	cutAt         int64 // ns since T0 when the run was cancelled before its schedule ended; 0: it was not
	ended         int64 // ns since T0 when the drain ended and the subscribers stopped reading; 0: the run never started
	// What the drain waits for in a one-process run: expected counts each
	// message sent once per subscriber of this process expecting its
	// source (sinks, by source id, fixed before the publishers start),
	// delivered each first arrival of one.
	sinks               []int32
	expected, delivered atomic.Int64
	mu                  sync.Mutex
	conns               []*conn // set up, in order; appended under mu during setup
	wg                  sync.WaitGroup
	abort               chan struct{} // closed when the run stops
	abortOnce           sync.Once
	attempted, up       atomic.Int64
	dropped             atomic.Int64
	sent                atomic.Int64
	acked               atomic.Int64
	inflight            atomic.Int64
	lastRecv            atomic.Int64 // ns since base
}

func newRunner(cfg Config, worker, procs int) (*runner, error) {
	d, err := newDialer(&cfg)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, worker: worker, procs: procs, dialer: d, base: time.Now(),
		measureFrom: int64(cfg.Warmup), measureTo: int64(cfg.Warmup + cfg.Duration),
		lat: newRecorder(), ackLat: newRecorder(), writeLat: newRecorder(), abort: make(chan struct{})}
	r.clock = newClock(r.base)
	if !r.clock.precise() && r.cfg.Rate > 0 {
		r.warnings = append(r.warnings, "no eventfd: publishers pace on Go timers, which wake up to about 1 ms late; "+
			"that lateness is in every latency percentile")
	}
	r.t0.Store(math.MaxInt64 / 2) // far in the future until start
	r.plan = buildPlan(&r.cfg)
	r.mine = r.plan.share(worker, procs)
	r.warnings = limitWarnings(&r.cfg, r.plan.conns, r.mine, worker)
	return r, nil
}

func (r *runner) maxTime() time.Duration { return r.cfg.runBound() }

// sinceT0 is now in ns since the run's T0 (negative before it).
func (r *runner) sinceT0() int64 { return int64(time.Since(r.base)) - r.t0.Load() }

// scheduleEnd is when the schedule ended: its end, or the cancel.
func (r *runner) scheduleEnd() time.Duration {
	if r.cutAt > 0 {
		return time.Duration(min(r.cutAt, r.measureTo))
	}
	return time.Duration(r.measureTo)
}

// setup opens this process's connections, at most ConnParallel at a time
// and at most ConnRate per second, within SetupTimeout.
func (r *runner) setup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.SetupTimeout)
	defer cancel()
	go r.pinger()
	jobs := make(chan *connSpec)
	var wg sync.WaitGroup
	for range min(r.cfg.ConnParallel, len(r.mine)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for spec := range jobs {
				r.open(ctx, spec)
			}
		}()
	}
	begin := time.Now()
	queued := 0
feed:
	for i, spec := range r.mine {
		if r.cfg.ConnRate > 0 {
			at := begin.Add(time.Duration(float64(i) / r.cfg.ConnRate * 1e9))
			if !sleepUntil(ctx, at) {
				break
			}
		}
		select {
		case jobs <- spec:
			queued++
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if left := len(r.mine) - queued; left > 0 {
		kind := "setup timeout: connection not attempted"
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = "setup cancelled: connection not attempted"
		}
		for range left {
			r.errs.add(kind, fmt.Sprintf("setup did not finish within -setup-timeout %v", r.cfg.SetupTimeout), "")
		}
	}
}

// open sets up one connection and records the outcome.
func (r *runner) open(ctx context.Context, spec *connSpec) {
	r.attempted.Add(1)
	c, err := r.connect(ctx, spec)
	if err != nil {
		stage := "connect"
		var se stageErr
		if errors.As(err, &se) {
			stage = se.stage
		}
		r.errs.addErr(stage, err)
		return
	}
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
	r.up.Add(1)
}

func (r *runner) connList() []*conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns[:len(r.conns):len(r.conns)]
}

// start fixes T0 (wall clock, ns since the Unix epoch; every process of a
// run gets the same) and starts the publishers, which wait for it.
func (r *runner) start(t0Wall int64) {
	for _, c := range r.connList() {
		if c.spec.subscribes() {
			for id := c.spec.expectLo; id < c.spec.expectHi; id++ {
				if int(id) >= len(r.sinks) {
					r.sinks = append(r.sinks, make([]int32, int(id)+1-len(r.sinks))...)
				}
				r.sinks[id]++
			}
		}
	}
	r.t0.Store(int64(time.Since(r.base)) + (t0Wall - time.Now().UnixNano()))
	for _, c := range r.connList() {
		if c.pub != nil && c.state.Load() == stateUp {
			r.wg.Add(1)
			go c.pub.run()
		}
	}
}

// finish waits for the schedule to end and for the messages in flight to
// arrive (at most Drain), then closes every connection.
func (r *runner) finish(ctx context.Context) {
	if len(r.connList()) == 0 {
		r.stop() // nothing to run
		return
	}
	end := r.t0.Load() + r.measureTo // ns since base
	sleepUntil(ctx, r.base.Add(time.Duration(end)))
	if ctx.Err() != nil && r.sinceT0() < r.measureTo {
		r.cutAt = max(r.sinceT0(), 0) // cancelled (SIGINT) before the schedule ended
	}
	deadline := r.base.Add(time.Duration(end) + r.cfg.Drain)
	quiet := func() bool {
		now := int64(time.Since(r.base))
		if r.inflight.Load() > 0 || now-max(r.lastRecv.Load(), end) < int64(drainQuiet) {
			return false
		}
		// One process holds every publisher and subscriber: the drain
		// also waits for what is still owed (at QoS 0 nothing else says
		// so), until -drain. With workers, each sees part of the run.
		return r.procs > 1 || r.delivered.Load() >= r.expected.Load()
	}
	for time.Now().Before(deadline) && ctx.Err() == nil && !quiet() {
		sleepUntil(ctx, time.Now().Add(20*time.Millisecond))
	}
	r.drainedQuiet = quiet()
	if !quiet() && ctx.Err() == nil {
		why := "deliveries were still arriving"
		if owed := r.expected.Load() - r.delivered.Load(); r.procs == 1 && owed > 0 {
			why = fmt.Sprintf("%d deliveries had not arrived", owed)
		}
		if n := r.inflight.Load(); n > 0 {
			why = fmt.Sprintf("%d publishes were unacknowledged", n)
		}
		r.warnings = append(r.warnings, fmt.Sprintf("the drain (%v) ended before the broker caught up: %s; "+
			"'lost' includes messages still in flight (raise -drain to tell them apart)", r.cfg.Drain, why))
	}
	r.ended = max(r.sinceT0(), 1)
	r.stop()
}

// stop ends every goroutine of the run: the writers leave at abort, the
// readers when their connection closes.
func (r *runner) stop() {
	r.abortOnce.Do(func() { close(r.abort) })
	defer r.clock.stop()
	// One deadline for every DISCONNECT, so a broker that stopped reading
	// cannot hold the close up for each connection in turn.
	deadline := time.Now().Add(500 * time.Millisecond)
	for _, c := range r.connList() {
		c.close(deadline)
	}
	joined := make(chan struct{})
	go func() { r.wg.Wait(); close(joined) }()
	select {
	case <-joined:
	case <-time.After(stopGrace - time.Second):
		// Closing a connection unblocks its reader and writer, so only a
		// bug gets here; report it rather than hang the run.
		r.warnings = append(r.warnings, "BUG: connection goroutines still running after their connections closed; figures may be incomplete")
	}
	if r.cfg.Persistent {
		if w := r.endSessions(r.connList()); w != "" {
			r.warnings = append(r.warnings, w)
		}
	}
}

// pinger keeps idle connections alive: a PINGREQ when a connection has
// written nothing for half its keep-alive. Publishers fenced by PINGREQ
// (QoS 0, Rate 0) are never idle and are left alone so that every PINGRESP
// they see answers one of their fences.
func (r *runner) pinger() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	ping := []byte{byte(codec.PINGREQ) << 4, 0}
	for {
		select {
		case <-r.abort:
			return
		case <-t.C:
		}
		now := int64(time.Since(r.base))
		for _, c := range r.connList() {
			if c.keepAlive <= 0 || c.state.Load() != stateUp || (c.pub != nil && c.pub.fenced) {
				continue
			}
			if now-c.lastWrite.Load() >= int64(c.keepAlive/2) {
				c.pings.Add(1)
				_ = c.write(ping)
			}
		}
	}
}

// sleepUntil sleeps until t; false if ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// snapshot is what the progress line shows. Its received count is of
// distinct messages, as the result's received_per_s: duplicates are not
// throughput.
func (r *runner) snapshot(withLatency bool) progressSnap {
	s := progressSnap{Phase: r.phase(), Planned: int64(len(r.mine)), Attempted: r.attempted.Load(),
		Up: r.up.Load() - r.dropped.Load(), Sent: r.sent.Load(), Received: r.delivered.Load(),
		Acked: r.acked.Load(), Inflight: r.inflight.Load(), Errors: r.errs.count()}
	if withLatency {
		s.Latency = r.lat.snapshot()
	}
	return s
}

func (r *runner) phase() string {
	now := r.sinceT0()
	switch {
	case now < -int64(time.Hour):
		return "setup"
	case now < r.measureFrom:
		return "warmup"
	case now < r.measureTo:
		return "run"
	default:
		return "drain"
	}
}

// progress prints a line every second to w until the returned function is
// called.
func (r *runner) progress(started time.Time, w io.Writer) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var prev progressSnap
		last := started
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				s := r.snapshot(true)
				fmt.Fprintln(w, formatProgress(now.Sub(started), now.Sub(last), s, prev))
				prev, last = s, now
			}
		}
	}()
	return func() { close(done); <-ended }
}

// result gathers the figures of every connection; only after stop. The
// deliveries its subscribers were still owed are in the censorInput, for
// Result.censor once every process's result is merged.
func (r *runner) result() (*Result, censorInput) {
	res := newResult(r.cfg)
	res.Warnings = r.warnings
	res.Latency = r.lat.snapshot()
	res.AckLatency = r.ackLat.snapshot()
	res.WriteLatency = r.writeLat.snapshot()
	undelivered := censorInput{End: r.ended}
	clocks := r.plan.sourceClocks(&r.cfg)
	res.Connections.Planned = int64(len(r.mine))
	res.Connections.Attempted = r.attempted.Load()
	res.Connections.Up = r.up.Load()
	res.Connections.Failed = res.Connections.Attempted - res.Connections.Up
	res.Connections.Dropped = r.dropped.Load()
	src := make(map[uint32]*SourceStats)
	get := func(id uint32) *SourceStats {
		s := src[id]
		if s == nil {
			s = &SourceStats{ID: id}
			src[id] = s
		}
		return s
	}
	m := &res.Messages
	for _, c := range r.connList() {
		if p := c.pub; p != nil {
			res.Connections.Publishers++
			for i := range p.srcs {
				s := get(p.srcs[i].id)
				s.Sent += int64(p.srcs[i].sent)
				s.Acked += int64(p.srcs[i].acked)
				if p.paced && r.ended > 0 {
					clk := sourceClock{sched: p.pace.sched, n: uint64(len(p.srcs)), j: uint64(i)}
					s.Due += int64(clk.dueBefore(r.scheduleEnd()))
				}
			}
			if p.qos > 0 && r.ended > 0 {
				r.censorAcks(p, res.AckLatency)
			}
			if p.paced {
				m.Overruns += int64(p.pace.overruns)
				m.Unsent += int64(p.pace.unsentBefore(r.scheduleEnd()))
				m.MaxLagUs = max(m.MaxLagUs, p.pace.maxLag.Microseconds())
			}
			m.WindowSent += int64(p.windowSent)
		}
		if c.spec.subscribes() {
			res.Connections.Subscribers++
			for i := range c.streams {
				st := &c.streams[i]
				s := get(c.spec.expectLo + uint32(i))
				s.Sinks++
				s.Received += int64(st.received)
				s.Unique += int64(st.unique)
				s.Duplicated += int64(st.dup)
				s.Reordered += int64(st.reordered)
				s.Stale += int64(st.stale)
				s.Gaps += int64(st.gaps)
				if t, ok := r.tail(clocks, s.ID, st); ok {
					undelivered.Tails = append(undelivered.Tails, t)
				}
			}
			m.Foreign += int64(c.foreign)
			m.WindowReceived += int64(c.inWin)
		}
	}
	for _, s := range src {
		res.Sources = append(res.Sources, *s)
	}
	res.Errors = r.errs.list()
	if r.cutAt > 0 {
		// Rates over the part of the window that ran, not -duration.
		res.Window = float64(max(int64(r.scheduleEnd())-r.measureFrom, 0)) / 1e9
		res.Warnings = append(res.Warnings, fmt.Sprintf("the run was cancelled after %v of its %v window: "+
			"rates are over the %.3gs that ran, and only messages due before the cancel count as unsent",
			time.Duration(max(r.cutAt-r.measureFrom, 0)).Round(time.Millisecond), r.cfg.Duration, res.Window))
	}
	res.finalize()
	if r.drainedQuiet && m.Lost > 0 && len(r.mine) > 0 {
		// Nothing tells this process that the broker has delivered all
		// it will: the drain ends after drainQuiet without a delivery.
		res.Warnings = append(res.Warnings, fmt.Sprintf("the drain ended after %v without a delivery; "+
			"'lost' also counts messages a broker that paused longer than that still held", drainQuiet))
	}
	return res, undelivered
}
