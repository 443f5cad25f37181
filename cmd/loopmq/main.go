// Command loopmq runs the loopmq MQTT broker. Subcommands: "loopmq
// passwd ..." manages Mosquitto password files (passwd.go), "loopmq config
// check|print ..." checks or prints a configuration (configcmd.go),
// "loopmq version" prints the version.
//
// The broker's configuration comes from a YAML file (-config, config.go)
// or a Mosquitto config (-mosquitto-conf, mosquittoconf.go), then the
// flags given (flags.go); broker.go turns it into engine.Options, and
// serve (here) runs the broker until SIGINT or SIGTERM, reloading files
// on SIGHUP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/loopmq/loopmq/engine"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its arguments and outputs; it returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "passwd":
			return runPasswd(args[1:], stdPasswdIO())
		case "version":
			fmt.Fprintln(stdout, versionLine())
			return 0
		case "config":
			return runConfig(args[1:], stdout, stderr)
		case "store":
			return runStore(args[1:], stdout, stderr)
		}
	}
	lc, err := loadConfig("loopmq", args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "loopmq: %v\n", err)
		return 2
	}
	return serve(lc, stderr)
}

// loaded is a configuration with what was said while loading it.
type loaded struct {
	cfg      Config
	org      origins
	warnings []string // unsupported Mosquitto options, at most one line each
	defaults []string // limits whose loopmq default differs from Mosquitto's, not set (mosquittoDefaults)
	source   string   // the file it came from, "" for flags only
}

// loadConfig parses the broker's command line: the config file named by
// -config or -mosquitto-conf, then the flags given, then checks the result.
func loadConfig(name string, args []string, stderr io.Writer) (*loaded, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	flagCfg := defaultConfig()
	registerSettings(fs, &flagCfg)
	configFile := fs.String("config", "", "YAML config file (docs/configuration.md); flags given override it")
	mosqFile := fs.String("mosquitto-conf", "", "Mosquitto config file to run with (mosquitto.conf); flags given override it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags go before it; subcommands: passwd, config, store, version)", fs.Arg(0))
	}
	lc := &loaded{cfg: defaultConfig(), org: origins{}}
	var fileErr error // the file's key errors, reported with validate's
	switch {
	case *configFile != "" && *mosqFile != "":
		return nil, errors.New("-config and -mosquitto-conf exclude each other (loopmq config print -mosquitto-conf FILE converts one into the other)")
	case *configFile != "":
		lc.source = *configFile
		if err := loadConfigFile(*configFile, &lc.cfg, lc.org); err != nil {
			var ke *keyErrors
			if !errors.As(err, &ke) {
				return nil, err
			}
			fileErr = err
		}
	case *mosqFile != "":
		lc.source = *mosqFile
		w, err := loadMosquittoConf(*mosqFile, &lc.cfg, lc.org)
		if err != nil {
			return nil, err
		}
		lc.warnings = w
	}
	applyFlags(fs, &flagCfg, &lc.cfg, lc.org)
	if err := validateAfter(fileErr, &lc.cfg, lc.org); err != nil {
		return nil, err
	}
	if *mosqFile != "" {
		lc.defaults = mosquittoDefaults(&lc.cfg, lc.org)
	}
	return lc, nil
}

// drainTimeout bounds a graceful stop: 5.0 clients are told, outbound
// buffers flushed and the store closed within it, or the process exits
// anyway.
const drainTimeout = 10 * time.Second

