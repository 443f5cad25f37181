package engine

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2EProtocolViolationClosesOnlyThatConnection: each violation closes
// the offending connection and nothing else: a Paho pair and a raw
// subscriber connected before keep exchanging messages after each one.
func TestE2EProtocolViolationClosesOnlyThatConnection(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	h, got := collect(64)
	bystander := newPaho(t, s, nil)
	wait(t, bystander.Subscribe("by/#", 1, h))
	pub := newPaho(t, s, nil)
	rawBy := connectRaw(t, s, connectPacket("raw-bystander", true, 0))
	require.Equal(t, byte(0), rawBy.subscribe(1, "by/#", 0))

	connected := func(t *testing.T, id string) *rawClient {
		c := connectRaw(t, s, connectPacket(id, true, 0))
		return c
	}
	cases := []struct {
		name string
		run  func(t *testing.T) *rawClient
	}{
		{"PUBLISH with QoS 3 [MQTT-3.3.1-4]", func(t *testing.T) *rawClient {
			c := connected(t, "bad-qos3")
			c.sendBytes([]byte{
				0x36,                      // PUBLISH, QoS bits 11
				0x07,                      // remaining length
				0x00, 0x03, 'b', 'y', '/', // topic "by/"
				0x00, 0x01, // packet id
			})
			return c
		}},
		{"remaining length of five bytes [MQTT-1.5.5]", func(t *testing.T) *rawClient {
			c := connected(t, "bad-varint")
			c.sendBytes([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F})
			return c
		}},
		{"SUBSCRIBE with reserved flags 0000 [MQTT-3.8.1-1]", func(t *testing.T) *rawClient {
			c := connected(t, "bad-sub-flags")
			c.sendBytes([]byte{
				0x80,       // SUBSCRIBE with flags 0 instead of 2
				0x08,       // remaining length
				0x00, 0x01, // packet id
				0x00, 0x03, 'b', 'y', '/', // filter "by/"
				0x00, // options
			})
			return c
		}},
		{"SUBSCRIBE without filters [MQTT-3.8.3-3]", func(t *testing.T) *rawClient {
			c := connected(t, "bad-sub-empty")
			c.sendBytes([]byte{0x82, 0x02, 0x00, 0x01})
			return c
		}},
		{"PUBLISH with wildcard topic [MQTT-3.3.2-2]", func(t *testing.T) *rawClient {
			c := connected(t, "bad-topic")
			c.publish("by/#", "x", 0, false, 0)
			return c
		}},
		{"second CONNECT [MQTT-3.1.0-2]", func(t *testing.T) *rawClient {
			c := connected(t, "twice")
			c.send(connectPacket("twice", true, 0))
			return c
		}},
		{"PUBLISH before CONNECT [MQTT-3.1.0-1]", func(t *testing.T) *rawClient {
			c := dialRaw(t, s)
			c.publish("by/x", "sneaky", 0, false, 0)
			return c
		}},
		{"PINGREQ before CONNECT [MQTT-3.1.0-1]", func(t *testing.T) *rawClient {
			c := dialRaw(t, s)
			c.send(&codec.Pingreq{})
			return c
		}},
		{"CONNACK from a client", func(t *testing.T) *rawClient {
			c := connected(t, "sends-connack")
			c.send(&codec.Connack{})
			return c
		}},
		{"garbage before CONNECT", func(t *testing.T) *rawClient {
			c := dialRaw(t, s)
			// "G" reads as a PUBACK with a 69-byte ("E") body: send enough
			// for the frame to be complete (a shorter one waits for
			// ConnectTimeout, rightly).
			c.sendBytes([]byte("GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n"))
			return c
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.run(t)
			for _, p := range c.expectClosed(e2eWait) {
				require.Failf(t, "packet before close", "%v", p.Type())
			}
			payload := fmt.Sprintf("alive-%d", i)
			wait(t, pub.Publish("by/x", 1, false, payload))
			require.Equal(t, payload, recv(t, got, "bystander delivery").payload)
			require.Equal(t, payload, string(rawBy.expectPublish().Payload))
		})
	}
	recvNone(t, got, e2eSilent) // "sneaky" and the others were never routed
	rawBy.expectNothing(e2eSilent)
	require.GreaterOrEqual(t, s.Stats().ProtocolErrors, uint64(len(cases)-4)) // the first-packet checks may close without counting
}

