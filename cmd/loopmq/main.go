// Command loopmq runs the loopmq MQTT broker; "loopmq passwd ..." manages
// Mosquitto password files instead (passwd.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/loopmq/loopmq/engine"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "passwd" {
		os.Exit(runPasswd(os.Args[2:], stdPasswdIO()))
	}
	var (
		opts     engine.Options
		logLevel string
	)
	flag.StringVar(&opts.Listen, "listen", ":1883", "TCP address of the MQTT listener")
	flag.IntVar(&opts.Loops, "loops", 0, "event loops (default: one per CPU)")
	flag.IntVar(&opts.MaxInflight, "max-inflight", 32, "un-acknowledged outgoing QoS 1/2 messages per client")
	flag.IntVar(&opts.MaxQueued, "max-queued", 1000, "messages queued per session")
	flag.IntVar(&opts.MaxQueuedBytes, "max-queued-bytes", 16<<20, "payload bytes queued per session")
	flag.IntVar(&opts.MaxPacketSize, "max-packet-size", 1<<20, "largest packet accepted from a client, bytes")
	flag.DurationVar(&opts.MaxSessionExpiry, "max-session-expiry", 0,
		"longest a session outlives its connection, 5.0 and 3.1.1 alike (0: as the client asks; 3.1.1 persistent sessions never expire)")
	flag.DurationVar(&opts.MaxKeepAlive, "max-keepalive", 0,
		"largest keep alive granted; clients asking for 0 or more get this (5.0: Server Keep Alive) (0: as the client asks)")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()

	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "loopmq: bad -log-level %q: %v\n", logLevel, err)
		os.Exit(2)
	}
	opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			opts.Logger.Error("cannot create CPU profile", "error", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			opts.Logger.Error("cannot start CPU profile", "error", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}

	srv := engine.New(opts)
	if err := srv.Start(); err != nil {
		opts.Logger.Error("cannot start", "error", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	got := <-sig
	opts.Logger.Info("stopping", "signal", got.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		opts.Logger.Error("stop", "error", err)
	}
}
