package main

import (
	"fmt"
	"io"

	"github.com/loopmq/loopmq/store"
)

// runStore runs "loopmq store check DIR": it reads a data directory
// offline (read-only, the broker need not be stopped for a copy, but must
// be for the live directory: pebble locks it) and reports what it holds
// and what it cannot read. Exit status 0: readable; 1: damaged or not a
// store; 2: usage.
func runStore(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: loopmq store check DIR")
		return 2
	}
	rep, err := store.Check(args[1])
	if err != nil {
		fmt.Fprintf(stderr, "loopmq store check: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, rep.String())
	if !rep.OK() {
		return 1
	}
	return 0
}
