package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/store"
)

var externalBroker = flag.String("bench.broker", "",
	"host:port of an external MQTT broker to drive instead of the in-process one")

var brokerPID = flag.Int("bench.broker-pid", 0,
	"process id of the -bench.broker broker: report its own CPU time per delivery (broker-cpu-ns/delivery, Linux)")

var payloadFlag = flag.Int("bench.payload", 64,
	"PUBLISH payload size in bytes, at least 12 (publisher index and sequence number); e.g. 117 makes fanin100's 3.1.1 frames the size of its 5.0 ones")

// maxUnacked bounds a QoS 1 publisher's PUBLISHes awaiting PUBACK; a
// burst is at most half of it.
var maxUnacked = flag.Int("bench.unacked", 32,
	"most PUBLISHes a QoS 1 publisher keeps awaiting PUBACK (at least 2)")

var maxPacketFlag = flag.Int("bench.maxpacket", 0,
	"Maximum Packet Size the 5.0 subscribers send in CONNECT (0: none), as many client libraries do: the broker then checks every PUBLISH's size against it")

var withAuthorizer = flag.Bool("bench.authz", false,
	"give the in-process broker an Authorizer that allows everything, to measure the cost of the checks")

// allowAll is the Authorizer of -bench.authz.
type allowAll struct{}

func (allowAll) Authorize(engine.Identity, string, engine.Access) bool { return true }

// stallTimeout fails a run during which no delivery arrived for this long.
const stallTimeout = 10 * time.Second

// brokerLoops is the in-process broker's number of event loops: fixed, not
// one per CPU, so that the scenarios place clients on loops the same way
// on every machine (it is the default on the 2-core reference machine).
const brokerLoops = 2

// scenario is a set of publishers and subscribers and who hears whom.
type scenario struct {
	name       string
	pubs, subs int
	topic      func(pub int) string
	filter     func(sub int) string
	hears      func(sub, pub int) bool // whether sub receives pub's messages
	// window is each publisher's end-to-end window in messages; bursts
	// are half of it. The messages not yet received by a subscriber are
	// at most the sum of the windows of the publishers it hears, which
	// must stay below the broker's session queue bound (1000 + 32 in
	// flight) at QoS 1. For now one loop's batch for one client must
	// also stay below 512 PUBLISHes (1024 iovecs, see
	// TestLargeBatchDelivered); with brokerLoops loops such a batch holds
	// at most the windows of the publishers on the other loop.
	window int
	// connectOrder lists client slots in connection order (subscribers
	// 0..subs-1, then publishers subs..subs+pubs-1); nil means that order.
	connectOrder []int
}

var scenarios = []scenario{
	{
		name: "pairs10", pubs: 10, subs: 10, window: 64,
		topic:  func(i int) string { return fmt.Sprintf("bench/pair/%d", i) },
		filter: func(i int) string { return fmt.Sprintf("bench/pair/%d", i) },
		hears:  func(sub, pub int) bool { return sub == pub },
		// gnet hands connections to loops round-robin. Subscribers take
		// slots 0..9; publishers connect in the order 0,2,1,3,4,6,5,7,8,9
		// so that with brokerLoops = 2 pairs 1, 2, 5 and 6 cross loops
		// and the others do not: both delivery paths are measured.
		connectOrder: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 11, 13, 14, 16, 15, 17, 18, 19},
	},
	{
		name: "fanin100", pubs: 100, subs: 1, window: 8,
		topic:  func(i int) string { return fmt.Sprintf("bench/in/%d", i) },
		filter: func(int) string { return "bench/in/+" },
		hears:  func(int, int) bool { return true },
	},
	{
		name: "fanout100", pubs: 1, subs: 100, window: 64,
		topic:  func(int) string { return "bench/out" },
		filter: func(int) string { return "bench/out" },
		hears:  func(int, int) bool { return true },
	},
}

