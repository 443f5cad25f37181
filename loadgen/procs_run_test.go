package loadgen

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestWorkerProcessHelper is the worker process the multi-process tests
// start (this test binary, run again).
func TestWorkerProcessHelper(t *testing.T) {
	if os.Getenv("LOOPMQ_LOADGEN_WORKER") != "1" {
		t.Skip("the worker process of TestConnRateSharedByProcs")
	}
	err := ServeWorker(context.Background(), os.Stdin, os.Stdout)
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

func workerProcessCommand() *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerProcessHelper$")
	cmd.Env = append(os.Environ(), "LOOPMQ_LOADGEN_WORKER=1")
	return cmd
}

// -conn-rate is the run's, not each worker's: -procs P opened P times as
// many connections per second as asked (20 at 10/s over two workers in
// 0.9 s instead of 1.9 s).
func TestConnRateSharedByProcs(t *testing.T) {
	var (
		mu  sync.Mutex
		ats []time.Time
	)
	addr := startFake(t, func(c net.Conn, r *frameReader) {
		mu.Lock()
		ats = append(ats, time.Now())
		mu.Unlock()
		if _, ok := fakeHandshake(c, r, codec.Success, false); ok {
			discard(c)
		}
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioConn, N: 20, ConnRate: 10, Procs: 2,
		Duration: 200 * time.Millisecond, WorkerCommand: workerProcessCommand}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, int64(20), res.Connections.Up, "%+v", res.Workers)
	mu.Lock()
	defer mu.Unlock()
	sort.Slice(ats, func(i, j int) bool { return ats[i].Before(ats[j]) })
	span := ats[len(ats)-1].Sub(ats[0])
	perSec := float64(len(ats)-1) / span.Seconds()
	require.LessOrEqual(t, perSec, 1.25*cfg.ConnRate,
		"%d connections opened in %v: %.1f/s with -conn-rate %g", len(ats), span.Round(time.Millisecond), perSec, cfg.ConnRate)
}

// With -persistent the subscribers connect once more after the run, with a
// clean session, to end their sessions. Those connections ignored
// -conn-rate: every one at once, the connect storm setup was paced to
// avoid.
func TestEndSessionsPacedByConnRate(t *testing.T) {
	var (
		mu   sync.Mutex
		ends []time.Time
	)
	addr := startFake(t, func(c net.Conn, r *frameReader) {
		frame, _, err := r.next()
		if err != nil {
			return
		}
		p, err := codec.Decode(frame, codec.V311)
		if err != nil {
			return
		}
		cp := p.(*codec.Connect)
		if cp.CleanStart && strings.Contains(string(cp.ClientID), "-s") {
			mu.Lock()
			ends = append(ends, time.Now())
			mu.Unlock()
		}
		v := cp.Version
		ack := codec.Connack{}
		_, _ = c.Write(ack.AppendTo(nil, v))
		for {
			frame, h, err := r.next()
			if err != nil {
				return
			}
			switch h.Type {
			case codec.SUBSCRIBE:
				p, _ := codec.Decode(frame, v)
				s := p.(*codec.Subscribe)
				sa := codec.Suback{PacketID: s.PacketID, ReasonCodes: []codec.ReasonCode{codec.ReasonCode(s.Subscriptions[0].QoS)}}
				_, _ = c.Write(sa.AppendTo(nil, v))
			case codec.PUBLISH:
				p, err := codec.Decode(frame, v)
				if err != nil {
					return
				}
				puback(c, v, p.(*codec.Publish))
			case codec.PINGREQ:
				_, _ = c.Write([]byte{byte(codec.PINGRESP) << 4, 0})
			case codec.DISCONNECT:
				return
			}
		}
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 5, QoS: 1, Rate: 100, Persistent: true,
		ConnRate: 10, Duration: 300 * time.Millisecond, Drain: 200 * time.Millisecond}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	require.Equal(t, int64(10), res.Connections.Up)
	require.NotContains(t, strings.Join(res.Warnings, "\n"), "sessions", "every session ended")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, ends, 5, "each subscriber ended its session")
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	span := ends[len(ends)-1].Sub(ends[0])
	perSec := float64(len(ends)-1) / span.Seconds()
	require.LessOrEqual(t, perSec, 1.25*cfg.ConnRate,
		"%d sessions ended in %v: %.1f connections/s with -conn-rate %g", len(ends), span.Round(time.Millisecond), perSec, cfg.ConnRate)
}

