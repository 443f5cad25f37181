package loadgen

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramMergeEqualsRecordingEverything(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	all, a, b := NewHistogram(), NewHistogram(), NewHistogram()
	for i := range 100000 {
		v := int64(rng.ExpFloat64()*300) + 1
		if i%10 == 0 {
			v *= 100 // a slow tail
		}
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	a.Merge(b)
	require.Equal(t, all.Summary(), a.Summary())
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		require.Equal(t, all.Quantile(q), a.Quantile(q), "quantile %v", q)
	}
}

func TestHistogramClampsAndJSONRoundTrip(t *testing.T) {
	h := NewHistogram()
	h.Record(0)                // below the range: 1 µs
	h.Record(histHighest * 10) // above: clamped
	h.Record(1500)
	h.RecordCensored(2_000_000) // a message still undelivered after 2 s
	require.Equal(t, int64(4), h.Count())
	b, err := json.Marshal(h)
	require.NoError(t, err)
	var back Histogram
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, h.Summary(), back.Summary())
	require.Equal(t, int64(1), back.Summary().Clamped)
	require.Equal(t, int64(1), back.Summary().Censored)
	require.Contains(t, string(b), `"p99_us"`)
	require.Contains(t, string(b), `"censored":1`)
	back.Merge(h)
	require.Equal(t, int64(2), back.Summary().Censored)
}

func TestRecorderConcurrent(t *testing.T) {
	r := newRecorder()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := []int64{100, 200, 300, 400}
			for range 250 {
				r.record(g, vals)
			}
		}()
	}
	wg.Wait()
	s := r.snapshot()
	require.Equal(t, int64(16*250*4), s.Count())
	require.InDelta(t, 250, s.Summary().Mean, 1)
}

// TestResultMergeAcrossProcesses merges the results of a publishing and a
// subscribing process, as a fanout over two workers produces them.
func TestResultMergeAcrossProcesses(t *testing.T) {
	cfg := Config{Scenario: ScenarioFanOut, N: 3, Duration: 2 * time.Second, Rate: 100}
	pub := newResult(cfg)
	pub.Connections = ConnStats{Planned: 2, Attempted: 2, Up: 2, Publishers: 1, Subscribers: 1}
	pub.Sources = []SourceStats{{ID: 0, Sent: 200, Acked: 200, Sinks: 1, Received: 200, Unique: 200}}
	pub.Messages.WindowSent, pub.Messages.WindowReceived = 200, 200
	pub.Latency.Record(100)
	pub.Errors = []ErrorCount{{Kind: "run: connection closed by broker", Count: 1, Example: "x"}}
	pub.finalize()

	sub := newResult(cfg)
	sub.Connections = ConnStats{Planned: 2, Attempted: 2, Up: 1, Failed: 1, Subscribers: 1}
	sub.Sources = []SourceStats{{ID: 0, Sinks: 1, Received: 199, Unique: 198, Duplicated: 1}}
	sub.Messages.WindowReceived = 199
	sub.Latency.Record(300)
	sub.Errors = []ErrorCount{{Kind: "run: connection closed by broker", Count: 2, Example: "y"}, {Kind: "connack timeout", Count: 1}}
	sub.finalize()
	require.Equal(t, int64(0), sub.Messages.Lost, "without the sent count a process cannot see loss")

	pub.Merge(sub)
	require.Equal(t, ConnStats{Planned: 4, Attempted: 4, Up: 3, Failed: 1, Publishers: 1, Subscribers: 2}, pub.Connections)
	require.Len(t, pub.Sources, 1)
	s := pub.Sources[0]
	require.Equal(t, SourceStats{ID: 0, Sent: 200, Acked: 200, Sinks: 2, Received: 399, Unique: 398, Lost: 2, Duplicated: 1}, s)
	m := pub.Messages
	require.Equal(t, int64(400), m.Expected)
	require.Equal(t, int64(2), m.Lost)
	require.InDelta(t, 0.5, m.LossPct, 1e-9)
	require.InDelta(t, 100, m.SentPerSec, 1e-9)
	require.InDelta(t, 199.5, m.ReceivedPerSec, 1e-9)
	require.Equal(t, int64(2), pub.Latency.Count())
	require.Equal(t, []ErrorCount{{Kind: "run: connection closed by broker", Count: 3, Example: "x"}, {Kind: "connack timeout", Count: 1}}, pub.Errors)

	// The merged result survives JSON, histograms included.
	var buf bytes.Buffer
	require.NoError(t, pub.WriteJSON(&buf))
	var back Result
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	require.Equal(t, pub.Messages, back.Messages)
	require.Equal(t, pub.Latency.Summary(), back.Latency.Summary())
	require.Equal(t, pub.Sources, back.Sources)

	var table strings.Builder
	require.NoError(t, pub.WriteTable(&table))
	for _, want := range []string{"lost 2 (0.500%)", "duplicated 1", "3 × run: connection closed by broker", "end-to-end"} {
		require.Contains(t, table.String(), want)
	}
	require.NotContains(t, table.String(), "above 10 min")

	// Latencies past the histogram's range are said in the table, not
	// only in the JSON.
	pub.Latency.Record(histHighest * 2)
	table.Reset()
	require.NoError(t, pub.WriteTable(&table))
	require.Contains(t, table.String(), "(1 above 10 min, counted as 10 min)")
}

func TestResultParamsHidePassword(t *testing.T) {
	r := newResult(Config{Password: "secret", Username: "u"})
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.NotContains(t, string(b), "secret")
}
