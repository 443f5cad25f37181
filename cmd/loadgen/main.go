// Command loadgen is the CLI of package loadgen: an open-loop MQTT load
// generator with loss accounting, latency from the intended send time, and
// several worker processes for more connections than one process may hold.
//
//	loadgen -broker 127.0.0.1:1883 -scenario pairs -n 100 -qos 1 -rate 10000 -duration 10s
//
// Run `loadgen -h` for every flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/loopmq/loopmq/loadgen"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// workerFlag makes the binary a worker process of -procs; it is left out of
// the usage text.
const workerFlag = "worker"

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		brokers    = fs.String("broker", "127.0.0.1:1883", "broker `host:port`; a comma-separated list spreads connections over several brokers")
		scenario   = fs.String("scenario", "pairs", "one of "+strings.Join(loadgen.Scenarios, ", "))
		n          = fs.Int("n", 10, "publishers (pairs, fanin), subscribers (fanout), devices (fleet) or connections (conn)")
		subs       = fs.Int("subs", 1, "wildcard subscribers (fanin)")
		qos        = fs.Uint("qos", 0, "QoS of publications and subscriptions: 0, 1 or 2")
		persistent = fs.Bool("persistent", false, "subscribers keep persistent sessions (with -qos 1 or 2), ended after the run")
		size       = fs.Int("size", 64, "payload `bytes` (at least 24: run, publisher, sequence, send time)")
		rate       = fs.Float64("rate", 1000, "total offered messages/s over all publishers; 0 = as fast as the in-flight window allows")
		cmdRate    = fs.Float64("cmd-rate", 10, "fleet: total commands/s the backend sends, spread over the devices; 0 = none")
		duration   = fs.Duration("duration", 10*time.Second, "measured window")
		warmup     = fs.Duration("warmup", time.Second, "load before the measured window (not in latencies or rates)")
		ramp       = fs.Duration("ramp", 0, "raise each publisher's rate linearly from 0 over this time")
		version    = fs.Int("version", 3, "MQTT version: 3 (3.1.1) or 5 (5.0)")
		inflight   = fs.Int("inflight", 100, "un-acknowledged messages per publisher (QoS 1/2; QoS 0 with -rate 0: messages not yet fenced by PINGRESP)")
		connRate   = fs.Float64("conn-rate", 0, "new connections/s during setup (and when -persistent ends the sessions); 0 = as fast as -conn-parallel allows")
		connPar    = fs.Int("conn-parallel", 200, "concurrent connection setups")
		connectTO  = fs.Duration("connect-timeout", 5*time.Second, "bound on dial, TLS, CONNACK and SUBACK per connection")
		setupTO    = fs.Duration("setup-timeout", 60*time.Second, "bound on the whole setup phase")
		drain      = fs.Duration("drain", 3*time.Second, "wait after the schedule, at most this long, for every message sent to reach its subscribers (one process; with -procs, until 250 ms without a delivery)")
		keepAlive  = fs.Duration("keepalive", 60*time.Second, "MQTT keep-alive; idle connections ping at half of it")
		slack      = fs.Duration("overrun-slack", time.Millisecond, "how late a send may be before it counts as an overrun")
		user       = fs.String("username", "", "MQTT user name")
		pass       = fs.String("password", "", "MQTT password")
		useTLS     = fs.Bool("tls", false, "connect with TLS")
		caFile     = fs.String("cafile", "", "PEM file of CAs to trust (with -tls; default: the system's)")
		insecure   = fs.Bool("insecure", false, "with -tls, do not verify the broker's certificate")
		serverName = fs.String("servername", "", "with -tls, the name to verify (default: the broker's host)")
		sourceIPs  = fs.String("source-ips", "", "local addresses to dial from, e.g. 127.0.0.2,127.0.0.3 or 127.0.0.2-127.0.0.9 (each has its own ephemeral ports)")
		prefix     = fs.String("topic-prefix", "", "prefix of every topic")
		procs      = fs.Int("procs", 1, "worker processes (each may hold about 19,000 connections)")
		jsonFile   = fs.String("json", "", "write every figure and the run's parameters as JSON to `file` (- for stdout)")
		brokerPID  = fs.Int("broker-pid", 0, "sample this broker process's CPU time and RSS around the measured window")
		quiet      = fs.Bool("quiet", false, "no progress line")
		worker     = fs.Bool(workerFlag, false, "internal: run as a worker process (configuration on stdin)")
	)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loadgen [flags]\n\nOpen-loop MQTT load generator. Flags:\n")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == workerFlag {
				return
			}
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(stderr, "  -%s %s\n    \t%s", f.Name, name, usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *worker {
		if err := loadgen.ServeWorker(ctx, stdin, stdout); err != nil {
			fmt.Fprintln(stderr, "loadgen worker:", err)
			return 1
		}
		return 0
	}
	if *qos > 2 {
		fmt.Fprintf(stderr, "loadgen: -qos %d: want 0, 1 or 2\n", *qos)
		return 2
	}
	cfg := loadgen.Config{
		Scenario: *scenario, N: *n, Subs: *subs, QoS: byte(*qos), Size: *size, Rate: *rate, CmdRate: *cmdRate,
		Version: *version, Duration: *duration, Warmup: *warmup, Ramp: *ramp, Inflight: *inflight,
		ConnRate: *connRate, ConnParallel: *connPar, ConnectTimeout: *connectTO, SetupTimeout: *setupTO,
		Drain: *drain, KeepAlive: *keepAlive, OverrunSlack: *slack,
		Username: *user, Password: *pass, TLS: *useTLS, CAFile: *caFile, Insecure: *insecure, ServerName: *serverName,
		TopicPrefix: *prefix, Procs: *procs, BrokerPID: *brokerPID, Persistent: *persistent,
	}
	if *keepAlive == 0 {
		cfg.KeepAlive = -1 // 0 on the command line means off, not the default
	}
	for b := range strings.SplitSeq(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			cfg.Brokers = append(cfg.Brokers, b)
		}
	}
	if *sourceIPs != "" {
		ips, err := loadgen.ParseSourceIPs(*sourceIPs)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return 2
		}
		cfg.SourceIPs = ips
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.WorkerCommand = func() *exec.Cmd {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		return exec.Command(exe, "-"+workerFlag)
	}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 2
	}

	res, err := loadgen.Run(ctx, cfg)
	if res != nil {
		table := stdout
		if *jsonFile == "-" {
			table = stderr // stdout is for the JSON alone
		}
		_ = res.WriteTable(table)
		if *jsonFile != "" {
			if jerr := writeJSON(*jsonFile, res, stdout); jerr != nil {
				fmt.Fprintln(stderr, "loadgen:", jerr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return 1
	}
	return 0
}

func writeJSON(path string, res *loadgen.Result, stdout io.Writer) error {
	if path == "-" {
		return res.WriteJSON(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	if err := res.WriteJSON(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("write JSON: %w", err)
	}
	return f.Close()
}
