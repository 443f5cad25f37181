package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"
)

func TestReplaceSectionLeavesTheRestAlone(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		require.Equal(t, want, replaceSection(doc, sectionTitle+"\n\nnew\n"))
	}
	// Missing: appended after one blank line.
	f("# B\n\n## a\n\ntext\n", "# B\n\n## a\n\ntext\n\n"+sectionTitle+"\n\nnew\n")
	f("# B\n\n## a\n\ntext", "# B\n\n## a\n\ntext\n\n"+sectionTitle+"\n\nnew\n")
	// At the end: replaced to the end.
	f("# B\n\n"+sectionTitle+"\n\nold\n### Sub\nold\n", "# B\n\n"+sectionTitle+"\n\nnew\n")
	// In the middle: replaced up to the next level-2 heading, which stays
	// one blank line below.
	f("# B\n\n"+sectionTitle+"\n\nold\n\n## next\n\nkeep\n", "# B\n\n"+sectionTitle+"\n\nnew\n\n## next\n\nkeep\n")
}

func TestKeptPart(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		require.Equal(t, want, keptPart(doc))
	}
	f("# B\n", "")
	f(sectionTitle+"\n\n### Idle\n\nx\n", "")
	f(sectionTitle+"\n\n### Idle\n\nx\n\n### Reading\n\nby hand\n\n", "### Reading\n\nby hand\n")
	f(sectionTitle+"\n\n### Reading\n\nby hand\n\n### Other\n\ny\n## next\n", "### Reading\n\nby hand\n")
	f(sectionTitle+"\n\n### Reading\n\nby hand\n\n## next\n\n### Reading\n\nnot ours\n", "### Reading\n\nby hand\n")
	// The Reading of another section is not ours.
	f("## other\n\n### Reading\n\nno\n\n"+sectionTitle+"\n\nx\n", "")
}

func TestTopFunctionsFlatAndCum(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	main, write, syscall, inl := fn(1, "main"), fn(2, "write"), fn(3, "syscall"), fn(4, "inlined")
	loc := func(id uint64, fs ...*profile.Function) *profile.Location {
		l := &profile.Location{ID: id}
		for _, f := range fs {
			l.Line = append(l.Line, profile.Line{Function: f})
		}
		return l
	}
	lMain, lWrite, lSys := loc(1, main), loc(2, inl, write), loc(3, syscall)
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		Period:     10_000_000,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{lSys, lWrite, lMain}, Value: []int64{3, 30_000_000}},
			{Location: []*profile.Location{lWrite, lMain}, Value: []int64{1, 10_000_000}},
			{Location: []*profile.Location{lMain}, Value: []int64{2, 20_000_000}},
			// A recursive stack counts once in cum.
			{Location: []*profile.Location{lMain, lMain}, Value: []int64{1, 10_000_000}},
		},
		Function: []*profile.Function{main, write, syscall, inl},
		Location: []*profile.Location{lMain, lWrite, lSys},
	}
	top := topFunctions(p, 3)
	require.Equal(t, 70*time.Millisecond, top.Total)
	require.Equal(t, []funcCost{
		{Name: "main", Flat: 30 * time.Millisecond, Cum: 70 * time.Millisecond},
		{Name: "syscall", Flat: 30 * time.Millisecond, Cum: 30 * time.Millisecond},
		{Name: "inlined", Flat: 10 * time.Millisecond, Cum: 40 * time.Millisecond},
	}, top.Funcs)
	var b strings.Builder
	require.NoError(t, writeTop(&b, "t", top))
	require.Contains(t, b.String(), "  0.03s  42.9%  0.07s  100.0%  main\n")
}

func TestRenderSectionShape(t *testing.T) {
	cases := matrix(true)
	s := &summary{Command: "make bench-compare", Duration: "2s", Warmup: "500ms",
		Machine: machine{Cores: 2, CPU: "AMD EPYC", Kernel: "6.18", Go: "go1.26"},
		IdleRun: idleRun{Conns: 3000, Procs: 3, SourceIPs: "127.0.0.2-4"}}
	for i, c := range cases {
		s.Runs = append(s.Runs,
			record{Case: c.name(), Broker: nameLoopmq, CPUPerMsgUs: float64(10 + i), P99Us: 900, ReceivedPerSec: 5000},
			record{Case: c.name(), Broker: nameMosquitto, CPUPerMsgUs: 10, P99Us: 1000, ReceivedPerSec: 5000})
	}
	s.Idle = []record{{Broker: nameLoopmq, Connections: 3000, RSSPerConn: 1300, AnonPerConn: 1100, RSSEndKB: 10000},
		{Broker: nameMosquitto, Connections: 3000, RSSPerConn: 700, AnonPerConn: 700, RSSEndKB: 9000}}
	sec := renderSection(s, cases, "### Reading\n\nkept\n")
	require.True(t, strings.HasPrefix(sec, sectionTitle+"\n"))
	require.True(t, strings.HasSuffix(sec, "### Reading\n\nkept\n"))
	require.Contains(t, sec, "| 1 | 64 B | 5,000/s | 5,000 / 5,000 (1.00×) | 10.00 / 10.00 (1.00×) | 900 µs / 1.00 ms (0.90×) |")
	require.Contains(t, sec, "loopmq / Mosquitto: 1.86× (anonymous: 1.57×).")
	// The section must not contain a level-2 heading of its own past the
	// first line, or the next rewrite would stop there.
	require.NotContains(t, sec[1:], "\n## ")
}

func TestSplitRange(t *testing.T) {
	require.Equal(t, []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}, splitRange("127.0.0.2-4"))
	require.Equal(t, []string{"127.0.0.2", "127.0.0.9"}, splitRange("127.0.0.2,127.0.0.9"))
}
