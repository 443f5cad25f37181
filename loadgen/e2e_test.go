package loadgen

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/store"
)

// e2eCases run every scenario for about 2 s; the rates stay far below what
// either broker sustains under the race detector, so QoS 1 and 2 must lose
// nothing.
var e2eCases = []struct {
	name string
	cfg  Config
}{
	{"pairs-qos1", Config{Scenario: ScenarioPairs, N: 4, QoS: 1, Rate: 400}},
	{"pairs-qos2-v5", Config{Scenario: ScenarioPairs, N: 3, QoS: 2, Rate: 300, Version: 5}},
	{"pairs-qos0-window", Config{Scenario: ScenarioPairs, N: 2, QoS: 0, Rate: 0, Inflight: 20}},
	{"fanin-qos1", Config{Scenario: ScenarioFanIn, N: 4, Subs: 2, QoS: 1, Rate: 400}},
	{"fanout-qos1-v5", Config{Scenario: ScenarioFanOut, N: 5, QoS: 1, Rate: 100, Version: 5}},
	{"fleet-qos1", Config{Scenario: ScenarioFleet, N: 5, QoS: 1, Rate: 200, CmdRate: 50}},
	{"conn", Config{Scenario: ScenarioConn, N: 50, ConnRate: 200}},
	{"pairs-qos1-persistent", Config{Scenario: ScenarioPairs, N: 3, QoS: 1, Rate: 300, Persistent: true}},
	{"fanout-qos1-v5-persistent", Config{Scenario: ScenarioFanOut, N: 3, QoS: 1, Rate: 100, Version: 5, Persistent: true}},
}

func TestEndToEndLoopmq(t *testing.T) {
	t.Parallel()
	runE2E(t, startEngine(t))
}

func TestEndToEndMosquitto(t *testing.T) {
	t.Parallel()
	runE2E(t, startMosquitto(t))
}

func runE2E(t *testing.T, addr string) {
	for _, tc := range e2eCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Brokers = []string{addr}
			cfg.Duration = 1500 * time.Millisecond
			cfg.Drain = 2 * time.Second
			cfg.ConnectTimeout = 3 * time.Second
			cfg.SetupTimeout = 10 * time.Second
			start := time.Now()
			res, err := Run(context.Background(), cfg)
			require.NoError(t, err)
			var table strings.Builder
			require.NoError(t, res.WriteTable(&table))
			t.Logf("%s in %v\n%s", tc.name, time.Since(start).Round(time.Millisecond), table.String())
			checkCounts(t, cfg, res)
		})
	}
}

// checkCounts checks that the counts add up: every connection up, no
// error, and for every publisher and every subscriber that expects it,
// sent = received + lost (no duplicates here); at QoS 1 and 2 nothing lost
// and everything acknowledged.
func checkCounts(t *testing.T, cfg Config, res *Result) {
	t.Helper()
	c := res.Connections
	require.Equal(t, c.Planned, c.Up, "every connection set up: %v", res.Errors)
	require.Zero(t, c.Dropped)
	require.Empty(t, res.Errors)
	require.Zero(t, res.Messages.Foreign)
	if cfg.Scenario == ScenarioConn {
		require.Equal(t, int64(cfg.N), c.Up)
		return
	}
	sinks := map[string]int64{ScenarioPairs: 1, ScenarioFanIn: int64(cfg.Subs), ScenarioFanOut: int64(cfg.N), ScenarioFleet: 1}[cfg.Scenario]
	wantSources := map[string]int{ScenarioPairs: cfg.N, ScenarioFanIn: cfg.N, ScenarioFanOut: 1, ScenarioFleet: 2 * cfg.N}[cfg.Scenario]
	require.Len(t, res.Sources, wantSources)
	for _, s := range res.Sources {
		require.Positive(t, s.Sent, "source %d published", s.ID)
		require.Equal(t, sinks, s.Sinks, "source %d: subscribers expecting it", s.ID)
		require.Zero(t, s.Duplicated, "source %d", s.ID)
		require.Equal(t, s.Sent*s.Sinks, s.Received+s.Lost, "source %d: sent = received + lost", s.ID)
		if cfg.QoS > 0 {
			require.Zero(t, s.Lost, "source %d: QoS %d loses nothing", s.ID, cfg.QoS)
			require.Equal(t, s.Sent, s.Acked, "source %d: every PUBLISH acknowledged", s.ID)
		}
	}
	m := res.Messages
	require.Equal(t, m.Expected, m.Unique+m.Lost)
	require.Positive(t, res.Latency.Count())
	if cfg.QoS > 0 {
		require.Positive(t, res.AckLatency.Count())
		require.Zero(t, res.Latency.Summary().Censored, "nothing was owed at the end")
		require.Zero(t, res.AckLatency.Summary().Censored, "nothing was owed at the end")
	}
	if cfg.Rate > 0 {
		// Open loop: the offered load was sent, on time or late, but sent.
		require.Zero(t, m.Unsent)
		require.InDelta(t, m.OfferedPerSec, m.SentPerSec, m.OfferedPerSec*0.05)
	}
}

// With Persistent, the subscribers' sessions are persistent during the run
// (a broker with a store writes their deliveries) and gone after it, for
// both protocol versions.
func TestPersistentSessionsEndedAfterRun(t *testing.T) {
	for _, version := range []int{3, 5} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			st := store.NewMemory()
			t.Cleanup(func() { _ = st.Close() })
			s := startEngineWith(t, engine.Options{Store: st})
			cfg := Config{Scenario: ScenarioPairs, N: 3, QoS: 1, Rate: 300, Version: version, Persistent: true,
				Brokers: []string{s.Addr().String()}, Duration: time.Second, Drain: 2 * time.Second}
			res, err := Run(context.Background(), cfg)
			require.NoError(t, err)
			checkCounts(t, cfg, res)
			require.Empty(t, res.Warnings)
			require.Positive(t, s.Stats().StoreCommits, "deliveries to the persistent sessions were written")
			require.Eventually(t, func() bool { return s.Stats().Sessions == 0 }, 5*time.Second, 10*time.Millisecond,
				"the subscribers' sessions ended after the run")
		})
	}
}

// sent_per_s is what was sent within the window. A publisher that falls
// behind sends its backlog during the drain; those sends were counted by
// their intended time, so sent_per_s overstated the send rate by whatever
// the drain caught up (43,810/s sent against 16,211/s received, no loss).
func TestSentRateCountsSendsInTheWindow(t *testing.T) {
	addr := startEngine(t)
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 1, QoS: 1, Inflight: 1,
		Rate: 200000, Duration: time.Second, Drain: 1500 * time.Millisecond}
	res, err := Run(context.Background(), cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	m := res.Messages
	require.Positive(t, m.Unsent, "the publisher fell behind (precondition)")
	require.InDelta(t, m.ReceivedPerSec, m.SentPerSec, 0.1*m.ReceivedPerSec+50,
		"sent_per_s (%.0f/s) must be what was sent in the window; received_per_s is %.0f/s with a window of one and no loss in the window",
		m.SentPerSec, m.ReceivedPerSec)
}
