package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeFile writes content into a file named name in a temporary
// directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
	return p
}

func TestSettingsCoverEveryKey(t *testing.T) {
	keys := configKeys()
	var fromSettings []string
	flags := map[string]bool{}
	for _, s := range settings {
		fromSettings = append(fromSettings, s.key)
		require.False(t, flags[s.flag], "flag -%s twice", s.flag)
		flags[s.flag] = true
	}
	sort.Strings(keys)
	sort.Strings(fromSettings)
	require.Equal(t, keys, fromSettings, "every config key has exactly one flag")
}

// TestDocsListEveryKey: docs/configuration.md names every key and flag.
func TestDocsListEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	require.NoError(t, err)
	for _, s := range settings {
		require.Contains(t, string(doc), "`"+s.key+"`", "docs/configuration.md lacks key %s", s.key)
		require.Contains(t, string(doc), "`-"+s.flag+"`", "docs/configuration.md lacks flag -%s", s.flag)
	}
}

func TestExampleConfig(t *testing.T) {
	cfg, org := defaultConfig(), origins{}
	require.NoError(t, loadConfigFile("../../loopmq.example.yaml", &cfg, org))
	require.NoError(t, cfg.validate(org))
	// The example spells out the defaults, so it must equal them except
	// where it says otherwise.
	def := defaultConfig()
	def.Metrics.Listen = "127.0.0.1:9100"
	require.Equal(t, def, cfg)
	for _, k := range configKeys() {
		require.Contains(t, org, k, "the example shows key %s", k)
	}
}

