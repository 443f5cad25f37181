// Command compare runs one loadgen matrix against loopmq and against
// Mosquitto on this machine and writes the comparison (issue 6).
//
//	make bench-compare                         # full matrix, ~12 minutes
//	make bench-compare COMPARE_FLAGS=-quick    # reduced matrix, ~2 minutes
//
// # What it owns
//
// This directory (the program and its results/ directory), the Makefile
// target bench-compare, and the section "## loopmq vs Mosquitto (issue 6)"
// of docs/benchmarks.md: the section is rewritten in place, or appended at
// the end when missing, and the rest of the file is left byte for byte as
// it was. A "### Reading" subsection inside it is written by people and
// kept across runs. -quick writes results/quick/ and leaves the docs alone
// unless -docs is given.
//
// It drives both brokers as separate processes and only through MQTT and
// the loadgen CLI, so it must not import engine/; it imports loadgen only
// for the types of loadgen's JSON result.
//
// # How a run is measured
//
// Every run starts a fresh broker on a free loopback port, runs one
// loadgen process (-json, -broker-pid) against it, and stops the broker
// before the next run starts: the two brokers are never loaded at once.
// For each case of the matrix the two brokers run back to back, the order
// alternating between cases, so slow drift in the machine's background
// load hits both. Around each run the program reads /proc/stat and derives
// the CPU used by processes other than the broker and loadgen; a case in
// which that exceeds -busy-limit is run again (up to -retries times) and
// the quietest attempt is kept.
//
// loopmq runs with -cpuprofile; the profiles of the kept attempts are
// merged with github.com/google/pprof/profile and their top functions by
// flat CPU are written next to the results.
//
// # Concurrency and cleanup
//
// One run at a time, on the main goroutine. Every child process runs in
// its own process group with SIGKILL as its parent-death signal; brokers
// are stopped with SIGTERM (loopmq writes its profile then), killed after
// brokerStopGrace, and every process still registered is killed when the
// program ends, on error or on SIGINT/SIGTERM. Each loadgen run is bounded
// by a context deadline derived from its own timeouts.
package main
