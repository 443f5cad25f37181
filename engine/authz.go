package engine

import (
	"math"

	"github.com/loopmq/loopmq/codec"
)

// Authorization: what an authenticated client may do, decided through
// Options.Authorizer (or Server.SetAuthorizer).
//
// The broker asks the Authorizer
//   - Write, for the topic of every PUBLISH a client sends (denied: a
//     3.x client's message is dropped but still acknowledged, as
//     Mosquitto does, so that it is not sent again; a 5.0 client gets
//     PUBACK/PUBREC 0x87; QoS 0 is dropped silently), before the retained
//     store is touched;
//   - Write, for the will's topic at CONNECT (denied: CONNACK 0x87, 3.x
//     return code 0x05, and the connection is closed before its session
//     is looked up), and again when the will is published (denied: it is
//     dropped; the Authorizer may have been replaced meanwhile);
//   - Subscribe, for every filter of a SUBSCRIBE, without the
//     "$share/{ShareName}/" prefix of a shared subscription (denied: that
//     filter's SUBACK code is 0x80, 5.0 0x87; the others are granted);
//   - Read, for the topic of every message about to be delivered to a
//     session: ordinary and shared subscriptions, retained messages sent
//     on SUBSCRIBE, wills (denied: not delivered to that client).
//
// Calls are made on the event loop of the client (PUBLISH, SUBSCRIBE,
// CONNECT) or of the session's owner (Read), inside the handling of a
// packet or a delivery: implementations must not block (no network or
// disk I/O; look rules up in memory, reload them on another goroutine and
// then call Server.SetAuthorizer), and one Authorizer serves every loop
// concurrently, so it must be safe for concurrent use.
//
// Read and Write decisions are cached per session and topic (sessionAuthz),
// so that a message costs a map lookup, not a call, once a session has
// seen its topic. The cache is dropped when the session's identity
// changes (another user resumes the session, an exchange re-identifies the
// client) and when Server.SetAuthorizer installs an Authorizer; an
// Authorizer whose rules change must be installed again for its new
// decisions to apply to topics already seen. Messages already queued for
// a session were checked when they were queued; they are checked again
// when a connection with another identity resumes the session (as
// Mosquitto does) or a re-authentication changes it, which leaves in
// flight the PUBLISHes already written to the connection; those are
// checked again when the session is next resumed (bindIdentity). A QoS 2
// message discarded from the in-flight window after its PUBLISH was
// written leaves its packet identifier there as a release (PUBREL, then
// PUBCOMP), never its content: the client may hold that identifier
// (recheckInflight).

// Access is what a client asks to do with a topic or a topic filter.
type Access uint8

// Kinds of access.
const (
	// Read is receiving a message published to a topic.
	Read Access = 1 << iota
	// Write is publishing to a topic, including a will and a retained
	// message.
	Write
	// Subscribe is subscribing with a topic filter.
	Subscribe
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	}
	return "access(?)"
}

// Identity is who the Authorizer sees: the client as authentication
// established it. The broker builds it from CONNECT once the client is
// authenticated (User Name, or none: Anonymous); an
// IdentifyingAuthenticator or IdentifyingExchange may change Username and
// Anonymous. It is kept with the session and replaced when a connection
// resumes the session.
type Identity struct {
	// ClientID is the client identifier (assigned by the broker when the
	// client sent none). Set by the broker; authentication hooks cannot
	// change it.
	ClientID string
	// Username is the User Name from CONNECT, or the name an
	// authentication hook gave the client; "" when Anonymous.
	Username string
	// Anonymous is set when the client is known by no user name: its
	// CONNECT carried none and no hook named one. Mosquitto's ACL file
	// applies the rules before its first "user" line to such clients.
	Anonymous bool
}

