package engine

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	paho "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// MQTT 5.0 behaviour of the PUBLISH path (issue 7), end to end with
// paho.golang, mosquitto_pub/sub -V 5 and raw 5.0 packets where a client
// library hides what is on the wire.

// v5Client is a paho.golang client connected to a test server; every PUBLISH
// it receives goes to msgs.
type v5Client struct {
	c    *paho.Client
	msgs chan *paho.Publish
}

// newPaho5 connects a paho.golang client; cp nil means Clean Start with
// the given id.
func newPaho5(t *testing.T, s *Server, id string, cp *paho.Connect) *v5Client {
	t.Helper()
	conn, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	p := &v5Client{msgs: make(chan *paho.Publish, 20000)}
	p.c = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p.msgs <- pr.Packet
			return true, nil
		}}})
	if cp == nil {
		cp = &paho.Connect{CleanStart: true, KeepAlive: 30}
	}
	cp.ClientID = id
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	ca, err := p.c.Connect(ctx, cp)
	require.NoError(t, err)
	require.Zero(t, ca.ReasonCode)
	t.Cleanup(func() { _ = p.c.Disconnect(&paho.Disconnect{}) })
	return p
}

func (p *v5Client) subscribe(t *testing.T, opts ...paho.SubscribeOptions) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := p.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	require.NoError(t, err)
	for _, r := range sa.Reasons {
		require.Less(t, r, byte(0x80), "SUBACK reason")
	}
}

func (p *v5Client) publish(t *testing.T, pub *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	r, err := p.c.Publish(ctx, pub)
	require.NoError(t, err)
	return r
}

func (p *v5Client) next(t *testing.T) *paho.Publish {
	t.Helper()
	select {
	case m := <-p.msgs:
		return m
	case <-time.After(e2eWait):
		t.Fatal("no PUBLISH received")
		return nil
	}
}

func (p *v5Client) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-p.msgs:
		t.Fatalf("unexpected PUBLISH on %q: %q", m.Topic, m.Payload)
	case <-time.After(d):
	}
}

// dialV5 connects a raw 5.0 client with Clean Start; edit may set CONNECT
// properties.
func dialV5(t *testing.T, s *Server, id string, edit func(*codec.Connect)) (*rawClient, *codec.Connack) {
	t.Helper()
	c := dialRaw(t, s)
	cp := connectPacket(id, true, 60)
	cp.Version = codec.V5
	if edit != nil {
		edit(cp)
	}
	return c, c.mustConnect(cp)
}

// expectDisconnect requires a DISCONNECT with want as the last packet
// before the broker closes the connection.
func expectDisconnect(t *testing.T, c *rawClient, want codec.ReasonCode) *codec.Disconnect {
	t.Helper()
	got := c.expectClosed(e2eWait)
	require.NotEmpty(t, got, "no DISCONNECT before the close")
	d, ok := got[len(got)-1].(*codec.Disconnect)
	require.True(t, ok, "expected DISCONNECT, got %v", got[len(got)-1].Type())
	require.Equal(t, want, d.ReasonCode)
	return d
}

// TestE2EV5ConnackAdvertisesLimits: CONNACK carries the server's Receive
// Maximum, Topic Alias Maximum and Maximum Packet Size, and says nothing
// of the features it supports (absent means available)
// [MQTT-3.2.2-...] (MQTT 5.0 section 3.2.2.3).
func TestE2EV5ConnackAdvertisesLimits(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ReceiveMaximum: 100, TopicAliasMaximum: 10, MaxPacketSize: 4096})
	_, ca := dialV5(t, s, "limits", nil)
	require.Equal(t, uint16(100), ca.Properties.ReceiveMaximum)
	require.Equal(t, uint16(10), ca.Properties.TopicAliasMaximum)
	require.Equal(t, uint32(4096), ca.Properties.MaximumPacketSize)
	for _, id := range []codec.PropID{codec.PropSubIDAvailable, codec.PropWildcardSubAvailable,
		codec.PropSharedSubAvailable, codec.PropRetainAvailable, codec.PropMaximumQoS} {
		require.False(t, ca.Properties.Has(id), "%v sent: it would say the feature is missing", id)
	}
}

