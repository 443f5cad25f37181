package engine

import (
	"sort"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2E_MQTT_3_3_1_5_Retained: a retained message is stored per topic
// [MQTT-3.3.1-5], replaced by the next one, removed by an empty payload
// [MQTT-3.3.1-10] [MQTT-3.3.1-11], and sent with retain = 1 to a new
// wildcard subscription at min(stored, granted) QoS [MQTT-3.3.1-6]
// [MQTT-3.3.1-8]; an established subscription receives retained
// publications with retain = 0 [MQTT-3.3.1-9].
func TestE2E_MQTT_3_3_1_5_Retained(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := newPaho(t, s, nil)
	eh, existing := collect(16)
	old := newPaho(t, s, nil)
	wait(t, old.Subscribe("ret/a", 2, eh))

	wait(t, pub.Publish("ret/a", 1, true, "v1"))
	require.Equal(t, pahoMsg{topic: "ret/a", payload: "v1", qos: 1}, recv(t, existing, "v1"), "retain = 0 to an established subscription")
	wait(t, pub.Publish("ret/a", 1, true, "v2")) // replaces v1
	require.Equal(t, "v2", recv(t, existing, "v2").payload)
	wait(t, pub.Publish("ret/b", 0, true, "b1"))
	wait(t, pub.Publish("ret/c", 2, true, "c1"))
	wait(t, pub.Publish("ret/c", 1, true, "")) // clears ret/c
	wait(t, pub.Publish("ret/d", 1, false, "not retained"))
	wait(t, pub.Publish("ret/x/deep", 2, true, "deep"))
	require.Equal(t, 3, s.Stats().Retained)

	byTopic := func(ms []pahoMsg) []pahoMsg {
		sort.Slice(ms, func(i, j int) bool { return ms[i].topic < ms[j].topic })
		return ms
	}
	h, got := collect(16)
	sub := newPaho(t, s, nil)
	wait(t, sub.Subscribe("ret/#", 1, h))
	ms := []pahoMsg{recv(t, got, "retained 1"), recv(t, got, "retained 2"), recv(t, got, "retained 3")}
	recvNone(t, got, e2eSilent)
	require.Equal(t, []pahoMsg{
		{topic: "ret/a", payload: "v2", qos: 1, retained: true},
		{topic: "ret/b", payload: "b1", qos: 0, retained: true},
		{topic: "ret/x/deep", payload: "deep", qos: 1, retained: true}, // stored at 2, granted 1
	}, byTopic(ms))

	// A single-level wildcard at QoS 0 sees two of them, downgraded.
	h2, got2 := collect(16)
	sub2 := newPaho(t, s, nil)
	wait(t, sub2.Subscribe("ret/+", 0, h2))
	ms = []pahoMsg{recv(t, got2, "retained 1"), recv(t, got2, "retained 2")}
	recvNone(t, got2, e2eSilent)
	require.Equal(t, []pahoMsg{
		{topic: "ret/a", payload: "v2", qos: 0, retained: true},
		{topic: "ret/b", payload: "b1", qos: 0, retained: true},
	}, byTopic(ms))

	// Live traffic to the now established subscription carries retain = 0.
	wait(t, pub.Publish("ret/a", 1, true, "v3"))
	require.Equal(t, pahoMsg{topic: "ret/a", payload: "v3", qos: 1}, recv(t, got, "live retained publish"))
	require.Equal(t, pahoMsg{topic: "ret/a", payload: "v3", qos: 0}, recv(t, got2, "live retained publish"))

	// Clearing is delivered to established subscribers as a normal message,
	// then nothing is retained for the topic any more.
	wait(t, pub.Publish("ret/a", 1, true, ""))
	require.Equal(t, pahoMsg{topic: "ret/a", payload: "", qos: 1}, recv(t, got, "clear"))
	h3, got3 := collect(16)
	sub3 := newPaho(t, s, nil)
	wait(t, sub3.Subscribe("ret/a", 1, h3))
	recvNone(t, got3, e2eSilent)
	require.Equal(t, 2, s.Stats().Retained)
}

// TestE2ERetainedMosquittoSub: mosquitto_sub sees the retain flag of a
// stored message (set) and of a live one (clear).
func TestE2ERetainedMosquittoSub(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	mosquittoPub(t, s, "-q", "1", "-r", "-t", "mret/a", "-m", "stored")
	ms := startMosquittoSub(t, s, "-q", "1", "-t", "mret/#", "-C", "2", "-W", "10")
	pub := newPaho(t, s, nil)
	wait(t, pub.Publish("mret/a", 1, true, "live"))
	msgs, err := ms.wait(t)
	require.NoError(t, err, ms.log())
	require.Equal(t, []mosqMsg{
		{qos: 1, retain: true, topic: "mret/a", payload: "stored"},
		{qos: 1, retain: false, topic: "mret/a", payload: "live"},
	}, msgs)
}

// TestE2E_MQTT_3_1_2_8_Will: the will is published when the network
// connection closes without DISCONNECT [MQTT-3.1.2-8], with its QoS and
// retain flag [MQTT-3.1.2-14] [MQTT-3.1.2-17], and not after DISCONNECT
// [MQTT-3.1.2-10].
func TestE2E_MQTT_3_1_2_8_Will(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	h, got := collect(16)
	observer := newPaho(t, s, nil)
	wait(t, observer.Subscribe("will/#", 2, h))

	t.Run("raw socket closed", func(t *testing.T) {
		c := connectRaw(t, s, withWill(connectPacket("will-raw", true, 0), "will/raw", "gone", 1, false))
		c.kill()
		require.Equal(t, pahoMsg{topic: "will/raw", payload: "gone", qos: 1}, recv(t, got, "will"))
		recvNone(t, got, e2eSilent)
	})

	t.Run("raw socket reset", func(t *testing.T) {
		c := connectRaw(t, s, withWill(connectPacket("will-rst", true, 0), "will/rst", "reset", 0, false))
		c.reset()
		require.Equal(t, pahoMsg{topic: "will/rst", payload: "reset", qos: 0}, recv(t, got, "will"))
	})

	t.Run("paho socket killed", func(t *testing.T) {
		var pc pahoConn
		newPaho(t, s, func(o *paho.ClientOptions) {
			pc.option(o)
			o.SetWill("will/paho", "crashed", 2, false)
		})
		pc.kill()
		require.Equal(t, pahoMsg{topic: "will/paho", payload: "crashed", qos: 2}, recv(t, got, "will"))
	})

	t.Run("closed for a protocol error", func(t *testing.T) {
		c := connectRaw(t, s, withWill(connectPacket("will-proto", true, 0), "will/proto", "malformed", 1, false))
		c.sendBytes([]byte{0x36, 0x03, 0x00, 0x01, 'x'}) // PUBLISH with QoS 3
		c.expectClosed(e2eWait)
		require.Equal(t, pahoMsg{topic: "will/proto", payload: "malformed", qos: 1}, recv(t, got, "will"))
	})

	t.Run("paho DISCONNECT", func(t *testing.T) {
		c := newPaho(t, s, func(o *paho.ClientOptions) { o.SetWill("will/paho-clean", "should not", 1, false) })
		c.Disconnect(250)
		recvNone(t, got, 2*e2eSilent)
	})

	t.Run("raw DISCONNECT", func(t *testing.T) {
		c := connectRaw(t, s, withWill(connectPacket("will-disc", false, 0), "will/disc", "should not", 2, true))
		c.disconnect()
		recvNone(t, got, 2*e2eSilent)
	})

	t.Run("retained will", func(t *testing.T) {
		c := connectRaw(t, s, withWill(connectPacket("will-ret", true, 0), "will/ret", "last words", 2, true))
		c.kill()
		// The established subscription gets retain = 0 [MQTT-3.3.1-9] at
		// the will's QoS 2.
		require.Equal(t, pahoMsg{topic: "will/ret", payload: "last words", qos: 2}, recv(t, got, "will"))
		// A later subscriber gets it as a retained message.
		h2, got2 := collect(4)
		late := newPaho(t, s, nil)
		wait(t, late.Subscribe("will/ret", 2, h2))
		require.Equal(t, pahoMsg{topic: "will/ret", payload: "last words", qos: 2, retained: true}, recv(t, got2, "retained will"))
	})
}

// TestE2E_MQTT_3_1_2_24_KeepAliveTimeout: a client silent for 1.5 times
// its keep alive is disconnected [MQTT-3.1.2-24] (the broker sweeps each
// second, so within 1.5 s to 2.5 s, 3.5 s allowed), and its will is sent.
func TestE2E_MQTT_3_1_2_24_KeepAliveTimeout(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	h, got := collect(4)
	observer := newPaho(t, s, nil)
	wait(t, observer.Subscribe("ka/#", 1, h))

	c := connectRaw(t, s, withWill(connectPacket("ka-silent", true, 1), "ka/will", "timed out", 1, false))
	start := time.Now()
	c.expectClosed(4 * time.Second)
	elapsed := time.Since(start)
	t.Logf("silent client closed after %v", elapsed)
	require.GreaterOrEqual(t, elapsed, 1400*time.Millisecond, "closed before 1.5 x keep alive")
	require.LessOrEqual(t, elapsed, 3500*time.Millisecond)
	require.Equal(t, pahoMsg{topic: "ka/will", payload: "timed out", qos: 1}, recv(t, got, "will"))
}

// TestE2EKeepAlivePingsKeepConnection: the control case: a client that
// sends PINGREQ within its keep alive stays connected.
func TestE2EKeepAlivePingsKeepConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := connectRaw(t, s, connectPacket("ka-pinger", true, 1))
	for range 6 {
		time.Sleep(500 * time.Millisecond)
		c.send(&codec.Pingreq{})
		c.expect(codec.PINGRESP)
	}
	c.expectNothing(100 * time.Millisecond)
}