// serve runs the broker until SIGINT or SIGTERM; SIGHUP reloads the
// password, ACL and certificate files. It returns the exit code.
func serve(lc *loaded, stderr io.Writer) int {
	// Signals are caught from the start: one that arrives while the
	// broker starts is handled once it listens.
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sig)
	cfg := &lc.cfg
	log, err := newLogger(cfg.Logging, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "loopmq: %v\n", err)
		return 2
	}
	if len(lc.warnings) > 0 {
		log.Warn("Mosquitto options not supported, ignored: "+joinWarnings(lc.warnings), "file", lc.source)
	}
	if len(lc.defaults) > 0 {
		log.Warn("limits not set in the Mosquitto file keep loopmq's defaults: "+strings.Join(lc.defaults, ", ")+
			"; set them there to change them", "file", lc.source)
	}
	if f := cfg.Pprof.CPUProfile; f != "" {
		stop, err := startCPUProfile(f)
		if err != nil {
			log.Error("cannot start CPU profile", "error", err)
			return 1
		}
		defer stop()
	}
	b, err := buildBroker(cfg, log)
	if err != nil {
		log.Error("cannot start", "error", err)
		return 2
	}
	st, err := openStore(&cfg.Persistence, log)
	if err != nil {
		log.Error("cannot open the persistent store", "dir", cfg.Persistence.Dir, "error", err)
		return 1
	}
	if st != nil {
		b.opts.Store = st
	}
	banner(lc, log, st != nil)
	if b.opts.Loops <= 0 {
		// Counted before setGOMAXPROCS raises GOMAXPROCS, which
		// DefaultLoops follows.
		b.opts.Loops = engine.DefaultLoops()
	}
	setGOMAXPROCS(b.opts, log)

	srv := engine.New(b.opts)
	if err := srv.Start(); err != nil {
		log.Error("cannot start", "error", err)
		if st != nil {
			_ = st.Close()
		}
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if b.tls != nil && cfg.TLS.ReloadInterval > 0 {
		go b.tls.Watch(ctx, cfg.TLS.ReloadInterval.D())
	}
	var servers []*http.Server
	if a := cfg.Metrics.Listen; a != "" {
		hs, _, err := startMetrics(a, srv, st, log)
		if err != nil {
			log.Error("cannot start the metrics endpoint", "addr", a, "error", err)
			return stopNow(srv, 1)
		}
		servers = append(servers, hs)
	}
	if a := cfg.Pprof.Listen; a != "" {
		hs, _, err := startPprof(a, log)
		if err != nil {
			log.Error("cannot start the pprof endpoint", "addr", a, "error", err)
			return stopNow(srv, 1)
		}
		servers = append(servers, hs)
	}
	sysDone := startSys(ctx, srv, cfg.SysInterval.D(), log)

	got := <-sig
	for got == syscall.SIGHUP {
		b.reload(srv, log)
		got = <-sig
	}

	// Drain: stop accepting, tell 5.0 clients (DISCONNECT 0x8B), flush,
	// close; a second signal gives up waiting.
	log.Info("stopping", "signal", got.String(), "timeout", drainTimeout.String())
	started := time.Now()
	cancel()
	<-sysDone
	stopCtx, stopCancel := context.WithTimeout(context.Background(), drainTimeout)
	defer stopCancel()
	go func() {
		select {
		case s := <-sig:
			log.Warn("second signal: not waiting any longer", "signal", s.String())
			stopCancel()
		case <-stopCtx.Done():
		}
	}()
	code := 0
	if err := srv.Stop(stopCtx); err != nil {
		log.Error("stop", "error", err)
		code = 1
	}
	for _, hs := range servers {
		_ = hs.Close()
	}
	if st != nil {
		if err := st.Close(); err != nil {
			log.Error("closing the persistent store", "error", err)
			code = 1
		}
	}
	log.Info("stopped", "took", time.Since(started).Round(time.Millisecond).String())
	return code
}

// stopNow stops srv after a failed start and returns code.
func stopNow(srv *engine.Server, code int) int {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	_ = srv.Stop(ctx)
	return code
}

// startCPUProfile profiles the whole run into file; stop writes it.
func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// capabilitiesOff names the optional capabilities l turns off, by their
// configuration keys, or "none".
func capabilitiesOff(l *LimitsConfig) string {
	var off []string
	for _, c := range []struct {
		on  bool
		key string
	}{
		{l.RetainAvailable, "retain_available"},
		{l.WildcardSubscriptions, "wildcard_subscriptions"},
		{l.SharedSubscriptions, "shared_subscriptions"},
		{l.SubscriptionIdentifiers, "subscription_identifiers"},
	} {
		if !c.on {
			off = append(off, c.key)
		}
	}
	if len(off) == 0 {
		return "none"
	}
	return strings.Join(off, ",")
}

// banner logs what the broker starts with: version, listeners, limits,
// data directory and endpoints.
func banner(lc *loaded, log *slog.Logger, storeOpen bool) {
	cfg := &lc.cfg
	source := lc.source
	if source == "" {
		source = "flags and defaults"
	}
	log.Info("loopmq "+buildVersion(), "config", source, "pid", os.Getpid())
	log.Info("listeners", "mqtt", listenerSummary(&cfg.Listeners), "metrics", cfg.Metrics.Listen,
		"pprof", cfg.Pprof.Listen, "sys_interval", cfg.SysInterval.String())
	l := &cfg.Limits
	loops := any(l.Loops)
	if l.Loops == 0 {
		loops = "auto" // the engine's choice, in the "loopmq listening" line
	}
	log.Info("limits", "loops", loops, "max_inflight", l.MaxInflight, "max_queued", l.MaxQueued,
		"max_queued_bytes", int64(l.MaxQueuedBytes), "max_packet_size", int64(l.MaxPacketSize),
		"max_session_expiry", l.MaxSessionExpiry.String(), "max_keepalive", l.MaxKeepAlive.String(),
		"max_qos", l.MaxQoS, "capabilities_off", capabilitiesOff(l))
	p := &cfg.Persistence
	switch {
	case p.Enabled && storeOpen:
		dir, _ := filepath.Abs(p.Dir)
		log.Info("persistence", "data_dir", dir, "sync", p.Sync, "memory_queue", p.MemoryQueue)
	default:
		log.Info("persistence", "enabled", false)
	}
}
