package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pahov5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// End-to-end tests of authorization (authz.go): an in-test Authorizer with
// a small rule table decides, and real clients (paho.mqtt.golang 3.1.1,
// paho.golang 5.0, raw packets) see the outcome.

// aclRule allows or denies access to topics matching filter for user
// ("" is anonymous clients, "*" everyone).
type aclRule struct {
	user   string
	acc    Access // one or more of Read|Write|Subscribe
	filter string
	allow  bool
}

// ruleTable is an Authorizer: the first rule that matches decides, no
// rule denies. It counts its calls and records what it was asked.
type ruleTable struct {
	rules []aclRule
	calls atomic.Int64
	mu    sync.Mutex
	seen  []Identity
}

func (rt *ruleTable) Authorize(id Identity, topic string, acc Access) bool {
	rt.calls.Add(1)
	rt.mu.Lock()
	rt.seen = append(rt.seen, id)
	rt.mu.Unlock()
	for _, r := range rt.rules {
		if (r.user == "*" || r.user == id.Username) && r.acc&acc != 0 && filterMatches(r.filter, topic) {
			return r.allow
		}
	}
	return false
}

// filterMatches is a naive MQTT filter match of name (a topic, or a filter
// taken literally) against filter.
func filterMatches(filter, name string) bool {
	f, n := strings.Split(filter, "/"), strings.Split(name, "/")
	for i, fl := range f {
		if fl == "#" {
			return true
		}
		if i >= len(n) || (fl != "+" && fl != n[i]) {
			return false
		}
	}
	return len(f) == len(n)
}

// authzRules is the table most tests use: alice reads and writes
// everything; bob writes bob/# and reads public/#; anonymous clients may
// subscribe to anything and read public/#; nobody writes or subscribes to
// secret/#.
var authzRules = []aclRule{
	{user: "*", acc: Write | Subscribe, filter: "secret/#", allow: false},
	{user: "alice", acc: Read | Write | Subscribe, filter: "#", allow: true},
	{user: "bob", acc: Write, filter: "bob/#", allow: true},
	{user: "bob", acc: Read, filter: "public/#", allow: true},
	{user: "bob", acc: Subscribe, filter: "#", allow: true},
	{user: "", acc: Subscribe, filter: "#", allow: true},
	{user: "", acc: Read, filter: "public/#", allow: true},
	{user: "", acc: Write, filter: "public/#", allow: true},
}

func authzServer(t *testing.T, opts Options) (*Server, *ruleTable) {
	t.Helper()
	rt := &ruleTable{rules: authzRules}
	opts.Authorizer = rt
	return startServer(t, opts), rt
}

// userConnect returns a 3.1.1 CONNECT for id with user name user ("" for
// none).
func userConnect(id, user string) *codec.Connect {
	p := connectPacket(id, true, 0)
	if user != "" {
		p.UsernameFlag, p.Username = true, []byte(user)
	}
	return p
}

// userConnect5 is userConnect for 5.0.
func userConnect5(id, user string) *codec.Connect {
	p := userConnect(id, user)
	p.Version = codec.V5
	return p
}

func pahoUser(user string) func(*paho.ClientOptions) {
	return func(o *paho.ClientOptions) { o.SetUsername(user).SetPassword("pw") }
}

// TestAuthzPublishDenied311DroppedButAcked checks that a 3.1.1 PUBLISH to
// a topic the client may not write is acknowledged as usual (PUBACK, or
// PUBREC then PUBCOMP) so the client does not send it again, and
// delivered to nobody.
func TestAuthzPublishDenied311DroppedButAcked(t *testing.T) {
	s, _ := authzServer(t, Options{})
	sub := connectRaw(t, s, userConnect("sub", "alice"))
	require.Equal(t, byte(1), sub.subscribe(1, "#", 1))

	pub := connectRaw(t, s, userConnect("pub", "bob"))
	pub.publish("alice/x", "q0", 0, false, 0)
	pub.publish("alice/x", "q1", 1, false, 7)
	pub.expectAck(codec.PUBACK, 7)
	pub.publish("alice/x", "q2", 2, false, 8)
	pub.expectAck(codec.PUBREC, 8)
	pub.ack(codec.PUBREL, 8)
	pub.expectAck(codec.PUBCOMP, 8)

	pub.publish("bob/x", "allowed", 1, false, 9)
	pub.expectAck(codec.PUBACK, 9)
	m := sub.expectPublish()
	require.Equal(t, "bob/x", string(m.Topic), "the denied messages were not delivered")
	require.Equal(t, "allowed", string(m.Payload))
}

