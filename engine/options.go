package engine

import (
	"crypto/tls"
	"log/slog"
	"runtime"
	"time"

	"github.com/loopmq/loopmq/store"
)

// Overflow policies for a full session queue.
const (
	DropOldest = "oldest" // drop the oldest queued message to make room (Mosquitto drops new ones; EMQX old ones)
	DropNewest = "newest" // refuse the new message
)

// Options configure a Server. The zero value of each field means its default.
type Options struct {
	// Listen is the TCP address of the MQTT listener, default ":1883".
	Listen string
	// Loops is the number of event loops; 0 means DefaultLoops().
	Loops int
	// MaxInflight bounds un-acknowledged outgoing QoS 1/2 messages per
	// client, default 32.
	MaxInflight int
	// MaxQueued bounds the messages queued per session (waiting for an
	// in-flight slot or for an offline client), default 1000.
	MaxQueued int
	// MaxQueuedInMemory bounds the messages an offline persistent session
	// keeps in memory when there is a Store; the rest of its queue, up to
	// MaxQueued, is on disk only (spill.go), and so is all of it after a
	// restart. Default 16.
	MaxQueuedInMemory int
	// MaxQueuedBytes bounds the payload bytes queued per session, default 16 MiB.
	MaxQueuedBytes int
	// QueueOverflow is DropOldest (default) or DropNewest.
	QueueOverflow string
	// MaxPacketSize bounds a frame from a client, default 1 MiB.
	MaxPacketSize int
	// MaxOutbound bounds the bytes waiting in a connection's socket send
	// buffer in user space; past it QoS 0 messages to that client are
	// dropped (and counted), default 4 MiB.
	MaxOutbound int
	// ReceiveMaximum is the server's MQTT 5.0 Receive Maximum: how many
	// QoS 1/2 PUBLISH packets a 5.0 client may leave unacknowledged by the
	// broker (acknowledgements held back for flow control count); a client
	// that exceeds it is disconnected with 0x93. Default 65535.
	ReceiveMaximum int
	// TopicAliasMaximum is the highest topic alias a 5.0 client may use
	// towards the broker, default 64. The broker's aliases towards a client
	// are bounded by the client's own maximum, capped at MaxTopicAliasOut.
	TopicAliasMaximum int
	// MaxTopicAliasOut caps the topic aliases the broker assigns towards
	// one 5.0 client (least recently used reassigned, none reassigned while
	// they thrash: see aliasesOut), default 64; -1 disables outbound
	// aliases.
	MaxTopicAliasOut int
	// MaxConnRatePerIP bounds the new connections one source address may
	// open per second; past it they are closed at accept. 0: unlimited.
	MaxConnRatePerIP int
	// MaxAuthFailuresPerIP bounds the failed authentications (CONNACK Bad
	// User Name or Password / Not Authorized) one source address may have
	// per minute; past it its new connections are closed at accept until
	// the minute is over. 0: unlimited.
	MaxAuthFailuresPerIP int
	// MaxClientIDLen bounds client identifiers, default 65535 (3.1 clients
	// are held to their protocol's 23).
	MaxClientIDLen int
	// ConnectTimeout closes a connection that sends no CONNECT, or does
	// not finish authenticating, in time (counted from accepting it),
	// default 10 s.
	ConnectTimeout time.Duration
	// Authenticator decides who may connect (auth.go); it is called on the
	// event loops and must not block. An EnhancedAuthenticator also runs
	// MQTT 5.0 enhanced authentication. Nil admits every client, and a
	// CONNECT naming an Authentication Method gets CONNACK 0x8C. An
	// enhanced authentication exchange must end within ConnectTimeout.
	Authenticator Authenticator
	// AllowAnonymous decides CONNECTs without a User Name (and without an
	// Authentication Method): nil leaves them to the Authenticator (nil:
	// admitted), true admits them without asking it, false refuses them
	// with CONNACK 0x87 (3.x: 0x05). A command line that wants anonymous
	// clients refused once authentication is configured sets it.
	AllowAnonymous *bool
	// Authorizer decides what an authenticated client may publish,
	// subscribe to and receive (authz.go); it is called on the event
	// loops, must not block and must be safe for concurrent use. Nil
	// allows everything. Server.SetAuthorizer replaces it.
	Authorizer Authorizer
	// MaxSessionExpiry caps how long any session outlives its connection
	// (5.0 Session Expiry Interval; 3.1.1 Clean Session = 0 sessions, which
	// otherwise never expire), rounded up to whole seconds; 0 means no cap.
	// A 5.0 client that asked for more is told the value in CONNACK.
	MaxSessionExpiry time.Duration
	// MaxKeepAlive caps the keep alive: a 5.0 client asking for 0 or more
	// gets this value, rounded down to whole seconds, at least 1 s, in
	// CONNACK's Server Keep Alive, and pings accordingly. A 3.x client
	// cannot be told: one asking for 0 or more is refused (CONNACK return
	// code 2, identifier rejected, as Mosquitto 2.0.12 and later). 0
	// accepts every client's keep alive.
	MaxKeepAlive time.Duration
	// ResponseInformation is sent in CONNACK's Response Information to a
	// 5.0 client that asks for it (Request Response Information 1), as the
	// basis of the topics it may use for responses [MQTT 5.0 section
	// 4.10]; never to one that did not ask [MQTT-3.1.2-28]. Empty: none
	// is sent (optional; Mosquitto sends none, EMQX its
	// response_information when set). Start refuses one that is not a
	// valid MQTT string (UTF-8 without U+0000, at most 65,535 bytes).
	ResponseInformation string
	// MaxQoS, when set to 0 or 1, is the highest QoS the broker accepts
	// from clients and grants (Mosquitto's max_qos); nil, 2 or more: QoS
	// 2. A 5.0 client is told in CONNACK (Maximum QoS [MQTT-3.2.2-9]);
	// its PUBLISH above it gets DISCONNECT 0x9B (MQTT 5.0 section
	// 3.2.2.3.4), its will above it CONNACK 0x9B [MQTT-3.2.2-12]. A 3.x
	// client cannot be told: its PUBLISH above it closes the connection
	// (as Mosquitto), its will above it refuses the CONNECT with return
	// code 3 (Mosquitto closes without CONNACK). A subscription asking for
	// more is granted MaxQoS [MQTT-3.2.2-10], and so is one restored from
	// the Store. A QoS 2 PUBLISH sent again to finish a flow the session
	// held before the restart is let through.
	MaxQoS *byte
	// NoRetain turns retained messages off (Mosquitto's retain_available
	// false). A 5.0 client is told in CONNACK (Retain Available 0); its
	// PUBLISH with RETAIN 1 gets DISCONNECT 0x9A (MQTT 5.0 section
	// 3.2.2.3.5), its will with RETAIN 1 CONNACK 0x9A [MQTT-3.2.2-13]; a
	// 3.x client's closes the connection or refuses the CONNECT (return
	// code 3). Server.Publish ignores its retain flag, and no retained
	// message, not even one kept in the Store from before, is sent to a
	// new subscription.
	NoRetain bool
	// NoWildcardSubscriptions refuses topic filters with '+' or '#'
	// (for a shared subscription, in its filter after $share/GROUP/): a
	// 5.0 client is told in CONNACK (Wildcard Subscription Available 0)
	// and a SUBSCRIBE with one is a Protocol Error, answered with
	// DISCONNECT 0xA2 (MQTT 5.0 section 3.2.2.3.11); a 3.x client's filter
	// gets SUBACK 0x80 and the other filters are granted.
	NoWildcardSubscriptions bool
	// NoSharedSubscriptions refuses $share/ filters as
	// NoWildcardSubscriptions does wildcards: DISCONNECT 0x9E (5.0; Shared
	// Subscription Available 0 in CONNACK), SUBACK 0x80 (3.x).
	NoSharedSubscriptions bool
	// NoSubscriptionIdentifiers refuses a 5.0 SUBSCRIBE carrying a
	// Subscription Identifier with DISCONNECT 0xA1 (Subscription
	// Identifiers Available 0 in CONNACK).
	//
	// Subscriptions restored from the Store that one of these three
	// refuses stay as they were made.
	NoSubscriptionIdentifiers bool
	// Store keeps persistent sessions, the QoS 1/2 messages owed to them
	// and retained messages across restarts (persist.go); Start recovers
	// from it. nil keeps state in memory only. The caller opens it and
	// closes it after Stop.
	Store store.Store
	// MaxStoreBytes bounds the Store's size on disk; 0: no bound. Past it,
	// new QoS 1/2 messages to persistent sessions are no longer written:
	// they are delivered from memory only (lost on a crash; an offline
	// queue then holds up to MaxQueued in memory), counted in
	// Stats.NotStoredDiskFull, until the store is below the bound again.
	// Checked once a second.
	MaxStoreBytes uint64
	// Logger receives the broker's logs, default slog.Default().
	Logger *slog.Logger

	// TLSListen is the address of the MQTT-over-TLS listener (usually
	// ":8883"); empty for none. It needs TLSConfig.
	TLSListen string
	// WSListen is the address of the MQTT-over-WebSocket listener (ws://,
	// usually ":8080"); empty for none.
	WSListen string
	// WSSListen is the address of the MQTT-over-WebSocket-over-TLS
	// listener (wss://, usually ":8081"); empty for none. It needs
	// TLSConfig.
	WSSListen string
	// TLSConfig is the server configuration of the TLS and WSS listeners.
	// Client certificates are asked for and verified as its ClientAuth and
	// ClientCAs say; set GetCertificate to change the certificate without
	// a restart (package tlsfiles does it for files). The broker uses a
	// clone, with MinVersion TLS 1.2 when it is 0.
	TLSConfig *tls.Config
	// TLSIdentity makes a verified client certificate the client's user
	// name, as Mosquitto's use_identity_as_username (IdentityCommonName)
	// or use_subject_as_username (IdentitySubject); the User Name and
	// Password of CONNECT are then ignored, and a TLS client without a
	// verified certificate is refused (CONNACK Bad User Name or
	// Password: 3.1.1 code 4, 5.0 0x86). IdentityNone
	// (default) leaves CONNECT's credentials alone. Applies to the TLS and
	// WSS listeners; the Authenticator still decides.
	TLSIdentity CertIdentity
	// HandshakeTimeout bounds a TLS handshake and a WebSocket upgrade,
	// default ConnectTimeout.
	HandshakeTimeout time.Duration

	// storeStallAfter replaces storeStallAfter (persist.go) in tests.
	storeStallAfter time.Duration
}