// A run cut short (SIGINT, ctx cancelled) reports its rates over the part
// of the window that ran, and warns. They were divided by -duration: 1.5 s
// of a 60 s window at 300/s reported 7.5/s.
// With -procs the workers measured the shorter window, but the merged
// result divided by -duration again.
func TestRatesAfterCancel(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprint("procs", procs), func(t *testing.T) {
			addr := startEngine(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() { time.Sleep(1500 * time.Millisecond); cancel() }()
			cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 4, QoS: 1, Rate: 300,
				Duration: time.Minute, Drain: time.Second, Procs: procs}
			if procs > 1 {
				cfg.WorkerCommand = workerProcessCommand
			}
			res, err := Run(ctx, cfg)
			require.NoError(t, err)
			var table strings.Builder
			_ = res.WriteTable(&table)
			t.Logf("\n%s", table.String())
			require.InDelta(t, cfg.Rate, res.Messages.SentPerSec, cfg.Rate*0.2,
				"sent_per_s over the part of the window that ran (window_s %g, window_sent %d)", res.Window, res.Messages.WindowSent)
			require.InDelta(t, cfg.Rate, res.Messages.ReceivedPerSec, cfg.Rate*0.2, "received_per_s likewise")
			require.Less(t, res.Messages.Unsent, int64(cfg.Rate), "only messages due before the cancel count as unsent")
			require.Contains(t, strings.Join(res.Warnings, "\n"), "cancelled")
		})
	}
}

// relayBroker is a minimal MQTT broker for one subscriber: it answers
// CONNECT, SUBSCRIBE and PINGREQ, and hands every PUBLISH (with its
// decoded stamp) to policy, which acknowledges and forwards it, or not.
type relayBroker struct {
	mu  sync.Mutex
	sub net.Conn
	ver codec.Version
}

// forward sends p to the subscriber at QoS 0 (the subscriber acknowledges
// nothing then, which keeps the fake simple).
func (b *relayBroker) forward(p codec.Publish) {
	p.QoS, p.PacketID, p.Dup = 0, 0, false
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sub != nil {
		_, _ = b.sub.Write(p.AppendTo(nil, b.ver))
	}
}

func startRelay(t *testing.T, policy func(b *relayBroker, c net.Conn, p codec.Publish, st stamp)) string {
	t.Helper()
	b := &relayBroker{}
	return startFake(t, func(c net.Conn, r *frameReader) {
		v, ok := fakeHandshake(c, r, codec.Success, false)
		if !ok {
			return
		}
		for {
			frame, h, err := r.next()
			if err != nil {
				return
			}
			switch h.Type {
			case codec.SUBSCRIBE:
				p, _ := codec.Decode(frame, v)
				s := p.(*codec.Subscribe)
				sa := codec.Suback{PacketID: s.PacketID, ReasonCodes: []codec.ReasonCode{codec.ReasonCode(s.Subscriptions[0].QoS)}}
				b.mu.Lock()
				b.sub, b.ver = c, v
				_, _ = c.Write(sa.AppendTo(nil, v))
				b.mu.Unlock()
			case codec.PINGREQ:
				_, _ = c.Write([]byte{byte(codec.PINGRESP) << 4, 0})
			case codec.PUBLISH:
				p, err := codec.Decode(frame, v)
				if err != nil {
					return
				}
				pub := *p.(*codec.Publish)
				pub.Topic = append([]byte(nil), pub.Topic...)
				pub.Payload = append([]byte(nil), pub.Payload...)
				st, _ := readStamp(pub.Payload)
				policy(b, c, pub, st)
			case codec.DISCONNECT:
				return
			}
		}
	})
}

// The drain waits, up to -drain, for the deliveries still owed, not only
// for 250 ms of silence: a broker that holds the last 300 ms of QoS 0
// messages for 900 ms and then delivers them all lost none. They were
// counted lost ("lost 60 (30%)"), with no warning, the run over in 1.3 s
// of a 3 s drain.
func TestDrainWaitsForWhatIsOwed(t *testing.T) {
	var (
		mu        sync.Mutex
		held      []codec.Publish
		flushOnce sync.Once
	)
	addr := startRelay(t, func(b *relayBroker, c net.Conn, p codec.Publish, st stamp) {
		if st.at < int64(700*time.Millisecond) {
			b.forward(p)
			return
		}
		mu.Lock()
		held = append(held, p)
		mu.Unlock()
		flushOnce.Do(func() {
			time.AfterFunc(900*time.Millisecond, func() {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range held {
					b.forward(p)
				}
				held = nil
			})
		})
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 1, QoS: 0, Rate: 200,
		Duration: time.Second, Drain: 3 * time.Second}
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("took %v\n%s", time.Since(start).Round(time.Millisecond), table.String())
	require.Zero(t, res.Messages.Lost, "messages the broker delivered within the 3 s drain counted lost")
}

// puback acknowledges a QoS 1 PUBLISH on c.
func puback(c net.Conn, v codec.Version, p *codec.Publish) {
	a := codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID}
	_, _ = c.Write(a.AppendTo(nil, v))
}

