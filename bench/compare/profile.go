package main

import (
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/pprof/profile"
)

// funcCost is one function's share of a CPU profile.
type funcCost struct {
	Name string        `json:"name"`
	Flat time.Duration `json:"flat_ns"` // samples whose innermost frame is this function
	Cum  time.Duration `json:"cum_ns"`  // samples with this function anywhere on the stack
}

// profileTop is a profile's total and its most expensive functions.
type profileTop struct {
	Profiles int           `json:"profiles"` // how many profiles were merged
	Total    time.Duration `json:"total_ns"`
	Funcs    []funcCost    `json:"funcs"`
}

// readProfiles parses and merges the CPU profiles at paths.
func readProfiles(paths []string) (*profile.Profile, error) {
	var ps []*profile.Profile
	for _, path := range paths {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("CPU profile: %w", err)
		}
		p, err := profile.Parse(f)
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("CPU profile %s: %w", path, err)
		}
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no CPU profile to read")
	}
	p, err := profile.Merge(ps)
	if err != nil {
		return nil, fmt.Errorf("merge CPU profiles: %w", err)
	}
	return p, nil
}

// topFunctions aggregates p's CPU samples per function name and returns
// the n largest by flat time. An inlined call counts as its own function
// (its name, not its caller's), as `go tool pprof -top` shows it.
func topFunctions(p *profile.Profile, n int) profileTop {
	vi, unit := valueIndex(p)
	flat, cum := map[string]time.Duration{}, map[string]time.Duration{}
	var total time.Duration
	seen := map[string]bool{}
	for _, s := range p.Sample {
		v := time.Duration(s.Value[vi]) * unit
		total += v
		if len(s.Location) > 0 {
			flat[frameName(s.Location[0], 0)] += v
		}
		clear(seen)
		for _, loc := range s.Location {
			for i := range max(1, len(loc.Line)) {
				name := frameName(loc, i)
				if !seen[name] {
					seen[name] = true
					cum[name] += v
				}
			}
		}
	}
	top := profileTop{Total: total}
	for name, v := range cum {
		top.Funcs = append(top.Funcs, funcCost{Name: name, Flat: flat[name], Cum: v})
	}
	slices.SortFunc(top.Funcs, func(a, b funcCost) int {
		return cmp.Or(cmp.Compare(b.Flat, a.Flat), cmp.Compare(b.Cum, a.Cum), strings.Compare(a.Name, b.Name))
	})
	if len(top.Funcs) > n {
		top.Funcs = top.Funcs[:n]
	}
	return top
}

// valueIndex returns the index of p's CPU time in a sample's values and
// the duration of one unit of it.
func valueIndex(p *profile.Profile) (int, time.Duration) {
	vi := len(p.SampleType) - 1 // Go's CPU profiles: [samples/count, cpu/nanoseconds]
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			vi = i
		}
	}
	if vi >= 0 && p.SampleType[vi].Unit != "nanoseconds" && p.Period > 0 {
		return vi, time.Duration(p.Period) // counts: each sample is one period
	}
	return vi, 1
}

// syscallCallers splits the CPU p spent inside system calls (samples
// whose innermost frame is the raw syscall or the runtime's futex) by the
// call: the system call wrapper and the first caller outside the syscall
// packages, e.g. "unix.Writev ← engine.(*loop).writev". Flat profiles show
// one big Syscall6 line; this says which calls it is made of.
func syscallCallers(p *profile.Profile, n int) profileTop {
	top := topFunctions(p, 0)
	vi, unit := valueIndex(p)
	by := map[string]time.Duration{}
	for _, s := range p.Sample {
		v := time.Duration(s.Value[vi]) * unit
		var frames []string
		for _, loc := range s.Location {
			for i := range max(1, len(loc.Line)) {
				frames = append(frames, frameName(loc, i))
			}
		}
		if len(frames) == 0 || !isSyscallLeaf(frames[0]) {
			continue
		}
		call, caller := frames[0], "?"
		for _, f := range frames[1:] {
			if isSyscallPkg(f) {
				call = f
				continue
			}
			caller = f
			break
		}
		by[shortName(call)+" ← "+shortName(caller)] += v
	}
	for name, v := range by {
		top.Funcs = append(top.Funcs, funcCost{Name: name, Flat: v, Cum: v})
	}
	slices.SortFunc(top.Funcs, func(a, b funcCost) int {
		return cmp.Or(cmp.Compare(b.Flat, a.Flat), strings.Compare(a.Name, b.Name))
	})
	if len(top.Funcs) > n {
		top.Funcs = top.Funcs[:n]
	}
	return top
}

func isSyscallLeaf(f string) bool {
	return f == "internal/runtime/syscall/linux.Syscall6" || f == "runtime.futex" ||
		f == "runtime.epollwait" || f == "runtime.write1" || f == "runtime.read"
}

// isSyscallPkg says f only wraps a system call (or parks a thread).
func isSyscallPkg(f string) bool {
	for _, p := range []string{"internal/runtime/syscall/", "syscall.", "golang.org/x/sys/unix.",
		"runtime.futex", "runtime.notesleep", "runtime.notewakeup", "runtime.semasleep", "runtime.semawakeup",
		"runtime.mPark", "runtime.netpoll", "runtime.epollwait"} {
		if strings.HasPrefix(f, p) {
			return true
		}
	}
	return false
}

// shortName drops a function name's import path: ".../gnet/v2.(*conn).x"
// becomes "gnet/v2.(*conn).x", "golang.org/x/sys/unix.Read" "unix.Read".
func shortName(f string) string {
	i := strings.LastIndexByte(f, '/')
	if i < 0 {
		return f
	}
	if j := strings.LastIndexByte(f[:i], '/'); j >= 0 && strings.HasPrefix(f[i+1:], "v") && len(f) > i+2 && f[i+2] >= '0' && f[i+2] <= '9' {
		return f[j+1:] // keep the package of a /vN path
	}
	return f[i+1:]
}

// frameName is the function of loc's i-th line: line 0 is the innermost
// (inlined) function, the last the function it was inlined into. Frames
// without symbols are named by address.
func frameName(loc *profile.Location, i int) string {
	if i < len(loc.Line) && loc.Line[i].Function != nil {
		return loc.Line[i].Function.Name
	}
	return fmt.Sprintf("0x%x", loc.Address)
}

// writeTop writes top as a table like `go tool pprof -top`.
func writeTop(w io.Writer, title string, top profileTop) error {
	fmt.Fprintf(w, "%s\n%d profile(s), %.2f s of samples\n", title, top.Profiles, top.Total.Seconds())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "flat\tflat%\tcum\tcum%\t\tfunction")
	pct := func(d time.Duration) float64 {
		if top.Total == 0 {
			return 0
		}
		return 100 * float64(d) / float64(top.Total)
	}
	for _, f := range top.Funcs {
		fmt.Fprintf(tw, "%.2fs\t%.1f%%\t%.2fs\t%.1f%%\t\t%s\n", f.Flat.Seconds(), pct(f.Flat), f.Cum.Seconds(), pct(f.Cum), f.Name)
	}
	return tw.Flush()
}