// fixture is one scenario's broker and connected clients, reused by every
// run of a benchmark. Its methods run on the benchmark's or test's
// goroutine, but fail, which the clients call.
type fixture struct {
	sc   scenario
	qos  byte
	ver  codec.Version
	srv  *engine.Server // nil with -bench.broker
	pubs []*publisher
	subs []*subscriber

	pubDone chan error
	subDone chan int
	abort   chan struct{} // closed on failure or teardown: clients stop
	failMu  sync.Mutex
	failErr error
	wg      sync.WaitGroup
	ticker  *time.Ticker
	// Reused so that a run's bookkeeping does not allocate.
	counts   []int
	ms0, ms1 runtime.MemStats
}

// result is what one run measured.
type result struct {
	published, deliveries int
	elapsed               time.Duration
	mallocs, bytes        uint64
	cpu                   time.Duration
	brokerCPU             time.Duration // with -bench.broker-pid: the broker process's, else 0
}

// report adds the per-delivery metrics to b; the allocation figures only
// when the broker runs in this process.
func (r result) report(b *testing.B, broker bool) {
	d := float64(r.deliveries)
	b.ReportMetric(d/r.elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(r.cpu.Nanoseconds())/d, "cpu-ns/delivery")
	if *brokerPID != 0 {
		b.ReportMetric(float64(r.brokerCPU.Nanoseconds())/d, "broker-cpu-ns/delivery")
	}
	if broker {
		b.ReportMetric(float64(r.mallocs)/d, "allocs/delivery")
		b.ReportMetric(float64(r.bytes)/d, "B/delivery")
	}
}

// fixtureConfig are a fixture's variations from the plain benchmark.
type fixtureConfig struct {
	// store is the in-process broker's Options.Store; nil for none.
	store store.Store
	// persistent makes the subscribers' sessions persistent, so that
	// QoS 1/2 deliveries to them are written to a store.
	persistent bool
	// maxPacket is the Maximum Packet Size the 5.0 subscribers send;
	// 0 takes -bench.maxpacket.
	maxPacket uint32
}

// newFixture starts a broker (unless -bench.broker names one) and connects
// and subscribes every client of sc.
func newFixture(sc scenario, qos byte, ver codec.Version) (*fixture, error) {
	return newFixtureWith(sc, qos, ver, fixtureConfig{})
}

// newFixtureWith is newFixture with cfg.
func newFixtureWith(sc scenario, qos byte, ver codec.Version, cfg fixtureConfig) (_ *fixture, err error) {
	if payloadSize() < payloadSeqOff+8 {
		return nil, fmt.Errorf("-bench.payload %d: at least %d bytes", payloadSize(), payloadSeqOff+8)
	}
	fx := &fixture{sc: sc, qos: qos, ver: ver, pubDone: make(chan error, sc.pubs), subDone: make(chan int, sc.subs),
		abort: make(chan struct{}), counts: make([]int, sc.pubs)}
	defer func() {
		if err != nil {
			fx.close()
		}
	}()
	if cfg.maxPacket == 0 {
		cfg.maxPacket = uint32(*maxPacketFlag)
	}
	addr := *externalBroker
	if addr == "" {
		opts := engine.Options{Listen: "127.0.0.1:0", Loops: brokerLoops,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if *withAuthorizer {
			opts.Authorizer = allowAll{}
		}
		opts.Store = cfg.store
		fx.srv = engine.New(opts)
		if err := fx.srv.Start(); err != nil {
			return nil, fmt.Errorf("start broker: %w", err)
		}
		addr = fx.srv.Addr().String()
	}
	burst := max(1, sc.window/2)
	if qos > 0 {
		burst = min(burst, *maxUnacked/2)
	}
	fx.subs = make([]*subscriber, sc.subs)
	fx.pubs = make([]*publisher, sc.pubs)
	order := sc.connectOrder
	if order == nil {
		for i := range sc.subs + sc.pubs {
			order = append(order, i)
		}
	}
	// A process-unique prefix keeps client identifiers apart when several
	// fixtures share an external broker.
	prefix := fmt.Sprintf("bench-%d-%s-q%d-v%d", time.Now().UnixNano(), sc.name, qos, ver)
	for _, slot := range order {
		if slot < sc.subs {
			mc, err := dialSession(addr, fmt.Sprintf("%s-sub%d", prefix, slot), ver, cfg.persistent, cfg.maxPacket)
			if err != nil {
				return nil, err
			}
			s := &subscriber{idx: slot, mc: mc, qos: qos, from: make([]fromPublisher, sc.pubs),
				acks: make([]byte, 0, readBufSize/16)}
			fx.subs[slot] = s
			continue
		}
		i := slot - sc.subs
		mc, err := dialMQTT(addr, fmt.Sprintf("%s-pub%d", prefix, i), ver)
		if err != nil {
			return nil, err
		}
		if ver == codec.V5 {
			if err := mc.defineAlias(sc.topic(i)); err != nil {
				_ = mc.nc.Close()
				return nil, fmt.Errorf("publisher %d: %w", i, err)
			}
		}
		fx.pubs[i] = newPublisher(i, mc, sc.topic(i), qos, sc.window, burst)
	}
	// Subscribe once every client is connected (and every 5.0 publisher's
	// alias defined, so that its empty defining message reaches nobody).
	for _, s := range fx.subs {
		if err := s.mc.subscribe(sc.filter(s.idx), qos); err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", s.idx, err)
		}
	}
	for _, s := range fx.subs {
		for i, p := range fx.pubs {
			if sc.hears(s.idx, i) {
				s.from[i].pub = p
				p.heard = append(p.heard, &s.from[i].n)
			}
		}
	}
	for _, p := range fx.pubs {
		fx.wg.Go(func() {
			for {
				select {
				case n := <-p.start:
					fx.pubDone <- p.run(n, fx.abort)
				case <-fx.abort:
					return
				}
			}
		})
	}
	for _, s := range fx.subs {
		fx.wg.Go(func() { s.loop(fx.subDone, fx.fail) })
	}
	fx.ticker = time.NewTicker(time.Hour)
	fx.ticker.Stop()
	return fx, nil
}

