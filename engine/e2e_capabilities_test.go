package engine

import (
	"log/slog"
	"testing"

	pahov5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// Optional capabilities turned off (Options.MaxQoS, NoRetain,
// NoWildcardSubscriptions, NoSharedSubscriptions,
// NoSubscriptionIdentifiers; capabilities.go).

func capsOff() Options {
	q := byte(1)
	return Options{MaxQoS: &q, NoRetain: true, NoWildcardSubscriptions: true, NoSharedSubscriptions: true,
		NoSubscriptionIdentifiers: true}
}

// TestE2EV5CapabilitiesInConnackPaho checks what paho.golang reads from
// the CONNACK of a server with every optional capability off: Maximum
// QoS 1 [MQTT-3.2.2-9], Retain, Wildcard Subscription, Subscription
// Identifiers and Shared Subscription Available 0 (MQTT 5.0 sections
// 3.2.2.3.5, 3.2.2.3.11–13); TestE2EV5ConnackAdvertisesLimits checks that
// none is sent when they are on.
func TestE2EV5CapabilitiesInConnackPaho(t *testing.T) {
	t.Parallel()
	s := startServer(t, capsOff())
	_, ca, err := pahoV5(t, s, nil, &pahov5.Connect{ClientID: "caps", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)
	require.NotNil(t, ca.Properties.MaximumQoS)
	require.Equal(t, byte(1), *ca.Properties.MaximumQoS)
	require.False(t, ca.Properties.RetainAvailable)
	require.False(t, ca.Properties.WildcardSubAvailable)
	require.False(t, ca.Properties.SubIDAvailable)
	require.False(t, ca.Properties.SharedSubAvailable)

	q := byte(0)
	s0 := startServer(t, Options{MaxQoS: &q})
	_, ca, err = pahoV5(t, s0, nil, &pahov5.Connect{ClientID: "qos0", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)
	require.NotNil(t, ca.Properties.MaximumQoS, "Maximum QoS 0 is sent, though 0")
	require.Equal(t, byte(0), *ca.Properties.MaximumQoS)
	require.True(t, ca.Properties.RetainAvailable)
}

// TestE2ECapabilityMaxQoS checks Options.MaxQoS 1: a subscription asking
// for QoS 2 is granted 1 [MQTT-3.2.2-10] and gets QoS 2 messages at 1; a
// QoS 2 PUBLISH gets DISCONNECT 0x9B (5.0; MQTT 5.0 section 3.2.2.3.4)
// or a closed connection (3.1.1); a will at QoS 2 is refused with
// CONNACK 0x9B [MQTT-3.2.2-12] (3.1.1: return code 3).
func TestE2ECapabilityMaxQoS(t *testing.T) {
	t.Parallel()
	q := byte(1)
	s := startServer(t, Options{MaxQoS: &q})
	sub := connectRaw(t, s, connectPacket("mq-sub", true, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "mq/#", 2))
	require.NoError(t, s.Publish("mq/a", []byte("x"), 2, false))
	got := sub.expectPublish()
	require.Equal(t, byte(1), got.QoS)
	sub.send(&codec.Ack{PacketType: codec.PUBACK, PacketID: got.PacketID})

	c5, _ := dialV5(t, s, "mq-pub5", nil)
	c5.publish("mq/a", "two", 2, false, 1)
	d := expectDisconnect(t, c5, codec.QoSNotSupported)
	require.Contains(t, string(d.Properties.ReasonString), "above the server's Maximum QoS 1")
	c3 := connectRaw(t, s, connectPacket("mq-pub3", true, 0))
	c3.publish("mq/a", "two", 2, false, 1)
	require.Empty(t, c3.expectClosed(e2eWait))
	sub.expectNothing(e2eSilent)

	w5 := dialRaw(t, s)
	ca := w5.connect(withWill5(userConnect5("mq-will5", ""), "w", "x", 2, 0))
	require.Equal(t, codec.QoSNotSupported, ca.ReasonCode)
	require.Contains(t, string(ca.Properties.ReasonString), "will: QoS 2")
	w3 := dialRaw(t, s)
	ca = w3.connect(withWill(connectPacket("mq-will3", true, 0), "w", "x", 2, false))
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedUnavailable), ca.ReasonCode)
	require.Empty(t, w3.expectClosed(e2eWait))
}

// TestE2ECapabilityMaxQoSAfterRestart checks a broker restarted with
// MaxQoS 1 on the store of one without: a subscription granted QoS 2
// before delivers at 1, and a QoS 2 PUBLISH the session held awaiting
// PUBREL, sent again by its client [MQTT-4.4.0-1], is answered PUBREC,
// not refused, so that its flow ends.
func TestE2ECapabilityMaxQoSAfterRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	sub := connectRaw(t, s, connectPacket("mq-restored", false, 0))
	require.Equal(t, byte(2), sub.subscribe(1, "mq/#", 2))
	sub.disconnect()
	pub := connectRaw(t, s, connectPacket("mq-pub2", false, 0))
	pub.publish("other/x", "q2", 2, false, 9)
	pub.expectAck(codec.PUBREC, 9)
	pub.disconnect()

	q := byte(1)
	s = restartWith(t, s, st, Options{MaxQoS: &q})
	sub = connectRaw(t, s, connectPacket("mq-restored", false, 0))
	require.NoError(t, s.Publish("mq/a", []byte("x"), 2, false))
	require.Equal(t, byte(1), sub.expectPublish().QoS)
	pub = connectRaw(t, s, connectPacket("mq-pub2", false, 0))
	pub.publish("other/x", "q2", 2, false, 9)
	pub.expectAck(codec.PUBREC, 9)
	pub.send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 9})
	pub.expectAck(codec.PUBCOMP, 9)
	pub.publish("other/x", "new", 2, false, 10) // a new QoS 2 flow is refused
	require.Empty(t, pub.expectClosed(e2eWait))
}