// TestE2EV5PropertiesPassThrough: payload format indicator, content type,
// response topic, correlation data and user properties (in order) reach a
// 5.0 subscriber unchanged [MQTT-3.3.2-4] [MQTT-3.3.2-20] [MQTT-3.3.2-15]
// [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-18]; a 3.1.1 subscriber gets the
// same message without them, and a 3.1.1 publisher's message reaches a 5.0
// subscriber.
func TestE2EV5PropertiesPassThrough(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := newPaho5(t, s, "props-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "props/#", QoS: 1})
	old, _ := connectPaho(t, s, nil)
	handler, oldMsgs := collect(10)
	require.True(t, old.Subscribe("props/#", 1, handler).WaitTimeout(e2eWait))
	pub := newPaho5(t, s, "props-pub", nil)

	one := byte(1)
	user := paho.UserProperties{{Key: "k1", Value: "v1"}, {Key: "k2", Value: "v2"}, {Key: "k1", Value: "v3"}}
	r := pub.publish(t, &paho.Publish{Topic: "props/a", QoS: 1, Payload: []byte("héllo"),
		Properties: &paho.PublishProperties{PayloadFormat: &one, ContentType: "text/plain",
			ResponseTopic: "reply/here", CorrelationData: []byte{0, 1, 2}, User: user}})
	require.Zero(t, r.ReasonCode)

	m := sub.next(t)
	require.Equal(t, "props/a", m.Topic)
	require.Equal(t, "héllo", string(m.Payload))
	require.NotNil(t, m.Properties)
	require.NotNil(t, m.Properties.PayloadFormat)
	require.Equal(t, byte(1), *m.Properties.PayloadFormat)
	require.Equal(t, "text/plain", m.Properties.ContentType)
	require.Equal(t, "reply/here", m.Properties.ResponseTopic)
	require.Equal(t, []byte{0, 1, 2}, m.Properties.CorrelationData)
	require.Equal(t, user, m.Properties.User, "user properties in order [MQTT-3.3.2-18]")
	require.Nil(t, m.Properties.MessageExpiry, "no expiry was set")

	om := recv(t, oldMsgs, "3.1.1 subscriber")
	require.Equal(t, "héllo", om.payload)

	require.True(t, old.Publish("props/from311", 1, false, "plain").WaitTimeout(e2eWait))
	m = sub.next(t)
	require.Equal(t, "props/from311", m.Topic)
	require.Equal(t, "plain", string(m.Payload))
	recv(t, oldMsgs, "3.1.1 subscriber, own message")
}

// TestE2EV5PropertiesWithMosquitto: mosquitto_sub -V 5 prints the
// properties mosquitto_pub -V 5 sent through loopmq.
func TestE2EV5PropertiesWithMosquitto(t *testing.T) {
	needMosquitto(t)
	t.Parallel()
	s := startServer(t, Options{})
	ms := startMosquittoSub(t, s, "-V", "5", "-t", "mprops/#", "-q", "1", "-C", "1", "-W", "10",
		"-F", "MSG|%q|%r|%t|%C;%R;%P;%E;%p")
	mosquittoPub(t, s, "-V", "5", "-t", "mprops/x", "-q", "1", "-m", "payload",
		"-D", "publish", "content-type", "application/json",
		"-D", "publish", "response-topic", "r/t",
		"-D", "publish", "user-property", "a", "1",
		"-D", "publish", "user-property", "b", "2",
		"-D", "publish", "message-expiry-interval", "60")
	got, err := ms.wait(t)
	require.NoError(t, err, ms.log())
	require.Len(t, got, 1)
	require.Equal(t, "mprops/x", got[0].topic)
	require.Regexp(t, `^application/json;r/t;a:1 b:2;(60|59);payload$`, got[0].payload)
}

// TestE2EV5PayloadFormatInvalid: a payload that the payload format
// indicator calls UTF-8 but is not is refused with 0x99 and not delivered
// (MQTT 5.0 section 3.3.2.3.2).
func TestE2EV5PayloadFormatInvalid(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := newPaho5(t, s, "pfi-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "pfi", QoS: 1})
	c, _ := dialV5(t, s, "pfi-pub", nil)
	c.send(&codec.Publish{QoS: 1, PacketID: 1, Topic: []byte("pfi"), Payload: []byte{0xff, 0xfe},
		Properties: codec.Properties{PayloadFormat: 1}})
	a := c.expect(codec.PUBACK).(*codec.Ack)
	require.Equal(t, codec.PayloadFormatInvalid, a.ReasonCode)
	sub.none(t, 200*time.Millisecond)
	c.send(&codec.Publish{QoS: 0, Topic: []byte("pfi"), Payload: []byte{0xc3},
		Properties: codec.Properties{PayloadFormat: 1}})
	expectDisconnect(t, c, codec.PayloadFormatInvalid)
}

// TestE2EV5NoMatchingSubscribers: PUBACK and PUBREC say 0x10 when nobody
// subscribed (MQTT 5.0 section 3.4.2.1), 0x00 otherwise.
func TestE2EV5NoMatchingSubscribers(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	p := newPaho5(t, s, "nms-pub", nil)
	require.Equal(t, byte(codec.NoMatchingSubscribers), p.publish(t, &paho.Publish{Topic: "nobody", QoS: 1, Payload: []byte("x")}).ReasonCode)
	c, _ := dialV5(t, s, "nms-raw", nil)
	c.send(&codec.Publish{QoS: 2, PacketID: 1, Topic: []byte("nobody"), Payload: []byte("x")})
	rec := c.expect(codec.PUBREC).(*codec.Ack) // paho reports the PUBCOMP's code for QoS 2
	require.Equal(t, codec.NoMatchingSubscribers, rec.ReasonCode)
	c.send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 1})
	c.expect(codec.PUBCOMP)
	sub := newPaho5(t, s, "nms-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "somebody", QoS: 1})
	require.Zero(t, p.publish(t, &paho.Publish{Topic: "somebody", QoS: 1, Payload: []byte("x")}).ReasonCode)
}

// TestE2EV5MessageExpiry: a message waiting in an offline session's queue
// is not delivered once its expiry interval passed [MQTT-3.3.2-5], and one
// delivered later carries the interval minus the time it waited
// [MQTT-3.3.2-6].
func TestE2EV5MessageExpiry(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	persist := func(cp *codec.Connect) {
		cp.CleanStart = false
		cp.Properties.SessionExpiry = 300
	}
	sub, _ := dialV5(t, s, "exp-sub", persist)
	sub.subscribe(1, "exp/#", 1)
	sub.disconnect()

	pub := newPaho5(t, s, "exp-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "exp/short", QoS: 1, Payload: []byte("short"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(1)}})
	pub.publish(t, &paho.Publish{Topic: "exp/long", QoS: 1, Payload: []byte("long"),
		Properties: &paho.PublishProperties{MessageExpiry: u32(10)}})
	pub.publish(t, &paho.Publish{Topic: "exp/none", QoS: 1, Payload: []byte("none")})
	time.Sleep(2100 * time.Millisecond)

	sub = dialRaw(t, s)
	cp := connectPacket("exp-sub", false, 60)
	cp.Version = codec.V5
	persist(cp)
	require.True(t, sub.mustConnect(cp).SessionPresent)
	p := sub.expectPublish()
	require.Equal(t, "long", string(p.Payload), "the expired message was delivered")
	require.True(t, p.Properties.Has(codec.PropMessageExpiry))
	require.LessOrEqual(t, p.Properties.MessageExpiry, uint32(8), "remaining interval after waiting 2 s")
	require.GreaterOrEqual(t, p.Properties.MessageExpiry, uint32(6))
	sub.ack(codec.PUBACK, p.PacketID)
	p = sub.expectPublish()
	require.Equal(t, "none", string(p.Payload))
	require.False(t, p.Properties.Has(codec.PropMessageExpiry))
}

// TestE2EV5TopicAliasInbound: a client defines a topic alias with its
// first PUBLISH and uses it alone afterwards; subscribers see the topic
// [MQTT-3.3.2-12]. Alias 0, an alias above the server's maximum
// [MQTT-3.3.2-8] [MQTT-3.3.2-9] and an undefined alias are refused.
func TestE2EV5TopicAliasInbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{TopicAliasMaximum: 4})
	sub := newPaho5(t, s, "tai-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "alias/#", QoS: 0})

	pub := newPaho5(t, s, "tai-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "alias/one", Payload: []byte("1"),
		Properties: &paho.PublishProperties{TopicAlias: u16(3)}})
	pub.publish(t, &paho.Publish{Topic: "", Payload: []byte("2"),
		Properties: &paho.PublishProperties{TopicAlias: u16(3)}})
	pub.publish(t, &paho.Publish{Topic: "alias/two", Payload: []byte("3"),
		Properties: &paho.PublishProperties{TopicAlias: u16(3)}}) // redefined
	pub.publish(t, &paho.Publish{Topic: "", Payload: []byte("4"),
		Properties: &paho.PublishProperties{TopicAlias: u16(3)}})
	for _, want := range []string{"alias/one|1", "alias/one|2", "alias/two|3", "alias/two|4"} {
		m := sub.next(t)
		require.Equal(t, want, m.Topic+"|"+string(m.Payload))
	}

	for _, tc := range []struct {
		alias uint16
		topic string
		code  codec.ReasonCode
	}{
		{0, "t", codec.TopicAliasInvalid},
		{5, "t", codec.TopicAliasInvalid},
		{2, "", codec.ProtocolError},
	} {
		c, _ := dialV5(t, s, "tai-bad-"+strconv.Itoa(int(tc.alias)), nil)
		c.send(&codec.Publish{Topic: []byte(tc.topic), Payload: []byte("x"),
			Properties: codec.Properties{Present: presentSet(codec.PropTopicAlias), TopicAlias: tc.alias}})
		expectDisconnect(t, c, tc.code)
	}
}