func TestConfigFile(t *testing.T) {
	f := func(name, yaml, wantErr string, check func(t *testing.T, c *Config)) {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, "loopmq.yaml", yaml)
			cfg, org := defaultConfig(), origins{}
			err := validateAfter(loadConfigFile(path, &cfg, org), &cfg, org)
			if wantErr != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), strings.ReplaceAll(wantErr, "FILE", path))
				return
			}
			require.NoError(t, err)
			if check != nil {
				check(t, &cfg)
			}
		})
	}
	f("empty", "", "", func(t *testing.T, c *Config) { require.Equal(t, defaultConfig(), *c) })
	f("comments only", "# nothing\n", "", func(t *testing.T, c *Config) { require.Equal(t, defaultConfig(), *c) })
	f("values", `
listeners:
  tcp: 127.0.0.1:1884
  ws: :8080
limits:
  max_inflight: 100
  max_queued_bytes: 64MiB
  max_packet_size: 256KiB
  max_outbound: 2000000
  connect_timeout: 90
  max_session_expiry: 24h
auth:
  allow_anonymous: false
sys_interval: 0
persistence:
  sync: interval
  sync_interval: 1s
  max_disk_bytes: 10GB
`, "", func(t *testing.T, c *Config) {
		require.Equal(t, "127.0.0.1:1884", c.Listeners.TCP)
		require.Equal(t, ":8080", c.Listeners.WS)
		require.Equal(t, 100, c.Limits.MaxInflight)
		require.Equal(t, ByteSize(64<<20), c.Limits.MaxQueuedBytes)
		require.Equal(t, ByteSize(256<<10), c.Limits.MaxPacketSize)
		require.Equal(t, ByteSize(2000000), c.Limits.MaxOutbound)
		require.Equal(t, 90*time.Second, c.Limits.ConnectTimeout.D(), "a bare number is seconds")
		require.Equal(t, 24*time.Hour, c.Limits.MaxSessionExpiry.D())
		require.NotNil(t, c.Auth.AllowAnonymous)
		require.False(t, *c.Auth.AllowAnonymous)
		require.Zero(t, c.SysInterval)
		require.Equal(t, ByteSize(10e9), c.Persistence.MaxDiskBytes)
		require.Equal(t, "interval", c.Persistence.Sync)
		require.True(t, c.Persistence.Enabled, "default kept")
		require.Equal(t, 1000, c.Limits.MaxQueued, "default kept")
	})
	f("empty section keeps its defaults", "tls:\nlimits:\n", "", func(t *testing.T, c *Config) {
		require.Equal(t, defaultConfig(), *c)
	})
	f("unknown top-level key", "listners:\n  tcp: :1\n",
		"FILE:1: listners: unknown key; known keys here: auth, limits, listeners, logging, metrics, persistence, pprof, response_information, sys_interval, tls", nil)
	f("unknown nested key", "limits:\n  max_inflight: 3\n  max_infligt: 4\n",
		"FILE:3: limits.max_infligt: unknown key; known keys here: connect_timeout,", nil)
	f("not an integer", "limits:\n\n  max_inflight: lots\n", `FILE:3: limits.max_inflight: want an integer, not str "lots"`, nil)
	f("not a boolean", "persistence:\n  enabled: maybe\n", `FILE:2: persistence.enabled: want true or false, not str "maybe"`, nil)
	f("a section that is not a mapping", "limits: 5\n", "FILE:1: limits: want a mapping of keys, not int", nil)
	f("bad size", "limits:\n  max_queued_bytes: 16 parsecs\n", `FILE:2: limits.max_queued_bytes: want a size in bytes such as 1048576, 64KiB or 16MiB, not "16 parsecs"`, nil)
	f("bad duration", "sys_interval: soon\n", `FILE:1: sys_interval: want a duration such as 10s, 1m30s or a number of seconds, not "soon"`, nil)
	f("out of range", "limits:\n  max_inflight: 0\n", "FILE:2: limits.max_inflight: must be between 1 and 65535, not 0", nil)
	f("bad enum", "persistence:\n  sync: sometimes\n", `FILE:2: persistence.sync: want always, interval or none, not "sometimes"`, nil)
	f("bad log level", "logging:\n  level: loud\n", `FILE:2: logging.level: want debug, info, warn or error, not "loud"`, nil)
	f("tls listener without a certificate", "listeners:\n  tls: :8883\n", "FILE:2: listeners.tls: needs tls.cert and tls.key", nil)
	f("certificate without a key", "tls:\n  cert: a.pem\n", "FILE:2: tls.cert: tls.cert and tls.key go together", nil)
	f("bad address", "metrics:\n  listen: 9100\n", `FILE:2: metrics.listen: want host:port or :port, not "9100"`, nil)
	f("response information", "response_information: responses/\n", "", func(t *testing.T, c *Config) {
		require.Equal(t, "responses/", c.ResponseInformation)
	})
	f("bad response information", "response_information: \"a\\0b\"\n", `FILE:1: response_information: not a valid MQTT string`, nil)
	f("syntax error", "limits:\n  max_inflight: 3\n max_queued: 4\n", "FILE:2: did not find expected key", nil)
	f("duplicate key", "sys_interval: 1\nsys_interval: 2\n", "FILE:2:", nil)
	f("several errors at once", "limits:\n  max_inflight: 0\n  max_queued: 0\n", "FILE:3: limits.max_queued: must be between 1", nil)
}

