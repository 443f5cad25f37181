package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// Config is everything loopmq can be told: the YAML config file
// (-config), a Mosquitto config (-mosquitto-conf, mosquittoconf.go) and the
// command-line flags all fill it, in that order, flags last (only those
// given). Every key has a flag of the same meaning (settings, flags.go);
// docs/configuration.md lists both with their defaults.
type Config struct {
	Listeners   ListenersConfig `yaml:"listeners"`
	TLS         TLSConfig       `yaml:"tls"`
	Auth        AuthConfig      `yaml:"auth"`
	Limits      LimitsConfig    `yaml:"limits"`
	Logging     LoggingConfig   `yaml:"logging"`
	Metrics     MetricsConfig   `yaml:"metrics"`
	Pprof       PprofConfig     `yaml:"pprof"`
	SysInterval Duration        `yaml:"sys_interval"`
	// ResponseInformation is engine.Options.ResponseInformation.
	ResponseInformation string            `yaml:"response_information"`
	Persistence         PersistenceConfig `yaml:"persistence"`
}

// ListenersConfig are the MQTT listeners' addresses; "" for none (the TCP
// one is always there).
type ListenersConfig struct {
	TCP string `yaml:"tcp"`
	TLS string `yaml:"tls"`
	WS  string `yaml:"ws"`
	WSS string `yaml:"wss"`
}

// TLSConfig is the TLS setting of the tls and wss listeners.
type TLSConfig struct {
	Cert               string   `yaml:"cert"`
	Key                string   `yaml:"key"`
	CA                 string   `yaml:"ca"`
	ClientCert         string   `yaml:"client_cert"`
	IdentityAsUsername bool     `yaml:"identity_as_username"`
	SubjectAsUsername  bool     `yaml:"subject_as_username"`
	ReloadInterval     Duration `yaml:"reload_interval"`
}

// AuthConfig are Mosquitto's password_file, acl_file and allow_anonymous.
type AuthConfig struct {
	PasswordFile string `yaml:"password_file"`
	ACLFile      string `yaml:"acl_file"`
	// AllowAnonymous nil: true without a password file, false with one.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
}

// LimitsConfig are the engine's bounds (engine.Options).
type LimitsConfig struct {
	Loops                int      `yaml:"loops"`
	MaxInflight          int      `yaml:"max_inflight"`
	MaxQueued            int      `yaml:"max_queued"`
	MaxQueuedBytes       ByteSize `yaml:"max_queued_bytes"`
	QueueOverflow        string   `yaml:"queue_overflow"`
	MaxPacketSize        ByteSize `yaml:"max_packet_size"`
	MaxOutbound          ByteSize `yaml:"max_outbound"`
	ReceiveMaximum       int      `yaml:"receive_maximum"`
	TopicAliasMaximum    int      `yaml:"topic_alias_maximum"`
	MaxTopicAliasOut     int      `yaml:"max_topic_alias_out"`
	MaxClientIDLen       int      `yaml:"max_client_id_len"`
	ConnectTimeout       Duration `yaml:"connect_timeout"`
	HandshakeTimeout     Duration `yaml:"handshake_timeout"`
	MaxSessionExpiry     Duration `yaml:"max_session_expiry"`
	MaxKeepAlive         Duration `yaml:"max_keepalive"`
	MaxConnRatePerIP     int      `yaml:"max_conn_rate_per_ip"`
	MaxAuthFailuresPerIP int      `yaml:"max_auth_failures_per_ip"`
	// Optional capabilities (engine.Options.MaxQoS, NoRetain, ...): on by
	// default; a 5.0 client is told in CONNACK which are off.
	MaxQoS                  int  `yaml:"max_qos"`
	RetainAvailable         bool `yaml:"retain_available"`
	WildcardSubscriptions   bool `yaml:"wildcard_subscriptions"`
	SharedSubscriptions     bool `yaml:"shared_subscriptions"`
	SubscriptionIdentifiers bool `yaml:"subscription_identifiers"`
}

// LoggingConfig says what is logged, and how.
type LoggingConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

// PprofConfig is profiling: the net/http/pprof endpoint and a CPU profile
// of the whole run.
type PprofConfig struct {
	Listen     string `yaml:"listen"`
	CPUProfile string `yaml:"cpu_profile"`
}

// PersistenceConfig is the on-disk store. It is parsed and checked here;
// openStore turns it into a store.
type PersistenceConfig struct {
	Enabled      bool     `yaml:"enabled"`
	Dir          string   `yaml:"dir"`
	Sync         string   `yaml:"sync"`
	SyncInterval Duration `yaml:"sync_interval"`
	MaxDiskBytes ByteSize `yaml:"max_disk_bytes"`
	// MemoryQueue is how many messages an offline session keeps in
	// memory before the rest waits on disk only.
	MemoryQueue int `yaml:"memory_queue"`
}