// Authorizer decides what an authenticated client may do with a topic.
// Options.Authorizer nil allows everything.
type Authorizer interface {
	// Authorize reports whether id may have acc to topic: a topic name
	// for Read and Write, a topic filter (possibly with wildcards) for
	// Subscribe. Called on the event loops, concurrently: must not block
	// and must be safe for concurrent use (see above). topic may be kept.
	Authorize(id Identity, topic string, acc Access) bool
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(id Identity, topic string, acc Access) bool

// Authorize implements Authorizer.
func (f AuthorizerFunc) Authorize(id Identity, topic string, acc Access) bool {
	return f(id, topic, acc)
}

// IdentifyingAuthenticator is an Authenticator that also says who the
// client is, for authorization, when that is not CONNECT's User Name (a
// JWT's subject, a name looked up by token). The broker finds it by a
// type assertion on Options.Authenticator and then calls
// AuthenticateIdentity instead of Authenticate.
type IdentifyingAuthenticator interface {
	Authenticator
	// AuthenticateIdentity is Authenticate with id filled in from CONNECT
	// (Username and Anonymous; ClientID as in info). When it returns
	// codec.Success, the Username and Anonymous it left in id are the
	// client's identity. Called on the connection's event loop: must
	// not block.
	AuthenticateIdentity(info ConnectInfo, id *Identity) codec.ReasonCode
}

// IdentifyingExchange is an AuthExchange that names the client it
// authenticated (a SCRAM exchange knows its user, whatever CONNECT's User
// Name said). The broker finds it by a type assertion.
type IdentifyingExchange interface {
	AuthExchange
	// Identify is called after Step returned codec.Success, with id
	// filled in from CONNECT; the Username and Anonymous it leaves are
	// the client's identity (on re-authentication, the new one). Called on
	// the connection's event loop: must not block.
	Identify(id *Identity)
}

// authzConf is the Authorizer in force and its generation, which
// sessions' caches compare with theirs. Replaced as a whole by
// SetAuthorizer, read by every loop without a lock.
type authzConf struct {
	a   Authorizer
	gen uint64
}

// SetAuthorizer installs a (nil allows everything) for every decision
// from now on and drops every cached decision, so it is also how an
// Authorizer whose rules changed makes them apply at once. Messages
// already queued for a session are not checked again. Safe for concurrent
// use.
func (s *Server) SetAuthorizer(a Authorizer) {
	for {
		old := s.authz.Load()
		if s.authz.CompareAndSwap(old, &authzConf{a: a, gen: old.gen + 1}) {
			return
		}
	}
}

// authzCacheMax bounds a session's cached decisions (topics): past it the
// cache starts over. A subscriber of '#' on a broker with many topics
// then asks the Authorizer again now and then; its cache holds at most a
// few KiB.
const authzCacheMax = 128

// Cached decision bits per topic: known and allowed, for Read and Write.
const (
	authzReadKnown = 1 << iota
	authzReadAllowed
	authzWriteKnown
	authzWriteAllowed
)

// sessionAuthz is a session's identity and its cached Read and Write
// decisions. Owned by the session's owner loop. A session gets one when
// it is bound to a connection with a user name or while an Authorizer is
// installed; without one its identity is its client id, anonymous.
type sessionAuthz struct {
	id    Identity
	gen   uint64          // authzConf.gen the cache was filled under
	cache map[string]byte // topic -> authz* bits; nil until the first decision
}

// authorize decides acc (Read or Write) to topic for s, from its cache or
// by asking cf's Authorizer (not nil). Runs on s's owner. It allocates
// only when it asks (the cache key).
func (s *session) authorize(cf *authzConf, topic []byte, acc Access) bool {
	z := s.authz
	if z == nil {
		z = &sessionAuthz{id: Identity{ClientID: s.id, Anonymous: true}}
		s.authz = z
	}
	if z.gen != cf.gen {
		clear(z.cache)
		z.gen = cf.gen
	}
	known, allowed := byte(authzReadKnown), byte(authzReadAllowed)
	if acc == Write {
		known, allowed = authzWriteKnown, authzWriteAllowed
	}
	v, ok := z.cache[string(topic)] // no allocation for a lookup
	if v&known != 0 {
		return v&allowed != 0
	}
	t := string(topic)
	ans := cf.a.Authorize(z.id, t, acc)
	switch {
	case z.cache == nil:
		z.cache = make(map[string]byte)
	case !ok && len(z.cache) >= authzCacheMax:
		clear(z.cache)
	}
	v |= known
	if ans {
		v |= allowed
	}
	z.cache[t] = v
	return ans
}

// mayRead reports whether s's client may receive m: the check before a
// message is delivered or queued. Runs on s's owner.
func (l *loop) mayRead(s *session, m *message) bool {
	cf := l.srv.authz.Load()
	return cf.a == nil || s.authorize(cf, m.topic, Read)
}

// isSysTopic reports whether topic is $SYS or below it: the broker's own
// topics, which no client may publish to (as Mosquitto refuses them): a
// client could otherwise replace the values every $SYS subscriber reads,
// retained ones until the broker's value next changes. MQTT 5.0 section
// 4.7.2: the Server SHOULD prevent Clients from using such Topic Names to
// exchange messages with other Clients.
func isSysTopic(topic []byte) bool {
	return len(topic) >= 4 && string(topic[:4]) == "$SYS" && (len(topic) == 4 || topic[4] == '/')
}

// mayPublish reports whether c may publish p; when it may not (a $SYS
// topic, or the authorizer says no), it has answered p: a 3.x client gets
// the usual acknowledgement (the message is dropped, as Mosquitto does, so
// that the client does not send it again), a 5.0 client PUBACK/PUBREC 0x87
// Not authorized [MQTT 5.0 sections 3.4.2.1, 3.5.2.1], QoS 0 nothing.
// Runs on c's loop, the owner of c's session.
func (c *client) mayPublish(p *codec.Publish) bool {
	if len(p.Topic) > 0 && p.Topic[0] == '$' && isSysTopic(p.Topic) {
		c.loop.srv.log.Debug("PUBLISH refused: $SYS topics are the broker's", "client", c.id(), "topic", string(p.Topic))
		return c.denyPublish(p)
	}
	cf := c.loop.srv.authz.Load()
	if cf.a == nil || c.sess.authorize(cf, p.Topic, Write) {
		return true
	}
	c.loop.srv.log.Debug("PUBLISH not authorized", "client", c.id(), "topic", string(p.Topic))
	return c.denyPublish(p)
}

// denyPublish answers a PUBLISH c may not make, as mayPublish says, and
// returns false.
func (c *client) denyPublish(p *codec.Publish) bool {
	if p.QoS == 0 {
		return false
	}
	code := codec.Success
	if c.version == codec.V5 {
		code = codec.NotAuthorized
	}
	t := codec.PUBACK
	if p.QoS == 2 {
		// No PUBREL follows a refusal; a 3.x client's PUBREL gets its
		// PUBCOMP as for any unknown packet identifier.
		t = codec.PUBREC
	}
	c.ackPublish(t, p.PacketID, code, nil, durableWait{})
	return false
}

// maySubscribe reports whether c may subscribe with filter, the inner
// filter for a shared subscription. Runs on c's loop.
func (c *client) maySubscribe(filter []byte) bool {
	cf := c.loop.srv.authz.Load()
	if cf.a == nil {
		return true
	}
	if _, inner, shared := codec.SplitShared(filter); shared {
		filter = inner
	}
	if cf.a.Authorize(c.sess.identity(), string(filter), Subscribe) {
		return true
	}
	c.loop.srv.log.Debug("SUBSCRIBE not authorized", "client", c.id(), "filter", string(filter))
	return false
}

// subscribeDenied is the SUBACK code for a filter the client may not
// subscribe with: 0x87 Not authorized (5.0), 0x80 Failure (3.x).
func (c *client) subscribeDenied() codec.ReasonCode {
	if c.version == codec.V5 {
		return codec.NotAuthorized
	}
	return codec.ReasonCode(codec.SubackFailureV3)
}

// mayWill reports whether c may have the will it sent in CONNECT (no
// will: yes), and records whose will it is. When c may not publish to the
// will's topic, the will is dropped and the CONNECT refused with 0x87 Not
// authorized (3.x: return code 0x05), before the session is looked up, so
// a refused client takes no session over. Runs on c's loop.
func (c *client) mayWill() bool {
	w := c.will
	if w == nil {
		return true
	}
	w.ident = c.ident
	cf := c.loop.srv.authz.Load()
	sys := isSysTopic(w.msg.topic)
	if !sys && (cf.a == nil || cf.a.Authorize(c.identity(), string(w.msg.topic), Write)) {
		return true
	}
	why := "not authorized to publish to the will topic " + string(w.msg.topic)
	if sys {
		why = "a will may not be published to $SYS topics, the broker's: " + string(w.msg.topic)
	}
	c.will = nil
	w.release()
	c.refuse(codec.NotAuthorized, why)
	return false
}

// mayPublishWill checks the Write access of will w (its message m) again
// when it is published, on the loop that publishes it: the Authorizer
// may have been replaced since CONNECT. Not cached: wills are rare.
func (l *loop) mayPublishWill(w *will, m *message) bool {
	cf := l.srv.authz.Load()
	if cf.a == nil {
		return true
	}
	id := Identity{Anonymous: true}
	if w.ident != nil {
		id = *w.ident
	}
	id.ClientID = m.from
	if cf.a.Authorize(id, string(m.topic), Write) {
		return true
	}
	l.srv.log.Info("will not published: not authorized", "client", m.from, "topic", string(m.topic))
	return false
}

// authenticatePlain decides a CONNECT without an Authentication Method:
// Options.AllowAnonymous for a client without a User Name, then the
// Authenticator (nil admits). On success it records the client's
// identity. Runs on c's loop.
func (c *client) authenticatePlain(a Authenticator, p *codec.Connect) codec.ReasonCode {
	id := Identity{Anonymous: !p.UsernameFlag}
	if p.UsernameFlag {
		id.Username = string(p.Username)
	}
	if allow := c.loop.srv.opts.AllowAnonymous; allow != nil && id.Anonymous {
		if !*allow {
			return codec.NotAuthorized
		}
		a = nil // admitted without asking the Authenticator
	}
	code := codec.Success
	if a != nil {
		info := c.connectInfo(p)
		if ia, ok := a.(IdentifyingAuthenticator); ok {
			// A copy on the heap for the hook: &id itself would move id
			// there for every CONNECT, anonymous ones included.
			hid := new(Identity)
			*hid = id
			hid.ClientID = info.ClientID
			code = ia.AuthenticateIdentity(info, hid)
			id = *hid
		} else {
			code = a.Authenticate(info)
		}
	}
	if code == codec.Success {
		c.setIdentity(id)
	}
	return code
}

// exchangeSucceeded records the identity an enhanced authentication
// exchange established, for the first exchange and for a
// re-authentication (then the session's cached decisions are dropped if it
// changed). Runs on c's loop.
func (c *client) exchangeSucceeded(ex AuthExchange) {
	a := c.authState()
	id := Identity{ClientID: c.clientID, Anonymous: a.username == nil}
	if a.username != nil {
		id.Username = string(a.username)
	}
	if ie, ok := ex.(IdentifyingExchange); ok {
		ie.Identify(&id)
	}
	c.setIdentity(id)
	if c.will != nil {
		c.will.ident = c.ident // re-authenticated: the will speaks for the new identity
	}
	if c.sess != nil && c.state == stateConnected {
		c.sess.bindIdentity(c, true)
	}
}

// setIdentity keeps id (its ClientID aside) for c's session. An anonymous
// identity is not stored: it is the default.
func (c *client) setIdentity(id Identity) {
	if id.Anonymous && id.Username == "" {
		c.ident = nil
		return
	}
	ident := new(Identity) // not &id: that moves id to the heap before the check above
	*ident = id
	ident.ClientID = ""
	c.ident = ident
}

// identity is c's identity for the Authorizer.
func (c *client) identity() Identity {
	if c.ident == nil {
		return Identity{ClientID: c.clientID, Anonymous: true}
	}
	id := *c.ident
	id.ClientID = c.clientID
	return id
}

// identity is s's identity for the Authorizer. Runs on s's owner.
func (s *session) identity() Identity {
	if s.authz == nil {
		return Identity{ClientID: s.id, Anonymous: true}
	}
	return s.authz.id
}

// bindIdentity gives s the identity of c, the connection being bound to
// it, or, with reauth, bound to it already and re-authenticated. If
// another identity held the session, its cached decisions are dropped and
// the messages queued or in flight for it are checked again for the new
// one: those it may not read are discarded, except, on re-authentication,
// the PUBLISHes already written to c (recheckInflight). A resume by the
// same identity checks what is in flight again: a re-authentication may
// have left there PUBLISHes that identity may not read, which are not
// sent again. Runs on s's owner, c's loop.
func (s *session) bindIdentity(c *client, reauth bool) {
	id := c.identity()
	cf := c.loop.srv.authz.Load()
	z := s.authz
	if z == nil {
		if c.ident == nil {
			// The default identity, which a session without authz state
			// has, and has always had: nothing to check again.
			return
		}
		z = &sessionAuthz{id: Identity{ClientID: s.id, Anonymous: true}}
		s.authz = z
	}
	if z.id == id {
		if !reauth && cf.a != nil {
			s.recheckInflight(cf, false)
		}
		return
	}
	z.id = id
	clear(z.cache)
	if cf.a != nil {
		s.recheckInflight(cf, reauth)
		s.recheckQueue(cf)
	}
	if reauth {
		// The record names the identity (a resume writes it anyway): a
		// session and will recovered after a crash are authorized as
		// the client is now.
		c.loop.persistSession(s, c)
	}
}

// recheckInflight discards the in-flight messages s's identity may not
// read (dropInFlight): a QoS 1 slot, or a QoS 2 one never written, is
// freed; a written QoS 2 one becomes a release, whose PUBREL frees the
// packet identifier the client may hold from an earlier connection
// without sending the message again. With
// keepWritten (s's connection re-authenticated) the PUBLISHes written to
// that connection stay in flight whatever their topic: the client has
// them, they were its to read when they were sent, and until it
// acknowledges them they count against its Receive Maximum [MQTT-3.3.4-9];
// freed, they would make room the client does not see. They are checked
// again when the session is resumed (bindIdentity): the new connection
// has received nothing yet. A release's PUBREL goes to the
// re-authenticated connection at once (once durable: release), and on a
// resume after the CONNACK, with the window's other PUBRELs (client.bind;
// a durable session's release is then recorded twice, there again by
// rehold, on a rare path). Runs on s's owner.
func (s *session) recheckInflight(cf *authzConf, keepWritten bool) {
	q := s.q
	if q == nil {
		return
	}
	l := s.owner.Load()
	var c *client
	if keepWritten {
		c = s.client
	}
	q.inflight.each(func(sl *slot) {
		if keepWritten && !sl.pending && sl.hold == 0 {
			return // written to the connection (or a release: no message)
		}
		if sl.m.msg != nil && !s.authorize(cf, sl.m.msg.topic, Read) {
			s.dropInFlight(l, sl, c)
		}
	})
}

// recheckQueue discards the queued messages s's identity may not read;
// those on disk are checked when they are read back (spill.go). Runs on
// s's owner.
func (s *session) recheckQueue(cf *authzConf) {
	q := s.q
	if q == nil {
		return
	}
	l := s.owner.Load()
	for n := q.queue.len(); n > 0; n-- {
		out := q.queue.pop()
		if !s.authorize(cf, out.msg.topic, Read) {
			l.forgetEntry(s, out.msg.seq, out.qos, out.put)
			out.msg.release()
			continue
		}
		q.queue.push(out, math.MaxInt, math.MaxInt) // back in order; it was within bounds already
	}
}
