// Package bench owns loopmq's end-to-end benchmarks and the load harness
// they run on. The broker is started in-process on a free loopback port and
// driven over real TCP connections by raw MQTT 3.1.1 clients built on the
// codec package. Paho and other client libraries are deliberately not used:
// their own allocations and goroutine hand-offs would dominate what is
// measured. Everything lives in _test.go files; the package has no API and
// nothing imports it. It imports only the engine's public API and the codec.
//
// # Scenarios
//
// Each runs at QoS 0 and QoS 1 with a 64-byte payload:
//
//   - pairs10: 10 publishers, each on its own topic, each with one
//     subscriber subscribed to exactly that topic;
//   - fanin100: 100 publishers on 100 topics, one subscriber on a
//     single-level wildcard that matches them all;
//   - fanout100: one publisher, 100 subscribers of its topic.
//
// The in-process broker runs with default options but a fixed two event
// loops, so that clients land on loops the same way on every machine.
//
// b.N is the number of messages published in total (spread evenly over the
// publishers); one iteration of the benchmark ends when every expected
// delivery has arrived. A run that makes no progress for stallTimeout, or
// during which the broker reports a dropped message, fails.
//
// # Flow control
//
// Publishers never flood: an unbounded QoS 0 flood measures kernel socket
// buffers, not the broker. Each publisher has an end-to-end window: it
// sends a burst only while every subscriber that hears it is at most
// window-burst messages behind. At QoS 1 a publisher additionally keeps at
// most -bench.unacked PUBLISHes awaiting PUBACK (32), and subscribers acknowledge
// every PUBLISH. The end-to-end window is needed at QoS 1 too, because the
// broker acknowledges a PUBLISH once it is routed, not once it is
// delivered: without it 100 publishers outrun one subscriber and its
// session queue (Options.MaxQueued) drops messages.
//
// Subscribers check every delivery: the payload carries the publisher's
// index and a per-publisher sequence number, and each subscriber requires
// them consecutive, so a lost, duplicated or reordered message fails the
// run.
//
// # Metrics
//
// Besides ns/op (per published message), each benchmark reports
//
//   - deliveries/s: messages delivered to subscribers per second of wall time;
//   - allocs/delivery and B/delivery: heap allocations (runtime.MemStats
//     Mallocs and TotalAlloc) over the timed region per delivery;
//   - cpu-ns/delivery: process CPU time (user+system, broker and clients
//     together) per delivery.
//
// Client and broker share one process, so the allocation counters see
// both. The clients are written not to allocate in steady state (pre-encoded
// PUBLISH frames patched in place, one reused read buffer, frames delimited
// with codec.Split and decoded into a reused value), and
// TestHarnessDoesNotAllocate checks that with a heap profile at rate 1: so
// allocs/delivery and B/delivery are the broker's (plus the Go runtime's).
// The -benchmem columns count the same allocations per published message.
//
// # Running
//
//	go test -run '^$' -bench . -benchmem ./bench/
//	go test -run '^$' -bench 'QoS0/fanout' -benchtime 50000x -cpuprofile cpu.out ./bench/
//	go test -run '^$' -bench 'QoS0/pairs' -benchtime 20000x -memprofile mem.out -memprofilerate 1 ./bench/
//
// With the default -benchtime of 1s the whole set takes about 15 s, half
// of it connecting clients and stopping brokers. b.N counts published
// messages, so a fixed -benchtime Nx costs N deliveries in pairs10 and
// fanin100 but 100·N in fanout100: pick N per scenario (about 10^6 and
// 5·10^4 make a few seconds each). For stable numbers use -count and
// compare allocs/delivery and cpu-ns/delivery rather than deliveries/s
// alone: on a 2-core machine clients and broker compete for the same
// cores, and so does anything else running.
//
// The flag -bench.broker=host:port drives an external broker (Mosquitto,
// say) with the same clients instead of the in-process one; the broker's
// counters and the allocation metrics are then not reported, and
// cpu-ns/delivery is the clients' alone. Add -bench.broker-pid=PID (Linux)
// to report broker-cpu-ns/delivery, the broker process's own CPU time per
// delivery: the figure to compare brokers, or protocol versions, by, since
// the in-process cpu-ns/delivery also counts clients whose cost differs
// between 3.1.1 and 5.0 (the 5.0 subscribers skip the property block).
// For loopmq:
//
//	loopmq -listen 127.0.0.1:18830 -loops 2 -log-level warn & pid=$!
//	go test -run '^$' -bench 'QoS0V5$/pairs' -benchtime 1000000x ./bench/ \
//	    -args -bench.broker 127.0.0.1:18830 -bench.broker-pid $pid
//
// bench/v5ratio.sh does that for 3.1.1 and 5.0 in alternating rounds, a
// fresh broker per run, and prints the medians (docs/benchmarks.md, issue 7).
//
// The flag -bench.payload=N sets the payload size (64 bytes by default):
// with 117 (fanin100) or 116 (pairs10) the 3.1.1 frames are the size of
// the 5.0 ones, which separates what 5.0 costs from what its larger frames
// cost. bench/v5ratio.sh passes BENCH_FLAGS on to the benchmark.
//
// The flag -bench.maxpacket=N makes the 5.0 subscribers send a Maximum
// Packet Size of N in CONNECT, as many client libraries do; the broker then
// sizes every PUBLISH towards them (docs/benchmarks.md, issue 7, fifth
// round). TestQoS0AllocationFree runs with and without one.
//
// The flag -bench.authz gives the in-process broker an Authorizer that
// allows everything, so that the cost of the authorization checks (a
// cached Read decision per delivery, a Write decision per PUBLISH) shows
// against a run without it.
//
// # Concurrency
//
// Every client connection is owned by one goroutine: a publisher's goroutine
// writes its PUBLISHes and reads its PUBACKs, a subscriber's goroutine reads
// deliveries and writes PUBACKs. They meet only through atomic counters (a
// subscriber's per-publisher count, a publisher's credit target) and a
// one-slot wake-up channel per publisher. The benchmark goroutine starts a
// run by sending each publisher its share of b.N and waits for every
// publisher and subscriber to report.
package bench
