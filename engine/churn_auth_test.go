package engine

// Authentication and authorization in the churn soak (churn_test.go).
//
// The soak's broker has an EnhancedAuthenticator (the SCRAM-SHA-256 of
// auth_scram_test.go, whose exchanges also name the user they
// authenticated: churnExchange) and an Authorizer (churnAuthz) that
// denies a subtree, churn/deny/, to every client for subscribing and
// reading, and to every client but alice for publishing; bob may not
// read one of the ordinary topics nor write another. Anonymous clients
// (the audit's, the end of run's) are admitted and may do everything
// outside churn/deny/.
//
// Every churn client has a user name: 3.x clients and a third of the 5.0
// ones send it with a password at CONNECT, the other 5.0 clients run
// SCRAM (with a CONNECT User Name or none: the exchange's user is who they
// are). Some send a wrong password or an unknown user (expected: a
// refusing CONNACK, then the connection closed), some a will on the
// denied subtree (refused unless they are alice); SCRAM clients
// re-authenticate now and then (AUTH 0x19), as the same user or another,
// sometimes with a wrong proof (expected: DISCONNECT 0x87, then the
// connection closed). The connection knows which identity the broker
// authorizes it as at every point of its stream, so it checks every
// PUBACK/PUBREC and SUBACK code against the rules, and that it receives
// no message it may not read and none whose publisher was refused (such
// a payload starts with 'D').

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// churnUsers are the soak's users and their passwords.
var churnUsers = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}

var churnUserNames = []string{"alice", "bob", "carol"}

// churnDenyTopics are the topics of the denied subtree clients publish to:
// churn/+/a, churn/+/+ and churn/# match them. churnDenyFilters are the
// filters clients try to subscribe with there.
var (
	churnDenyTopics  = []string{"churn/deny/a", "churn/deny/x/b"}
	churnDenyFilters = []string{"churn/deny/#", "churn/deny/+", "churn/deny/a", "$share/g/churn/deny/#"}
)

// Marks in the first payload byte of a churn PUBLISH: its publisher
// expected the broker to refuse it (churnRefused), or could not tell
// (churnEither: re-authenticating as a user with other rights).
const (
	churnRefused = 'D'
	churnEither  = 'E'
)

// Topics whose rights depend on the user (churnTopic 2 and 5).
const (
	churnBobMayNotWrite = "churn/1/a"
	churnBobMayNotRead  = "churn/2/b"
)

func churnDenied(topic string) bool {
	return topic == "churn/deny" || strings.HasPrefix(topic, "churn/deny/")
}

// churnMayWrite, churnMayRead and churnMaySubscribe are the rules, for the
// Authorizer and for the clients' expectations alike. user "" is an
// anonymous client.
func churnMayWrite(user, topic string) bool {
	if churnDenied(topic) {
		return user == "alice"
	}
	return user != "bob" || topic != churnBobMayNotWrite
}

func churnMayRead(user, topic string) bool {
	if churnDenied(topic) {
		return false
	}
	return user != "bob" || topic != churnBobMayNotRead
}

// churnMaySubscribe decides a filter, the inner one of a shared
// subscription (as the broker asks).
func churnMaySubscribe(filter string) bool {
	if _, inner, shared := codec.SplitShared([]byte(filter)); shared {
		filter = string(inner)
	}
	return !churnDenied(filter)
}

// churnAuthz is the soak's Authorizer.
type churnAuthz struct{}

func (churnAuthz) Authorize(id Identity, topic string, acc Access) bool {
	switch acc {
	case Read:
		return churnMayRead(id.Username, topic)
	case Write:
		return churnMayWrite(id.Username, topic)
	case Subscribe:
		return churnMaySubscribe(topic)
	}
	return false
}

// churnAuth is the soak's EnhancedAuthenticator: plain user names and
// passwords and SCRAM-SHA-256 against churnUsers. Unlike
// scramServer.StartAuth it records nothing (a long soak would grow the
// record), and its exchanges name their user (churnExchange).
type churnAuth struct{ *scramServer }

func (a churnAuth) StartAuth(method string, _ ConnectInfo) AuthExchange {
	if method != scramMethod {
		return nil
	}
	return &churnExchange{scramExchange{srv: a.scramServer}}
}