// TestAuthzPublishDenied311Paho checks the same with paho.mqtt.golang:
// every token completes without error and the subscriber sees only the
// allowed message.
func TestAuthzPublishDenied311Paho(t *testing.T) {
	s, _ := authzServer(t, Options{})
	h, got := collect(10)
	sub := newPaho(t, s, pahoUser("alice"))
	wait(t, sub.Subscribe("#", 2, h))
	pub := newPaho(t, s, pahoUser("bob"))
	for q := byte(0); q <= 2; q++ {
		wait(t, pub.Publish("alice/x", q, false, fmt.Sprintf("denied %d", q)))
	}
	wait(t, pub.Publish("bob/x", 1, false, "allowed"))
	require.Equal(t, "allowed", recv(t, got, "the allowed message").payload)
	recvNone(t, got, e2eSilent)
}

// TestAuthzPublishDeniedV5Gets0x87 checks that a 5.0 client is told: QoS 1
// gets PUBACK 0x87, QoS 2 PUBREC 0x87 (and the flow ends there) [MQTT 5.0
// sections 3.4.2.1, 3.5.2.1]; QoS 0 is dropped silently and the
// connection stays.
func TestAuthzPublishDeniedV5Gets0x87(t *testing.T) {
	s, _ := authzServer(t, Options{})
	sub := connectRaw(t, s, userConnect("sub", "alice"))
	require.Equal(t, byte(1), sub.subscribe(1, "#", 1))

	pub := connectRaw(t, s, userConnect5("pub5", "bob"))
	pub.publish("alice/x", "q0", 0, false, 0)
	pub.publish("alice/x", "q1", 1, false, 3)
	a := pub.expect(codec.PUBACK).(*codec.Ack)
	require.Equal(t, codec.NotAuthorized, a.ReasonCode)
	pub.publish("alice/x", "q2", 2, false, 4)
	a = pub.expect(codec.PUBREC).(*codec.Ack)
	require.Equal(t, uint16(4), a.PacketID)
	require.Equal(t, codec.NotAuthorized, a.ReasonCode)
	sub.expectNothing(e2eSilent)

	pub.publish("bob/y", "ok", 1, false, 5)
	a = pub.expect(codec.PUBACK).(*codec.Ack)
	require.Equal(t, codec.Success, a.ReasonCode)
	require.Equal(t, "ok", string(sub.expectPublish().Payload))
}

