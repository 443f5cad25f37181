package main

import (
	"flag"
	"fmt"
	"reflect"
	"strconv"
)

// setting ties a config key to its command-line flag. The table below is
// the one place that says which flag sets which key: flags are registered
// from it, flags given on the command line are copied into the loaded
// config through it, and a test checks that it covers every key of
// Config and that docs/configuration.md lists them all.
type setting struct {
	key, flag, usage string
	ptr              func(c *Config) any // the field in c
}

var settings = []setting{
	{"listeners.tcp", "listen", "TCP address of the MQTT listener", func(c *Config) any { return &c.Listeners.TCP }},
	{"listeners.tls", "tls-listen", "address of the MQTT-over-TLS listener, e.g. :8883 (needs -tls-cert and -tls-key)", func(c *Config) any { return &c.Listeners.TLS }},
	{"listeners.ws", "ws-listen", "address of the MQTT-over-WebSocket listener, e.g. :8080", func(c *Config) any { return &c.Listeners.WS }},
	{"listeners.wss", "wss-listen", "address of the MQTT-over-WebSocket-over-TLS listener, e.g. :8081 (needs -tls-cert and -tls-key)", func(c *Config) any { return &c.Listeners.WSS }},

	{"tls.cert", "tls-cert", "PEM certificate (chain) of the TLS and WSS listeners; reloaded on SIGHUP and when it changes", func(c *Config) any { return &c.TLS.Cert }},
	{"tls.key", "tls-key", "PEM private key of -tls-cert", func(c *Config) any { return &c.TLS.Key }},
	{"tls.ca", "tls-ca", "PEM CA certificates that client certificates are verified against", func(c *Config) any { return &c.TLS.CA }},
	{"tls.client_cert", "tls-client-cert", "client certificates: none, optional or required (verified against -tls-ca)", func(c *Config) any { return &c.TLS.ClientCert }},
	{"tls.identity_as_username", "tls-identity-as-username", "a verified client certificate's Common Name is the user name, CONNECT's user name and password are ignored, clients without one are refused (Mosquitto's use_identity_as_username)", func(c *Config) any { return &c.TLS.IdentityAsUsername }},
	{"tls.subject_as_username", "tls-subject-as-username", "as -tls-identity-as-username with the certificate's whole subject (RFC 2253) (Mosquitto's use_subject_as_username)", func(c *Config) any { return &c.TLS.SubjectAsUsername }},
	{"tls.reload_interval", "tls-reload-interval", "how often the certificate and key files are checked for changes (0: only on SIGHUP)", func(c *Config) any { return &c.TLS.ReloadInterval }},

	{"auth.password_file", "password-file", "Mosquitto password file (mosquitto_passwd or loopmq passwd); reloaded on SIGHUP", func(c *Config) any { return &c.Auth.PasswordFile }},
	{"auth.acl_file", "acl-file", "Mosquitto ACL file; reloaded on SIGHUP", func(c *Config) any { return &c.Auth.ACLFile }},
	{"auth.allow_anonymous", "allow-anonymous", "admit clients without a user name (default: true without a password file, false with one)", func(c *Config) any { return &c.Auth.AllowAnonymous }},

	{"limits.loops", "loops", "event loops (0: one per P, i.e. per CPU the process may use)", func(c *Config) any { return &c.Limits.Loops }},
	{"limits.max_inflight", "max-inflight", "un-acknowledged outgoing QoS 1/2 messages per client", func(c *Config) any { return &c.Limits.MaxInflight }},
	{"limits.max_queued", "max-queued", "messages queued per session", func(c *Config) any { return &c.Limits.MaxQueued }},
	{"limits.max_queued_bytes", "max-queued-bytes", "payload bytes queued per session (e.g. 16MiB)", func(c *Config) any { return &c.Limits.MaxQueuedBytes }},
	{"limits.queue_overflow", "queue-overflow", "a full session queue drops the oldest or the newest message: oldest or newest", func(c *Config) any { return &c.Limits.QueueOverflow }},
	{"limits.max_packet_size", "max-packet-size", "largest packet accepted from a client, bytes (e.g. 1MiB)", func(c *Config) any { return &c.Limits.MaxPacketSize }},
	{"limits.max_outbound", "max-outbound", "unsent bytes per connection past which QoS 0 messages to it are dropped (e.g. 4MiB)", func(c *Config) any { return &c.Limits.MaxOutbound }},
	{"limits.receive_maximum", "receive-maximum", "MQTT 5.0 Receive Maximum: QoS 1/2 messages a 5.0 client may leave unacknowledged by the broker", func(c *Config) any { return &c.Limits.ReceiveMaximum }},
	{"limits.topic_alias_maximum", "topic-alias-maximum", "highest topic alias a 5.0 client may use towards the broker", func(c *Config) any { return &c.Limits.TopicAliasMaximum }},
	{"limits.max_topic_alias_out", "max-topic-alias-out", "topic aliases the broker assigns towards one 5.0 client at most (-1: none)", func(c *Config) any { return &c.Limits.MaxTopicAliasOut }},
	{"limits.max_client_id_len", "max-client-id-len", "longest client identifier accepted (3.1 clients: 23)", func(c *Config) any { return &c.Limits.MaxClientIDLen }},
	{"limits.connect_timeout", "connect-timeout", "a connection must send CONNECT (and finish authenticating) within this time", func(c *Config) any { return &c.Limits.ConnectTimeout }},
	{"limits.handshake_timeout", "handshake-timeout", "bound of a TLS handshake or WebSocket upgrade (0: -connect-timeout)", func(c *Config) any { return &c.Limits.HandshakeTimeout }},
	{"limits.max_session_expiry", "max-session-expiry", "longest a session outlives its connection, 5.0 and 3.1.1 alike (0: as the client asks; 3.1.1 persistent sessions never expire)", func(c *Config) any { return &c.Limits.MaxSessionExpiry }},
	{"limits.max_keepalive", "max-keepalive", "largest keep alive granted; clients asking for 0 or more get this (5.0: Server Keep Alive) (0: as the client asks)", func(c *Config) any { return &c.Limits.MaxKeepAlive }},
	{"limits.max_conn_rate_per_ip", "max-conn-rate-per-ip", "new connections per second one source address may open (0: unlimited)", func(c *Config) any { return &c.Limits.MaxConnRatePerIP }},
	{"limits.max_qos", "max-qos", "highest QoS accepted from clients and granted to subscriptions, 0 to 2 (Mosquitto's max_qos); 5.0 clients are told in CONNACK", func(c *Config) any { return &c.Limits.MaxQoS }},
	{"limits.retain_available", "retain-available", "keep retained messages; false: a PUBLISH or will with RETAIN 1 is refused and none is sent (Mosquitto's retain_available)", func(c *Config) any { return &c.Limits.RetainAvailable }},
	{"limits.wildcard_subscriptions", "wildcard-subscriptions", "accept topic filters with + or #; false: a 5.0 SUBSCRIBE with one gets DISCONNECT 0xA2, a 3.x filter SUBACK 0x80", func(c *Config) any { return &c.Limits.WildcardSubscriptions }},
	{"limits.shared_subscriptions", "shared-subscriptions", "accept $share/ filters; false: a 5.0 SUBSCRIBE with one gets DISCONNECT 0x9E, a 3.x filter SUBACK 0x80", func(c *Config) any { return &c.Limits.SharedSubscriptions }},
	{"limits.subscription_identifiers", "subscription-identifiers", "accept 5.0 Subscription Identifiers; false: a SUBSCRIBE carrying one gets DISCONNECT 0xA1", func(c *Config) any { return &c.Limits.SubscriptionIdentifiers }},
	{"limits.max_auth_failures_per_ip", "max-auth-failures-per-ip", "failed authentications per minute one source address may have before its connections are refused (0: unlimited)", func(c *Config) any { return &c.Limits.MaxAuthFailuresPerIP }},

	{"logging.level", "log-level", "debug, info, warn or error", func(c *Config) any { return &c.Logging.Level }},
	{"logging.format", "log-format", "text or json", func(c *Config) any { return &c.Logging.Format }},
	{"metrics.listen", "metrics", "address of the Prometheus endpoint (/metrics, /healthz, /readyz), e.g. :9100; empty: off", func(c *Config) any { return &c.Metrics.Listen }},
	{"pprof.listen", "pprof", "address of the net/http/pprof endpoint, e.g. 127.0.0.1:6060 (also turns on mutex and block profiling); empty: off", func(c *Config) any { return &c.Pprof.Listen }},
	{"pprof.cpu_profile", "cpuprofile", "write a CPU profile of the whole run to this file", func(c *Config) any { return &c.Pprof.CPUProfile }},
	{"response_information", "response-information", "MQTT 5.0 Response Information sent in CONNACK to clients that ask for it, the base of their response topics (empty: none)", func(c *Config) any { return &c.ResponseInformation }},
	{"sys_interval", "sys-interval", "seconds between $SYS topic updates (e.g. 10s; 0: no $SYS topics)", func(c *Config) any { return &c.SysInterval }},

	{"persistence.enabled", "persistence", "keep sessions, queued messages and retained messages on disk", func(c *Config) any { return &c.Persistence.Enabled }},
	{"persistence.dir", "data-dir", "directory of the persistent store", func(c *Config) any { return &c.Persistence.Dir }},
	{"persistence.sync", "sync", "when a write is durable: always (fsync, group commit), interval or none", func(c *Config) any { return &c.Persistence.Sync }},
	{"persistence.sync_interval", "sync-interval", "how often the store is synced with -sync interval", func(c *Config) any { return &c.Persistence.SyncInterval }},
	{"persistence.max_disk_bytes", "max-disk-bytes", "largest size of the store on disk (0: unlimited)", func(c *Config) any { return &c.Persistence.MaxDiskBytes }},
	{"persistence.memory_queue", "memory-queue", "messages kept in memory per offline session before the rest waits on disk only", func(c *Config) any { return &c.Persistence.MemoryQueue }},
}