// churnExchange is a SCRAM exchange whose user is the client's identity,
// whatever CONNECT's User Name said (an IdentifyingExchange).
type churnExchange struct{ scramExchange }

func (e *churnExchange) Identify(id *Identity) {
	// firstBare is "n=name,r=nonce"; Step checked it.
	attrs, err := scramAttrs(e.firstBare)
	if err != nil {
		return
	}
	if name, err := scramName(attrs[0][1]); err == nil {
		id.Username, id.Anonymous = name, false
	}
}

var (
	_ EnhancedAuthenticator = churnAuth{}
	_ IdentifyingExchange   = (*churnExchange)(nil)
)

// churnAuthOptions gives o the soak's Authenticator and Authorizer, and
// admits anonymous clients (the audit's and the end of run's).
func churnAuthOptions(t *testing.T, o *Options) {
	t.Helper()
	ss := &scramServer{users: make(map[string]scramCreds), plain: churnUsers}
	for name, pw := range churnUsers {
		// Few iterations: every SCRAM client computes them, and the
		// soak runs thousands under the race detector.
		c, err := newScramCreds(pw, 64)
		require.NoError(t, err)
		ss.users[name] = c
	}
	yes := true
	o.Authenticator, o.Authorizer, o.AllowAnonymous = churnAuth{ss}, churnAuthz{}, &yes
}

// churnExpect is what a client expects of the broker's decision on a
// PUBLISH it sends.
type churnExpect byte

const (
	expectAllowed churnExpect = iota
	expectRefused
	expectEither // sent while re-authenticating as a user with other rights
)

// churnSubExpect is what a client expects for one filter of a SUBSCRIBE.
type churnSubExpect struct {
	qos    byte // asked for
	denied bool
	filter string
}

// churnReauth is a re-authentication in progress: as user, with the
// right proof or not.
type churnReauth struct {
	user string
	bad  bool
	sc   *scramClient
}

// identity returns the user the broker authorizes c as now, and the one
// a re-authentication in progress would make it ("" when none runs).
func (c *churnConn) identity() (user, next string) {
	c.authMu.Lock()
	defer c.authMu.Unlock()
	if c.reauth != nil && !c.reauth.bad {
		next = c.reauth.user
	}
	return c.user, next
}

// writeExpect is c's expectation for a PUBLISH to topic written now: the
// broker decides it under the identity in force when it reads it, which
// a re-authentication in progress may change.
func (c *churnConn) writeExpect(topic string) churnExpect {
	user, next := c.identity()
	may := churnMayWrite(user, topic)
	if next != "" && churnMayWrite(next, topic) != may {
		return expectEither
	}
	if may {
		return expectAllowed
	}
	return expectRefused
}

// checkPubAck checks the code of the broker's PUBACK or PUBREC for one of
// c's PUBLISHes: 5.0 clients get 0x87 Not authorized for a refused one,
// and a code below 0x80 for an allowed one [MQTT 5.0 sections 3.4.2.1,
// 3.5.2.1]; 3.x clients are acknowledged as usual (authz.go). Runs on c's
// reader.
func (c *churnConn) checkPubAck(t codec.Type, id uint16, code codec.ReasonCode, exp churnExpect) {
	if c.ver != codec.V5 {
		if code != 0 {
			c.run.violation("%s: %v %d with code %v to a 3.x client", c.id, t, id, code)
		}
		return
	}
	if code == codec.NotAuthorized {
		c.run.pubDenied.Add(1)
	}
	switch {
	case exp == expectRefused && code != codec.NotAuthorized:
		c.run.violation("%s: %v %d %v for a PUBLISH its identity may not make; want 0x87 Not authorized", c.id, t, id, code)
	case exp == expectAllowed && code.IsError():
		c.run.violation("%s: %v %d %v for an authorized PUBLISH", c.id, t, id, code)
	case exp == expectEither && code.IsError() && code != codec.NotAuthorized:
		c.run.violation("%s: %v %d %v", c.id, t, id, code)
	}
}

