package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Mosquitto's configuration file (mosquitto.conf(5), 2.0), read so that a
// Mosquitto installation can switch by pointing loopmq at its file:
// `loopmq -mosquitto-conf /etc/mosquitto/mosquitto.conf`.
//
// What maps (docs/configuration.md has the table): listener, port,
// bind_address, protocol mqtt|websockets, cafile, certfile, keyfile,
// require_certificate, use_identity_as_username, use_subject_as_username,
// allow_anonymous, password_file, acl_file, per_listener_settings,
// max_inflight_messages, max_queued_messages, max_queued_bytes,
// message_size_limit, max_packet_size, max_keepalive, max_topic_alias,
// persistence, persistence_location (its loopmq subdirectory),
// persistent_client_expiration,
// retain_available, max_qos, set_tcp_nodelay true, sys_interval,
// include_dir.
// loopmq has one listener of each kind (tcp, tls, ws, wss) and one TLS
// setting for the tls and wss listeners: extra listeners are left out
// with a warning. Every other option Mosquitto knows is listed in one
// warning at start; an option Mosquitto does not know, a missing or bad
// value, is an error naming the file and line.

// mosqListener is one `listener` block, or the default listener that
// `port` and `bind_address` (and listener options before any `listener`)
// describe.
type mosqListener struct {
	port, bind                     string
	where                          string // file:line of its `listener` or `port` line
	protocol                       string // mqtt or websockets
	cafile, certfile, keyfile      string
	requireCert, identity, subject bool
	set                            bool // any option was given for it
}

func (l *mosqListener) tls() bool { return l.certfile != "" || l.keyfile != "" }

func (l *mosqListener) kind() string {
	switch {
	case l.protocol == "websockets" && l.tls():
		return "wss"
	case l.protocol == "websockets":
		return "ws"
	case l.tls():
		return "tls"
	}
	return "tcp"
}

func (l *mosqListener) name() string {
	if l.where == "" {
		return "the default listener"
	}
	return fmt.Sprintf("listener %s (%s)", l.port, l.where)
}

// mosqSecurity is one of the security options, kept with the listener in
// scope where it appeared (per_listener_settings).
type mosqSecurity struct {
	l           *mosqListener
	key, value  string
	where       string
	perListener bool
}

type mosqParser struct {
	def         mosqListener
	listeners   []*mosqListener
	cur         *mosqListener
	security    []mosqSecurity
	perListener bool
	inBridge    bool
	unsupported map[string][]string // option → where it appeared
	cfg         *Config
	org         origins
	persistence bool // Mosquitto's default: off
	depth       int

	msgSizeLimit, maxPacketSize *mosqValue
}

// mosqValue is a number and where it was set.
type mosqValue struct {
	n     int
	where string
}

// loadMosquittoConf reads the Mosquitto configuration at path into cfg
// and returns the options loopmq does not support, one string each with
// where they appeared.
func loadMosquittoConf(path string, cfg *Config, org origins) ([]string, error) {
	p := &mosqParser{cfg: cfg, org: org, unsupported: map[string][]string{}}
	p.cur = &p.def
	if err := p.file(path); err != nil {
		return nil, err
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(p.unsupported))
	for n := range p.unsupported {
		names = append(names, n)
	}
	sort.Strings(names)
	warnings := make([]string, 0, len(names))
	for _, n := range names {
		var wheres []string
		for _, w := range p.unsupported[n] {
			if w != "" {
				wheres = append(wheres, w)
			}
		}
		if len(wheres) == 0 {
			warnings = append(warnings, n)
			continue
		}
		warnings = append(warnings, fmt.Sprintf("%s (%s)", n, strings.Join(wheres, ", ")))
	}
	return warnings, nil
}

// mosquittoDefaults names the limits whose default differs between
// Mosquitto 2.0 and loopmq that neither the Mosquitto file nor a flag set,
// one string each with both values: loopmq keeps its own (Mosquitto's two
// "no limit"s would let one client's packet or one offline queue take all
// the memory), and says so at start, since the same file then behaves
// differently.
func mosquittoDefaults(cfg *Config, org origins) []string {
	l := &cfg.Limits
	var d []string
	if _, set := org["limits.max_packet_size"]; !set {
		d = append(d, fmt.Sprintf("max_packet_size %d (Mosquitto: no limit)", int64(l.MaxPacketSize)))
	}
	if _, set := org["limits.max_queued_bytes"]; !set {
		d = append(d, fmt.Sprintf("max_queued_bytes %d (Mosquitto: no limit)", int64(l.MaxQueuedBytes)))
	}
	if _, set := org["limits.max_inflight"]; !set {
		d = append(d, fmt.Sprintf("max_inflight_messages %d (Mosquitto: 20)", l.MaxInflight))
	}
	return d
}