// CertIdentity says which part of a client certificate becomes the user name.
type CertIdentity int

// Client certificate identities (Options.TLSIdentity).
const (
	IdentityNone       CertIdentity = iota // CONNECT's User Name and Password, as sent
	IdentityCommonName                     // the subject's Common Name (Mosquitto's use_identity_as_username)
	IdentitySubject                        // the whole subject, RFC 2253 (Mosquitto's use_subject_as_username)
)

// DefaultLoops is the number of event loops Options.Loops 0 stands for:
// GOMAXPROCS when it is called, which is the number of CPUs the process
// may use (the container's CPU limit, since Go 1.25) unless the
// GOMAXPROCS environment variable says otherwise. Not runtime.NumCPU,
// the host's: 16 loops sharing one P (GOMAXPROCS=1, as a 1-CPU container
// on a 16-core host would get) delivered 62% fewer QoS 1 messages per
// second at maximum rate than one loop, because a loop yields its P at
// most every 5 ms (docs/architecture.md, Goroutines).
//
// A program that raises GOMAXPROCS (to SuggestedGOMAXPROCS, say) should
// set Loops first, as cmd/loopmq does: New would count the raised value.
func DefaultLoops() int { return runtime.GOMAXPROCS(0) }

func (o *Options) setDefaults() {
	if o.Listen == "" {
		o.Listen = ":1883"
	}
	if o.Loops <= 0 {
		o.Loops = DefaultLoops()
	}
	if o.MaxInflight <= 0 {
		o.MaxInflight = 32
	}
	if o.MaxInflight > 65535 {
		o.MaxInflight = 65535
	}
	if o.MaxQueued <= 0 {
		o.MaxQueued = 1000
	}
	if o.MaxQueuedInMemory <= 0 {
		o.MaxQueuedInMemory = 16
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 16 << 20
	}
	if o.QueueOverflow != DropNewest {
		o.QueueOverflow = DropOldest
	}
	if o.MaxPacketSize <= 0 {
		o.MaxPacketSize = 1 << 20
	}
	if o.MaxOutbound <= 0 {
		o.MaxOutbound = 4 << 20
	}
	if o.ReceiveMaximum <= 0 || o.ReceiveMaximum > 65535 {
		o.ReceiveMaximum = 65535
	}
	if o.TopicAliasMaximum <= 0 || o.TopicAliasMaximum > 65535 {
		o.TopicAliasMaximum = 64
	}
	if o.MaxTopicAliasOut == 0 || o.MaxTopicAliasOut > 65535 {
		o.MaxTopicAliasOut = 64
	}
	if o.MaxClientIDLen <= 0 {
		o.MaxClientIDLen = 65535
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = o.ConnectTimeout
	}
}
