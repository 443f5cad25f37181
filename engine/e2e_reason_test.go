package engine

import (
	"strings"
	"testing"
	"unicode/utf8"

	pahov5 "github.com/eclipse/paho.golang/paho"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// Reason Strings: a 5.0 client that did not send Request Problem
// Information 0 is told why an acknowledgement failed; one that did gets
// the codes alone [MQTT-3.1.2-29]; no packet grows past the client's
// Maximum Packet Size for its Reason String.

// TestE2EV5ReasonStringsPaho checks the Reason String of a refusing
// CONNACK through paho.golang [MQTT 5.0 section 3.2.2.3.9]. Those of
// PUBACK, PUBREC and SUBACK: TestAuthzPublishDeniedV5Paho,
// TestAuthzSubscribeDeniedPaho.
func TestE2EV5ReasonStringsPaho(t *testing.T) {
	allow := false
	s, _ := authzServer(t, Options{AllowAnonymous: &allow})
	_, ca, err := pahoV5(t, s, nil, &pahov5.Connect{ClientID: "anon5", CleanStart: true, KeepAlive: 30})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(codec.NotAuthorized), ca.ReasonCode)
	require.Equal(t, "authentication failed", ca.Properties.ReasonString)
}

// TestE2EV5ReasonStringsRaw checks the Reason Strings paho.golang does not
// show: PUBCOMP and PUBREL 0x92 [MQTT 5.0 sections 3.7.2.2.2, 3.6.2.2.2],
// a CONNACK refusing a will topic, and none to a client that sent Request
// Problem Information 0, except in CONNACK, where it is still allowed
// [MQTT-3.1.2-29].
func TestE2EV5ReasonStringsRaw(t *testing.T) {
	s, _ := authzServer(t, Options{})
	for _, asked := range []bool{true, false} {
		p := userConnect5("why-raw", "bob")
		if !asked {
			p.Properties = codec.Properties{Present: presentSet(codec.PropRequestProblemInfo)}
		}
		c := connectRaw(t, s, p)
		want := func(text string) string {
			if asked {
				return text
			}
			return ""
		}

		c.send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 7})
		a := c.expect(codec.PUBCOMP).(*codec.Ack)
		require.Equal(t, codec.PacketIdentifierNotFound, a.ReasonCode)
		require.Equal(t, want("PUBREL for a packet identifier with no QoS 2 PUBLISH awaiting release"),
			string(a.Properties.ReasonString), "asked %v", asked)
		c.send(&codec.Ack{PacketType: codec.PUBREC, PacketID: 8})
		a = c.expect(codec.PUBREL).(*codec.Ack)
		require.Equal(t, codec.PacketIdentifierNotFound, a.ReasonCode)
		require.Equal(t, want("PUBREC for a packet identifier with no QoS 2 PUBLISH in flight"),
			string(a.Properties.ReasonString), "asked %v", asked)

		c.publish("alice/x", "x", 1, false, 9)
		a = c.expect(codec.PUBACK).(*codec.Ack)
		require.Equal(t, codec.NotAuthorized, a.ReasonCode)
		require.Equal(t, want("not authorized to publish to this topic"), string(a.Properties.ReasonString))

		c.send(&codec.Subscribe{PacketID: 10, Subscriptions: []codec.Subscription{{Filter: []byte("secret/a"), QoS: 1}}})
		sa := c.expect(codec.SUBACK).(*codec.Suback)
		require.Equal(t, []codec.ReasonCode{codec.NotAuthorized}, sa.ReasonCodes)
		require.Equal(t, want(`"secret/a": not authorized`), string(sa.Properties.ReasonString))
		c.disconnect()

		r := dialRaw(t, s)
		wp := withWill(userConnect5("why-will", "bob"), "alice/will", "w", 0, false)
		wp.Properties = p.Properties
		ca := r.connect(wp)
		require.Equal(t, codec.NotAuthorized, ca.ReasonCode)
		require.Equal(t, "not authorized to publish to the will topic alice/will", string(ca.Properties.ReasonString))
	}
}

// TestE2EV5ReasonStringsWithinMaximumPacketSize checks that a Reason
// String is left out when the packet with it would be larger than the
// client's Maximum Packet Size, and the packet sent without it
// [MQTT-3.4.2-2] [MQTT-3.9.2-1] [MQTT-3.2.2-19].
func TestE2EV5ReasonStringsWithinMaximumPacketSize(t *testing.T) {
	allow := false
	s, _ := authzServer(t, Options{AllowAnonymous: &allow})
	p := userConnect5("small", "bob")
	p.Properties.MaximumPacketSize = 24
	c := connectRaw(t, s, p)
	c.publish("alice/x", "x", 1, false, 3)
	a := c.expect(codec.PUBACK).(*codec.Ack)
	require.Equal(t, codec.NotAuthorized, a.ReasonCode)
	require.Empty(t, a.Properties.ReasonString)
	c.send(&codec.Subscribe{PacketID: 4, Subscriptions: []codec.Subscription{{Filter: []byte("secret/a"), QoS: 1}}})
	sa := c.expect(codec.SUBACK).(*codec.Suback)
	require.Equal(t, []codec.ReasonCode{codec.NotAuthorized}, sa.ReasonCodes)
	require.Empty(t, sa.Properties.ReasonString)
	// PUBCOMP 0x92 with a Reason String is 9 bytes and the text.
	c.send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 5})
	a = c.expect(codec.PUBCOMP).(*codec.Ack)
	require.Equal(t, codec.PacketIdentifierNotFound, a.ReasonCode)
	require.Empty(t, a.Properties.ReasonString)

	r := dialRaw(t, s)
	anon := &codec.Connect{Version: codec.V5, ClientID: []byte("anon-small"), CleanStart: true}
	anon.Properties.MaximumPacketSize = 16
	ca := r.connect(anon)
	require.Equal(t, codec.NotAuthorized, ca.ReasonCode)
	require.Empty(t, ca.Properties.ReasonString)
	// CONNACK 0x87 with "authentication failed" is 29 bytes.
	for size, want := range map[uint32]string{28: "", 29: "authentication failed"} {
		r = dialRaw(t, s)
		anon.Properties.MaximumPacketSize = size
		ca = r.connect(anon)
		require.Equal(t, codec.NotAuthorized, ca.ReasonCode)
		require.Equal(t, want, string(ca.Properties.ReasonString), "Maximum Packet Size %d", size)
	}
}

// TestE2EV5ReasonStringBounded checks that a Reason String quoting what a
// client sent is cut at 512 bytes, between characters, and stays valid
// UTF-8 [MQTT-1.5.4-1]: here a refused method name of 1,000 "é".
func TestE2EV5ReasonStringBounded(t *testing.T) {
	s := startServer(t, Options{})
	c := dialRaw(t, s)
	p := &codec.Connect{Version: codec.V5, ClientID: []byte("long-why"), CleanStart: true}
	p.Properties.AuthMethod = []byte(strings.Repeat("é", 1000))
	ca := c.connect(p)
	require.Equal(t, codec.BadAuthenticationMethod, ca.ReasonCode)
	why := ca.Properties.ReasonString
	require.LessOrEqual(t, len(why), 512)
	require.True(t, utf8.Valid(why))
	require.True(t, strings.HasPrefix(string(why), "unsupported authentication method éé"))
	require.True(t, strings.HasSuffix(string(why), "é..."))
}