func TestFlagsOverrideFile(t *testing.T) {
	path := writeFile(t, "loopmq.yaml", "limits:\n  max_inflight: 50\n  max_queued: 20\nlogging:\n  level: debug\n")
	var stderr bytes.Buffer
	lc, err := loadConfig("loopmq", []string{"-config", path, "-max-inflight", "7", "-data-dir", "/tmp/x",
		"-sync", "none", "-persistence=false", "-max-queued-bytes", "1MiB", "-sys-interval", "30"}, &stderr)
	require.NoError(t, err, stderr.String())
	c := &lc.cfg
	require.Equal(t, 7, c.Limits.MaxInflight, "flag given: it wins")
	require.Equal(t, 20, c.Limits.MaxQueued, "flag not given: the file's value")
	require.Equal(t, "debug", c.Logging.Level)
	require.Equal(t, "/tmp/x", c.Persistence.Dir)
	require.Equal(t, "none", c.Persistence.Sync)
	require.False(t, c.Persistence.Enabled)
	require.Equal(t, ByteSize(1<<20), c.Limits.MaxQueuedBytes)
	require.Equal(t, 30*time.Second, c.SysInterval.D())
	require.Equal(t, "flag -max-inflight", lc.org["limits.max_inflight"])
	require.Equal(t, path+":3", lc.org["limits.max_queued"])

	_, err = loadConfig("loopmq", []string{"-config", path, "-max-inflight", "0"}, &stderr)
	require.ErrorContains(t, err, "flag -max-inflight: limits.max_inflight: must be between 1 and 65535, not 0")
	_, err = loadConfig("loopmq", []string{"-config", path, "-mosquitto-conf", path}, &stderr)
	require.ErrorContains(t, err, "exclude each other")
	_, err = loadConfig("loopmq", []string{"-allow-anonymous"}, &stderr)
	require.NoError(t, err)
	lc, err = loadConfig("loopmq", []string{"-allow-anonymous=false"}, &stderr)
	require.NoError(t, err)
	require.False(t, *lc.cfg.Auth.AllowAnonymous)
	lc, err = loadConfig("loopmq", nil, &stderr)
	require.NoError(t, err)
	require.Nil(t, lc.cfg.Auth.AllowAnonymous, "not given: decided by the password file")
	require.Equal(t, defaultConfig(), lc.cfg)
}

func TestConfigCheckCommand(t *testing.T) {
	good := writeFile(t, "good.yaml", "limits:\n  max_inflight: 10\n")
	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run([]string{"config", "check", good}, &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), good+": OK")

	bad := writeFile(t, "bad.yaml", "auth:\n  password_file: /nonexistent/passwd\nlimits:\n  max_inflight: -1\n")
	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 1, run([]string{"config", "check", bad}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "error: "+bad+":4: limits.max_inflight: must be between 1 and 65535, not -1")

	// Values are fine, but a file it names does not load.
	missing := writeFile(t, "missing.yaml", "auth:\n  password_file: /nonexistent/passwd\n")
	stderr.Reset()
	require.Equal(t, 1, run([]string{"config", "check", missing}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "/nonexistent/passwd")

	stdout.Reset()
	stderr.Reset()
	require.Equal(t, 0, run([]string{"config", "check", "-mosquitto", "testdata/mosquitto/debian-etc.conf"}, &stdout, &stderr), stderr.String())
	require.Contains(t, stderr.String(), "warning: not supported, ignored: log_dest (testdata/mosquitto/debian-etc.conf:11)")

	// The broker's flags name the file as well.
	for _, args := range [][]string{{"-mosquitto-conf", "testdata/mosquitto/debian-etc.conf"}, {"-config", good}} {
		stdout.Reset()
		stderr.Reset()
		require.Equal(t, 0, run(append([]string{"config", "check"}, args...), &stdout, &stderr), stderr.String())
		require.Contains(t, stdout.String(), args[1]+": OK")
	}
	stderr.Reset()
	require.Equal(t, 2, run([]string{"config", "check", "-config", good, "-mosquitto-conf", "testdata/mosquitto/debian-etc.conf"}, &stdout, &stderr))
	require.Contains(t, stderr.String(), "name one file")

	// print turns a Mosquitto file into a loopmq.yaml that loads back to
	// the same configuration.
	stdout.Reset()
	require.Equal(t, 0, run([]string{"config", "print", "-mosquitto-conf", "testdata/mosquitto/multi-listener.conf"}, &stdout, &stderr), stderr.String())
	printed := writeFile(t, "printed.yaml", stdout.String())
	var fromMosq, fromYAML Config
	fromMosq = defaultConfig()
	_, err := loadMosquittoConf("testdata/mosquitto/multi-listener.conf", &fromMosq, origins{})
	require.NoError(t, err)
	fromYAML = defaultConfig()
	require.NoError(t, loadConfigFile(printed, &fromYAML, origins{}))
	require.Equal(t, fromMosq, fromYAML)
}