// TestE2EV5SubscriptionIdentifierFromClient: a PUBLISH from a client must
// not carry a Subscription Identifier [MQTT-3.3.4-6]; the broker answers
// with DISCONNECT 0x82 and closes.
func TestE2EV5SubscriptionIdentifierFromClient(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c, _ := dialV5(t, s, "pub-subid", nil)
	c.send(&codec.Publish{Topic: []byte("t"), Payload: []byte("x"),
		Properties: codec.Properties{SubscriptionIDs: []uint32{3}}})
	expectDisconnect(t, c, codec.ProtocolError)
}

func presentSet(ids ...codec.PropID) codec.PropSet {
	var s codec.PropSet
	for _, id := range ids {
		s.Add(id)
	}
	return s
}

// TestE2EV5TopicAliasOutbound: towards a client that allows topic aliases
// the broker sends a topic with a new alias once, then the alias alone,
// and reassigns the least recently used alias when all are taken
// [MQTT-3.3.2-10] [MQTT-3.3.2-11].
func TestE2EV5TopicAliasOutbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub, _ := dialV5(t, s, "tao-sub", func(cp *codec.Connect) { cp.Properties.TopicAliasMaximum = 2 })
	sub.subscribe(1, "o/#", 0)
	pub := newPaho5(t, s, "tao-pub", nil)
	type want struct {
		topic string // "" when only the alias is sent
		alias uint16
	}
	steps := []struct {
		topic string
		want  want
	}{
		{"o/a", want{"o/a", 1}},
		{"o/b", want{"o/b", 2}},
		{"o/a", want{"", 1}},
		{"o/c", want{"o/c", 2}}, // o/b is least recently used
		{"o/a", want{"", 1}},
		{"o/b", want{"o/b", 2}}, // o/c is least recently used now
		{"o/b", want{"", 2}},
	}
	for i, st := range steps {
		pub.publish(t, &paho.Publish{Topic: st.topic, Payload: []byte(strconv.Itoa(i))})
		p := sub.expectPublish()
		require.Equal(t, strconv.Itoa(i), string(p.Payload))
		require.Equal(t, st.want, want{string(p.Topic), p.Properties.TopicAlias}, "step %d (%s)", i, st.topic)
	}
	// A 5.0 client that allows no aliases gets none.
	plain := newPaho5(t, s, "tao-plain", nil)
	plain.subscribe(t, paho.SubscribeOptions{Topic: "o/#"})
	pub.publish(t, &paho.Publish{Topic: "o/a", Payload: []byte("x")})
	m := plain.next(t)
	require.Equal(t, "o/a", m.Topic)
	require.True(t, m.Properties == nil || m.Properties.TopicAlias == nil)
}

// TestE2EV5TopicAliasOutboundFewerAliasesThanTopics: a paho.golang
// subscriber that allows 4 topic aliases hears 40 topics, first in turn
// (least recently used reassignment would miss on every message, so the
// broker stops reassigning and sends most topics without an alias), then
// in runs of 4 on one topic (each reassignment is reused). Every message
// arrives, in order, and resolves as a receiver resolves it (an alias with
// a topic defines it, an alias alone stands for the topic last defined)
// to the topic it was published on; no alias exceeds the client's Topic
// Alias Maximum [MQTT-3.3.2-10], at QoS 0 and QoS 1.
func TestE2EV5TopicAliasOutboundFewerAliasesThanTopics(t *testing.T) {
	t.Parallel()
	const aliasMax, topics, cycles, runs, lastRuns = 4, 40, 30, 1000, 200
	s := startServer(t, Options{MaxQueued: 100000})
	am := uint16(aliasMax)
	sub := newPaho5(t, s, "tam-sub", &paho.Connect{CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{TopicAliasMaximum: &am}})
	sub.subscribe(t, paho.SubscribeOptions{Topic: "many/#", QoS: 1})

	var sent []string
	for i := 0; i < cycles*topics; i++ {
		sent = append(sent, fmt.Sprintf("many/%d", i%topics))
	}
	for i := 0; i < runs; i++ {
		topic := fmt.Sprintf("many/%d", (i*7)%topics)
		for range 4 {
			sent = append(sent, topic)
		}
	}
	pub := connectRaw(t, s, connectPacket("tam-pub", true, 60))
	var frames []byte
	for i, topic := range sent {
		p := &codec.Publish{QoS: byte(i % 2), Topic: []byte(topic), Payload: []byte(strconv.Itoa(i))}
		if p.QoS > 0 {
			p.PacketID = uint16(i%60000 + 1)
		}
		frames = p.AppendTo(frames, codec.V311)
	}
	go func() { _ = pub.conn.SetWriteDeadline(time.Now().Add(30 * time.Second)); _, _ = pub.conn.Write(frames) }()

	known := map[uint16]string{}       // what the client knows: alias → topic
	var plain, defined, aliased [3]int // in turn, in runs, in the last runs
	for i, want := range sent {
		m := sub.next(t)
		require.Equal(t, strconv.Itoa(i), string(m.Payload), "message %d", i)
		topic := m.Topic
		phase := 0
		switch {
		case i >= len(sent)-4*lastRuns:
			phase = 2
		case i >= cycles*topics:
			phase = 1
		}
		if m.Properties == nil || m.Properties.TopicAlias == nil {
			plain[phase]++
		} else {
			a := *m.Properties.TopicAlias
			require.True(t, a >= 1 && a <= aliasMax, "alias %d [MQTT-3.3.2-10]", a)
			if topic != "" {
				known[a] = topic
				defined[phase]++
			} else {
				topic = known[a]
				aliased[phase]++
			}
		}
		require.Equal(t, want, topic, "message %d (alias %v)", i, m.Properties)
	}
	t.Logf("plain, defining, alias only: in turn %d, %d, %d; in runs %d, %d, %d; in the last runs %d, %d, %d",
		plain[0], defined[0], aliased[0], plain[1], defined[1], aliased[1], plain[2], defined[2], aliased[2])
	require.Greater(t, plain[0], cycles*topics/2, "in turn, most topics go out without an alias")
	require.Less(t, defined[0], cycles*topics/4, "in turn, few aliases are reassigned")
	// Admission opens again within its closed period, and then each run
	// defines an alias and uses it three times.
	require.Equal(t, [3]int{0, lastRuns, 3 * lastRuns}, [3]int{plain[2], defined[2], aliased[2]}, "in the last runs")
}