// defaultConfig returns the built-in defaults (engine.Options' defaults,
// spelled out so that docs, flags and files agree).
func defaultConfig() Config {
	return Config{
		Listeners: ListenersConfig{TCP: ":1883"},
		TLS:       TLSConfig{ClientCert: "none", ReloadInterval: Duration(5 * time.Second)},
		Limits: LimitsConfig{MaxInflight: 32, MaxQueued: 1000, MaxQueuedBytes: 16 << 20, QueueOverflow: "oldest",
			MaxPacketSize: 1 << 20, MaxOutbound: 4 << 20, ReceiveMaximum: 65535, TopicAliasMaximum: 64,
			MaxTopicAliasOut: 64, MaxClientIDLen: 65535, ConnectTimeout: Duration(10 * time.Second),
			MaxQoS: 2, RetainAvailable: true, WildcardSubscriptions: true, SharedSubscriptions: true,
			SubscriptionIdentifiers: true},
		Logging:     LoggingConfig{Level: "info", Format: "text"},
		SysInterval: Duration(10 * time.Second),
		Persistence: PersistenceConfig{Enabled: true, Dir: "./data", Sync: "always",
			SyncInterval: Duration(100 * time.Millisecond), MemoryQueue: 16},
	}
}

// origins say where each key's value came from ("loopmq.yaml:12",
// "flag -max-inflight", "mosquitto.conf:7"), for error messages; a key
// absent has its default.
type origins map[string]string

// where returns key's origin, "default" when it has none.
func (o origins) where(key string) string {
	if w, ok := o[key]; ok {
		return w
	}
	return "default"
}

// ---- values ----

// Duration is a time.Duration in the config file and in flags: "10s",
// "1m30s", or a bare number of seconds (Mosquitto's habit).
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// Set parses s; it implements flag.Value.
func (d *Duration) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 10s, 1m30s or a number of seconds, not %q", s)
	}
	return v, nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a duration such as 10s, 1m30s or a number of seconds")
	}
	if err := d.Set(n.Value); err != nil {
		return typeError(n, err.Error())
	}
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ByteSize is a number of bytes in the config file and in flags: 1048576,
// or with a unit: 64KiB, 16MiB, 1GiB (powers of 1024), 64KB, 16MB, 1GB
// (powers of 1000).
type ByteSize int64

func (b ByteSize) String() string { return strconv.FormatInt(int64(b), 10) }

// Set parses s; it implements flag.Value.
func (b *ByteSize) Set(s string) error {
	v, err := parseByteSize(s)
	if err != nil {
		return err
	}
	*b = ByteSize(v)
	return nil
}

var byteUnits = []struct {
	suffix string
	mult   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	num := s
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			mult, num = u.mult, strings.TrimSpace(strings.TrimSuffix(s, u.suffix))
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || (mult > 1 && n > (1<<62)/mult) {
		return 0, fmt.Errorf("want a size in bytes such as 1048576, 64KiB or 16MiB, not %q", s)
	}
	return n * mult, nil
}

// MarshalYAML writes whole KiB, MiB and GiB with their unit.
func (b ByteSize) MarshalYAML() (any, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.suffix, nil
		}
	}
	return int64(b), nil
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a size in bytes such as 1048576, 64KiB or 16MiB")
	}
	if err := b.Set(n.Value); err != nil {
		return typeError(n, err.Error())
	}
	return nil
}

// typeError is how an Unmarshaler reports a bad value: yaml collects
// these with its own, with the line.
func typeError(n *yaml.Node, msg string) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %s", n.Line, msg)}}
}

// ---- the YAML file ----

// loadConfigFile decodes the YAML file at path over cfg (keys absent keep
// cfg's values) and records where each key came from. Unknown keys and
// values of the wrong type are errors naming the file, line and key.
func loadConfigFile(path string, cfg *Config, org origins) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return decodeConfig(path, data, cfg, org)
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func decodeConfig(name string, data []byte, cfg *Config, org origins) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Errorf("%s:%s: %s", name, m[1], m[2])
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	keys := keyLines{byKey: map[string]int{}, byLine: map[int]string{}}
	if len(doc.Content) > 0 {
		keys.walk(doc.Content[0], "")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return fmt.Errorf("%s: %w", name, err)
		}
		errs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			errs = append(errs, keys.explain(name, e))
		}
		for k, line := range keys.byKey {
			org[k] = fmt.Sprintf("%s:%d", name, line)
		}
		return &keyErrors{errors.Join(errs...)}
	}
	for k, line := range keys.byKey {
		org[k] = fmt.Sprintf("%s:%d", name, line)
	}
	return nil
}