// TestE2E_MQTT_3_1_2_2_UnsupportedProtocolLevel: a CONNECT with a protocol
// level the broker does not speak gets CONNACK 0x01 and a close.
func TestE2E_MQTT_3_1_2_2_UnsupportedProtocolLevel(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"MQTT level 6", []byte{
			0x10, 0x0D, // CONNECT, remaining length
			0x00, 0x04, 'M', 'Q', 'T', 'T', // protocol name
			0x06,       // protocol level 6
			0x02,       // clean session
			0x00, 0x3C, // keep alive
			0x00, 0x01, 'x', // client id
		}},
		{"MQTT level 3", []byte{
			0x10, 0x0D,
			0x00, 0x04, 'M', 'Q', 'T', 'T',
			0x03, // MQTT with 3.1's level
			0x02,
			0x00, 0x3C,
			0x00, 0x01, 'y',
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, s)
			c.sendBytes(tc.frame)
			p, err := c.next(e2eWait)
			require.NoError(t, err, "expected CONNACK 0x01")
			ca, ok := p.(*codec.Connack)
			require.True(t, ok, "expected CONNACK, got %v", p.Type())
			require.Equal(t, codec.ReasonCode(codec.ConnRefusedVersion), ca.ReasonCode, "CONNACK return code")
			require.False(t, ca.SessionPresent)
			c.expectClosed(e2eWait)
		})
	}
	// The broker still accepts a good client afterwards.
	connectRaw(t, s, connectPacket("good", true, 0))
}

// TestE2E_MQTT_3_1_2_24_PacketTooLarge: a frame announcing more than
// MaxPacketSize closes the connection as soon as its fixed header arrives,
// before the body is sent; a 5.0 client is told why with DISCONNECT 0x95.
func TestE2E_MQTT_3_1_2_24_PacketTooLarge(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxPacketSize: 1024})
	for _, v := range []codec.Version{codec.V311, codec.V5} {
		t.Run(v.String(), func(t *testing.T) {
			c := dialRaw(t, s)
			cp := connectPacket("big-"+v.String(), true, 60)
			cp.Version = v
			c.connect(cp)
			// PUBLISH QoS 0 announcing 2 MiB: only the fixed header is sent.
			c.sendBytes([]byte{0x30, 0x80, 0x80, 0x80, 0x01})
			got := c.expectClosed(e2eWait)
			if v == codec.V5 {
				require.NotEmpty(t, got, "expected DISCONNECT before close")
				d, ok := got[len(got)-1].(*codec.Disconnect)
				require.True(t, ok, "expected DISCONNECT, got %v", got[len(got)-1].Type())
				require.Equal(t, codec.PacketTooLarge, d.ReasonCode)
			}
		})
	}
	// Exactly the limit is accepted.
	c := dialRaw(t, s)
	c.connect(connectPacket("limit", true, 60))
	p := codec.Publish{Topic: []byte("t"), Payload: make([]byte, 1024-1-2-3)} // header 1+2, topic 2+1
	require.Equal(t, 1024, p.Size(codec.V311))
	c.send(&p)
	c.send(&codec.Pingreq{})
	c.expect(codec.PINGRESP)
}

// TestE2EFramesSplitAtEveryByte sends a CONNECT, SUBSCRIBE and PUBLISH one
// byte per write, so most reads end inside a frame: a partial frame must
// stay buffered until the rest arrives.
func TestE2EFramesSplitAtEveryByte(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	c := dialRaw(t, s)
	var stream []byte
	stream = connectPacket("bytewise", true, 60).AppendTo(stream, codec.V311)
	sub := codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("split/#"), QoS: 1}}}
	stream = sub.AppendTo(stream, codec.V311)
	pub := codec.Publish{QoS: 1, PacketID: 2, Topic: []byte("split/x"), Payload: make([]byte, 300)}
	stream = pub.AppendTo(stream, codec.V311)
	for _, b := range stream {
		c.sendBytes([]byte{b})
		time.Sleep(200 * time.Microsecond) // let most bytes arrive in reads of their own
	}
	c.expect(codec.CONNACK)
	c.expect(codec.SUBACK)
	var gotAck, gotPub bool
	for !gotAck || !gotPub {
		p, err := c.next(e2eWait)
		require.NoError(t, err)
		switch p := p.(type) {
		case *codec.Ack:
			require.Equal(t, codec.PUBACK, p.PacketType)
			gotAck = true
		case *codec.Publish:
			require.Equal(t, "split/x", string(p.Topic))
			require.Len(t, p.Payload, 300)
			gotPub = true
		}
	}
}

// A connection whose first byte cannot start a CONNECT (an HTTP request, a
// TLS hello sent to the MQTT port) is closed at once [MQTT-3.1.0-1]. It
// was held until ConnectTimeout, waiting for as many bytes as the bytes
// after it said the packet was long; Mosquitto closes it at once.
func TestE2E_MQTT_3_1_0_1_NotMQTTClosedAtOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{ConnectTimeout: 10 * time.Second})
	for _, first := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} {
		conn, err := net.Dial("tcp", s.Addr().String())
		require.NoError(t, err)
		_, err = conn.Write([]byte(first))
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(2*time.Second)))
		start := time.Now()
		_, err = io.ReadAll(conn)
		require.NoError(t, err, "closed by the broker, not by the read deadline")
		require.Less(t, time.Since(start), time.Second)
		_ = conn.Close()
	}
	c := dialRaw(t, s)
	c.mustConnect(connectPacket("after", true, 0)) // MQTT still served
}
