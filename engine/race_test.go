//go:build race

package engine

// raceEnabled: the race detector slows the largest tests about tenfold, so
// they shrink under it.
const raceEnabled = true