// keyErrors are a configuration file's unknown keys and values of the
// wrong type. The rest of the file was decoded, so validating it may find
// more errors, reported with these (validateAfter).
type keyErrors struct{ error }

func (e *keyErrors) Unwrap() error { return e.error }

// validateAfter validates cfg, loaded from a file with loadErr: it returns
// loadErr alone when the file could not be decoded, otherwise loadErr's
// key errors (if any) followed by validate's, so that every error of the
// file is reported at once.
func validateAfter(loadErr error, cfg *Config, org origins) error {
	var ke *keyErrors
	if loadErr != nil && !errors.As(loadErr, &ke) {
		return loadErr
	}
	return errors.Join(loadErr, cfg.validate(org))
}

// keyLines map a YAML document's key paths ("limits.max_inflight") to
// their lines and back.
type keyLines struct {
	byKey  map[string]int
	byLine map[int]string
}

func (k *keyLines) walk(n *yaml.Node, prefix string) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i], n.Content[i+1]
		path := key.Value
		if prefix != "" {
			path = prefix + "." + key.Value
		}
		k.byKey[path] = key.Line
		k.byLine[key.Line] = path
		if val.Kind == yaml.ScalarNode {
			k.byLine[val.Line] = path
		}
		k.walk(val, path)
	}
}

var (
	yamlUnknown = regexp.MustCompile(`^field (\S+) not found in type (\S+)$`)
	yamlType    = regexp.MustCompile("^cannot unmarshal (!!\\w+)(?: `(.*)`)? into (\\S+)$")
)

// explain turns one of yaml's errors ("line 7: field x not found in type
// main.LimitsConfig") into "loopmq.yaml:7: limits.x: unknown key (...)".
func (k *keyLines) explain(name, e string) error {
	m := yamlLine.FindStringSubmatch(e)
	if m == nil {
		return fmt.Errorf("%s: %s", name, e)
	}
	line, _ := strconv.Atoi(m[1])
	msg := m[2]
	key := k.byLine[line]
	if u := yamlUnknown.FindStringSubmatch(msg); u != nil {
		parent := ""
		if i := strings.LastIndex(key, "."); i >= 0 {
			parent = key[:i]
		}
		msg = "unknown key; known keys here: " + strings.Join(knownKeys(parent), ", ")
	} else if t := yamlType.FindStringSubmatch(msg); t != nil {
		msg = fmt.Sprintf("want %s, not %s", friendlyType(t[3]), strings.TrimPrefix(t[1], "!!"))
		if t[2] != "" {
			msg += fmt.Sprintf(" %q", t[2])
		}
	}
	if key == "" {
		return fmt.Errorf("%s:%d: %s", name, line, msg)
	}
	return fmt.Errorf("%s:%d: %s: %s", name, line, key, msg)
}

func friendlyType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"):
		return "an integer"
	case goType == "bool", goType == "*bool":
		return "true or false"
	case goType == "string":
		return "a string"
	case strings.HasSuffix(goType, "Config"):
		return "a mapping of keys"
	}
	return goType
}

// knownKeys returns the keys of the section at path ("" for the top).
func knownKeys(path string) []string {
	t := reflect.TypeOf(Config{})
	if path != "" {
		for _, p := range strings.Split(path, ".") {
			f, ok := fieldByTag(t, p)
			if !ok || f.Type.Kind() != reflect.Struct {
				return nil
			}
			t = f.Type
		}
	}
	var keys []string
	for i := range t.NumField() {
		keys = append(keys, t.Field(i).Tag.Get("yaml"))
	}
	sort.Strings(keys)
	return keys
}