// A broker that stops acknowledging and delivering half-way through the
// window, and never recovers: the messages due in the stalled half are never
// sent (the window stays full) or never delivered. They had no latency, so
// the percentiles described only the healthy half (p99 227 µs while half
// the window waited out a stall of 300 ms and more). Now each is recorded
// at the wait it had at least when the run ended, and counted as censored.
func TestStallShowsInPercentiles(t *testing.T) {
	addr := startRelay(t, func(b *relayBroker, c net.Conn, p codec.Publish, st stamp) {
		if st.at >= int64(500*time.Millisecond) {
			return // stalled: no PUBACK, no delivery
		}
		puback(c, codec.V311, &p)
		b.forward(p)
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 1, QoS: 1, Rate: 1000, Inflight: 10,
		Duration: time.Second, Drain: 300 * time.Millisecond}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	m := res.Messages
	require.Greater(t, m.Unsent, int64(400), "precondition: half the window was never sent")
	window := int64(cfg.Rate * cfg.Duration.Seconds())
	for name, h := range map[string]*Histogram{"end-to-end": res.Latency, "publish-to-ack": res.AckLatency} {
		s := h.Summary()
		require.GreaterOrEqual(t, s.P99, int64(300_000), "%s: p99 over %d values, while %d of the window's %d messages waited out a stall of at least 300 ms (unsent %d, lost %d)",
			name, s.Count, m.Unsent+m.Lost, window, m.Unsent, m.Lost)
		require.Equal(t, m.Unsent+m.Lost, s.Censored, "%s: every message never sent or never delivered (acknowledged) is censored", name)
		require.LessOrEqual(t, s.Count, window, "%s: one value per message of the window", name)
	}
	require.Contains(t, table.String(), "censored")
	require.NotContains(t, strings.Join(res.Warnings, "\n"), "leave out")
}

// The same stall with the subscriber in one worker process and a publisher
// in another: the process that merges the results censors what neither
// process alone knew was missing.
func TestStallShowsInPercentilesAcrossProcesses(t *testing.T) {
	addr := startRelay(t, func(b *relayBroker, c net.Conn, p codec.Publish, st stamp) {
		if st.at >= int64(500*time.Millisecond) {
			return
		}
		puback(c, codec.V311, &p)
		b.forward(p)
	})
	// fanin: publishers 0 and 1 in workers 0 and 1, the subscriber in worker 0.
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioFanIn, N: 2, Subs: 1, QoS: 1, Rate: 1000, Inflight: 10,
		Duration: time.Second, Drain: 300 * time.Millisecond, Procs: 2, WorkerCommand: workerProcessCommand}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	m := res.Messages
	require.Equal(t, int64(3), res.Connections.Up, "%+v", res.Workers)
	require.Greater(t, m.Unsent, int64(400), "precondition: half the window was never sent")
	s := res.Latency.Summary()
	require.GreaterOrEqual(t, s.P99, int64(300_000))
	require.Equal(t, m.Unsent+m.Lost, s.Censored)
}

// A QoS 0 message missing before a later one of its publisher arrived was
// dropped, not delayed: it stays out of the percentiles (counted lost, and
// warned about). Messages missing at the end of a stream cannot be told
// from held ones and are censored.
func TestDroppedLeftOutTrailingCensored(t *testing.T) {
	addr := startRelay(t, func(b *relayBroker, c net.Conn, p codec.Publish, st stamp) {
		if st.seq == 50 || st.at >= int64(700*time.Millisecond) {
			return // one dropped; from 700 ms on, held for ever
		}
		b.forward(p)
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 1, QoS: 0, Rate: 200,
		Duration: time.Second, Drain: 300 * time.Millisecond}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	m := res.Messages
	require.Zero(t, m.Unsent, "precondition: QoS 0 at 200/s is sent on time")
	require.Equal(t, m.Lost-1, res.Latency.Summary().Censored, "everything lost but the one dropped is censored")
	require.GreaterOrEqual(t, res.Latency.Quantile(0.99), int64(300_000))
	require.Contains(t, strings.Join(res.Warnings, "\n"), "the latency percentiles leave out 1 message")
}

// A broker that delivers every message a second time (a QoS 1 redelivery
// with DUP, as after a reconnection) delivered no more distinct messages
// than one that delivers each once: received_per_s counted every arrival
// (400/s for 200/s offered), and each duplicate added a latency.
func TestDuplicatesNotInReceivedRate(t *testing.T) {
	addr := startRelay(t, func(b *relayBroker, c net.Conn, p codec.Publish, st stamp) {
		puback(c, codec.V311, &p)
		b.forward(p)
		dup := p
		dup.Dup = true
		b.mu.Lock()
		_, _ = b.sub.Write(dup.AppendTo(nil, b.ver)) // QoS 1, DUP
		b.mu.Unlock()
	})
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 1, QoS: 1, Rate: 200,
		Duration: time.Second, Drain: time.Second}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	m := res.Messages
	require.Positive(t, m.Unique)
	require.Equal(t, m.Unique, m.Duplicated, "precondition: every message arrived twice")
	require.LessOrEqual(t, m.WindowReceived, m.Unique, "window_received counts distinct messages")
	require.InDelta(t, cfg.Rate, m.ReceivedPerSec, 0.2*cfg.Rate)
	require.Equal(t, m.Unique, res.Latency.Count(), "one latency per distinct message")
}