func (p *mosqParser) file(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		where := fmt.Sprintf("%s:%d", path, lineNo)
		name, rest, _ := strings.Cut(line, " ")
		if i := strings.IndexAny(name, "\t"); i >= 0 {
			name, rest = line[:i], line[i+1:]
		}
		if err := p.option(name, strings.TrimSpace(rest), where); err != nil {
			return fmt.Errorf("%s: %s: %w", where, name, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// Options Mosquitto 2.0 knows that loopmq ignores (with a warning).
var mosqUnsupported = setOf(
	"allow_duplicate_messages", "allow_zero_length_clientid", "auth_plugin", "auth_plugin_deny_special_chars",
	"auto_id_prefix", "autosave_interval", "autosave_on_changes", "bind_interface", "capath", "check_retain_source",
	"ciphers", "ciphers_tls1.3", "clientid_prefixes", "connection_messages", "crlfile", "dhparamfile",
	"disable_client_cert_date_checks", "enable_proxy_protocol", "global_max_clients", "global_max_connections",
	"http_dir", "log_dest", "log_facility", "log_timestamp", "log_timestamp_format", "log_type", "max_connections",
	"max_inflight_bytes", "memory_limit", "mount_point", "persistence_file", "pid_file", "plugin",
	"psk_file", "psk_hint", "queue_qos0_messages", "retain_expiry_interval", "socket_domain", "tls_engine",
	"tls_engine_kpass_sha1", "tls_keyform", "tls_version", "upgrade_outgoing_qos", "use_username_as_clientid",
	"user", "websockets_headers_size", "websockets_log_level", "accept_protocol_versions",
)

// Bridge options: everything a `connection` section may hold.
var mosqBridge = setOf(
	"address", "addresses", "bridge_alpn", "bridge_attempt_unsubscribe", "bridge_bind_address", "bridge_cafile",
	"bridge_capath", "bridge_certfile", "bridge_identity", "bridge_insecure", "bridge_keyfile", "bridge_max_packet_size",
	"bridge_outgoing_retain", "bridge_protocol_version", "bridge_psk", "bridge_receive_maximum",
	"bridge_reload_type", "bridge_require_ocsp", "bridge_session_expiry_interval", "bridge_tls_version",
	"cleansession", "clientid", "idle_timeout", "keepalive_interval", "local_cleansession", "local_clientid",
	"local_password", "local_username", "notification_topic", "notifications", "notifications_local_only",
	"password", "remote_clientid", "remote_password", "remote_username", "restart_timeout", "round_robin",
	"start_type", "threshold", "topic", "try_private", "username",
)

func setOf(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

func (p *mosqParser) ignore(name, where string) {
	p.unsupported[name] = append(p.unsupported[name], where)
}

// option handles one line.
func (p *mosqParser) option(name, value, where string) error {
	if name == "connection" {
		p.inBridge = true
		p.ignore("connection (bridges)", where)
		return nil
	}
	if p.inBridge && mosqBridge[name] {
		return nil // part of the bridge already warned about
	}
	switch {
	case strings.HasPrefix(name, "auth_opt_"), strings.HasPrefix(name, "plugin_opt_"):
		p.ignore(name, where)
		return nil
	case mosqUnsupported[name]:
		p.ignore(name, where)
		return nil
	}
	need := func() error {
		if value == "" {
			return errors.New("missing value")
		}
		return nil
	}
	switch name {
	case "listener":
		f := strings.Fields(value)
		if len(f) == 0 || len(f) > 2 {
			return errors.New("want: listener PORT [BIND-ADDRESS]")
		}
		port, err := mosqInt(f[0], 0, 65535)
		if err != nil {
			return err
		}
		l := &mosqListener{port: strconv.Itoa(port), where: where, protocol: "mqtt"}
		if len(f) == 2 {
			l.bind = f[1]
		}
		if port == 0 {
			p.ignore("listener 0 (unix socket)", where)
			l = &mosqListener{where: where} // options until the next listener go nowhere
		} else {
			p.listeners = append(p.listeners, l)
		}
		p.cur = l
		p.inBridge = false
		return nil
	case "port":
		port, err := mosqInt(value, 1, 65535)
		if err != nil {
			return err
		}
		p.def.port, p.def.where, p.def.set = strconv.Itoa(port), where, true
		return nil
	case "bind_address":
		if err := need(); err != nil {
			return err
		}
		p.def.bind, p.def.set = value, true
		return nil
	case "protocol":
		if value != "mqtt" && value != "websockets" {
			return fmt.Errorf("want mqtt or websockets, not %q", value)
		}
		p.cur.protocol, p.cur.set = value, true
		return nil
	case "cafile", "certfile", "keyfile":
		if err := need(); err != nil {
			return err
		}
		switch name {
		case "cafile":
			p.cur.cafile = value
		case "certfile":
			p.cur.certfile = value
		default:
			p.cur.keyfile = value
		}
		p.cur.set = true
		return nil
	case "require_certificate", "use_identity_as_username", "use_subject_as_username":
		v, err := mosqBool(value)
		if err != nil {
			return err
		}
		switch name {
		case "require_certificate":
			p.cur.requireCert = v
		case "use_identity_as_username":
			p.cur.identity = v
		default:
			p.cur.subject = v
		}
		p.cur.set = true
		return nil
	case "per_listener_settings":
		v, err := mosqBool(value)
		if err != nil {
			return err
		}
		p.perListener = v
		return nil
	case "allow_anonymous":
		if _, err := mosqBool(value); err != nil {
			return err
		}
		p.security = append(p.security, mosqSecurity{l: p.cur, key: name, value: value, where: where})
		return nil
	case "password_file", "acl_file":
		if err := need(); err != nil {
			return err
		}
		p.security = append(p.security, mosqSecurity{l: p.cur, key: name, value: value, where: where})
		return nil
	case "max_inflight_messages":
		n, err := mosqInt(value, 0, 65535)
		if err != nil {
			return err
		}
		if n == 0 {
			n = 65535 // Mosquitto: no limit; MQTT's packet identifiers are the limit here
		}
		p.set("limits.max_inflight", where, func(c *Config) { c.Limits.MaxInflight = n })
	case "max_queued_messages":
		n, err := mosqInt(value, 0, 1<<30)
		if err != nil {
			return err
		}
		if n == 0 {
			n = 1 << 30 // Mosquitto: no limit
		}
		p.set("limits.max_queued", where, func(c *Config) { c.Limits.MaxQueued = n })
	case "max_queued_bytes":
		n, err := mosqInt(value, 0, 1<<40)
		if err != nil {
			return err
		}
		if n == 0 {
			n = 1 << 40 // Mosquitto: no limit
		}
		p.set("limits.max_queued_bytes", where, func(c *Config) { c.Limits.MaxQueuedBytes = ByteSize(n) })
	case "message_size_limit":
		n, err := mosqInt(value, 0, 268435455)
		if err != nil {
			return err
		}
		// A payload limit: leave room for the largest topic and header.
		// max_packet_size, the exact bound, wins when both are given.
		size := min(n+65536, 268435455)
		if n == 0 {
			size = 268435455
		}
		p.msgSizeLimit = &mosqValue{n: size, where: where}
	case "max_packet_size":
		n, err := mosqInt(value, 0, 268435455)
		if err != nil {
			return err
		}
		if n == 0 {
			n = 268435455
		} else if n < 20 {
			return errors.New("must be 0 or at least 20")
		}
		p.maxPacketSize = &mosqValue{n: n, where: where}
	case "max_keepalive":
		n, err := mosqInt(value, 0, 65535)
		if err != nil {
			return err
		}
		p.set("limits.max_keepalive", where, func(c *Config) { c.Limits.MaxKeepAlive = Duration(time.Duration(n) * time.Second) })
	case "max_topic_alias":
		n, err := mosqInt(value, 0, 65535)
		if err != nil {
			return err
		}
		if n == 0 {
			p.ignore("max_topic_alias 0 (topic aliases off)", where)
			return nil
		}
		p.set("limits.topic_alias_maximum", where, func(c *Config) { c.Limits.TopicAliasMaximum = n })
	case "persistence":
		v, err := mosqBool(value)
		if err != nil {
			return err
		}
		p.persistence = v
		p.org["persistence.enabled"] = where
	case "persistence_location":
		if err := need(); err != nil {
			return err
		}
		// Mosquitto writes mosquitto.db there, and a store refuses a
		// directory holding other files: loopmq's store goes in a
		// directory of its own below it.
		dir := filepath.Join(value, "loopmq")
		p.set("persistence.dir", where, func(c *Config) { c.Persistence.Dir = dir })
	case "persistent_client_expiration":
		d, err := mosqExpiration(value)
		if err != nil {
			return err
		}
		p.set("limits.max_session_expiry", where, func(c *Config) { c.Limits.MaxSessionExpiry = Duration(d) })
	case "retain_available":
		v, err := mosqBool(value)
		if err != nil {
			return err
		}
		p.set("limits.retain_available", where, func(c *Config) { c.Limits.RetainAvailable = v })
	case "max_qos":
		n, err := mosqInt(value, 0, 2)
		if err != nil {
			return err
		}
		p.set("limits.max_qos", where, func(c *Config) { c.Limits.MaxQoS = n })
	case "set_tcp_nodelay":
		v, err := mosqBool(value)
		if err != nil {
			return err
		}
		if !v {
			p.ignore("set_tcp_nodelay false (loopmq always sets TCP_NODELAY)", where)
		}
	case "sys_interval":
		n, err := mosqInt(value, 0, 1<<31)
		if err != nil {
			return err
		}
		p.set("sys_interval", where, func(c *Config) { c.SysInterval = Duration(time.Duration(n) * time.Second) })
	case "include_dir":
		if err := need(); err != nil {
			return err
		}
		return p.includeDir(value)
	default:
		if mosqBridge[name] {
			return fmt.Errorf("bridge option outside a connection section")
		}
		return errors.New("unknown option (not in Mosquitto 2.0's mosquitto.conf either)")
	}
	return nil
}

// set applies one mapped value and records where it came from.
func (p *mosqParser) set(key, where string, fn func(c *Config)) {
	fn(p.cfg)
	p.org[key] = where
}

// includeDir reads every *.conf file of dir in alphabetical order, as
// Mosquitto does.
func (p *mosqParser) includeDir(dir string) error {
	if p.depth >= 8 {
		return errors.New("include_dir nested too deep")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.conf"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	p.depth++
	defer func() { p.depth-- }()
	for _, f := range files {
		if err := p.file(f); err != nil {
			return err
		}
	}
	return nil
}

// finish maps the listeners and the security options onto the config.
func (p *mosqParser) finish() error {
	c, org := p.cfg, p.org
	c.Persistence.Enabled = p.persistence
	if v := cmpOrValue(p.maxPacketSize, p.msgSizeLimit); v != nil {
		c.Limits.MaxPacketSize = ByteSize(v.n)
		org["limits.max_packet_size"] = v.where
	}

	all := p.listeners
	if p.def.set || p.def.port != "" {
		if p.def.port == "" {
			p.def.port = "1883"
		}
		p.def.protocol = cmpOr(p.def.protocol, "mqtt")
		all = append([]*mosqListener{&p.def}, all...)
	}
	if len(all) == 0 {
		// Mosquitto 2.0 without listeners: local only, anonymous allowed.
		c.Listeners.TCP = "127.0.0.1:1883"
		org["listeners.tcp"] = "Mosquitto's default (no listener: local only)"
	}
	byKind := map[string]*mosqListener{}
	var tlsFrom *mosqListener
	for _, l := range all {
		k := l.kind()
		if first := byKind[k]; first != nil {
			p.ignore(fmt.Sprintf("%s (a second %s listener: loopmq has one of each kind, %s is the one)", l.name(), k, first.name()), "")
			continue
		}
		byKind[k] = l
		addr := net.JoinHostPort(l.bind, l.port)
		switch k {
		case "tcp":
			c.Listeners.TCP = addr
		case "tls":
			c.Listeners.TLS = addr
		case "ws":
			c.Listeners.WS = addr
		case "wss":
			c.Listeners.WSS = addr
		}
		org["listeners."+k] = cmpOr(l.where, "port/bind_address")
		if !l.tls() {
			continue
		}
		if tlsFrom == nil {
			tlsFrom = l
			t := &c.TLS
			t.Cert, t.Key, t.CA = l.certfile, l.keyfile, l.cafile
			t.ClientCert = "none"
			if l.requireCert {
				t.ClientCert = "required"
			}
			t.IdentityAsUsername, t.SubjectAsUsername = l.identity, l.subject
			for _, k := range []string{"tls.cert", "tls.key", "tls.ca", "tls.client_cert", "tls.identity_as_username", "tls.subject_as_username"} {
				org[k] = l.where
			}
		} else if l.certfile != tlsFrom.certfile || l.keyfile != tlsFrom.keyfile || l.cafile != tlsFrom.cafile ||
			l.requireCert != tlsFrom.requireCert || l.identity != tlsFrom.identity || l.subject != tlsFrom.subject {
			p.ignore(fmt.Sprintf("TLS settings of %s (they differ from %s's, which loopmq's tls and wss listeners share)", l.name(), tlsFrom.name()), "")
		}
	}
	if len(all) > 0 && byKind["tcp"] == nil {
		c.Listeners.TCP = "127.0.0.1:1883"
		org["listeners.tcp"] = "no plain MQTT listener in the Mosquitto file"
		p.ignore("no plain MQTT listener (loopmq always has one: it listens on 127.0.0.1:1883, loopback only)", "")
	}
	return p.mapSecurity(len(all) == 0)
}

// mapSecurity applies allow_anonymous, password_file and acl_file. With
// per_listener_settings each listener has its own; loopmq has one for all
// listeners, so they must agree.
func (p *mosqParser) mapSecurity(localOnly bool) error {
	final := map[string]mosqSecurity{}
	if !p.perListener {
		for _, s := range p.security {
			final[s.key] = s // the last one wins, as in Mosquitto
		}
	} else {
		per := map[*mosqListener]map[string]mosqSecurity{}
		for _, s := range p.security {
			if per[s.l] == nil {
				per[s.l] = map[string]mosqSecurity{}
			}
			per[s.l][s.key] = s
		}
		var first *mosqListener
		for _, l := range append([]*mosqListener{&p.def}, p.listeners...) {
			if l == &p.def && !p.def.set {
				continue // no default listener: what was said for it applies to nothing
			}
			opts := per[l]
			if first == nil {
				first, final = l, opts
				continue
			}
			for _, k := range []string{"allow_anonymous", "password_file", "acl_file"} {
				if opts[k].value != final[k].value {
					return fmt.Errorf("per_listener_settings: %s of %s is %q but %q for %s; loopmq checks every listener's clients the same way, so they must agree",
						k, l.name(), opts[k].value, final[k].value, first.name())
				}
			}
		}
	}
	a := &p.cfg.Auth
	if s, ok := final["password_file"]; ok {
		a.PasswordFile = s.value
		p.org["auth.password_file"] = s.where
	}
	if s, ok := final["acl_file"]; ok {
		a.ACLFile = s.value
		p.org["auth.acl_file"] = s.where
	}
	if s, ok := final["allow_anonymous"]; ok {
		v := s.value == "true"
		a.AllowAnonymous = &v
		p.org["auth.allow_anonymous"] = s.where
	} else {
		// Mosquitto 2.0: anonymous clients are refused once a listener is
		// configured, and allowed in local only mode.
		v := localOnly
		a.AllowAnonymous = &v
	}
	return nil
}

func cmpOrValue(a, b *mosqValue) *mosqValue {
	if a != nil {
		return a
	}
	return b
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func mosqInt(s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("want an integer, not %q", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("must be between %d and %d, not %d", lo, hi, n)
	}
	return n, nil
}

// mosqBool parses Mosquitto's booleans: exactly true or false.
func mosqBool(s string) (bool, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("want true or false, not %q", s)
}

// mosqExpiration parses persistent_client_expiration: a number followed
// by h, d, w, m (months, 30 days) or y (years, 365 days).
func mosqExpiration(s string) (time.Duration, error) {
	units := map[byte]time.Duration{'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour,
		'm': 30 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	if len(s) >= 2 {
		if u, ok := units[s[len(s)-1]]; ok {
			if n, err := strconv.Atoi(s[:len(s)-1]); err == nil && n > 0 {
				return time.Duration(n) * u, nil
			}
		}
	}
	return 0, fmt.Errorf("want a number followed by h, d, w, m or y (e.g. 14d), not %q", s)
}