// TestAuthzPublishDeniedV5Paho checks 0x87 through paho.golang's Publish,
// with its Reason String [MQTT 5.0 sections 3.4.2.2.2, 3.5.2.2.2]; a
// success code, 0x10 included, carries none.
func TestAuthzPublishDeniedV5Paho(t *testing.T) {
	s, _ := authzServer(t, Options{})
	cl, _, err := pahoV5(t, s, nil, &pahov5.Connect{ClientID: "p5", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "bob"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	pr, err := cl.Publish(ctx, &pahov5.Publish{Topic: "alice/x", QoS: 1, Payload: []byte("x")})
	require.Error(t, err)
	require.Equal(t, byte(codec.NotAuthorized), pr.ReasonCode)
	require.Equal(t, "not authorized to publish to this topic", pr.Properties.ReasonString)
	// paho.golang reports a QoS 2 flow that ended at PUBREC by its code only.
	pr, err = cl.Publish(ctx, &pahov5.Publish{Topic: "alice/x", QoS: 2, Payload: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, byte(codec.NotAuthorized), pr.ReasonCode)
	require.Equal(t, "not authorized to publish to this topic", pr.Properties.ReasonString)
	pr, err = cl.Publish(ctx, &pahov5.Publish{Topic: "bob/x", QoS: 1, Payload: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, byte(codec.NoMatchingSubscribers), pr.ReasonCode)
	require.Empty(t, pr.Properties.ReasonString)
}

// TestAuthzSubscribeDeniedPerFilter checks that a denied filter gets SUBACK
// 0x80 (3.1.1) or 0x87 (5.0) while the other filters of the same
// SUBSCRIBE are granted [MQTT-3.9.3-1], including a shared subscription
// (checked without its $share prefix).
func TestAuthzSubscribeDeniedPerFilter(t *testing.T) {
	s, _ := authzServer(t, Options{})
	filters := []codec.Subscription{{Filter: []byte("secret/a"), QoS: 1}, {Filter: []byte("public/a"), QoS: 1},
		{Filter: []byte("$share/g/secret/#"), QoS: 0}, {Filter: []byte("$share/g/public/#"), QoS: 0}}
	for _, ver := range []codec.Version{codec.V311, codec.V5} {
		c := dialRaw(t, s)
		p := userConnect(fmt.Sprintf("subs-%d", ver), "bob")
		p.Version = ver
		c.mustConnect(p)
		c.send(&codec.Subscribe{PacketID: 2, Subscriptions: filters})
		sa := c.expect(codec.SUBACK).(*codec.Suback)
		deny := codec.ReasonCode(codec.SubackFailureV3)
		if ver == codec.V5 {
			deny = codec.NotAuthorized
		}
		require.Equal(t, []codec.ReasonCode{deny, 1, deny, 0}, sa.ReasonCodes, "version %v", ver)
	}
	// The refused filters were not subscribed: once everything is
	// allowed, a message that only they would match reaches nobody.
	c := connectRaw(t, s, userConnect("subs-check", "bob"))
	c.send(&codec.Subscribe{PacketID: 2, Subscriptions: filters[:1]})
	require.Equal(t, []codec.ReasonCode{codec.ReasonCode(codec.SubackFailureV3)}, c.expect(codec.SUBACK).(*codec.Suback).ReasonCodes)
	s.SetAuthorizer(nil)
	pub := connectRaw(t, s, userConnect("pub", "bob"))
	pub.publish("secret/a", "x", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	c.expectNothing(e2eSilent)
}

// TestAuthzSubscribeDeniedPaho checks the per-filter SUBACK codes with both
// Paho libraries, and the 5.0 SUBACK's Reason String naming the refused
// filters [MQTT 5.0 section 3.9.2.1.2].
func TestAuthzSubscribeDeniedPaho(t *testing.T) {
	s, _ := authzServer(t, Options{})
	cl := newPaho(t, s, pahoUser("bob"))
	tok := cl.SubscribeMultiple(map[string]byte{"secret/x": 1, "public/x": 1}, nil)
	require.True(t, tok.WaitTimeout(e2eWait))
	require.Equal(t, map[string]byte{"secret/x": codec.SubackFailureV3, "public/x": 1}, tok.(*paho.SubscribeToken).Result())

	cl5, _, err := pahoV5(t, s, nil, &pahov5.Connect{ClientID: "s5", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "bob"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := cl5.Subscribe(ctx, &pahov5.Subscribe{Subscriptions: []pahov5.SubscribeOptions{
		{Topic: "secret/x", QoS: 1}, {Topic: "public/x", QoS: 1}, {Topic: "$share/g/secret/#", QoS: 0}}})
	require.Error(t, err)
	require.Equal(t, []byte{byte(codec.NotAuthorized), 1, byte(codec.NotAuthorized)}, sa.Reasons)
	require.Equal(t, `"secret/x": not authorized, "$share/g/secret/#": not authorized`, sa.Properties.ReasonString)
	sa, err = cl5.Subscribe(ctx, &pahov5.Subscribe{Subscriptions: []pahov5.SubscribeOptions{{Topic: "public/y", QoS: 1}}})
	require.NoError(t, err)
	require.Equal(t, []byte{1}, sa.Reasons)
	if sa.Properties != nil {
		require.Empty(t, sa.Properties.ReasonString)
	}
}

// TestAuthzReadFiltersDeliveries checks that a subscription to '#' gets
// only the messages whose topics its client may read, at every QoS, also
// through a shared subscription.
func TestAuthzReadFiltersDeliveries(t *testing.T) {
	s, _ := authzServer(t, Options{})
	h, got := collect(20)
	sub := newPaho(t, s, pahoUser("bob"))
	wait(t, sub.Subscribe("#", 2, h))
	hs, gotShared := collect(20)
	shared := newPaho(t, s, pahoUser("bob"))
	wait(t, shared.Subscribe("$share/g/#", 2, hs))

	pub := newPaho(t, s, pahoUser("alice"))
	for q := byte(0); q <= 2; q++ {
		wait(t, pub.Publish("private/a", q, false, fmt.Sprintf("private %d", q)))
		wait(t, pub.Publish("public/a", q, false, fmt.Sprintf("public %d", q)))
	}
	for q := byte(0); q <= 2; q++ {
		want := fmt.Sprintf("public %d", q)
		require.Equal(t, want, recv(t, got, want).payload)
		require.Equal(t, want, recv(t, gotShared, want+" (shared)").payload)
	}
	recvNone(t, got, e2eSilent)
	recvNone(t, gotShared, 0)
}

// TestAuthzRetainedObeysWriteAndRead checks that a retained PUBLISH the
// client may not write neither stores nor deletes a retained message, and
// that retained messages sent on SUBSCRIBE [MQTT-3.3.1-6] obey Read.
func TestAuthzRetainedObeysWriteAndRead(t *testing.T) {
	s, _ := authzServer(t, Options{})
	alice := connectRaw(t, s, userConnect("alice", "alice"))
	alice.publish("public/r", "kept", 1, true, 1)
	alice.expectAck(codec.PUBACK, 1)
	alice.publish("private/r", "hidden", 1, true, 2)
	alice.expectAck(codec.PUBACK, 2)

	bob := connectRaw(t, s, userConnect("bob", "bob"))
	bob.publish("public/r", "", 1, true, 3) // would delete the retained message
	bob.expectAck(codec.PUBACK, 3)
	bob.publish("public/new", "stored?", 1, true, 4)
	bob.expectAck(codec.PUBACK, 4)
	require.Equal(t, 2, s.Stats().Retained, "denied retained PUBLISHes left the store alone")

	// bob may read public/# only: of the two retained messages it gets one.
	require.Equal(t, byte(1), bob.subscribe(5, "#", 1))
	m := bob.expectPublish()
	require.Equal(t, "public/r", string(m.Topic))
	require.Equal(t, "kept", string(m.Payload))
	require.True(t, m.Retain)
	bob.ack(codec.PUBACK, m.PacketID)
	bob.expectNothing(e2eSilent)

	h, got := collect(4)
	cl := newPaho(t, s, pahoUser("alice"))
	wait(t, cl.Subscribe("#", 1, h))
	seen := map[string]string{}
	for range 2 {
		m := recv(t, got, "a retained message")
		require.True(t, m.retained)
		seen[m.topic] = m.payload
	}
	require.Equal(t, map[string]string{"public/r": "kept", "private/r": "hidden"}, seen)
}

// TestAuthzWillDeniedRefusesConnect checks that a will on a topic the
// client may not write refuses the CONNECT (3.1.1: return code 0x05, 5.0:
// 0x87), before the client id's existing session is touched, and that an
// allowed will is published.
func TestAuthzWillDeniedRefusesConnect(t *testing.T) {
	s, _ := authzServer(t, Options{})
	watcher := connectRaw(t, s, userConnect("watcher", "alice"))
	require.Equal(t, byte(0), watcher.subscribe(1, "#", 0))

	old := connectRaw(t, s, userConnect("dev", "bob"))

	c := dialRaw(t, s)
	ca := c.connect(withWill(userConnect("dev", "bob"), "alice/will", "w", 0, false))
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedNotAuthorized), ca.ReasonCode)
	require.Empty(t, c.expectClosed(e2eWait))
	c5 := dialRaw(t, s)
	ca = c5.connect(withWill(userConnect5("dev", "bob"), "alice/will", "w", 0, false))
	require.Equal(t, codec.NotAuthorized, ca.ReasonCode)
	require.Empty(t, c5.expectClosed(e2eWait))

	// The refused clients took nothing over: the old connection works.
	old.send(&codec.Pingreq{})
	old.expect(codec.PINGRESP)

	ok := connectRaw(t, s, withWill(userConnect("dev2", "bob"), "bob/will", "gone", 0, false))
	ok.kill()
	m := watcher.expectPublish()
	require.Equal(t, "bob/will", string(m.Topic))
	require.Equal(t, "gone", string(m.Payload))
}

// TestAuthzWillCheckedAgainWhenPublished checks that a will accepted at
// CONNECT is not published once the Authorizer in force (replaced with
// SetAuthorizer meanwhile) no longer lets its client write the topic,
// neither at once nor after its Will Delay Interval.
func TestAuthzWillCheckedAgainWhenPublished(t *testing.T) {
	s, _ := authzServer(t, Options{})
	watcher := connectRaw(t, s, userConnect("watcher", "alice"))
	require.Equal(t, byte(0), watcher.subscribe(1, "#", 0))
	now := connectRaw(t, s, withWill(userConnect("now", "bob"), "bob/now", "w", 0, false))
	p := withWill5(userConnect5("later", "bob"), "bob/later", "w", 0, 1)
	p.Properties.SessionExpiry = 60
	later := connectRaw(t, s, p)

	var asked sync.Map
	s.SetAuthorizer(AuthorizerFunc(func(id Identity, topic string, acc Access) bool {
		if acc == Write {
			asked.Store(topic, id)
			return false
		}
		return true
	}))
	now.kill()
	later.kill()
	require.Eventually(t, func() bool { // the delayed will is due within its second and a sweep
		_, ok := asked.Load("bob/later")
		return ok
	}, e2eWait, 10*time.Millisecond)
	watcher.expectNothing(e2eSilent)
	for _, topic := range []string{"bob/now", "bob/later"} {
		id, ok := asked.Load(topic)
		require.True(t, ok, "%s was checked", topic)
		require.Equal(t, "bob", id.(Identity).Username)
	}
}

// TestAuthzAnonymousRefusedWhenNotAllowed checks AllowAnonymous false: a
// CONNECT without a User Name is refused with 0x05 (3.1.1, also through
// paho.mqtt.golang) or 0x87 (5.0), one with a User Name is admitted.
func TestAuthzAnonymousRefusedWhenNotAllowed(t *testing.T) {
	no := false
	s := startServer(t, Options{AllowAnonymous: &no})
	c := dialRaw(t, s)
	ca := c.connect(userConnect("anon", ""))
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedNotAuthorized), ca.ReasonCode)
	require.Empty(t, c.expectClosed(e2eWait))
	c5 := dialRaw(t, s)
	ca = c5.connect(userConnect5("anon5", ""))
	require.Equal(t, codec.NotAuthorized, ca.ReasonCode)
	require.Empty(t, c5.expectClosed(e2eWait))

	o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).SetClientID("anon-paho").
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(e2eWait)
	tok := paho.NewClient(o).Connect()
	require.True(t, tok.WaitTimeout(e2eWait))
	require.Error(t, tok.Error())
	require.Equal(t, codec.ConnRefusedNotAuthorized, tok.(*paho.ConnectToken).ReturnCode())

	connectRaw(t, s, userConnect("named", "carol"))
}

// TestAuthzAnonymousAllowedSkipsAuthenticator checks AllowAnonymous true: an
// anonymous client is admitted without asking the Authenticator, which
// still decides clients with a User Name (Mosquitto's allow_anonymous
// with a password file).
func TestAuthzAnonymousAllowedSkipsAuthenticator(t *testing.T) {
	yes := true
	var asked atomic.Int64
	s := startServer(t, Options{AllowAnonymous: &yes, Authenticator: authFunc(func(ConnectInfo) codec.ReasonCode {
		asked.Add(1)
		return codec.BadUserNameOrPassword
	})})
	dialRaw(t, s).mustConnect(userConnect("anon", ""))
	require.Zero(t, asked.Load())
	c := dialRaw(t, s)
	ca := c.connect(userConnect5("named", "carol"))
	require.Equal(t, codec.BadUserNameOrPassword, ca.ReasonCode)
	require.Equal(t, int64(1), asked.Load())
}

// TestAuthzCacheDoesNotLeakBetweenUsers checks that cached decisions belong
// to one session's identity: two subscribers of one topic with different
// users see different messages, and a persistent session resumed by
// another user neither gets what was queued for the first one nor keeps
// its cached decisions.
func TestAuthzCacheDoesNotLeakBetweenUsers(t *testing.T) {
	s, _ := authzServer(t, Options{})
	a := connectRaw(t, s, userConnect("a", "alice"))
	require.Equal(t, byte(0), a.subscribe(1, "private/t", 0))
	b := connectRaw(t, s, userConnect("b", "bob"))
	require.Equal(t, byte(0), b.subscribe(1, "private/t", 0))
	pub := connectRaw(t, s, userConnect("pub", "alice"))
	for i := range 3 {
		pub.publish("private/t", fmt.Sprint(i), 0, false, 0)
		require.Equal(t, fmt.Sprint(i), string(a.expectPublish().Payload))
	}
	b.expectNothing(e2eSilent)

	// A persistent session of alice's, with a message queued for it.
	p := userConnect("dev", "alice")
	p.CleanStart = false
	d := connectRaw(t, s, p)
	require.Equal(t, byte(1), d.subscribe(1, "private/t", 1))
	pub.publish("private/t", "cached", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	m := d.expectPublish()
	d.ack(codec.PUBACK, m.PacketID)
	d.disconnect()
	pub.publish("private/t", "queued", 1, false, 2)
	pub.expectAck(codec.PUBACK, 2)

	// bob resumes it: nothing queued for alice, nothing new either.
	p = userConnect("dev", "bob")
	p.CleanStart = false
	d = dialRaw(t, s)
	require.True(t, d.mustConnect(p).SessionPresent)
	pub.publish("private/t", "after", 1, false, 3)
	pub.expectAck(codec.PUBACK, 3)
	d.expectNothing(e2eSilent)
	d.disconnect()

	// alice again: the session's decisions are hers again.
	p = userConnect("dev", "alice")
	p.CleanStart = false
	d = dialRaw(t, s)
	require.True(t, d.mustConnect(p).SessionPresent)
	pub.publish("private/t", "hers", 1, false, 4)
	pub.expectAck(codec.PUBACK, 4)
	require.Equal(t, "hers", string(d.expectPublish().Payload))
}

// TestAuthzCachesDecisionsAndSetAuthorizerDropsThem checks that repeated
// messages on one topic ask the Authorizer once per session, and that
// SetAuthorizer's new rules apply at once to topics already cached.
func TestAuthzCachesDecisionsAndSetAuthorizerDropsThem(t *testing.T) {
	s, rt := authzServer(t, Options{})
	h, got := collect(100)
	sub := newPaho(t, s, pahoUser("bob"))
	wait(t, sub.Subscribe("#", 0, h))
	pub := newPaho(t, s, pahoUser("bob"))
	wait(t, pub.Publish("bob/x", 1, false, "warm-up")) // bob may write but not read bob/x
	// SUBSCRIBE, the publisher's Write and the subscriber's Read (on the
	// subscriber's loop, maybe after the PUBACK).
	require.Eventually(t, func() bool { return rt.calls.Load() == 3 }, e2eWait, time.Millisecond)
	before := rt.calls.Load()
	for range 20 {
		wait(t, pub.Publish("bob/x", 1, false, "x"))
	}
	require.Equal(t, before, rt.calls.Load(), "cached: no Authorizer calls")
	recvNone(t, got, e2eSilent)

	s.SetAuthorizer(AuthorizerFunc(func(Identity, string, Access) bool { return true }))
	wait(t, pub.Publish("bob/x", 1, false, "now readable"))
	require.Equal(t, "now readable", recv(t, got, "a message after SetAuthorizer").payload)
	s.SetAuthorizer(nil)
	wait(t, pub.Publish("secret/x", 1, false, "no rules"))
	require.Equal(t, "no rules", recv(t, got, "a message without an Authorizer").payload)
}

// TestAuthzCacheIsBounded checks the per-session cache's bound.
func TestAuthzCacheIsBounded(t *testing.T) {
	rt := &ruleTable{rules: []aclRule{{user: "*", acc: Read, filter: "#", allow: true}}}
	cf := &authzConf{a: rt, gen: 1}
	sess := &session{id: "s"}
	for i := range 10 * authzCacheMax {
		require.True(t, sess.authorize(cf, []byte(fmt.Sprintf("t/%d", i)), Read))
		require.LessOrEqual(t, len(sess.authz.cache), authzCacheMax)
	}
	n := rt.calls.Load()
	require.True(t, sess.authorize(cf, []byte(fmt.Sprintf("t/%d", 10*authzCacheMax-1)), Read))
	require.Equal(t, n, rt.calls.Load(), "a recent topic is still cached")
	require.Equal(t, Identity{ClientID: "s", Anonymous: true}, rt.seen[0])
}

// identityAuth is an IdentifyingAuthenticator that names the client after
// its password (like a token's subject).
type identityAuth struct{}

func (identityAuth) Authenticate(ConnectInfo) codec.ReasonCode { return codec.NotAuthorized }

func (identityAuth) AuthenticateIdentity(info ConnectInfo, id *Identity) codec.ReasonCode {
	if sub, ok := strings.CutPrefix(string(info.Password), "token:"); ok {
		id.Username, id.Anonymous = sub, false
		return codec.Success
	}
	return codec.NotAuthorized
}

// TestAuthzIdentifyingAuthenticatorNamesTheClient checks that the identity
// an IdentifyingAuthenticator gives is the one the Authorizer sees.
func TestAuthzIdentifyingAuthenticatorNamesTheClient(t *testing.T) {
	s, rt := authzServer(t, Options{Authenticator: identityAuth{}})
	c := dialRaw(t, s)
	p := userConnect("tok", "ignored")
	p.PasswordFlag, p.Password = true, []byte("token:alice")
	c.mustConnect(p)
	require.Equal(t, byte(1), c.subscribe(1, "private/#", 1))
	rt.mu.Lock()
	defer rt.mu.Unlock()
	require.Equal(t, []Identity{{ClientID: "tok", Username: "alice"}}, rt.seen)
}

// TestAuthzDefaultAllowsEverything checks that without an Authorizer every
// client may do everything, anonymous ones included (today's behaviour).
func TestAuthzDefaultAllowsEverything(t *testing.T) {
	s := startServer(t, Options{})
	c := connectRaw(t, s, withWill(userConnect("x", ""), "secret/w", "w", 0, false))
	require.Equal(t, byte(1), c.subscribe(1, "secret/#", 1))
	c.publish("secret/a", "x", 1, true, 2)
	got := map[codec.Type]bool{}
	for range 2 {
		p, err := c.next(e2eWait)
		require.NoError(t, err)
		got[p.Type()] = true
	}
	require.Equal(t, map[codec.Type]bool{codec.PUBLISH: true, codec.PUBACK: true}, got)
	require.Equal(t, 1, s.Stats().Retained)
}

// TestAuthzReauthKeepsWrittenPublishesInFlight checks that a
// re-authentication that changes the client's identity (an
// IdentifyingExchange naming another user) leaves in flight the PUBLISHes
// already written on the connection, even those the new identity may not
// read: the client has them and has not acknowledged them, so they still
// count against its Receive Maximum [MQTT-3.3.4-9]. What was not written
// yet is checked again: queued messages the new identity may not read are
// dropped.
func TestAuthzReauthKeepsWrittenPublishesInFlight(t *testing.T) {
	opts := Options{}
	churnAuthOptions(t, &opts) // SCRAM naming its user; bob may not read churnBobMayNotRead
	s := startServer(t, opts)
	pub := alicePublisher(t, s)
	publish := func(topic, payload string, id uint16) {
		t.Helper()
		pub.publish(topic, payload, 1, false, id)
		pub.expectAck(codec.PUBACK, id)
	}

	sub := dialRaw(t, s)
	sc := &scramClient{user: "alice", password: churnUsers["alice"]}
	cp := scramConnect("reauth-inflight", sc)
	cp.Properties.ReceiveMaximum = 1
	sub.scramLoginWith(cp, sc)
	require.Equal(t, byte(1), sub.subscribe(1, "churn/#", 1))

	publish(churnBobMayNotRead, "written", 1)
	m := sub.expectPublish() // not acknowledged yet
	require.Equal(t, "written", string(m.Payload))
	publish(churnBobMayNotRead, "queued, alice's", 2) // behind it: Receive Maximum 1
	publish("churn/0/a", "queued, anyone's", 3)

	// Re-authenticate as bob, who may not read churnBobMayNotRead.
	bob := &scramClient{user: "bob", password: churnUsers["bob"]}
	require.NoError(t, bob.verify(sub.scramReauth(bob).Properties.AuthData))

	// The written message is still unacknowledged: no room for another.
	sub.expectNothing(e2eSilent)
	sub.ack(codec.PUBACK, m.PacketID)
	next := sub.expectPublish()
	require.Equal(t, "queued, anyone's", string(next.Payload), "the queued message bob may not read is dropped")
	sub.ack(codec.PUBACK, next.PacketID)
	sub.expectNothing(e2eSilent)
}

// TestAuthzResumeDropsWhatReauthKeptInFlight checks that a PUBLISH a
// re-authentication left in flight (TestAuthzReauthKeepsWrittenPublishesInFlight)
// although the new identity may not read it is not sent again when that
// identity resumes the session, after a reconnect or a restart of the
// broker on its store.
func TestAuthzResumeDropsWhatReauthKeptInFlight(t *testing.T) {
	for _, restarted := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restarted), func(t *testing.T) {
			st := store.NewMemory()
			t.Cleanup(func() { _ = st.Close() })
			opts := Options{Store: st}
			churnAuthOptions(t, &opts)
			s := startServer(t, opts)
			pub := alicePublisher(t, s)

			sub := dialRaw(t, s)
			sc := &scramClient{user: "alice", password: churnUsers["alice"]}
			cp := scramConnect("reauth-resume", sc)
			cp.CleanStart, cp.Properties.SessionExpiry = false, 60
			sub.scramLoginWith(cp, sc)
			require.Equal(t, byte(1), sub.subscribe(1, "churn/#", 1))
			pub.publish(churnBobMayNotRead, "alice's", 1, false, 1)
			pub.expectAck(codec.PUBACK, 1)
			require.Equal(t, "alice's", string(sub.expectPublish().Payload)) // not acknowledged

			sub.scramReauth(&scramClient{user: "bob", password: churnUsers["bob"]})
			sub.kill()
			require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)
			if restarted {
				o := Options{}
				churnAuthOptions(t, &o)
				s = restartWith(t, s, st, o)
				pub = alicePublisher(t, s)
			}

			again := dialRaw(t, s)
			p := userConnect5("reauth-resume", "bob")
			p.CleanStart, p.Properties.SessionExpiry = false, 60
			p.PasswordFlag, p.Password = true, []byte(churnUsers["bob"])
			require.True(t, again.mustConnect(p).SessionPresent)
			again.expectNothing(e2eSilent) // not alice's message again, with DUP
			pub.publish("churn/0/a", "bob's", 1, false, 2)
			pub.expectAck(codec.PUBACK, 2)
			require.Equal(t, "bob's", string(again.expectPublish().Payload))
		})
	}
}