// TestE2EV5ReceiveMaximumOutbound: under a burst of 10,000 QoS 1
// messages the broker never has more unacknowledged PUBLISH packets out to
// a client than its Receive Maximum [MQTT-3.3.4-7], and delivers them all.
func TestE2EV5ReceiveMaximumOutbound(t *testing.T) {
	t.Parallel()
	const n, rm = 10000, 5
	s := startServer(t, Options{MaxQueued: 2 * n})
	sub, _ := dialV5(t, s, "rm-sub", func(cp *codec.Connect) { cp.Properties.ReceiveMaximum = rm })
	sub.subscribe(1, "rm", 1)

	pub := connectRaw(t, s, connectPacket("rm-pub", true, 60))
	var frames []byte
	for i := 0; i < n; i++ {
		frames = (&codec.Publish{QoS: 1, PacketID: uint16(i%65000 + 1), Topic: []byte("rm"),
			Payload: []byte(strconv.Itoa(i))}).AppendTo(frames, codec.V311)
	}
	go func() { _ = pub.conn.SetWriteDeadline(time.Now().Add(30 * time.Second)); _, _ = pub.conn.Write(frames) }()

	var unacked []uint16
	most := 0
	for got := 0; got < n; {
		p, err := sub.next(e2eWait)
		require.NoError(t, err, "after %d messages", got)
		pp := p.(*codec.Publish)
		require.Equal(t, strconv.Itoa(got), string(pp.Payload))
		got++
		unacked = append(unacked, pp.PacketID)
		most = max(most, len(unacked))
		require.LessOrEqual(t, len(unacked), rm, "more PUBLISH unacknowledged than the Receive Maximum")
		if len(unacked) == rm || got == n {
			for _, id := range unacked {
				sub.ack(codec.PUBACK, id)
			}
			unacked = unacked[:0]
		}
	}
	require.Equal(t, rm, most)
}

// TestE2EV5ReceiveMaximumOnResume: a session resumed by a connection
// with a smaller Receive Maximum than the window it kept gets its
// unacknowledged messages again oldest first, with DUP and their packet
// identifiers [MQTT-4.4.0-1], never more unacknowledged at once than that
// maximum [MQTT-3.3.4-9], the rest as it acknowledges; then new messages.
// QoS 2 ones too. (Found by the engine fuzz target: all of them went out
// at once.)
func TestE2EV5ReceiveMaximumOnResume(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	old := connectRaw(t, s, connectPacket("rmr", false, 0))
	require.Equal(t, byte(2), old.subscribe(1, "rmr", 2))
	pub := connectRaw(t, s, connectPacket("rmr-pub", true, 0))
	const n = 4
	sent := make([]uint16, 0, n)
	for i := 0; i < n; i++ {
		qos := byte(1 + i%2)
		require.NoError(t, s.Publish("rmr", []byte(strconv.Itoa(i)), qos, false))
		p := old.expectPublish()
		require.Equal(t, qos, p.QoS)
		sent = append(sent, p.PacketID)
	}
	old.kill()

	sub, _ := dialV5(t, s, "rmr", func(cp *codec.Connect) {
		cp.CleanStart = false
		cp.Properties.SessionExpiry = 60
		cp.Properties.ReceiveMaximum = 1
	})
	for i := 0; i < n; i++ {
		p := sub.expectPublish()
		require.Equal(t, strconv.Itoa(i), string(p.Payload))
		require.True(t, p.Dup)
		require.Equal(t, sent[i], p.PacketID, "its packet identifier")
		sub.expectNothing(e2eSilent / 3) // one at a time
		if p.QoS == 1 {
			sub.ack(codec.PUBACK, p.PacketID)
			continue
		}
		sub.ack(codec.PUBREC, p.PacketID)
		sub.expectAck(codec.PUBREL, p.PacketID)
		sub.ack(codec.PUBCOMP, p.PacketID)
	}
	pub.publish("rmr", "new", 1, false, 1)
	pub.expectAck(codec.PUBACK, 1)
	p := sub.expectPublish()
	require.Equal(t, "new", string(p.Payload))
	require.False(t, p.Dup)
}

// TestE2EV5ReceiveMaximumInbound: a client with more unacknowledged QoS 2
// PUBLISH packets than the server's Receive Maximum is disconnected with
// 0x93 (MQTT 5.0 section 3.3.4).
func TestE2EV5ReceiveMaximumInbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ReceiveMaximum: 3})
	c, ca := dialV5(t, s, "rmi", nil)
	require.Equal(t, uint16(3), ca.Properties.ReceiveMaximum)
	for id := uint16(1); id <= 3; id++ {
		c.send(&codec.Publish{QoS: 2, PacketID: id, Topic: []byte("t"), Payload: []byte("x")})
		c.expect(codec.PUBREC) // no PUBREL: the flow stays open
	}
	c.send(&codec.Publish{QoS: 2, PacketID: 4, Topic: []byte("t"), Payload: []byte("x")})
	expectDisconnect(t, c, codec.ReceiveMaximumExceeded)
}

