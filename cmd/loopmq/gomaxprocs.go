package main

import (
	"log/slog"
	"os"
	"runtime"

	"github.com/loopmq/loopmq/engine"
)

// setGOMAXPROCS raises GOMAXPROCS to engine.SuggestedGOMAXPROCS(opts)
// (Loops + 1 with a TLS or WebSocket listener: a P no event loop holds,
// for the goroutines of those connections) unless the environment sets
// GOMAXPROCS, which is then the operator's choice. The engine, a library,
// leaves the process's settings alone; the command owns the process. Call
// it once the broker's options are final, before the broker starts.
func setGOMAXPROCS(opts engine.Options, log *slog.Logger) {
	n := gomaxprocsFor(engine.SuggestedGOMAXPROCS(opts), runtime.GOMAXPROCS(0), os.Getenv("GOMAXPROCS"))
	if n == 0 {
		return
	}
	from := runtime.GOMAXPROCS(n)
	log.Info("GOMAXPROCS raised: one P more than event loops, for the TLS and WebSocket goroutines",
		"from", from, "to", n)
}

// gomaxprocsFor returns the GOMAXPROCS to set, or 0 to leave current as
// it is: suggested when it is above current and env (the GOMAXPROCS
// environment variable) is empty. Setting it turns off the runtime's own
// updates of GOMAXPROCS to a changed CPU limit (Go 1.25 and later); the
// engine's loops are fixed at start anyway.
func gomaxprocsFor(suggested, current int, env string) int {
	if env != "" || suggested <= current {
		return 0
	}
	return suggested
}
