//go:build race

package bench

// raceEnabled: under the race detector sync.Pool drops a share of what
// is put back, so pooled objects are allocated again and allocation
// counts say nothing about the broker.
const raceEnabled = true