// fail records the first client error and stops the run.
func (fx *fixture) fail(err error) {
	fx.failMu.Lock()
	defer fx.failMu.Unlock()
	if fx.failErr != nil {
		return
	}
	select {
	case <-fx.abort:
		return // torn down: the read errors that follow are expected
	default:
	}
	fx.failErr = err
	close(fx.abort)
}

func (fx *fixture) failed() error {
	fx.failMu.Lock()
	defer fx.failMu.Unlock()
	return fx.failErr
}

// close disconnects every client, stops the broker and waits for the
// client goroutines.
func (fx *fixture) close() {
	fx.failMu.Lock()
	select {
	case <-fx.abort:
	default:
		close(fx.abort)
	}
	fx.failMu.Unlock()
	for _, p := range fx.pubs {
		if p != nil {
			_ = p.mc.nc.Close()
		}
	}
	for _, s := range fx.subs {
		if s != nil {
			_ = s.mc.nc.Close()
		}
	}
	fx.wg.Wait()
	if fx.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fx.srv.Stop(ctx)
	}
	if fx.ticker != nil {
		fx.ticker.Stop()
	}
}

// run publishes n messages in total, spread over the publishers, and
// returns once every subscriber has received every message it should.
func (fx *fixture) run(n int) (result, error) {
	if err := fx.failed(); err != nil {
		return result{}, err
	}
	P := len(fx.pubs)
	res := result{published: n}
	for i := range fx.counts {
		fx.counts[i] = n / P
		if i < n%P {
			fx.counts[i]++
		}
	}
	waitSubs := 0
	for _, s := range fx.subs {
		add := 0
		for i := range fx.pubs {
			if s.from[i].pub != nil {
				add += fx.counts[i]
			}
		}
		if add > 0 {
			s.target.Store(s.total.Load() + uint64(add))
			waitSubs++
		}
		res.deliveries += add
	}
	var st0 engine.Stats
	if fx.srv != nil {
		st0 = fx.srv.Stats()
	}
	fx.ticker.Reset(100 * time.Millisecond)
	defer fx.ticker.Stop()
	lastTotal, lastChange := fx.delivered(), time.Now()

	runtime.ReadMemStats(&fx.ms0)
	bcpu0, err := brokerCPU()
	if err != nil {
		return res, err
	}
	cpu0 := processCPU()
	t0 := time.Now()
	for i, p := range fx.pubs {
		p.start <- fx.counts[i]
	}
	for waitPubs := P; waitPubs > 0 || waitSubs > 0; {
		select {
		case err := <-fx.pubDone:
			if err != nil {
				fx.fail(err)
				return res, fx.describe(err, st0)
			}
			waitPubs--
		case <-fx.subDone:
			waitSubs--
		case <-fx.abort:
			return res, fx.describe(fx.failed(), st0)
		case now := <-fx.ticker.C:
			if t := fx.delivered(); t != lastTotal {
				lastTotal, lastChange = t, now
			} else if now.Sub(lastChange) > stallTimeout {
				err := fmt.Errorf("no delivery for %v", stallTimeout)
				fx.fail(err)
				return res, fx.describe(err, st0)
			}
			if err := fx.checkDrops(st0); err != nil {
				fx.fail(err)
				return res, fx.describe(err, st0)
			}
		}
	}
	res.elapsed = time.Since(t0)
	res.cpu = processCPU() - cpu0
	bcpu1, err := brokerCPU()
	if err != nil {
		return res, err
	}
	res.brokerCPU = bcpu1 - bcpu0
	runtime.ReadMemStats(&fx.ms1)
	res.mallocs = fx.ms1.Mallocs - fx.ms0.Mallocs
	res.bytes = fx.ms1.TotalAlloc - fx.ms0.TotalAlloc
	for _, s := range fx.subs {
		if got, want := s.total.Load(), s.target.Load(); got != want {
			err := fmt.Errorf("subscriber %d received %d messages, want %d", s.idx, got, want)
			fx.fail(err)
			return res, fx.describe(err, st0)
		}
	}
	if err := fx.checkDrops(st0); err != nil {
		fx.fail(err)
		return res, fx.describe(err, st0)
	}
	return res, nil
}