// TestE2EV5MaximumPacketSizeOutbound: a message larger than the client's
// Maximum Packet Size is not sent to it [MQTT-3.1.2-25]; a QoS 1 one is
// treated as delivered, so later messages still flow.
func TestE2EV5MaximumPacketSizeOutbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub, _ := dialV5(t, s, "mps-sub", func(cp *codec.Connect) { cp.Properties.MaximumPacketSize = 100 })
	sub.subscribe(1, "mps", 1)
	pub := newPaho5(t, s, "mps-pub", nil)
	big := make([]byte, 200)
	for _, p := range []struct {
		qos     byte
		payload []byte
	}{{0, big}, {1, big}, {0, []byte("small0")}, {1, []byte("small1")}} {
		pub.publish(t, &paho.Publish{Topic: "mps", QoS: p.qos, Payload: p.payload})
	}
	p := sub.expectPublish()
	require.Equal(t, "small0", string(p.Payload))
	p = sub.expectPublish()
	require.Equal(t, "small1", string(p.Payload))
	require.Equal(t, uint64(2), s.Stats().DroppedTooLarge)
}

// TestE2EV5MaximumPacketSizeInbound: a packet larger than the server's
// Maximum Packet Size (sent in CONNACK) ends the connection with 0x95
// [MQTT-3.2.2-15? server side: MQTT 5.0 section 3.2.2.3.6].
func TestE2EV5MaximumPacketSizeInbound(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxPacketSize: 256})
	c, ca := dialV5(t, s, "mpsi", nil)
	require.Equal(t, uint32(256), ca.Properties.MaximumPacketSize)
	c.send(&codec.Publish{Topic: []byte("t"), Payload: make([]byte, 300)})
	expectDisconnect(t, c, codec.PacketTooLarge)
}

// TestE2EV5SubscriptionIdentifiers: a message matching several
// subscriptions of a client carries each one's identifier
// [MQTT-3.3.4-3] [MQTT-3.3.4-4], and so does a retained message sent for a
// new subscription; paho.golang reads the identifier.
func TestE2EV5SubscriptionIdentifiers(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := newPaho5(t, s, "sid-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "sid/r", QoS: 1, Retain: true, Payload: []byte("kept")})

	c, _ := dialV5(t, s, "sid-raw", nil)
	c.send(&codec.Subscribe{PacketID: 1, Properties: codec.Properties{SubscriptionIDs: []uint32{3}},
		Subscriptions: []codec.Subscription{{Filter: []byte("sid/+"), QoS: 1}}})
	c.expect(codec.SUBACK)
	p := c.expectPublish()
	require.Equal(t, "kept", string(p.Payload))
	require.Equal(t, []uint32{3}, p.Properties.SubscriptionIDs, "retained message for a new subscription")
	c.ack(codec.PUBACK, p.PacketID)
	c.send(&codec.Subscribe{PacketID: 2, Properties: codec.Properties{SubscriptionIDs: []uint32{700}},
		Subscriptions: []codec.Subscription{{Filter: []byte("sid/#"), QoS: 1, RetainHandling: 2}}})
	c.expect(codec.SUBACK)
	c.send(&codec.Subscribe{PacketID: 3, Subscriptions: []codec.Subscription{{Filter: []byte("sid/x"), RetainHandling: 2}}})
	c.expect(codec.SUBACK)

	pub.publish(t, &paho.Publish{Topic: "sid/x", QoS: 1, Payload: []byte("both")})
	p = c.expectPublish()
	require.ElementsMatch(t, []uint32{3, 700}, p.Properties.SubscriptionIDs)

	ps := newPaho5(t, s, "sid-paho", nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	id := 42
	_, err := ps.c.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "sid/y", QoS: 1}}})
	require.NoError(t, err)
	pub.publish(t, &paho.Publish{Topic: "sid/y", QoS: 1, Payload: []byte("one")})
	m := ps.next(t)
	require.NotNil(t, m.Properties.SubscriptionIdentifier)
	require.Equal(t, 42, *m.Properties.SubscriptionIdentifier)
}

// TestE2EV5NoLocal: with No Local a client does not receive its own
// messages [MQTT-3.8.3-3]; other subscribers do.
func TestE2EV5NoLocal(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	me := newPaho5(t, s, "nl-me", nil)
	me.subscribe(t, paho.SubscribeOptions{Topic: "nl/#", QoS: 1, NoLocal: true})
	other := newPaho5(t, s, "nl-other", nil)
	other.subscribe(t, paho.SubscribeOptions{Topic: "nl/#", QoS: 1})
	me.publish(t, &paho.Publish{Topic: "nl/a", QoS: 1, Payload: []byte("mine")})
	require.Equal(t, "mine", string(other.next(t).Payload))
	me.none(t, 300*time.Millisecond)
	other.publish(t, &paho.Publish{Topic: "nl/a", QoS: 1, Payload: []byte("theirs")})
	require.Equal(t, "theirs", string(me.next(t).Payload))
}

// TestE2EV5SubackUnsubackReasonCodes: SUBACK carries one Reason Code per
// filter, in the order of the SUBSCRIBE [MQTT-3.8.4-6] [MQTT-3.9.3-1],
// each the QoS granted [MQTT-3.8.4-7], which is at most the server's
// Maximum QoS (a server without QoS 2 still accepts a request for it
// [MQTT-3.2.2-10]); UNSUBACK carries one per filter in order
// [MQTT-3.11.3-1], 0x00 for a subscription removed and 0x11 No
// subscription existed for one that was not there (MQTT 5.0 section
// 3.11.3), and the removed one gets no more messages while the others do.
func TestE2EV5SubackUnsubackReasonCodes(t *testing.T) {
	t.Parallel()
	maxQoS := byte(1)
	s := startServer(t, Options{MaxQoS: &maxQoS})
	c := newPaho5(t, s, "codes", nil)
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	sa, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "codes/a", QoS: 2}, {Topic: "codes/b", QoS: 0}, {Topic: "codes/c", QoS: 1}}})
	require.NoError(t, err)
	require.Equal(t, []byte{1, 0, 1}, sa.Reasons, "granted QoS per filter, capped at Maximum QoS 1")

	ua, err := c.c.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"codes/none", "codes/a", "codes/a"}})
	require.NoError(t, err)
	require.Equal(t, []byte{byte(codec.NoSubscriptionExisted), byte(codec.Success), byte(codec.NoSubscriptionExisted)},
		ua.Reasons, "the second codes/a was removed by the first")

	pub := newPaho5(t, s, "codes-pub", nil)
	for _, topic := range []string{"codes/a", "codes/b", "codes/c"} {
		pub.publish(t, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(topic)})
	}
	require.Equal(t, "codes/b", c.next(t).Topic)
	m := c.next(t)
	require.Equal(t, "codes/c", m.Topic)
	require.Equal(t, byte(1), m.QoS)
	c.none(t, 200*time.Millisecond)
}

