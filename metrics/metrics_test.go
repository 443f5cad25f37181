package metrics

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/loadgen"
	"github.com/loopmq/loopmq/store"
)

func startBroker(t *testing.T) *engine.Server {
	t.Helper()
	s := engine.New(engine.Options{Listen: "127.0.0.1:0", Loops: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// scrape fetches url/metrics and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return mf
}

// value returns the value of family name's sample whose labels include
// every pair of want (name, value, name, value...), summed when several
// match; counters, gauges and histogram counts alike.
func value(t *testing.T, mf map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f, ok := mf[name]
	require.True(t, ok, "metric %s missing", name)
	var sum float64
	found := false
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			ok := false
			for _, lp := range m.Label {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	require.True(t, found, "no %s sample with labels %v", name, want)
	return sum
}

// TestMetricsMatchLoadgen scrapes /metrics during and after a loadgen
// run and checks the broker's counts against what loadgen sent and
// received.
func TestMetricsMatchLoadgen(t *testing.T) {
	s := startBroker(t)
	hs := httptest.NewServer(Handler(Options{Server: s, Version: "test"}))
	t.Cleanup(hs.Close)

	cfg := loadgen.Config{Brokers: []string{s.Addr().String()}, Scenario: loadgen.ScenarioPairs,
		N: 4, QoS: 1, Rate: 400, Size: 64, Duration: 1500 * time.Millisecond, Drain: 2 * time.Second,
		ConnectTimeout: 3 * time.Second, SetupTimeout: 10 * time.Second}
	type runResult struct {
		res *loadgen.Result
		err error
	}
	done := make(chan runResult, 1)
	go func() {
		res, err := loadgen.Run(context.Background(), cfg)
		done <- runResult{res, err}
	}()

	// Scrape while the load runs: counters only grow, and the connections
	// show up.
	var last float64
	var sawConnected bool
	var rr runResult
wait:
	for {
		select {
		case rr = <-done:
			break wait
		case <-time.After(200 * time.Millisecond):
			mf := scrape(t, hs.URL)
			v := value(t, mf, "loopmq_messages_received_total", "qos", "1")
			require.GreaterOrEqual(t, v, last, "a counter went down")
			last = v
			if value(t, mf, "loopmq_clients_connected") == float64(2*cfg.N) {
				sawConnected = true
			}
		}
	}
	require.NoError(t, rr.err)
	res := rr.res
	require.True(t, sawConnected, "a scrape during the run saw every connection")
	require.NotZero(t, res.Messages.Sent)
	require.Zero(t, res.Messages.Lost)

	// Per-message counters reach readers within a second of the last
	// message (engine/stats.go); the connection counts at once.
	var mf map[string]*dto.MetricFamily
	require.Eventually(t, func() bool {
		mf = scrape(t, hs.URL)
		return value(t, mf, "loopmq_clients_connected") == 0 &&
			value(t, mf, "loopmq_messages_sent_total", "qos", "1") == float64(res.Messages.Received) &&
			value(t, mf, "loopmq_messages_received_total", "qos", "1") == float64(res.Messages.Sent)
	}, 5*time.Second, 20*time.Millisecond, "loadgen's connections end and the counts match")
	require.Equal(t, float64(res.Messages.Sent), value(t, mf, "loopmq_messages_received_total", "qos", "1"))
	require.Equal(t, float64(res.Messages.Received), value(t, mf, "loopmq_messages_sent_total", "qos", "1"))
	require.Zero(t, value(t, mf, "loopmq_messages_received_total", "qos", "0"))
	require.Equal(t, float64(res.Messages.Sent*int64(cfg.Size)), value(t, mf, "loopmq_payload_received_bytes_total", "qos", "1"))
	require.Equal(t, float64(res.Connections.Up), value(t, mf, "loopmq_connects_total"))
	require.Zero(t, value(t, mf, "loopmq_messages_dropped_total"))
	require.Zero(t, value(t, mf, "loopmq_messages_inflight"))
	require.Zero(t, value(t, mf, "loopmq_messages_queued"))
	for _, name := range []string{"loopmq_messages_inflight_payload_bytes", "loopmq_messages_queued_payload_bytes", "loopmq_retained_payload_bytes"} {
		require.Contains(t, mf, name)
		require.Zero(t, value(t, mf, name))
	}
	require.Zero(t, value(t, mf, "loopmq_connections_refused_total"))
	require.Equal(t, 1.0, value(t, mf, "loopmq_build_info", "version", "test"))
	require.Positive(t, value(t, mf, "loopmq_loop_event_duration_seconds"))
	require.Positive(t, value(t, mf, "loopmq_loop_events_total", "kind", "traffic"))
	require.Positive(t, value(t, mf, "loopmq_received_bytes_total"))
	require.Contains(t, mf, "go_goroutines", "the Go runtime collector")
	require.Contains(t, mf, "go_gc_duration_seconds", "the Go collector's defaults stay")
	require.Positive(t, mf["go_sched_latencies_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(), "scheduling latency")
	require.NotContains(t, mf, "loopmq_store_commits_total", "no store, no store metrics")
}

func TestHealthAndReady(t *testing.T) {
	s := startBroker(t)
	var notReady atomic.Bool
	hs := httptest.NewServer(Handler(Options{Server: s, Ready: func() bool { return !notReady.Load() },
		StoreStats: func() store.Stats { return store.Stats{Commits: 4, CommitNanos: 2e9} }}))
	t.Cleanup(hs.Close)
	get := func(path string) int {
		resp, err := http.Get(hs.URL + path)
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get("/healthz"))
	require.Equal(t, http.StatusOK, get("/readyz"))
	notReady.Store(true)
	require.Equal(t, http.StatusServiceUnavailable, get("/readyz"))
	notReady.Store(false)

	mf := scrape(t, hs.URL)
	require.Equal(t, 4.0, value(t, mf, "loopmq_store_commits_total"))
	require.Equal(t, 2.0, value(t, mf, "loopmq_store_commit_seconds_total"))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	require.Equal(t, http.StatusServiceUnavailable, get("/readyz"), "a stopping broker is not ready")
	require.Equal(t, http.StatusOK, get("/healthz"))
}