// registerSettings registers every setting's flag on fs, bound to c's
// fields; each flag's default is c's value.
func registerSettings(fs *flag.FlagSet, c *Config) {
	for _, s := range settings {
		switch p := s.ptr(c).(type) {
		case *string:
			fs.StringVar(p, s.flag, *p, s.usage)
		case *int:
			fs.IntVar(p, s.flag, *p, s.usage)
		case *bool:
			fs.BoolVar(p, s.flag, *p, s.usage)
		case *Duration:
			fs.Var(p, s.flag, s.usage)
		case *ByteSize:
			fs.Var(p, s.flag, s.usage)
		case **bool:
			fs.Var(optBool{p}, s.flag, s.usage)
		default:
			panic(fmt.Sprintf("BUG: setting %s has a field of type %T", s.key, p))
		}
	}
}

// applyFlags copies into dst the settings whose flags were given on fs's
// command line (bound to src by registerSettings), and records them in org.
func applyFlags(fs *flag.FlagSet, src, dst *Config, org origins) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		if !given[s.flag] {
			continue
		}
		reflect.ValueOf(s.ptr(dst)).Elem().Set(reflect.ValueOf(s.ptr(src)).Elem())
		org[s.key] = "flag -" + s.flag
	}
}

// optBool is a boolean flag whose absence means "not said" (nil).
type optBool struct{ p **bool }

func (o optBool) String() string {
	if o.p == nil || *o.p == nil {
		return ""
	}
	return strconv.FormatBool(**o.p)
}

func (o optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*o.p = &v
	return nil
}

func (o optBool) IsBoolFlag() bool { return true }