// TestE2EV5RetainHandling: Retain Handling 0 sends retained messages at
// every subscribe, 1 only when the subscription is new, 2 never
// [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]; Retain As Published keeps
// the retain flag on live messages [MQTT-3.3.1-12] and without it the flag
// is cleared [MQTT-3.3.1-13].
func TestE2EV5RetainHandling(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := newPaho5(t, s, "rh-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "rh/t", QoS: 1, Retain: true, Payload: []byte("r")})

	for rh, wantTwice := range map[byte][2]bool{0: {true, true}, 1: {true, false}, 2: {false, false}} {
		c := newPaho5(t, s, "rh-"+strconv.Itoa(int(rh)), nil)
		for i := 0; i < 2; i++ {
			c.subscribe(t, paho.SubscribeOptions{Topic: "rh/#", QoS: 1, RetainHandling: rh})
			if wantTwice[i] {
				m := c.next(t)
				require.True(t, m.Retain, "RH %d subscribe %d", rh, i)
			} else {
				c.none(t, 200*time.Millisecond)
			}
		}
	}

	rap := newPaho5(t, s, "rh-rap", nil)
	rap.subscribe(t, paho.SubscribeOptions{Topic: "rh/live", QoS: 1, RetainAsPublished: true})
	plain := newPaho5(t, s, "rh-plain", nil)
	plain.subscribe(t, paho.SubscribeOptions{Topic: "rh/live", QoS: 1})
	pub.publish(t, &paho.Publish{Topic: "rh/live", QoS: 1, Retain: true, Payload: []byte("l")})
	require.True(t, rap.next(t).Retain, "Retain As Published")
	require.False(t, plain.next(t).Retain)
}

// TestE2EV5SharedSubscription: messages to a shared subscription are
// spread over its members (each message to one), no retained message is
// sent when a shared subscription is made (MQTT 5.0 section 4.8.2), and
// the unacknowledged QoS 1 messages of a member that disconnects go to
// another member.
func TestE2EV5SharedSubscription(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := newPaho5(t, s, "sh-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "sh/t", QoS: 1, Retain: true, Payload: []byte("retained")})

	a := newPaho5(t, s, "sh-a", nil)
	a.subscribe(t, paho.SubscribeOptions{Topic: "$share/g/sh/#", QoS: 1})
	b, _ := dialV5(t, s, "sh-b", nil)
	b.subscribe(1, "$share/g/sh/#", 1)
	a.none(t, 200*time.Millisecond) // no retained message for a shared subscription

	const n = 100
	for i := 0; i < n; i++ {
		pub.publish(t, &paho.Publish{Topic: "sh/t", QoS: 1, Payload: []byte(strconv.Itoa(i))})
	}
	// b reads what its window lets through and acknowledges nothing; the
	// rest of its share waits in its session queue.
	var toB []string
	for {
		p, err := b.next(300 * time.Millisecond)
		if err != nil {
			break
		}
		toB = append(toB, string(p.(*codec.Publish).Payload))
	}
	seenA := map[string]bool{}
	for len(a.msgs) > 0 {
		seenA[string((<-a.msgs).Payload)] = true
	}
	require.Greater(t, len(seenA), n/4, "load spread: a got %d of %d", len(seenA), n)
	require.Greater(t, len(toB), n/4, "load spread: b got %d of %d", len(toB), n)

	// b disconnects without acknowledging: everything it had, in flight or
	// queued, goes to a.
	b.kill()
	for len(seenA) < n {
		v := string(a.next(t).Payload)
		require.False(t, seenA[v], "message %s delivered to a twice", v)
		seenA[v] = true
	}
	for _, v := range toB {
		require.True(t, seenA[v], "message %s of the lost member was not redelivered", v)
	}
}

// TestE2EV5WillProperties: the will's properties reach its subscribers
// like a PUBLISH's [MQTT-3.1.3-10], and its Message Expiry Interval
// counts from when the will is published, not from CONNECT.
func TestE2EV5WillProperties(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := newPaho5(t, s, "wprop-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "wprop/#", QoS: 1})

	c, _ := dialV5(t, s, "wprop-dev", func(cp *codec.Connect) {
		cp.WillFlag = true
		cp.Will = codec.Will{QoS: 1, Topic: []byte("wprop/gone"), Payload: []byte("bye"),
			Properties: codec.Properties{PayloadFormat: 1, MessageExpiry: 3, ContentType: []byte("text/plain"),
				ResponseTopic: []byte("wprop/reply"), CorrelationData: []byte{9},
				User: []codec.UserProperty{{Key: []byte("k"), Value: []byte("v")}}}}
	})
	time.Sleep(2 * time.Second) // longer than the expiry left if it counted from CONNECT
	c.kill()

	m := sub.next(t)
	require.Equal(t, "bye", string(m.Payload))
	require.NotNil(t, m.Properties)
	require.Equal(t, "text/plain", m.Properties.ContentType)
	require.Equal(t, "wprop/reply", m.Properties.ResponseTopic)
	require.Equal(t, []byte{9}, m.Properties.CorrelationData)
	require.Equal(t, paho.UserProperties{{Key: "k", Value: "v"}}, m.Properties.User)
	require.NotNil(t, m.Properties.PayloadFormat)
	require.NotNil(t, m.Properties.MessageExpiry)
	require.Equal(t, uint32(3), *m.Properties.MessageExpiry, "expiry counts from publication")
}

// TestE2EV5AutopahoResumesSessionAfterNetworkCut: autopaho (paho.golang's
// reconnecting client) with a Session Expiry Interval loses its network
// connection; a QoS 1 message published meanwhile waits in its session and
// arrives after autopaho reconnects with Clean Start = 0 and the broker
// answers Session Present = 1 [MQTT-3.1.2-23] [MQTT-3.2.2-3].
func TestE2EV5AutopahoResumesSessionAfterNetworkCut(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	u, err := url.Parse("mqtt://" + s.Addr().String())
	require.NoError(t, err)

	var mu sync.Mutex
	var conn net.Conn
	ups := make(chan bool, 4) // Session Present of each connection
	msgs := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		SessionExpiryInterval: 60, ConnectRetryDelay: 100 * time.Millisecond, ConnectTimeout: e2eWait,
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", u.Host)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			ups <- ca.SessionPresent
			if !ca.SessionPresent {
				go func() {
					_, _ = cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "auto/#", QoS: 1}}})
					msgs <- "subscribed"
				}()
			}
		},
		ClientConfig: paho.ClientConfig{ClientID: "autopaho-dev",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				msgs <- string(pr.Packet.Payload)
				return true, nil
			}}},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cm.Disconnect(context.Background()) })
	require.False(t, <-ups, "first connection: new session")
	require.Equal(t, "subscribed", <-msgs)

	pub := newPaho5(t, s, "autopaho-pub", nil)
	pub.publish(t, &paho.Publish{Topic: "auto/a", QoS: 1, Payload: []byte("before")})
	require.Equal(t, "before", <-msgs)

	mu.Lock()
	_ = conn.Close() // the network goes away; the broker keeps the session
	mu.Unlock()
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= 1 }, e2eWait, 10*time.Millisecond)
	pub.publish(t, &paho.Publish{Topic: "auto/a", QoS: 1, Payload: []byte("during")})

	select {
	case present := <-ups:
		require.True(t, present, "reconnection: the session was kept")
	case <-time.After(e2eWait):
		t.Fatal("autopaho did not reconnect")
	}
	// "before" may come again first: the cut can beat autopaho's PUBACK,
	// and an unacknowledged QoS 1 message is resent [MQTT-4.4.0-1].
	deadline := time.After(e2eWait)
	for {
		select {
		case m := <-msgs:
			if m == "before" {
				continue
			}
			require.Equal(t, "during", m)
			return
		case <-deadline:
			t.Fatal("the message queued during the outage was not delivered")
		}
	}
}

