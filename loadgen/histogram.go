package loadgen

import (
	"encoding/json"
	"fmt"
	"sync"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with three
// significant digits. Larger values are recorded as the maximum and counted.
const (
	histLowest  = 1
	histHighest = 10 * 60 * 1e6
	histDigits  = 3
)

// Histogram is a latency distribution in microseconds. It is not safe for
// concurrent use; the run records into a recorder and hands out Histograms
// when it ends.
//
// Some of its values may be censored: lower bounds recorded for messages
// that had not arrived (or been acknowledged) when the run ended, at the
// time they had waited by then (see the package doc).
type Histogram struct {
	h        *hdr.Histogram
	clamped  int64 // values above histHighest, recorded as histHighest
	censored int64 // values recorded by RecordCensored
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdr.New(histLowest, histHighest, histDigits)}
}

// Record adds one value in microseconds.
func (h *Histogram) Record(us int64) {
	if us < histLowest {
		us = histLowest
	}
	if us > histHighest {
		us = histHighest
		h.clamped++
	}
	_ = h.h.RecordValue(us) // in range by construction
}

// RecordCensored adds one lower bound in microseconds: the wait so far of
// a message that never arrived.
func (h *Histogram) RecordCensored(us int64) {
	h.Record(us)
	h.censored++
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.h == nil {
		return
	}
	h.h.Merge(o.h)
	h.clamped += o.clamped
	h.censored += o.censored
}

// Count is the number of values recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Quantile returns the value at q (0 to 1) in microseconds.
func (h *Histogram) Quantile(q float64) int64 { return h.h.ValueAtQuantile(q * 100) }

// Max returns the largest value recorded (to the histogram's precision).
func (h *Histogram) Max() int64 { return h.h.Max() }

// Summary is a histogram's percentiles in microseconds.
type Summary struct {
	Count   int64   `json:"count"`
	P50     int64   `json:"p50_us"`
	P90     int64   `json:"p90_us"`
	P99     int64   `json:"p99_us"`
	P999    int64   `json:"p999_us"`
	Max     int64   `json:"max_us"`
	Mean    float64 `json:"mean_us"`
	Clamped int64   `json:"clamped,omitempty"`
	// Censored values are among Count: lower bounds for messages not
	// delivered (or acknowledged) by the end of the run.
	Censored int64 `json:"censored"`
}

// Summary returns the percentiles the table and JSON report.
func (h *Histogram) Summary() Summary {
	if h.Count() == 0 {
		return Summary{}
	}
	return Summary{Count: h.Count(), P50: h.Quantile(0.50), P90: h.Quantile(0.90), P99: h.Quantile(0.99),
		P999: h.Quantile(0.999), Max: h.Max(), Mean: h.h.Mean(), Clamped: h.clamped, Censored: h.censored}
}

type histogramJSON struct {
	Summary
	// HDR is the whole distribution in HdrHistogram's compressed V2
	// encoding (base64), readable by every HdrHistogram implementation.
	HDR string `json:"hdr"`
}

// MarshalJSON writes the summary and the encoded distribution.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	enc, err := h.h.Encode(hdr.V2CompressedEncodingCookieBase)
	if err != nil {
		return nil, fmt.Errorf("encode histogram: %w", err)
	}
	return json.Marshal(histogramJSON{Summary: h.Summary(), HDR: string(enc)})
}

// UnmarshalJSON restores the distribution from its encoding.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histogramJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.HDR == "" {
		*h = *NewHistogram()
		return nil
	}
	d, err := hdr.Decode([]byte(j.HDR))
	if err != nil {
		return fmt.Errorf("decode histogram: %w", err)
	}
	h.h, h.clamped, h.censored = d, j.Clamped, j.Censored
	return nil
}

// recorder is a histogram many goroutines record into: a few shards, each
// behind its own mutex, which connections pick by index and lock once per
// batch of values. One hdr histogram is about 200 KB, too much for one per
// connection at 20,000 connections.
type recorder struct {
	shards [recorderShards]recorderShard
}

const recorderShards = 8

type recorderShard struct {
	mu sync.Mutex
	h  *Histogram
	_  [40]byte // keep shards' mutexes off one cache line
}

func newRecorder() *recorder {
	r := &recorder{}
	for i := range r.shards {
		r.shards[i].h = NewHistogram()
	}
	return r
}

// record adds the values (microseconds) to the shard of connection idx.
func (r *recorder) record(idx int, vals []int64) {
	if len(vals) == 0 {
		return
	}
	s := &r.shards[idx%recorderShards]
	s.mu.Lock()
	for _, v := range vals {
		s.h.Record(v)
	}
	s.mu.Unlock()
}

// snapshot returns a merged copy of every shard.
func (r *recorder) snapshot() *Histogram {
	out := NewHistogram()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		out.Merge(s.h)
		s.mu.Unlock()
	}
	return out
}