func fieldByTag(t reflect.Type, tag string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("yaml") == tag {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// configKeys returns every leaf key of Config ("limits.max_inflight"), in
// declaration order.
func configKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := prefix + f.Tag.Get("yaml")
			if f.Type.Kind() == reflect.Struct && strings.HasSuffix(f.Type.Name(), "Config") {
				walk(f.Type, key+".")
				continue
			}
			keys = append(keys, key)
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}

// ---- validation ----

// validate checks every value and returns all problems at once, each
// naming its key and where the value came from.
func (c *Config) validate(org origins) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s: %s", org.where(key), key, fmt.Sprintf(format, args...)))
	}
	between := func(key string, v, lo, hi int64) {
		if v < lo || v > hi {
			bad(key, "must be between %d and %d, not %d", lo, hi, v)
		}
	}
	addr := func(key, v string) {
		if v == "" {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			bad(key, "want host:port or :port, not %q", v)
		}
	}

	if c.Listeners.TCP == "" {
		bad("listeners.tcp", "required: the broker always serves MQTT over TCP")
	}
	addr("listeners.tcp", c.Listeners.TCP)
	addr("listeners.tls", c.Listeners.TLS)
	addr("listeners.ws", c.Listeners.WS)
	addr("listeners.wss", c.Listeners.WSS)

	t := &c.TLS
	needTLS := c.Listeners.TLS != "" || c.Listeners.WSS != ""
	switch {
	case (t.Cert == "") != (t.Key == ""):
		bad("tls.cert", "tls.cert and tls.key go together")
	case needTLS && t.Cert == "":
		key := "listeners.tls"
		if c.Listeners.TLS == "" {
			key = "listeners.wss"
		}
		bad(key, "needs tls.cert and tls.key")
	}
	switch t.ClientCert {
	case "none", "optional", "required":
	default:
		bad("tls.client_cert", "want none, optional or required, not %q", t.ClientCert)
	}
	if t.IdentityAsUsername && t.SubjectAsUsername {
		bad("tls.subject_as_username", "tls.identity_as_username and tls.subject_as_username exclude each other")
	}
	if (t.IdentityAsUsername || t.SubjectAsUsername) && (t.CA == "" || t.ClientCert == "none") {
		bad("tls.identity_as_username", "certificate identities need client certificates: tls.client_cert optional or required, and tls.ca")
	}
	if t.ReloadInterval < 0 {
		bad("tls.reload_interval", "must not be negative")
	}

	l := &c.Limits
	between("limits.loops", int64(l.Loops), 0, 1024)
	between("limits.max_inflight", int64(l.MaxInflight), 1, 65535)
	between("limits.max_queued", int64(l.MaxQueued), 1, 1<<30)
	between("limits.max_queued_bytes", int64(l.MaxQueuedBytes), 1, 1<<40)
	if l.QueueOverflow != "oldest" && l.QueueOverflow != "newest" {
		bad("limits.queue_overflow", "want oldest or newest, not %q", l.QueueOverflow)
	}
	between("limits.max_packet_size", int64(l.MaxPacketSize), 16, 268435455) // MQTT's largest [MQTT 2.2.3]
	between("limits.max_outbound", int64(l.MaxOutbound), 1, 1<<40)
	between("limits.receive_maximum", int64(l.ReceiveMaximum), 1, 65535)
	between("limits.topic_alias_maximum", int64(l.TopicAliasMaximum), 1, 65535)
	if l.MaxTopicAliasOut != -1 {
		between("limits.max_topic_alias_out", int64(l.MaxTopicAliasOut), 1, 65535)
	}
	between("limits.max_client_id_len", int64(l.MaxClientIDLen), 23, 65535)
	if l.ConnectTimeout <= 0 {
		bad("limits.connect_timeout", "must be positive")
	}
	for key, d := range map[string]Duration{"limits.handshake_timeout": l.HandshakeTimeout,
		"limits.max_session_expiry": l.MaxSessionExpiry, "limits.max_keepalive": l.MaxKeepAlive,
		"sys_interval": c.SysInterval} {
		if d < 0 {
			bad(key, "must not be negative")
		}
	}
	if l.MaxKeepAlive.D() > 65535*time.Second {
		bad("limits.max_keepalive", "at most 65535s (18h12m15s), the largest MQTT keep alive")
	}
	between("limits.max_conn_rate_per_ip", int64(l.MaxConnRatePerIP), 0, 1<<30)
	between("limits.max_auth_failures_per_ip", int64(l.MaxAuthFailuresPerIP), 0, 1<<30)
	between("limits.max_qos", int64(l.MaxQoS), 0, 2)
	if !codec.ValidString([]byte(c.ResponseInformation)) {
		bad("response_information", "not a valid MQTT string: UTF-8 without U+0000, at most 65535 bytes")
	}

	switch strings.ToLower(c.Logging.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("logging.level", "want debug, info, warn or error, not %q", c.Logging.Level)
	}
	if c.Logging.Format != "text" && c.Logging.Format != "json" {
		bad("logging.format", "want text or json, not %q", c.Logging.Format)
	}
	addr("metrics.listen", c.Metrics.Listen)
	addr("pprof.listen", c.Pprof.Listen)

	p := &c.Persistence
	if p.Enabled && p.Dir == "" {
		bad("persistence.dir", "required when persistence is enabled")
	}
	if pol, err := store.ParseSyncPolicy(p.Sync); err != nil {
		bad("persistence.sync", "want always, interval or none, not %q", p.Sync)
	} else if pol == store.SyncInterval && p.SyncInterval <= 0 {
		bad("persistence.sync_interval", "must be positive with sync: interval")
	}
	if p.SyncInterval < 0 {
		bad("persistence.sync_interval", "must not be negative")
	}
	if p.MaxDiskBytes < 0 {
		bad("persistence.max_disk_bytes", "must not be negative")
	}
	between("persistence.memory_queue", int64(p.MemoryQueue), 1, 1<<30)
	return errors.Join(errs...)
}