// delivered sums the subscribers' totals.
func (fx *fixture) delivered() uint64 {
	var t uint64
	for _, s := range fx.subs {
		t += s.total.Load()
	}
	return t
}

// checkDrops fails when the broker dropped a message since st0: with the
// windows in place none may be lost, at QoS 0 either.
func (fx *fixture) checkDrops(st0 engine.Stats) error {
	if fx.srv == nil {
		return nil
	}
	st := fx.srv.Stats()
	if st.DroppedSlowConsumer != st0.DroppedSlowConsumer || st.DroppedQueueFull != st0.DroppedQueueFull ||
		st.DroppedQoS0Offline != st0.DroppedQoS0Offline {
		return errors.New("broker dropped messages")
	}
	return nil
}

// describe adds the broker's counters and the clients' progress to err.
func (fx *fixture) describe(err error, st0 engine.Stats) error {
	var sent uint64
	for _, p := range fx.pubs {
		sent += p.published.Load()
	}
	msg := fmt.Sprintf("%s qos%d: delivered %d, published %d over all runs", fx.sc.name, fx.qos, fx.delivered(), sent)
	if fx.srv != nil {
		st := fx.srv.Stats()
		msg += fmt.Sprintf("; broker since run start: in %d, out %d, dropped slow %d, queue full %d, offline %d; protocol errors %d, connections closed %d",
			st.MessagesIn-st0.MessagesIn, st.MessagesOut-st0.MessagesOut,
			st.DroppedSlowConsumer-st0.DroppedSlowConsumer, st.DroppedQueueFull-st0.DroppedQueueFull,
			st.DroppedQoS0Offline-st0.DroppedQoS0Offline, st.ProtocolErrors, st.ConnectionsClosed)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// brokerCPU returns the CPU time (user and system, every thread) the
// -bench.broker-pid process used so far, 0 without the flag. It reads the
// process's CPU-time clock (clock_gettime with the clock id Linux derives
// from a pid, as clock_getcpuclockid does), which counts in nanoseconds
// where /proc/PID/stat counts 10 ms ticks.
func brokerCPU() (time.Duration, error) {
	pid := *brokerPID
	if pid == 0 {
		return 0, nil
	}
	const cpuClockSched = 2 // CPUCLOCK_SCHED: the scheduler's runtime
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(^pid<<3|cpuClockSched), &ts); err != nil {
		return 0, fmt.Errorf("CPU time of broker process %d: %w", pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// processCPU returns the user and system CPU time the process used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
