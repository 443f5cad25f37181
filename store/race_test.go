//go:build race

package store_test

// raceEnabled: the race detector slows the store's tests about tenfold, so
// the largest ones shrink under it.
const raceEnabled = true
