package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"time"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/metrics"
	"github.com/loopmq/loopmq/store"
)

// startHTTP serves h on addr in a goroutine of its own; it returns the
// server (Close ends it) and the address it listens on.
func startHTTP(name, addr string, h http.Handler, log *slog.Logger) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(name+" endpoint failed", "error", err)
		}
	}()
	log.Info(name+" endpoint listening", "addr", ln.Addr().String())
	return srv, ln.Addr(), nil
}

// startMetrics serves /metrics, /healthz and /readyz (package metrics) on
// addr. st is the persistent store, nil without one.
func startMetrics(addr string, srv *engine.Server, st store.Store, log *slog.Logger) (*http.Server, net.Addr, error) {
	o := metrics.Options{Server: srv, Version: buildVersion()}
	if st != nil {
		o.StoreStats = st.Stats
	}
	return startHTTP("metrics", addr, metrics.Handler(o), log)
}

// pprofMutexFraction and pprofBlockRate are the sampling rates set when
// the pprof endpoint is on: one mutex contention event in 5, and one
// blocking event per 10 µs spent blocked. Both cost nothing while off.
const (
	pprofMutexFraction = 5
	pprofBlockRate     = int(10 * time.Microsecond)
)

// startPprof serves net/http/pprof under /debug/pprof/ on addr and turns
// on mutex and block profiling.
func startPprof(addr string, log *slog.Logger) (*http.Server, net.Addr, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv, a, err := startHTTP("pprof", addr, mux, log)
	if err != nil {
		return nil, nil, err
	}
	runtime.SetMutexProfileFraction(pprofMutexFraction)
	runtime.SetBlockProfileRate(pprofBlockRate)
	return srv, a, nil
}
