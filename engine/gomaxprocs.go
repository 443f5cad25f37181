package engine

// SuggestedGOMAXPROCS returns the GOMAXPROCS a process serving opts should
// have at least, or 0 when the runtime's default suits it. The engine
// never changes GOMAXPROCS itself: it is the process's setting, and a
// program embedding the engine may have reasons of its own. cmd/loopmq
// raises GOMAXPROCS to this unless the environment sets GOMAXPROCS; an
// embedding program should do the same, or accept the waits below.
//
// With a TLS or WebSocket listener it is Loops + 1 (Loops 0 counts as
// DefaultLoops(): set Loops before raising GOMAXPROCS to the result).
// Each loop holds a P while it waits in epoll_wait and yields it at most
// every 5 ms (third_party/gnet/LOOPMQ.md). With one P per loop, every
// other goroutine waits for a P to come free, and one woken by the network
// waits longest, because Go's network poller is then polled by sysmon
// only, every 10 ms: 5 ms at the median and 10-20 ms at worst under 5,000
// QoS 1 messages/s on 2 loops, against 40-50 µs and 2 ms with a spare P
// (bench/schedprobe; docs/architecture.md, Goroutines). The TLS and
// WebSocket connections' goroutines carry messages and are woken so.
//
// Without them it is 0: the goroutines left (timers of a second or more,
// the HTTP endpoints, the store's background work) can wait a few
// milliseconds, the one on the message path, the store's committer, is
// yielded to at once, and on 2 cores the spare P cost 13-25% of the
// deliveries per second at maximum rate in two cases of three
// (docs/benchmarks.md, issue 6). The store's log syncer, which needs a P
// again after each fsync, does wait: a spare P gave persisted fan-in
// 7-46% more deliveries per second, but pairs and fan-out nothing
// consistent and QoS 0 fan-out 11-25% less (docs/architecture.md,
// Goroutines), so a store does not change the suggestion either.
//
// Safe for concurrent use; it reads nothing but opts and GOMAXPROCS.
func SuggestedGOMAXPROCS(opts Options) int {
	if !opts.bridged() {
		return 0
	}
	loops := opts.Loops
	if loops <= 0 {
		loops = DefaultLoops() // as setDefaults
	}
	return loops + 1
}
