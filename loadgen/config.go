package loadgen

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Scenario names.
const (
	// ScenarioPairs: N publishers, each to its own subscriber on its own topic.
	ScenarioPairs = "pairs"
	// ScenarioFanIn: N publishers on N topics, Subs subscribers on one wildcard.
	ScenarioFanIn = "fanin"
	// ScenarioFanOut: one publisher, N subscribers of its topic.
	ScenarioFanOut = "fanout"
	// ScenarioFleet: N devices publishing telemetry and receiving commands,
	// and one backend that subscribes to all telemetry and sends commands.
	ScenarioFleet = "fleet"
	// ScenarioConn: N idle connections, opened at ConnRate and held.
	ScenarioConn = "conn"
)

// Scenarios lists the scenario names in the order the CLI documents them.
var Scenarios = []string{ScenarioPairs, ScenarioFanIn, ScenarioFanOut, ScenarioFleet, ScenarioConn}

// Config holds every parameter of a run. The zero value of a field means its
// default (see SetDefaults), except where the field says otherwise.
type Config struct {
	// Brokers are the host:port addresses to connect to. Connections are
	// spread over them by connection index (pairs: by pair, fleet: by
	// device), so scenarios other than pairs and conn need brokers that
	// share messages (a cluster). Default 127.0.0.1:1883.
	Brokers []string `json:"brokers"`
	// Scenario is one of Scenarios. Default pairs.
	Scenario string `json:"scenario"`
	// N is the number of publishers (pairs, fanin), subscribers (fanout),
	// devices (fleet) or connections (conn). Default 10.
	N int `json:"n"`
	// Subs is the number of wildcard subscribers in fanin. Default 1.
	Subs int `json:"subs"`
	// QoS of every PUBLISH and subscription: 0, 1 or 2.
	QoS byte `json:"qos"`
	// Persistent gives every subscriber a persistent session: Clean
	// Session 0 (3.1.1), or Clean Start 0 with a Session Expiry Interval
	// of PersistentExpiry (5.0). A broker with persistence then writes
	// each QoS 1/2 delivery to them, and a publisher's acknowledgement
	// may wait for that write (AckLatency). The sessions are ended after
	// the run by a clean reconnection, paced like setup (ConnRate,
	// ConnParallel, within SetupTimeout). Needs QoS 1 or 2.
	Persistent bool `json:"persistent,omitempty"`
	// Size is the payload size in bytes, at least PayloadHeaderSize. Default 64.
	Size int `json:"size"`
	// Rate is the total offered load in messages per second over all
	// publishers (fleet: telemetry over all devices). 0 means as fast as
	// the in-flight window allows (see the package doc).
	Rate float64 `json:"rate"`
	// CmdRate is the total rate of commands the fleet backend sends, spread
	// evenly over the devices. 0 means none.
	CmdRate float64 `json:"cmd_rate"`
	// Version is the MQTT version: 3 (3.1.1, protocol level 4) or 5. Default 3.
	Version int `json:"version"`
	// Duration is the measured window. Default 10 s.
	Duration time.Duration `json:"duration_ns"`
	// Warmup runs the load before the measured window; its messages are
	// accounted for but not in the latency histograms or rates. Default 0.
	Warmup time.Duration `json:"warmup_ns"`
	// Ramp raises each publisher's rate linearly from 0 to its full rate
	// over this time, from the start of the warm-up. Default 0.
	Ramp time.Duration `json:"ramp_ns"`
	// Inflight bounds un-acknowledged QoS 1/2 PUBLISH packets per publisher
	// (and QoS 0 messages not yet fenced by a PINGRESP with Rate 0).
	// Default 100, at most 65535.
	Inflight int `json:"inflight"`
	// ConnRate is the rate of new connections per second during setup,
	// and of the reconnections that end Persistent sessions after the run;
	// 0 means as fast as ConnParallel allows.
	ConnRate float64 `json:"conn_rate"`
	// ConnParallel bounds concurrent connection setups. Default 200.
	ConnParallel int `json:"conn_parallel"`
	// ConnectTimeout bounds dial, TLS handshake, CONNACK and SUBACK for one
	// connection. Default 5 s.
	ConnectTimeout time.Duration `json:"connect_timeout_ns"`
	// SetupTimeout bounds the whole setup phase: connections not up by
	// then are abandoned and counted. Default 60 s.
	SetupTimeout time.Duration `json:"setup_timeout_ns"`
	// Drain is how long the run waits after the schedule ends for messages
	// in flight to arrive and be acknowledged. Default 3 s.
	Drain time.Duration `json:"drain_ns"`
	// KeepAlive is sent in CONNECT; idle connections send PINGREQ at half of
	// it. Negative disables keep-alive. Default 60 s.
	KeepAlive time.Duration `json:"keepalive_ns"`
	// OverrunSlack is how late a send may be before it counts as an
	// overrun. Default 1 ms.
	OverrunSlack time.Duration `json:"overrun_slack_ns"`

	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`

	// TLS connects with crypto/tls. CAFile is a PEM bundle of trusted CAs
	// (default: the system pool); Insecure skips verification; ServerName
	// overrides the name checked (default: the broker's host).
	TLS        bool   `json:"tls,omitempty"`
	CAFile     string `json:"cafile,omitempty"`
	Insecure   bool   `json:"insecure,omitempty"`
	ServerName string `json:"server_name,omitempty"`

	// SourceIPs are local addresses to dial from, used round robin by
	// connection index; each has its own ephemeral port range (see
	// ParseSourceIPs for the syntax).
	SourceIPs []string `json:"source_ips,omitempty"`
	// TopicPrefix is put before every topic, e.g. "site1/".
	TopicPrefix string `json:"topic_prefix,omitempty"`

	// Procs is the number of worker processes (see RunProcs). Default 1.
	Procs int `json:"procs"`
	// BrokerPID, when set, is the broker process sampled for CPU time and
	// RSS (Linux /proc).
	BrokerPID int `json:"broker_pid,omitempty"`
	// RunID tags every payload and client identifier of the run, so stale
	// or foreign messages are recognised. Default: random.
	RunID uint32 `json:"run_id"`

	// Progress receives a progress line every second; nil for none.
	Progress io.Writer `json:"-"`
	// WorkerCommand returns the command that starts one worker process
	// (which must call ServeWorker); needed when Procs > 1.
	WorkerCommand func() *exec.Cmd `json:"-"`
}

// SetDefaults fills every zero field with its default.
func (c *Config) SetDefaults() {
	if len(c.Brokers) == 0 {
		c.Brokers = []string{"127.0.0.1:1883"}
	}
	if c.Scenario == "" {
		c.Scenario = ScenarioPairs
	}
	if c.N == 0 {
		c.N = 10
	}
	if c.Subs == 0 {
		c.Subs = 1
	}
	if c.Size == 0 {
		c.Size = 64
	}
	if c.Version == 0 {
		c.Version = 3
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Inflight == 0 {
		c.Inflight = 100
	}
	if c.ConnParallel == 0 {
		c.ConnParallel = 200
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.SetupTimeout == 0 {
		c.SetupTimeout = 60 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 3 * time.Second
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 60 * time.Second
	}
	if c.OverrunSlack == 0 {
		c.OverrunSlack = time.Millisecond
	}
	if c.Procs == 0 {
		c.Procs = 1
	}
	if c.RunID == 0 {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.RunID = binary.BigEndian.Uint32(b[:]) | 1
	}
}

// Validate reports the first parameter that cannot work.
func (c *Config) Validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || c.Scenario == s
	}
	switch {
	case !known:
		return fmt.Errorf("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	case c.N < 1:
		return fmt.Errorf("-n %d: need at least 1", c.N)
	case c.Subs < 1:
		return fmt.Errorf("-subs %d: need at least 1", c.Subs)
	case c.QoS > 2:
		return fmt.Errorf("-qos %d: want 0, 1 or 2", c.QoS)
	case c.Persistent && c.QoS == 0:
		return errors.New("-persistent: a broker stores nothing at QoS 0; use -qos 1 or 2")
	case c.Size < PayloadHeaderSize:
		return fmt.Errorf("-size %d: the payload carries a %d-byte stamp (run, publisher, sequence, send time), so at least %d",
			c.Size, PayloadHeaderSize, PayloadHeaderSize)
	case c.Size > 256<<20:
		return fmt.Errorf("-size %d: larger than MQTT allows", c.Size)
	case c.Rate < 0 || c.CmdRate < 0 || c.ConnRate < 0:
		return errors.New("rates must not be negative")
	case c.Version != 3 && c.Version != 5:
		return fmt.Errorf("-version %d: want 3 (3.1.1) or 5 (5.0)", c.Version)
	case c.Duration <= 0:
		return fmt.Errorf("-duration %v: must be positive", c.Duration)
	case c.Warmup < 0 || c.Ramp < 0 || c.Drain < 0:
		return errors.New("warm-up, ramp and drain must not be negative")
	case c.Inflight < 1 || c.Inflight > 65535:
		return fmt.Errorf("-inflight %d: want 1 to 65535", c.Inflight)
	case c.ConnParallel < 1:
		return fmt.Errorf("-conn-parallel %d: need at least 1", c.ConnParallel)
	case c.Procs < 1:
		return fmt.Errorf("-procs %d: need at least 1", c.Procs)
	case c.Procs > 1 && c.WorkerCommand == nil:
		return errors.New("Procs > 1 needs Config.WorkerCommand")
	case len(c.Brokers) == 0:
		return errors.New("no broker address")
	case (c.Scenario == ScenarioFanIn || c.Scenario == ScenarioFanOut || c.Scenario == ScenarioFleet) && c.N+c.Subs > 1<<24:
		return fmt.Errorf("-n %d: too many", c.N)
	}
	for _, b := range c.Brokers {
		if _, _, err := net.SplitHostPort(b); err != nil {
			return fmt.Errorf("broker address %q: %w", b, err)
		}
	}
	for _, ip := range c.SourceIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			return fmt.Errorf("source address %q: %w", ip, err)
		}
	}
	return nil
}

// protocolVersion is the protocol level CONNECT carries.
func (c *Config) protocolVersion() byte {
	if c.Version == 5 {
		return 5
	}
	return 4
}

// redacted returns a copy fit for a report: no password, no functions.
func (c Config) redacted() Config {
	if c.Password != "" {
		c.Password = "(set)"
	}
	c.Progress = nil
	c.WorkerCommand = nil
	return c
}

// ParseSourceIPs parses a comma-separated list of addresses and ranges:
// "127.0.0.2,127.0.0.3", "127.0.0.2-127.0.0.9" or "127.0.0.2-9" (the last
// octet only). A range covers both ends and at most 65536 addresses.
func ParseSourceIPs(s string) ([]string, error) {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := netip.ParseAddr(lo)
		if err != nil {
			return nil, fmt.Errorf("source address %q: %w", lo, err)
		}
		if !isRange {
			out = append(out, first.String())
			continue
		}
		var last netip.Addr
		if n, err := strconv.Atoi(hi); err == nil && first.Is4() {
			if n < 0 || n > 255 {
				return nil, fmt.Errorf("source range %q: last octet %d out of range", item, n)
			}
			b := first.As4()
			b[3] = byte(n)
			last = netip.AddrFrom4(b)
		} else if last, err = netip.ParseAddr(hi); err != nil {
			return nil, fmt.Errorf("source range %q: %w", item, err)
		}
		if last.Less(first) || first.Is4() != last.Is4() {
			return nil, fmt.Errorf("source range %q: the end comes before the start", item)
		}
		for a, n := first, 0; ; a, n = a.Next(), n+1 {
			if n == 65536 {
				return nil, fmt.Errorf("source range %q: more than 65536 addresses", item)
			}
			out = append(out, a.String())
			if a == last {
				break
			}
		}
	}
	return out, nil
}
