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
	"github.com/loopmq/loopmq/tlsfiles"
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
	flag.IntVar(&opts.MaxConnRatePerIP, "max-conn-rate-per-ip", 0, "new connections per second one source address may open (0: unlimited)")
	flag.IntVar(&opts.MaxAuthFailuresPerIP, "max-auth-failures-per-ip", 0,
		"failed authentications per minute one source address may have before its connections are refused (0: unlimited)")
	flag.DurationVar(&opts.MaxKeepAlive, "max-keepalive", 0,
		"largest keep alive granted; clients asking for 0 or more get this (5.0: Server Keep Alive) (0: as the client asks)")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	var tf tlsFlags
	flag.StringVar(&opts.TLSListen, "tls-listen", "", "address of the MQTT-over-TLS listener, e.g. :8883 (needs -tls-cert and -tls-key)")
	flag.StringVar(&opts.WSListen, "ws-listen", "", "address of the MQTT-over-WebSocket listener, e.g. :8080")
	flag.StringVar(&opts.WSSListen, "wss-listen", "", "address of the MQTT-over-WebSocket-over-TLS listener, e.g. :8081 (needs -tls-cert and -tls-key)")
	flag.StringVar(&tf.cert, "tls-cert", "", "PEM certificate (chain) of the TLS and WSS listeners; reloaded on SIGHUP and when it changes")
	flag.StringVar(&tf.key, "tls-key", "", "PEM private key of -tls-cert")
	flag.StringVar(&tf.ca, "tls-ca", "", "PEM CA certificates that client certificates are verified against")
	flag.StringVar(&tf.clientCert, "tls-client-cert", "none", "client certificates: none, optional or required (verified against -tls-ca)")
	flag.BoolVar(&tf.identity, "tls-identity-as-username", false,
		"a verified client certificate's Common Name is the user name, CONNECT's user name and password are ignored, clients without one are refused (Mosquitto's use_identity_as_username)")
	flag.BoolVar(&tf.subject, "tls-subject-as-username", false,
		"as -tls-identity-as-username with the certificate's whole subject (RFC 2253) (Mosquitto's use_subject_as_username)")
	flag.DurationVar(&tf.poll, "tls-reload-interval", 5*time.Second, "how often the certificate and key files are checked for changes (0: only on SIGHUP)")
	var sf securityFlags
	sf.register()
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

	reloader, err := tf.apply(&opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loopmq: %v\n", err)
		os.Exit(2)
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	if reloader != nil && tf.poll > 0 {
		go reloader.Watch(watchCtx, tf.poll)
	}

	auth, err := sf.apply(&opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "loopmq: %v\n", err)
		os.Exit(2)
	}

	srv := engine.New(opts)
	if err := srv.Start(); err != nil {
		opts.Logger.Error("cannot start", "error", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	got := <-sig
	for got == syscall.SIGHUP {
		if err := sf.reload(auth, srv); err != nil {
			opts.Logger.Warn("SIGHUP", "error", err)
		} else if auth != nil {
			opts.Logger.Info("SIGHUP: password and ACL files reloaded")
		}
		if reloader == nil {
			opts.Logger.Info("SIGHUP: no TLS certificate to reload")
		} else if err := reloader.Reload(); err != nil {
			opts.Logger.Warn("SIGHUP: keeping the previous TLS certificate", "error", err)
		} else {
			opts.Logger.Info("SIGHUP: TLS certificate reloaded")
		}
		got = <-sig
	}
	opts.Logger.Info("stopping", "signal", got.String())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Stop(ctx); err != nil {
		opts.Logger.Error("stop", "error", err)
	}
}

// tlsFlags are the TLS command-line settings.
type tlsFlags struct {
	cert, key, ca, clientCert string
	identity, subject         bool
	poll                      time.Duration
}

// apply sets opts' TLS configuration from the flags; it returns the
// certificate reloader, nil when no certificate was given.
func (tf *tlsFlags) apply(opts *engine.Options) (*tlsfiles.Reloader, error) {
	needTLS := opts.TLSListen != "" || opts.WSSListen != ""
	if tf.cert == "" && tf.key == "" {
		if needTLS {
			return nil, fmt.Errorf("-tls-listen and -wss-listen need -tls-cert and -tls-key")
		}
		return nil, nil
	}
	if tf.cert == "" || tf.key == "" {
		return nil, fmt.Errorf("-tls-cert and -tls-key go together")
	}
	auth, err := tlsfiles.ClientAuth(tf.clientCert)
	if err != nil {
		return nil, fmt.Errorf("-tls-client-cert: %w", err)
	}
	r, err := tlsfiles.NewReloader(tf.cert, tf.key, opts.Logger)
	if err != nil {
		return nil, err
	}
	if opts.TLSConfig, err = tlsfiles.ServerConfig(r, tf.ca, auth); err != nil {
		return nil, err
	}
	switch {
	case tf.identity && tf.subject:
		return nil, fmt.Errorf("-tls-identity-as-username and -tls-subject-as-username exclude each other")
	case tf.identity:
		opts.TLSIdentity = engine.IdentityCommonName
	case tf.subject:
		opts.TLSIdentity = engine.IdentitySubject
	}
	if opts.TLSIdentity != engine.IdentityNone && opts.TLSConfig.ClientCAs == nil {
		return nil, fmt.Errorf("certificate identities need client certificates: -tls-client-cert optional or required, and -tls-ca")
	}
	return r, nil
}
