package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2EClientsCannotPublishToSYS checks that $SYS topics are the
// broker's (MQTT 5.0 section 4.7.2: the Server SHOULD prevent Clients from
// using such Topic Names to exchange messages; Mosquitto refuses them
// too): a 5.0 client's QoS 1 PUBLISH gets PUBACK 0x87, a 3.1.1 client's the
// usual PUBACK, and neither is delivered or retained; a will on $SYS
// refuses the CONNECT (0x87, 3.x return code 5). A topic that only starts
// with the same letters ($SYSTEM) is a client's like any other $ topic,
// and the embedding program publishes $SYS through Server.Publish.
// (Found by exploratory QA: a client could replace the retained
// $SYS/broker/version every subscriber reads.)
func TestE2EClientsCannotPublishToSYS(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	sub := connectRaw(t, s, connectPacket("sys-sub", true, 0))
	require.Equal(t, byte(0), sub.subscribe(1, "$SYS/#", 0))
	require.Equal(t, byte(0), sub.subscribe(2, "$SYSTEM/#", 0))

	p5 := connectRaw(t, s, connect5("sys-pub5", true, 0, 0))
	p5.send(&codec.Publish{Topic: []byte("$SYS/broker/version"), Payload: []byte("forged"), QoS: 1, Retain: true, PacketID: 1})
	a := p5.expect(codec.PUBACK).(*codec.Ack)
	require.Equal(t, codec.NotAuthorized, a.ReasonCode)
	p5.send(&codec.Publish{Topic: []byte("$SYS"), Payload: []byte("forged"), QoS: 0})
	p3 := connectRaw(t, s, connectPacket("sys-pub3", true, 0))
	p3.publish("$SYS/broker/uptime", "forged", 1, true, 2)
	p3.expectAck(codec.PUBACK, 2)
	sub.expectNothing(e2eSilent)

	p3.publish("$SYSTEM/x", "ok", 0, false, 0)
	require.Equal(t, "$SYSTEM/x", string(sub.expectPublish().Topic))
	require.NoError(t, s.Publish("$SYS/broker/version", []byte("loopmq"), 0, true))
	require.Equal(t, "loopmq", string(sub.expectPublish().Payload))

	late := connectRaw(t, s, connectPacket("sys-late", true, 0))
	require.Equal(t, byte(0), late.subscribe(1, "$SYS/broker/#", 0))
	p := late.expectPublish()
	require.Equal(t, "$SYS/broker/version", string(p.Topic), "only the broker's own retained value")
	require.Equal(t, "loopmq", string(p.Payload))
	late.expectNothing(e2eSilent)

	w5 := dialRaw(t, s)
	require.Equal(t, codec.NotAuthorized, w5.connect(withWill5(connect5("sys-will5", true, 0, 0), "$SYS/x", "w", 0, 0)).ReasonCode)
	w3 := dialRaw(t, s)
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedNotAuthorized),
		w3.connect(withWill(connectPacket("sys-will3", true, 0), "$SYS/x", "w", 0, false)).ReasonCode)
}