// TestE2EV5PropertyIdentifierTwoBytes: a PUBLISH whose property identifier
// is a Variable Byte Integer in more bytes than needed (0x81 0x00 for the
// payload format indicator) is malformed [MQTT-1.5.5-1]: DISCONNECT 0x81.
// The broker used to accept it and then crash copying the property block
// for a subscriber.
func TestE2EV5PropertyIdentifierTwoBytes(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := newPaho5(t, s, "pid2-sub", nil)
	sub.subscribe(t, paho.SubscribeOptions{Topic: "pid2", QoS: 0})
	c, _ := dialV5(t, s, "pid2-pub", nil)
	c.sendBytes([]byte{0x30, 10, 0, 4, 'p', 'i', 'd', '2', 3, 0x81, 0x00, 0x01})
	expectDisconnect(t, c, codec.MalformedPacket)
	sub.none(t, 200*time.Millisecond)
	p := newPaho5(t, s, "pid2-pub2", nil)
	p.publish(t, &paho.Publish{Topic: "pid2", QoS: 1, Payload: []byte("still up")})
	require.Equal(t, "still up", string(sub.next(t).Payload))
}

// TestE2EV5ForwardedFrames: a 5.0 publisher's burst of QoS 0 messages
// (topic aliases, user properties that change every third message, so that
// the publisher's user property memo both serves and misses, payloads
// empty, small and over inlinePayload, one QoS 1 message downgraded)
// reaches 5.0 subscribers with and without topic aliases, one whose five
// subscriptions (two match every topic) add up to 20 bytes of
// identifiers, and a 3.1.1 one, each alone on a topic and all together on
// another, each on whichever loop it landed: every frame must carry
// exactly the publisher's properties and payload, in order, whether its
// header was encoded for it or shared with the previous recipient
// [MQTT-3.3.2-17/18] [MQTT-4.6.0-6].
func TestE2EV5ForwardedFrames(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	type subscriber struct {
		name    string
		c       *rawClient
		subIDs  []uint32
		aliases map[uint16]string
	}
	var subs []*subscriber
	for _, name := range []string{"alias", "noalias", "ids", "v311"} {
		sb := &subscriber{name: name, aliases: map[uint16]string{}}
		switch name {
		case "alias":
			sb.c, _ = dialV5(t, s, "fw-"+name, func(cp *codec.Connect) { cp.Properties.TopicAliasMaximum = 3 })
		case "v311":
			sb.c = dialRaw(t, s)
			sb.c.mustConnect(connectPacket("fw-"+name, true, 60))
		default:
			sb.c, _ = dialV5(t, s, "fw-"+name, nil)
		}
		if name == "ids" {
			// Four-byte identifiers: more than the room keeps for one.
			sb.subIDs = []uint32{100_000_000, 200_000_000, 268_435_455, 150_000_000, 250_000_000}
			for i, f := range []string{name + "/#", "all/#", "+/+", name + "/+", "#"} {
				sb.c.send(&codec.Subscribe{PacketID: uint16(i + 1), Properties: codec.Properties{SubscriptionIDs: sb.subIDs[i : i+1]},
					Subscriptions: []codec.Subscription{{Filter: []byte(f)}}})
				sb.c.expect(codec.SUBACK)
			}
		} else {
			sb.c.subscribe(1, name+"/#", 0)
			sb.c.subscribe(2, "all/#", 0)
		}
		subs = append(subs, sb)
	}
	pub, _ := dialV5(t, s, "fw-pub", nil)

	type msg struct {
		topic   string
		payload []byte
		user    []codec.UserProperty
	}
	topics := []string{"alias/t", "noalias/t", "ids/t", "v311/t", "all/t"}
	var sent []msg
	var burst []byte
	defined := map[string]bool{}
	for i := range 120 {
		m := msg{topic: topics[i%len(topics)], payload: []byte(fmt.Sprintf("message %d", i)),
			user: []codec.UserProperty{{Key: []byte("site"), Value: []byte("plant-7")},
				{Key: []byte("batch"), Value: []byte(strconv.Itoa(i / 3))}}}
		switch {
		case i%7 == 3:
			m.payload = bytes.Repeat([]byte{byte(i)}, inlinePayload+40)
		case i%11 == 5:
			m.payload = nil
		}
		p := codec.Publish{Topic: []byte(m.topic), Payload: m.payload,
			Properties: codec.Properties{TopicAlias: uint16(1 + i%len(topics)), User: m.user}}
		if defined[m.topic] {
			p.Topic = nil
		}
		defined[m.topic] = true
		if i == 60 {
			p.QoS, p.PacketID = 1, 1 // delivered at QoS 0
		}
		burst = p.AppendTo(burst, codec.V5)
		sent = append(sent, m)
	}
	pub.sendBytes(burst) // one write: routed in few events, headers batched
	pub.expectAck(codec.PUBACK, 1)

	for _, sb := range subs {
		for _, m := range sent {
			if m.topic != sb.name+"/t" && m.topic != "all/t" && sb.name != "ids" { // +/+ has them all
				continue
			}
			p := sb.c.expectPublish()
			topic := string(p.Topic)
			if sb.name == "v311" {
				require.Equal(t, m.topic, topic, "%s", sb.name)
				require.Equal(t, m.payload, nilIfEmpty(p.Payload), "%s: %s", sb.name, m.topic)
				continue
			}
			if a := p.Properties.TopicAlias; a != 0 {
				require.Equal(t, "alias", sb.name, "an alias to a client that allows none")
				if topic == "" {
					topic = sb.aliases[a]
				} else {
					sb.aliases[a] = topic
				}
			}
			require.Equal(t, m.topic, topic, "%s", sb.name)
			require.Equal(t, m.payload, nilIfEmpty(p.Payload), "%s: %s", sb.name, m.topic)
			require.Equal(t, m.user, p.Properties.User, "%s: %s", sb.name, m.topic)
			require.Zero(t, p.QoS)
			if sb.name == "ids" {
				want := []uint32{sb.subIDs[2], sb.subIDs[4]}
				switch m.topic {
				case "ids/t":
					want = append(want, sb.subIDs[0], sb.subIDs[3])
				case "all/t":
					want = append(want, sb.subIDs[1])
				}
				require.ElementsMatch(t, want, p.Properties.SubscriptionIDs, "%s", m.topic)
			} else {
				require.Empty(t, p.Properties.SubscriptionIDs)
			}
		}
		sb.c.expectNothing(e2eSilent)
	}
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// TestE2EV5PubrecForPendingPublish: a session resumed with a smaller
// Receive Maximum keeps a QoS 2 PUBLISH of the earlier connection pending
// (not sent again yet); the client, which had it, sends PUBREC for it
// anyway. The flow goes on from there (PUBREL), and the PUBLISH, whose
// message is released at PUBREC, is not sent again once room opens: that
// wrote a PUBLISH without a message and took the broker down.
func TestE2EV5PubrecForPendingPublish(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	old := connectRaw(t, s, connectPacket("rmp", false, 0))
	require.Equal(t, byte(2), old.subscribe(1, "rmp", 2))
	var sent []uint16
	for i := 0; i < 2; i++ {
		require.NoError(t, s.Publish("rmp", []byte(strconv.Itoa(i)), 2, false))
		sent = append(sent, old.expectPublish().PacketID)
	}
	old.kill()

	sub, _ := dialV5(t, s, "rmp", func(cp *codec.Connect) {
		cp.CleanStart = false
		cp.Properties.SessionExpiry = 60
		cp.Properties.ReceiveMaximum = 1
	})
	p := sub.expectPublish()
	require.Equal(t, "0", string(p.Payload))
	require.Equal(t, sent[0], p.PacketID)
	sub.ack(codec.PUBREC, sent[1]) // the one still pending
	sub.expectAck(codec.PUBREL, sent[1])
	sub.ack(codec.PUBREC, sent[0])
	sub.expectAck(codec.PUBREL, sent[0])
	sub.ack(codec.PUBCOMP, sent[0]) // room: nothing is pending any more
	sub.expectNothing(e2eSilent)
	sub.ack(codec.PUBCOMP, sent[1])

	require.NoError(t, s.Publish("rmp", []byte("new"), 2, false))
	p = sub.expectPublish()
	require.Equal(t, "new", string(p.Payload))
	require.False(t, p.Dup)
	sub.ack(codec.PUBREC, p.PacketID)
	sub.expectAck(codec.PUBREL, p.PacketID)
	sub.ack(codec.PUBCOMP, p.PacketID)
	require.Eventually(t, func() bool { return s.Stats().Inflight == 0 }, e2eWait, 10*time.Millisecond)
}

// TestE2EV5PubrecAgainGetsPubrel: a PUBREC repeated for a QoS 2 message
// already released (PUBREL sent, PUBCOMP awaited) is answered with PUBREL
// Success: the broker holds that identifier. It was answered 0x92 (Packet
// Identifier not found).
func TestE2EV5PubrecAgainGetsPubrel(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub, _ := dialV5(t, s, "rec2", nil)
	require.Equal(t, byte(2), sub.subscribe(1, "rec2", 2))
	require.NoError(t, s.Publish("rec2", []byte("x"), 2, false))
	p := sub.expectPublish()
	for range 2 {
		sub.ack(codec.PUBREC, p.PacketID)
		a, ok := sub.expect(codec.PUBREL).(*codec.Ack)
		require.True(t, ok)
		require.Equal(t, p.PacketID, a.PacketID)
		require.Equal(t, codec.Success, a.ReasonCode)
	}
	sub.ack(codec.PUBCOMP, p.PacketID)
	require.Eventually(t, func() bool { return s.Stats().Inflight == 0 }, e2eWait, 10*time.Millisecond)
}

// TestE2EV5ResponseInformation: with Options.ResponseInformation set, a
// paho.golang client that asks for Response Information (Request Response
// Information 1) finds it in CONNACK; one that does not ask gets none
// [MQTT-3.1.2-28], nor does anyone when the option is empty. Start refuses
// a value that is not a valid MQTT string.
func TestE2EV5ResponseInformation(t *testing.T) {
	t.Parallel()
	connect := func(s *Server, id string, ask bool) string {
		t.Helper()
		cp := &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
			Properties: &paho.ConnectProperties{RequestResponseInfo: ask}}
		_, ca, err := pahoV5(t, s, nil, cp)
		require.NoError(t, err)
		return ca.Properties.ResponseInfo
	}
	s := startServer(t, Options{ResponseInformation: "responses/"})
	require.Equal(t, "responses/", connect(s, "asks", true))
	require.Empty(t, connect(s, "does-not-ask", false), "[MQTT-3.1.2-28]")
	raw := dialRaw(t, s)
	p := connectPacket("raw", true, 0)
	p.Version = codec.V5
	p.Properties.RequestResponseInfo = 1
	require.Equal(t, "responses/", string(raw.mustConnect(p).Properties.ResponseInfo))

	none := startServer(t, Options{})
	require.Empty(t, connect(none, "asks-none", true))

	for _, bad := range []string{"a\x00b", "\xff", string(bytes.Repeat([]byte("a"), 65536))} {
		err := New(Options{Listen: "127.0.0.1:0", ResponseInformation: bad}).Start()
		require.ErrorContains(t, err, "response information")
	}
}
