// Package allocsites attributes heap allocations to the code that made
// them, for the tests that require some code (the broker, the benchmark
// harness) to allocate nothing: it owns reading runtime.MemProfile and
// comparing two readings site by site. Only tests use it.
package allocsites

import (
	"fmt"
	"runtime"
	"strings"
)

// Read returns the allocation counts recorded so far at every allocation
// site whose stack keep accepts, keyed by the stack (one frame a line).
// The caller sets runtime.MemProfileRate (1 records every allocation).
// Read collects garbage twice: the profile is published at the end of a
// cycle and may lag by one more. That also empties every sync.Pool.
func Read(keep func(stack []runtime.Frame) bool) map[string]int64 {
	runtime.GC()
	runtime.GC()
	var recs []runtime.MemProfileRecord
	for {
		n, ok := runtime.MemProfile(recs, true)
		if ok {
			recs = recs[:n]
			break
		}
		recs = make([]runtime.MemProfileRecord, n+100)
	}
	sites := make(map[string]int64)
	var stack []runtime.Frame
	for i := range recs {
		r := &recs[i]
		stack = stack[:0]
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			stack = append(stack, f)
			if !more {
				break
			}
		}
		if !keep(stack) {
			continue
		}
		var sb strings.Builder
		for _, f := range stack {
			fmt.Fprintf(&sb, "\t%s %s:%d\n", f.Function, f.File, f.Line)
		}
		sites[sb.String()] += r.AllocObjects
	}
	return sites
}

// Diff returns how many allocations were made between two readings, and
// a description of each site that made any.
func Diff(before, after map[string]int64) (total int64, sites []string) {
	for site, n := range after {
		if d := n - before[site]; d > 0 {
			total += d
			sites = append(sites, fmt.Sprintf("%d allocations at\n%s", d, site))
		}
	}
	return total, sites
}