// TestCapabilityFlagsReachEngine checks that the optional capabilities
// given as flags become the engine's options, and that the defaults leave
// every capability on.
func TestCapabilityFlagsReachEngine(t *testing.T) {
	var stderr bytes.Buffer
	lc, err := loadConfig("loopmq", []string{"-persistence=false", "-max-qos", "1", "-retain-available=false",
		"-wildcard-subscriptions=false", "-shared-subscriptions=false", "-subscription-identifiers=false"}, &stderr)
	require.NoError(t, err, stderr.String())
	b, err := buildBroker(&lc.cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NotNil(t, b.opts.MaxQoS)
	require.Equal(t, byte(1), *b.opts.MaxQoS)
	require.True(t, b.opts.NoRetain)
	require.True(t, b.opts.NoWildcardSubscriptions)
	require.True(t, b.opts.NoSharedSubscriptions)
	require.True(t, b.opts.NoSubscriptionIdentifiers)
	require.Equal(t, "retain_available,wildcard_subscriptions,shared_subscriptions,subscription_identifiers",
		capabilitiesOff(&lc.cfg.Limits), "the startup log's limits line")

	lc, err = loadConfig("loopmq", []string{"-persistence=false"}, &stderr)
	require.NoError(t, err)
	b, err = buildBroker(&lc.cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.Nil(t, b.opts.MaxQoS)
	require.False(t, b.opts.NoRetain || b.opts.NoWildcardSubscriptions || b.opts.NoSharedSubscriptions ||
		b.opts.NoSubscriptionIdentifiers)

	_, err = loadConfig("loopmq", []string{"-max-qos", "3"}, &stderr)
	require.ErrorContains(t, err, "limits.max_qos: must be between 0 and 2, not 3")
}

// TestConfigErrorsAllAtOnce: an unknown key does not hide the file's other
// errors, in `loopmq config check` and at start (docs/configuration.md:
// "all errors are reported at once"). Found by exploratory QA.
func TestConfigErrorsAllAtOnce(t *testing.T) {
	bad := writeFile(t, "bad.yaml", "limits:\n  max_infligt: 32\n  max_qos: 3\npersistence:\n  sync: sometimes\n")
	want := []string{bad + ":2: limits.max_infligt: unknown key",
		bad + ":3: limits.max_qos: must be between 0 and 2, not 3",
		bad + `:5: persistence.sync: want always, interval or none, not "sometimes"`}
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, run([]string{"config", "check", bad}, &stdout, &stderr))
	for _, w := range want {
		require.Contains(t, stderr.String(), w)
	}
	_, err := loadConfig("loopmq", []string{"-config", bad}, &stderr)
	require.Error(t, err)
	for _, w := range want {
		require.Contains(t, err.Error(), w)
	}
	_, err = loadConfig("loopmq", []string{"-config", bad, "-max-qos", "1"}, &stderr)
	require.NotContains(t, err.Error(), ":3: limits.max_qos", "a flag overrides the file's value")
}

// stackError formats like cockroachdb/errors (pebble's): its %+v is many
// lines with a stack trace.
type stackError struct{}

func (stackError) Error() string { return "pebble: corruption" }
func (stackError) Format(s fmt.State, verb rune) {
	if s.Flag('+') {
		fmt.Fprint(s, "pebble: corruption\n(1) attached stack trace\n  -- stack trace:")
		return
	}
	fmt.Fprint(s, "pebble: corruption")
}

// TestLoggerErrorsAsText: an error is logged as its text in both formats,
// never with a stack trace.
func TestLoggerErrorsAsText(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		var out bytes.Buffer
		log, err := newLogger(LoggingConfig{Level: "info", Format: format}, &out)
		require.NoError(t, err)
		log.Error("store failed", "error", fmt.Errorf("open data: %w", stackError{}), "err", stackError{})
		require.Contains(t, out.String(), "pebble: corruption", format)
		require.NotContains(t, out.String(), "stack trace", format)
	}
}