// TestAuthzReauthIdentityIsStored checks that a re-authentication that
// changes the client's identity is written to the session's record, so
// that after a crash the recovered session and its will are authorized as
// the new identity: here bob's will on a topic bob may not write, made
// while alice, is not published after the broker recovers from a snapshot
// of its store taken while the client was connected.
func TestAuthzReauthIdentityIsStored(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	opts := Options{Store: st}
	churnAuthOptions(t, &opts)
	s := startServer(t, opts)

	c := dialRaw(t, s)
	sc := &scramClient{user: "alice", password: churnUsers["alice"]}
	cp := scramConnect("reauth-stored", sc)
	cp.CleanStart, cp.Properties.SessionExpiry = false, 60
	withWill(cp, churnBobMayNotWrite, "alice's will, bob's now", 0, false)
	cp.Will.Properties.WillDelay = 2 // published after the watcher below subscribed
	c.scramLoginWith(cp, sc)
	c.scramReauth(&scramClient{user: "bob", password: churnUsers["bob"]})
	stored := func() string {
		user := ""
		_ = st.Sessions(func(r *store.Session) error {
			if r.ClientID == "reauth-stored" {
				user = r.Username
			}
			return nil
		})
		return user
	}
	require.Eventually(t, func() bool { return stored() == "bob" }, e2eWait, 10*time.Millisecond,
		"the session record names %q, not the re-authenticated identity", stored())

	// A crash: a broker recovers from what the store holds now.
	o := Options{Store: snapshot(t, st)}
	churnAuthOptions(t, &o)
	s2 := startServer(t, o)
	w := dialRaw(t, s2)
	wp := connectPacket("watcher", true, 0)
	wp.UsernameFlag, wp.Username, wp.PasswordFlag, wp.Password = true, []byte("alice"), true, []byte(churnUsers["alice"])
	w.mustConnect(wp)
	require.Equal(t, byte(0), w.subscribe(1, churnBobMayNotWrite, 0))
	w.expectNothing(3 * time.Second) // bob's will: not published
}

// alicePublisher connects client "pub" as alice with her password
// (churnUsers), to a broker with churnAuthOptions.
func alicePublisher(t *testing.T, s *Server) *rawClient {
	t.Helper()
	pub := dialRaw(t, s)
	p := connectPacket("pub", true, 0)
	p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, []byte("alice"), true, []byte(churnUsers["alice"])
	pub.mustConnect(p)
	return pub
}