// checkSuback checks a SUBACK against the SUBSCRIBE it answers: a denied
// filter gets 0x87 (3.x: 0x80), the others a QoS no higher than asked
// [MQTT-3.9.3-1]. Runs on c's reader.
func (c *churnConn) checkSuback(p *codec.Suback) {
	c.idMu.Lock()
	exp, ok := c.subsExp[p.PacketID]
	delete(c.subsExp, p.PacketID)
	c.idMu.Unlock()
	if !ok {
		c.run.violation("%s: SUBACK %d for no SUBSCRIBE", c.id, p.PacketID)
		return
	}
	if len(p.ReasonCodes) != len(exp) {
		c.run.violation("%s: SUBACK %d has %d codes for %d filters [MQTT-3.9.3-1]", c.id, p.PacketID, len(p.ReasonCodes), len(exp))
		return
	}
	denied := codec.NotAuthorized
	if c.ver != codec.V5 {
		denied = codec.ReasonCode(codec.SubackFailureV3)
	}
	for i, code := range p.ReasonCodes {
		e := exp[i]
		switch {
		case e.denied && code != denied:
			c.run.violation("%s: SUBACK %d: %v for %q, which it may not subscribe with; want %v", c.id, p.PacketID, code, e.filter, denied)
		case e.denied:
			c.run.subDenied.Add(1)
		case byte(code) > e.qos:
			c.run.violation("%s: SUBACK %d: %v for %q, asked QoS %d", c.id, p.PacketID, code, e.filter, e.qos)
		}
	}
}

// checkRead checks that c may receive a PUBLISH to topic with payload:
// its identity may read the topic, and the publisher's was allowed to
// write it. Runs on c's reader.
func (c *churnConn) checkRead(topic string, payload []byte) {
	user, _ := c.identity() // a re-authentication applies from its AUTH 0x00 on
	if topic != "" && !churnMayRead(user, topic) {
		c.run.violation("%s (user %s): PUBLISH to %q, which it may not read %v", c.id, user, topic, c.trace)
	}
	if len(payload) > 0 && payload[0] == churnRefused {
		c.run.violation("%s: PUBLISH to %q that the broker should have refused its publisher", c.id, topic)
	}
}

// onAuth answers the broker's AUTH: a step of CONNECT's SCRAM exchange
// (before CONNACK) or of a re-authentication (after). Runs on c's reader.
func (c *churnConn) onAuth(a *codec.Auth, connected bool) {
	if string(a.Properties.AuthMethod) != scramMethod {
		c.run.violation("%s: AUTH %v with method %q, not the CONNECT's [MQTT-4.12.0-5]", c.id, a.ReasonCode, a.Properties.AuthMethod)
	}
	sc := c.scram
	var re *churnReauth
	if connected {
		c.authMu.Lock()
		re = c.reauth
		c.authMu.Unlock()
		if re == nil {
			c.run.violation("%s: AUTH %v while no re-authentication runs", c.id, a.ReasonCode)
			return
		}
		sc = re.sc
	} else if sc == nil {
		c.run.violation("%s: AUTH %v to a client that named no method", c.id, a.ReasonCode)
		return
	}
	switch a.ReasonCode {
	case codec.ContinueAuthentication:
		final, err := sc.final(a.Properties.AuthData)
		if err != nil {
			c.run.violation("%s: AUTH 0x18: %v", c.id, err)
			return
		}
		_ = c.write(authPacket(codec.ContinueAuthentication, scramMethod, final))
	case codec.Success:
		if !connected {
			c.run.violation("%s: AUTH 0x00 before CONNACK", c.id)
			return
		}
		if err := sc.verify(a.Properties.AuthData); err != nil {
			c.run.violation("%s: re-authentication's AUTH 0x00: %v", c.id, err)
		}
		if re.bad {
			c.run.violation("%s: re-authentication with a wrong proof or user succeeded", c.id)
		}
		c.authMu.Lock()
		c.user, c.reauth = re.user, nil
		c.authMu.Unlock()
		c.run.reauthed.Add(1)
	default:
		c.run.violation("%s: AUTH %v from the broker", c.id, a.ReasonCode)
	}
}

// checkConnackAuth checks the authentication properties of a successful
// 5.0 CONNACK: the method and the server's proof for a SCRAM client
// [MQTT-4.12.0-5], nothing for the others [MQTT-4.12.0-6]. Runs on c's
// reader.
func (c *churnConn) checkConnackAuth(ca *codec.Connack) {
	if c.ver != codec.V5 {
		return
	}
	if c.scram == nil {
		if ca.Properties.Has(codec.PropAuthMethod) {
			c.run.violation("%s: CONNACK with a method to a client that named none [MQTT-4.12.0-6]", c.id)
		}
		return
	}
	if string(ca.Properties.AuthMethod) != scramMethod {
		c.run.violation("%s: CONNACK method %q [MQTT-4.12.0-5]", c.id, ca.Properties.AuthMethod)
	}
	if err := c.scram.verify(ca.Properties.AuthData); err != nil {
		c.run.violation("%s: CONNACK: %v", c.id, err)
	}
}