// TestE2ECapabilityNoRetain checks Options.NoRetain: a PUBLISH with RETAIN
// 1 gets DISCONNECT 0x9A (5.0; MQTT 5.0 section 3.2.2.3.5) or a closed
// connection (3.1.1), a will with RETAIN 1 CONNACK 0x9A [MQTT-3.2.2-13]
// (3.1.1: return code 3), a retained message kept in the store from
// before is not sent to a new subscription, and Server.Publish's retain
// flag is ignored.
func TestE2ECapabilityNoRetain(t *testing.T) {
	s, st := startWithMemoryStore(t)
	require.NoError(t, s.Publish("nr/kept", []byte("x"), 0, true))
	s = restartWith(t, s, st, Options{NoRetain: true})
	require.NoError(t, s.Publish("nr/new", []byte("y"), 0, true))
	sub := connectRaw(t, s, connectPacket("nr-sub", true, 0))
	require.Equal(t, byte(1), sub.subscribe(1, "nr/#", 1))
	sub.expectNothing(e2eSilent)

	c5, _ := dialV5(t, s, "nr-pub5", nil)
	c5.publish("nr/a", "r", 1, true, 1)
	expectDisconnect(t, c5, codec.RetainNotSupported)
	c3 := connectRaw(t, s, connectPacket("nr-pub3", true, 0))
	c3.publish("nr/a", "r", 0, true, 0)
	require.Empty(t, c3.expectClosed(e2eWait))
	sub.expectNothing(e2eSilent)

	w5 := dialRaw(t, s)
	wp := withWill5(userConnect5("nr-will5", ""), "w", "x", 0, 0)
	wp.Will.Retain = true
	require.Equal(t, codec.RetainNotSupported, w5.connect(wp).ReasonCode)
	w3 := dialRaw(t, s)
	ca := w3.connect(withWill(connectPacket("nr-will3", true, 0), "w", "x", 0, true))
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedUnavailable), ca.ReasonCode)

	// RETAIN 0 is served as ever.
	p := connectRaw(t, s, connectPacket("nr-ok", true, 0))
	p.publish("nr/a", "plain", 1, false, 2)
	p.expectAck(codec.PUBACK, 2)
	require.Equal(t, "plain", string(sub.expectPublish().Payload))
}

