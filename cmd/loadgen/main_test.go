package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/loadgen"
)

func startEngine(t *testing.T) string {
	t.Helper()
	s := engine.New(engine.Options{Listen: "127.0.0.1:0", Loops: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s.Addr().String()
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildOut  []byte
)

// binary builds the CLI once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "loadgen-cli-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "loadgen")
		buildOut, buildErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
	})
	require.NoError(t, buildErr, "go build: %s", buildOut)
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		_ = os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

func TestUsageHidesTheWorkerFlag(t *testing.T) {
	var out bytes.Buffer
	require.Equal(t, 0, run([]string{"-h"}, nil, &out, &out))
	for _, f := range []string{"-broker", "-scenario", "-procs", "-source-ips", "-json", "-broker-pid", "-tls", "-cafile", "-insecure", "-version", "-rate"} {
		require.Contains(t, out.String(), "  "+f+" ")
	}
	require.NotContains(t, out.String(), "-worker")
}

func TestBadFlagsExitTwo(t *testing.T) {
	for _, args := range [][]string{{"-qos", "3"}, {"-scenario", "storm"}, {"-size", "10"}, {"-version", "4"}, {"-source-ips", "nope"}, {"-nosuchflag"}} {
		var out bytes.Buffer
		require.Equal(t, 2, run(args, nil, &out, &out), "%v: %s", args, out.String())
	}
}

// runCLI runs the built binary and returns its result from -json.
func runCLI(t *testing.T, args ...string) (*loadgen.Result, string, string) {
	t.Helper()
	jsonPath := filepath.Join(t.TempDir(), "result.json")
	cmd := exec.Command(binary(t), append(args, "-json", jsonPath)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
	t.Logf("loadgen %s\n%s", strings.Join(args, " "), stdout.String())
	b, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	var res loadgen.Result
	require.NoError(t, json.Unmarshal(b, &res))
	return &res, stdout.String(), stderr.String()
}

// TestProcsMergesWorkers runs two worker processes and checks that the
// parent's figures are the sum of theirs, for a scenario whose streams stay
// in one process (pairs) and for one whose streams cross processes (fanout:
// the publisher in worker 0, subscribers in both).
func TestProcsMergesWorkers(t *testing.T) {
	addr := startEngine(t)
	t.Run("pairs", func(t *testing.T) {
		res, stdout, stderr := runCLI(t, "-broker", addr, "-scenario", "pairs", "-n", "6", "-qos", "1", "-rate", "600",
			"-duration", "1500ms", "-warmup", "0", "-procs", "2")
		require.Equal(t, 2, res.Procs)
		require.Len(t, res.Workers, 2)
		var up, sent, recv int64
		for _, w := range res.Workers {
			require.Empty(t, w.Exit)
			require.Equal(t, int64(6), w.Up, "each worker holds three pairs")
			up += w.Up
			sent += w.Sent
			recv += w.Received
		}
		require.Equal(t, int64(12), res.Connections.Up)
		require.Equal(t, up, res.Connections.Up)
		require.Equal(t, sent, res.Messages.Sent)
		require.Equal(t, recv, res.Messages.Received)
		require.Len(t, res.Sources, 6)
		for _, s := range res.Sources {
			require.Equal(t, int64(1), s.Sinks)
			require.Equal(t, s.Sent, s.Received+s.Lost)
			require.Zero(t, s.Lost)
		}
		require.InDelta(t, 600, res.Messages.SentPerSec, 30)
		require.Equal(t, res.Messages.Received, res.Latency.Count(), "the merged histogram holds every delivery (no warm-up)")
		require.Contains(t, stdout, "worker 1")
		require.Contains(t, stderr, "conns 12/12", "the parent's progress line adds the workers' up")
	})
	t.Run("fanout", func(t *testing.T) {
		res, _, _ := runCLI(t, "-broker", addr, "-scenario", "fanout", "-n", "5", "-qos", "1", "-rate", "100",
			"-duration", "1500ms", "-warmup", "0", "-procs", "2", "-quiet")
		require.Len(t, res.Workers, 2)
		require.Len(t, res.Sources, 1)
		s := res.Sources[0]
		require.Equal(t, int64(5), s.Sinks, "subscribers of both workers count for the one publisher")
		require.Positive(t, s.Sent)
		require.Equal(t, 5*s.Sent, s.Received)
		require.Zero(t, s.Lost)
		require.Equal(t, res.Workers[0].Sent, s.Sent, "worker 0 holds the publisher")
		require.Zero(t, res.Workers[1].Sent)
		require.Equal(t, 5*s.Sent, res.Workers[0].Received+res.Workers[1].Received)
	})
}

// TestFDLimitIsReported runs the CLI with a file descriptor limit of 64 and
// 200 connections: the run must say so, not fail silently.
func TestFDLimitIsReported(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	addr := startEngine(t)
	bin := binary(t)
	cmd := exec.Command("sh", "-c", `ulimit -n 64 && exec "$0" "$@"`, bin, "-broker", addr, "-scenario", "conn",
		"-n", "200", "-duration", "500ms", "-warmup", "0", "-quiet")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	out := stdout.String()
	t.Log(out)
	require.Contains(t, out, "fd limit reached (EMFILE)")
	require.Contains(t, out, "hint: the process ran out of file descriptors")
	require.Contains(t, out, "expect EMFILE; use -procs")
}
