package loadgen

import (
	"context"
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

// A run cut short (SIGINT, ctx cancelled) reports its rates over the part
// of the window that ran, and warns. They were divided by -duration: 1.5 s
// of a 60 s window at 300/s reported 7.5/s.
func TestRatesAfterCancel(t *testing.T) {
	addr := startEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { time.Sleep(1500 * time.Millisecond); cancel() }()
	cfg := Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 3, QoS: 1, Rate: 300,
		Duration: time.Minute, Drain: time.Second}
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	var table strings.Builder
	_ = res.WriteTable(&table)
	t.Logf("\n%s", table.String())
	require.InDelta(t, cfg.Rate, res.Messages.SentPerSec, cfg.Rate*0.2,
		"sent_per_s over the part of the window that ran (window_s %g, window_sent %d)", res.Window, res.Messages.WindowSent)
	require.Less(t, res.Messages.Unsent, int64(cfg.Rate), "only messages due before the cancel count as unsent")
	require.Contains(t, strings.Join(res.Warnings, "\n"), "cancelled")
}