// TestE2ECapabilitySubscriptions checks NoWildcardSubscriptions,
// NoSharedSubscriptions and NoSubscriptionIdentifiers. A 5.0 SUBSCRIBE
// using one is a Protocol Error: DISCONNECT 0xA2, 0x9E or 0xA1 (MQTT 5.0
// sections 3.2.2.3.11–13), nothing of it subscribed. A 3.1.1 client's
// filters that need one get SUBACK 0x80, the others are granted. The
// wildcard check looks at a shared subscription's filter.
func TestE2ECapabilitySubscriptions(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{NoWildcardSubscriptions: true, NoSharedSubscriptions: true,
		NoSubscriptionIdentifiers: true})
	sub := func(filter string, subID uint32) *codec.Subscribe {
		p := &codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("cs/a"), QoS: 1},
			{Filter: []byte(filter), QoS: 1}}}
		if subID != 0 {
			p.Properties.SubscriptionIDs = []uint32{subID}
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		p      *codec.Subscribe
		code   codec.ReasonCode
		reason string
	}{
		{"wildcard", sub("cs/+/x", 0), codec.WildcardSubscriptionsNotSupported, `"cs/+/x": wildcard subscriptions not supported`},
		{"shared", sub("$share/g/cs/b", 0), codec.SharedSubscriptionsNotSupported, `"$share/g/cs/b": shared subscriptions not supported`},
		{"identifier", sub("cs/b", 7), codec.SubscriptionIdentifiersNotSupported, `"cs/a": subscription identifiers not supported`},
	} {
		c5, _ := dialV5(t, s, "cs5-"+tc.name, nil)
		c5.send(tc.p)
		d := expectDisconnect(t, c5, tc.code)
		require.Equal(t, tc.reason, string(d.Properties.ReasonString), tc.name)
	}
	wild := startServer(t, Options{NoWildcardSubscriptions: true})
	c5, _ := dialV5(t, wild, "cs5-shared-wild", nil)
	c5.send(sub("$share/g/cs/#", 0))
	expectDisconnect(t, c5, codec.WildcardSubscriptionsNotSupported)

	filters := []codec.Subscription{{Filter: []byte("cs/+/x"), QoS: 1}, {Filter: []byte("cs/a"), QoS: 1},
		{Filter: []byte("$share/g/cs/b"), QoS: 1}, {Filter: []byte("cs/#"), QoS: 0}}
	c3 := connectRaw(t, s, connectPacket("cs3", true, 0))
	c3.send(&codec.Subscribe{PacketID: 1, Subscriptions: filters})
	f := codec.ReasonCode(codec.SubackFailureV3)
	require.Equal(t, []codec.ReasonCode{f, 1, f, f}, c3.expect(codec.SUBACK).(*codec.Suback).ReasonCodes)

	// Only cs/a was subscribed, by the 3.1.1 client.
	p := connectRaw(t, s, connectPacket("cs-pub", true, 0))
	p.publish("cs/b", "b", 1, false, 1)
	p.expectAck(codec.PUBACK, 1)
	p.publish("cs/a", "a", 1, false, 2)
	p.expectAck(codec.PUBACK, 2)
	require.Equal(t, "a", string(c3.expectPublish().Payload))
	c3.expectNothing(e2eSilent)
}

// TestE2ECapabilitiesOffAfterRestart checks a broker restarted with
// wildcard and shared subscriptions and Subscription Identifiers off, on
// the store of one that granted all three: the stored wildcard and shared
// subscriptions are dropped (their clients were told at CONNACK those are
// not available, MQTT 5.0 sections 3.2.2.3.11–12), each with a log line
// naming client and filter; a subscription that had an identifier stays,
// and its messages carry none [MQTT-3.3.4-3 applies to identifiers the
// broker supports].
func TestE2ECapabilitiesOffAfterRestart(t *testing.T) {
	s, st := startWithMemoryStore(t)
	persistent := func(cp *codec.Connect) { cp.CleanStart = false; cp.Properties.SessionExpiry = 300 }
	c, _ := dialV5(t, s, "co-sub", persistent)
	c.send(&codec.Subscribe{PacketID: 1, Properties: codec.Properties{SubscriptionIDs: []uint32{5}},
		Subscriptions: []codec.Subscription{{Filter: []byte("co/id"), QoS: 1}}})
	c.expect(codec.SUBACK)
	c.send(&codec.Subscribe{PacketID: 2, Subscriptions: []codec.Subscription{
		{Filter: []byte("co/+/w"), QoS: 1}, {Filter: []byte("$share/g/co/s"), QoS: 1}}})
	c.expect(codec.SUBACK)
	c.disconnect()

	var logs syncBuffer
	s = restartWith(t, s, st, Options{NoWildcardSubscriptions: true, NoSharedSubscriptions: true,
		NoSubscriptionIdentifiers: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	out := logs.String()
	require.Contains(t, out, `recovered subscription dropped: wildcard subscriptions not supported by configuration" client=co-sub filter=co/+/w`)
	require.Contains(t, out, `recovered subscription dropped: shared subscriptions not supported by configuration" client=co-sub filter=$share/g/co/s`)
	require.Contains(t, out, `client=co-sub filter=co/id identifier=5`)

	c, _ = dialV5(t, s, "co-sub", persistent)
	for _, topic := range []string{"co/x/w", "co/s", "co/id"} {
		require.NoError(t, s.Publish(topic, []byte(topic), 1, false))
	}
	p := c.expectPublish()
	require.Equal(t, "co/id", string(p.Topic), "only co/id is still subscribed")
	require.Empty(t, p.Properties.SubscriptionIDs)
	c.ack(codec.PUBACK, p.PacketID)
	c.expectNothing(e2eSilent)
}