// onReauthRefused takes a DISCONNECT 0x87: expected only when a
// re-authentication with a wrong proof runs [MQTT-4.12.1-2]. Runs on c's
// reader.
func (c *churnConn) onReauthRefused() {
	c.authMu.Lock()
	re := c.reauth
	c.authMu.Unlock()
	if re == nil || !re.bad {
		c.run.violation("%s: DISCONNECT 0x87 Not authorized, and no re-authentication was to fail", c.id)
		return
	}
	c.run.reauthRefused.Add(1)
}

// reauthenticate starts a re-authentication (AUTH 0x19) [MQTT-4.12.1-1],
// unless one runs: as the same user or another, one time in five with a
// wrong password or an unknown user. The reader carries it on (onAuth).
func (c *churnConn) reauthenticate(r *rand.Rand) error {
	c.authMu.Lock()
	if c.reauth != nil {
		c.authMu.Unlock()
		return nil
	}
	re := &churnReauth{user: churnUserNames[r.Intn(len(churnUserNames))]}
	name, pw := re.user, churnUsers[re.user]
	switch r.Intn(10) {
	case 0:
		pw, re.bad = "wrong", true
	case 1:
		name, re.bad = "mallory", true
	}
	re.sc = &scramClient{user: name, password: pw}
	c.reauth = re
	c.authMu.Unlock()
	return c.write(authPacket(codec.ReAuthenticate, scramMethod, re.sc.start()))
}

// churnCredentials fills in cp's credentials for c: a user name and
// password, or (5.0, two times in three) a SCRAM exchange; one time in
// ten wrong ones. It sets what c expects of CONNACK.
func (c *churnConn) churnCredentials(r *rand.Rand, cp *codec.Connect) {
	c.user = churnUserNames[r.Intn(len(churnUserNames))]
	bad := r.Intn(10) == 0
	if c.ver == codec.V5 && r.Intn(3) != 0 {
		name, pw := c.user, churnUsers[c.user]
		if bad {
			if r.Intn(2) == 0 {
				pw = "wrong"
			} else {
				name = "mallory"
			}
			c.wantCode = codec.NotAuthorized // the exchange failed [MQTT-4.12.0-4]
		}
		c.scram = &scramClient{user: name, password: pw}
		cp.Properties.AuthMethod = []byte(scramMethod)
		cp.Properties.AuthData = c.scram.start()
		if r.Intn(2) == 0 {
			// Not who it is: the exchange says (churnExchange).
			cp.UsernameFlag, cp.Username = true, []byte(churnUserNames[r.Intn(len(churnUserNames))])
		}
		return
	}
	pw := churnUsers[c.user]
	if bad {
		pw = "wrong"
		c.wantCode = codec.BadUserNameOrPassword
		if c.ver != codec.V5 {
			c.wantCode = codec.ReasonCode(codec.ConnRefusedBadCredentials)
		}
	}
	cp.UsernameFlag, cp.Username = true, []byte(c.user)
	cp.PasswordFlag, cp.Password = true, []byte(pw)
}

// willExpect sets what c expects of CONNACK for its will topic: refused
// when its user may not publish there (and its credentials are good).
func (c *churnConn) willExpect(topic string) {
	if c.wantCode != 0 || churnMayWrite(c.user, topic) {
		return
	}
	c.wantCode = codec.NotAuthorized
	if c.ver != codec.V5 {
		c.wantCode = codec.ReasonCode(codec.ConnRefusedNotAuthorized)
	}
}

// isAuthRefusal reports whether code, a CONNACK's, is one of the refusals
// authentication and authorization give.
func isAuthRefusal(code codec.ReasonCode, v codec.Version) bool {
	if v != codec.V5 {
		return byte(code) == codec.ConnRefusedBadCredentials || byte(code) == codec.ConnRefusedNotAuthorized
	}
	return code == codec.BadUserNameOrPassword || code == codec.NotAuthorized || code == codec.BadAuthenticationMethod
}
