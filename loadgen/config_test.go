package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSourceIPs(t *testing.T) {
	f := func(in string, want []string) {
		t.Helper()
		got, err := ParseSourceIPs(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	f("127.0.0.2", []string{"127.0.0.2"})
	f("127.0.0.2, 127.0.0.3", []string{"127.0.0.2", "127.0.0.3"})
	f("127.0.0.2-127.0.0.4", []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"})
	f("127.0.0.254-127.0.1.1", []string{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"})
	f("127.0.0.8-9,127.0.0.2", []string{"127.0.0.8", "127.0.0.9", "127.0.0.2"})
	f("::1", []string{"::1"})
	for _, bad := range []string{"localhost", "127.0.0.5-127.0.0.2", "127.0.0.1-300", "127.0.0.1-::1", "127.0.0.0-127.1.0.1"} {
		_, err := ParseSourceIPs(bad)
		require.Error(t, err, bad)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := func() Config {
		c := Config{}
		c.SetDefaults()
		return c
	}
	c := ok()
	require.NoError(t, c.Validate())
	require.NotZero(t, c.RunID)
	for name, mutate := range map[string]func(*Config){
		"scenario": func(c *Config) { c.Scenario = "storm" },
		"qos":      func(c *Config) { c.QoS = 3 },
		"size":     func(c *Config) { c.Size = PayloadHeaderSize - 1 },
		"version":  func(c *Config) { c.Version = 4 },
		"procs":    func(c *Config) { c.Procs = 2 }, // without WorkerCommand
		"broker":   func(c *Config) { c.Brokers = []string{"nohost"} },
		"source":   func(c *Config) { c.SourceIPs = []string{"x"} },
		"inflight": func(c *Config) { c.Inflight = 70000 },
		"rate":     func(c *Config) { c.Rate = -1 },
	} {
		c := ok()
		mutate(&c)
		require.Error(t, c.Validate(), name)
	}
}

func TestPlans(t *testing.T) {
	mkPlan := func(scenario string, n, subs int, cmdRate float64) plan {
		c := Config{Scenario: scenario, N: n, Subs: subs, Rate: 1000, CmdRate: cmdRate, Brokers: []string{"a:1", "b:1"}}
		c.SetDefaults()
		return buildPlan(&c)
	}
	count := func(p plan) (pubs, subs int, rate float64) {
		for _, c := range p.conns {
			if c.publishes() {
				pubs++
				rate += c.rate
			}
			if c.subscribes() {
				subs++
			}
		}
		return
	}

	p := mkPlan(ScenarioPairs, 5, 0, 0)
	pubs, subs, rate := count(p)
	require.Equal(t, []int{5, 5}, []int{pubs, subs})
	require.InDelta(t, 1000, rate, 1e-9, "the total rate is spread over the publishers")
	for i := 0; i < len(p.conns); i += 2 {
		s, pub := p.conns[i], p.conns[i+1]
		require.Equal(t, s.filter, pub.sources[0].topic, "each pair shares its own topic")
		require.Equal(t, []uint32{pub.sources[0].id, pub.sources[0].id + 1}, []uint32{s.expectLo, s.expectHi})
		require.Equal(t, s.group, pub.group, "a pair stays in one process")
		require.Equal(t, s.broker, pub.broker, "and on one broker")
	}

	p = mkPlan(ScenarioFanIn, 4, 3, 0)
	pubs, subs, _ = count(p)
	require.Equal(t, []int{4, 3}, []int{pubs, subs})
	require.Equal(t, "loadgen/fanin/+", p.conns[4].filter)
	require.Equal(t, uint32(4), p.conns[4].expectHi)

	p = mkPlan(ScenarioFanOut, 6, 0, 0)
	pubs, subs, rate = count(p)
	require.Equal(t, []int{1, 6}, []int{pubs, subs})
	require.InDelta(t, 1000, rate, 1e-9)

	p = mkPlan(ScenarioFleet, 3, 0, 30)
	require.Len(t, p.conns, 4)
	dev := p.conns[1]
	require.Equal(t, "devices/dev1/cmd", dev.filter)
	require.Equal(t, "devices/dev1/telemetry", dev.sources[0].topic)
	back := p.conns[3]
	require.Equal(t, "devices/+/telemetry", back.filter)
	require.Len(t, back.sources, 3, "one command stream per device")
	require.Equal(t, uint32(3+1), back.sources[1].id)
	require.Equal(t, []uint32{4, 5}, []uint32{dev.expectLo, dev.expectHi})
	require.InDelta(t, 30, back.rate, 1e-9)
	p = mkPlan(ScenarioFleet, 3, 0, 0)
	require.Empty(t, p.conns[3].sources, "no commands")
	require.Equal(t, p.conns[1].expectLo, p.conns[1].expectHi, "so none expected")

	p = mkPlan(ScenarioConn, 7, 0, 0)
	pubs, subs, _ = count(p)
	require.Equal(t, []int{0, 0}, []int{pubs, subs})

	// Shares partition the plan, subscribers first.
	p = mkPlan(ScenarioFanIn, 10, 4, 0)
	seen := make(map[int]int)
	for w := range 3 {
		mine := p.share(w, 3)
		subsDone := false
		for _, c := range mine {
			seen[c.index]++
			if !c.subscribes() {
				subsDone = true
			}
			require.False(t, subsDone && c.subscribes(), "subscribers come first")
		}
	}
	require.Len(t, seen, len(p.conns))
	for _, n := range seen {
		require.Equal(t, 1, n)
	}
}

func TestClassifyLimits(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return stageErr{"dial", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)}}
	}
	kind, hint := classify("dial", wrap(syscall.EMFILE))
	require.Equal(t, "fd limit reached (EMFILE)", kind)
	require.Contains(t, hint, "-procs")
	kind, hint = classify("dial", wrap(syscall.EADDRNOTAVAIL))
	require.Equal(t, "no local port (EADDRNOTAVAIL)", kind)
	require.Contains(t, hint, "-source-ips")
	kind, _ = classify("dial", wrap(syscall.ECONNREFUSED))
	require.Equal(t, "dial: connection refused", kind)
	kind, _ = classify("connack", fmt.Errorf("wait: %w", os.ErrDeadlineExceeded))
	require.Equal(t, "connack timeout", kind)
	kind, _ = classify("connack", refusedError{"not authorized"})
	require.Equal(t, "connack refused (not authorized)", kind)
	kind, _ = classify("run", errors.New("something odd"))
	require.Equal(t, "run failed", kind)
}

func TestLimitWarnings(t *testing.T) {
	c := Config{Scenario: ScenarioConn, N: int(fdLimit()) + 10}
	c.SetDefaults()
	p := buildPlan(&c)
	w := limitWarnings(&c, p.conns, p.share(0, 1), 0)
	require.NotEmpty(t, w)
	require.Contains(t, w[0], "EMFILE")
	require.Contains(t, w[0], "-procs")

	c = Config{Scenario: ScenarioConn, N: ephemeralPorts() + 10}
	c.SetDefaults()
	p = buildPlan(&c)
	require.Contains(t, fmt.Sprint(limitWarnings(&c, p.conns, p.share(0, 1), 0)), "-source-ips")
}

// TestDialFromSourceAddresses checks that connections leave from the source
// addresses, round robin by connection index, with the kernel choosing the
// port at connect time (IP_BIND_ADDRESS_NO_PORT).
func TestDialFromSourceAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	cfg := Config{SourceIPs: []string{"127.0.0.2", "127.0.0.3"}}
	d, err := newDialer(&cfg)
	require.NoError(t, err)
	for i := range 4 {
		c, err := d.dial(context.Background(), i, ln.Addr().String())
		require.NoError(t, err)
		s, err := ln.Accept()
		require.NoError(t, err)
		require.Equal(t, cfg.SourceIPs[i%2], s.RemoteAddr().(*net.TCPAddr).IP.String())
		require.Equal(t, c.LocalAddr().String(), s.RemoteAddr().String())
		_ = c.Close()
		_ = s.Close()
	}
}
