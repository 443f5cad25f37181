package engine

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestE2E_MQTT_3_8_4_6_QoSDowngradePaho: a message is delivered at the
// minimum of its published QoS and the subscription's granted QoS, for all
// nine combinations.
func TestE2E_MQTT_3_8_4_6_QoSDowngradePaho(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	h, got := collect(16)
	sub := newPaho(t, s, nil)
	for g := byte(0); g <= 2; g++ {
		wait(t, sub.Subscribe(fmt.Sprintf("qd/g%d", g), g, h))
	}
	pub := newPaho(t, s, nil)
	for g := byte(0); g <= 2; g++ {
		for q := byte(0); q <= 2; q++ {
			payload := fmt.Sprintf("g%d-p%d", g, q)
			wait(t, pub.Publish(fmt.Sprintf("qd/g%d", g), q, false, payload))
			m := recv(t, got, payload)
			require.Equal(t, payload, m.payload)
			require.Equal(t, min(g, q), m.qos, "granted %d, published %d", g, q)
			require.False(t, m.retained)
		}
	}
	recvNone(t, got, e2eSilent)
}

// TestE2EQoSDowngradeMosquittoPubToPaho: mosquitto_pub at QoS 0/1/2 to a
// Paho subscriber with granted QoS 0/1/2.
func TestE2EQoSDowngradeMosquittoPubToPaho(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	h, got := collect(16)
	sub := newPaho(t, s, nil)
	for g := byte(0); g <= 2; g++ {
		wait(t, sub.Subscribe(fmt.Sprintf("mq/g%d", g), g, h))
	}
	for g := byte(0); g <= 2; g++ {
		for q := byte(0); q <= 2; q++ {
			payload := fmt.Sprintf("mosq-g%d-p%d", g, q)
			mosquittoPub(t, s, "-q", strconv.Itoa(int(q)), "-t", fmt.Sprintf("mq/g%d", g), "-m", payload)
			m := recv(t, got, payload)
			require.Equal(t, payload, m.payload)
			require.Equal(t, min(g, q), m.qos, "granted %d, published %d", g, q)
		}
	}
}

// TestE2EQoSDowngradePahoToMosquittoSub: Paho publishes at QoS 0/1/2 to
// three mosquitto_sub processes subscribed at QoS 0, 1 and 2.
func TestE2EQoSDowngradePahoToMosquittoSub(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	subs := make([]*mosqSub, 3)
	for g := range subs {
		subs[g] = startMosquittoSub(t, s, "-q", strconv.Itoa(g), "-t", fmt.Sprintf("ms/g%d", g), "-C", "3", "-W", "10")
	}
	pub := newPaho(t, s, nil)
	for g := byte(0); g <= 2; g++ {
		for q := byte(0); q <= 2; q++ {
			wait(t, pub.Publish(fmt.Sprintf("ms/g%d", g), q, false, fmt.Sprintf("p%d", q)))
		}
	}
	for g, ms := range subs {
		msgs, err := ms.wait(t)
		require.NoError(t, err, "mosquitto_sub g%d:\n%s", g, ms.log())
		require.Len(t, msgs, 3)
		for q, m := range msgs {
			require.Equal(t, fmt.Sprintf("p%d", q), m.payload)
			require.Equal(t, fmt.Sprintf("ms/g%d", g), m.topic)
			require.Equal(t, min(byte(g), byte(q)), m.qos, "granted %d, published %d", g, q)
			require.False(t, m.retain)
		}
	}
}

// TestE2EMQTT5MosquittoRoundTrip: mosquitto_sub -V mqttv5 and
// mosquitto_pub -V mqttv5 exchange messages at every QoS, and 5.0 and
// 3.1.1 clients interoperate.
func TestE2EMQTT5MosquittoRoundTrip(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	v5sub := startMosquittoSub(t, s, "-V", "mqttv5", "-q", "1", "-t", "v5/#", "-C", "4", "-W", "10")
	h, got := collect(16)
	v3sub := newPaho(t, s, nil)
	wait(t, v3sub.Subscribe("v5/#", 2, h))

	for q := 0; q <= 2; q++ {
		mosquittoPub(t, s, "-V", "mqttv5", "-q", strconv.Itoa(q), "-t", "v5/a", "-m", fmt.Sprintf("five-%d", q))
		m := recv(t, got, "5.0 publish at the 3.1.1 subscriber")
		require.Equal(t, fmt.Sprintf("five-%d", q), m.payload)
		require.Equal(t, byte(q), m.qos)
	}
	v3pub := newPaho(t, s, nil)
	wait(t, v3pub.Publish("v5/b", 2, false, "three"))
	require.Equal(t, "three", recv(t, got, "own echo").payload)

	msgs, err := v5sub.wait(t)
	require.NoError(t, err, "mosquitto_sub -V mqttv5:\n%s", v5sub.log())
	require.Len(t, msgs, 4)
	for q := 0; q <= 2; q++ {
		require.Equal(t, fmt.Sprintf("five-%d", q), msgs[q].payload)
		require.Equal(t, "v5/a", msgs[q].topic)
		require.Equal(t, min(byte(q), 1), msgs[q].qos)
	}
	require.Equal(t, mosqMsg{qos: 1, topic: "v5/b", payload: "three"}, msgs[3])
}

// TestE2EQoS1FanInFanOut: 10 publishers send 1,000 QoS 1 messages each to
// 10 subscribers of a wildcard covering them all. Every subscriber gets
// every message exactly once, in order per publisher [MQTT-4.6.0-6].
func TestE2EQoS1FanInFanOut(t *testing.T) {
	const pubs, subsN, perPub = 10, 10, 1000
	// The session queue bound (and its drop policy) is not under test
	// here: make it large enough that nothing is dropped.
	s := startServer(t, Options{MaxQueued: pubs * perPub * 2})

	type subState struct {
		mu    sync.Mutex
		next  [pubs]int
		count int
		err   error
		dups  int
	}
	states := make([]*subState, subsN)
	var doneSubs atomic.Int32
	allDone := make(chan struct{})
	for i := range states {
		st := &subState{}
		states[i] = st
		c := newPaho(t, s, func(o *paho.ClientOptions) { o.SetCleanSession(true) })
		wait(t, c.Subscribe("load/#", 1, func(_ paho.Client, m paho.Message) {
			var p, seq int
			_, err := fmt.Sscanf(string(m.Payload()), "p%d:%d", &p, &seq)
			st.mu.Lock()
			defer st.mu.Unlock()
			switch {
			case err != nil:
				st.err = fmt.Errorf("bad payload %q: %w", m.Payload(), err)
			case m.Duplicate():
				st.dups++
			}
			if err == nil && st.err == nil && seq != st.next[p] {
				st.err = fmt.Errorf("publisher %d: got seq %d, want %d (lost, duplicated or reordered)", p, seq, st.next[p])
			}
			if err == nil {
				st.next[p] = seq + 1
			}
			st.count++
			if st.count == pubs*perPub {
				if doneSubs.Add(1) == subsN {
					close(allDone)
				}
			}
		}))
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	lost := make([]lostConn, pubs)
	for p := 0; p < pubs; p++ {
		c := newPaho(t, s, lost[p].option)
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks := make([]paho.Token, 0, perPub)
			for seq := 0; seq < perPub; seq++ {
				toks = append(toks, c.Publish(fmt.Sprintf("load/p%d", p), 1, false, fmt.Sprintf("p%d:%d", p, seq)))
			}
			if err := waitAll(toks, start.Add(20*time.Second)); err != nil {
				errs <- fmt.Errorf("publisher %d: %w (%v)", p, err, &lost[p])
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	select {
	case <-allDone:
	case <-time.After(30 * time.Second):
	}
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // let a late duplicate show
	st := s.Stats()
	for i, ss := range states {
		ss.mu.Lock()
		require.NoError(t, ss.err, "subscriber %d", i)
		require.Equal(t, pubs*perPub, ss.count, "subscriber %d message count (stats %+v)", i, st)
		require.Zero(t, ss.dups, "subscriber %d DUP deliveries", i)
		ss.mu.Unlock()
	}
	require.Zero(t, st.DroppedQueueFull)
	t.Logf("%d deliveries in %v (%.0f/s); stats %+v", pubs*perPub*subsN, elapsed,
		float64(pubs*perPub*subsN)/elapsed.Seconds(), st)
}

// qos2Receiver is the receiving side of QoS 2 as a client implements it
// (method B): a message goes to the application when its PUBLISH first
// arrives; its packet identifier is remembered until PUBREL, and a PUBLISH
// re-sent with that identifier meanwhile is acknowledged again but not
// delivered again [MQTT-4.3.3-2]. Its state outlives connections, as a
// persistent client's must.
type qos2Receiver struct {
	t         testing.TB
	pending   map[uint16]string // PUBREC sent, PUBREL not yet received
	delivered map[string]int    // payload -> times given to the application
	order     []string          // payloads in delivery order
}

func newQoS2Receiver(t testing.TB) *qos2Receiver {
	return &qos2Receiver{t: t, pending: map[uint16]string{}, delivered: map[string]int{}}
}

// handle processes one packet from the broker on c and answers it.
func (r *qos2Receiver) handle(c *rawClient, p codec.Packet) {
	r.t.Helper()
	switch p := p.(type) {
	case *codec.Publish:
		require.Equal(r.t, byte(2), p.QoS, "delivered QoS")
		if prev, ok := r.pending[p.PacketID]; ok {
			// A re-send of a message the application already has.
			require.True(r.t, p.Dup, "re-sent PUBLISH %d without DUP [MQTT-3.3.1-1]", p.PacketID)
			require.Equal(r.t, prev, string(p.Payload), "re-sent PUBLISH %d changed payload", p.PacketID)
		} else {
			r.pending[p.PacketID] = string(p.Payload)
			r.delivered[string(p.Payload)]++
			r.order = append(r.order, string(p.Payload))
		}
		c.ack(codec.PUBREC, p.PacketID)
	case *codec.Ack:
		require.Equal(r.t, codec.PUBREL, p.PacketType, "unexpected %v", p.PacketType)
		delete(r.pending, p.PacketID)
		c.ack(codec.PUBCOMP, p.PacketID)
	default:
		r.t.Fatalf("unexpected packet %v", p.Type())
	}
}

// waitClosed waits until the broker has seen n connections close in total.
func waitClosed(t testing.TB, s *Server, n uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= n }, e2eWait, 5*time.Millisecond,
		"broker did not notice the connection closing")
}

// TestE2EQoS2ExactlyOnceAcrossSubscriberReconnect drives a persistent QoS 2
// subscriber through every point at which a flow can be cut, then
// reconnects it [MQTT-4.4.0-1]:
//   - m-0..4: flow complete before the drop: nothing is sent again;
//   - m-5..9: broker got PUBREC, sent PUBREL, got no PUBCOMP: on reconnect
//     the broker sends PUBREL again, never the PUBLISH [MQTT-4.3.3-1];
//   - m-10..14: PUBLISH received, no PUBREC: re-sent with DUP, same id;
//   - m-15..19: published while the subscriber is offline: queued.
func TestE2EQoS2ExactlyOnceAcrossSubscriberReconnect(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	const id = "eo-sub"
	sub := dialRaw(t, s)
	require.False(t, sub.mustConnect(connectPacket(id, false, 0)).SessionPresent)
	require.Equal(t, byte(2), sub.subscribe(1, "eo/#", 2))

	pub := connectRaw(t, s, connectPacket("eo-pub", true, 0))
	publish := func(i int) {
		pid := uint16(1000 + i)
		pub.publish("eo/x", fmt.Sprintf("m-%d", i), 2, false, pid)
		pub.expectAck(codec.PUBREC, pid)
		pub.ack(codec.PUBREL, pid)
		pub.expectAck(codec.PUBCOMP, pid)
	}
	for i := 0; i < 15; i++ {
		publish(i)
	}
	r := newQoS2Receiver(t)
	ids := make([]uint16, 15)
	for i := range ids {
		p := sub.expectPublish()
		require.Equal(t, fmt.Sprintf("m-%d", i), string(p.Payload))
		require.False(t, p.Dup)
		ids[i] = p.PacketID
		r.pending[p.PacketID] = string(p.Payload)
		r.delivered[string(p.Payload)]++
		r.order = append(r.order, string(p.Payload))
	}
	for i := 0; i < 10; i++ {
		sub.ack(codec.PUBREC, ids[i])
	}
	for i := 0; i < 10; i++ {
		sub.expectAck(codec.PUBREL, ids[i])
	}
	for i := 0; i < 5; i++ {
		sub.ack(codec.PUBCOMP, ids[i])
		delete(r.pending, ids[i])
	}
	// A PINGRESP proves the broker processed everything sent before it.
	sub.send(&codec.Pingreq{})
	sub.expect(codec.PINGRESP)
	closedBefore := s.Stats().ConnectionsClosed
	sub.kill()
	waitClosed(t, s, closedBefore+1)

	for i := 15; i < 20; i++ {
		publish(i)
	}

	sub2 := dialRaw(t, s)
	require.True(t, sub2.mustConnect(connectPacket(id, false, 0)).SessionPresent, "session present [MQTT-3.2.2-2]")
	var rels, dups, fresh []uint16
	deadline := time.Now().Add(e2eWait)
	for len(r.delivered) < 20 || len(r.pending) > 0 {
		require.True(t, time.Now().Before(deadline), "flows incomplete: delivered %d, pending %v", len(r.delivered), r.pending)
		p, err := sub2.next(time.Until(deadline))
		require.NoError(t, err)
		switch p := p.(type) {
		case *codec.Publish:
			for i := 0; i < 10; i++ {
				require.NotEqual(t, ids[i], p.PacketID,
					"broker re-sent PUBLISH %q after it had received its PUBREC", p.Payload)
			}
			if p.Dup {
				dups = append(dups, p.PacketID)
			} else {
				fresh = append(fresh, p.PacketID)
			}
		case *codec.Ack:
			if p.PacketType == codec.PUBREL {
				rels = append(rels, p.PacketID)
			}
		}
		r.handle(sub2, p)
	}
	sub2.expectNothing(e2eSilent)
	require.GreaterOrEqual(t, len(rels), 5)
	require.Equal(t, ids[5:10], rels[:5], "PUBREL re-sent for m-5..9, in PUBREC order [MQTT-4.6.0-3]")
	require.Equal(t, ids[10:15], dups, "PUBLISH re-sent with DUP for m-10..14, in order [MQTT-4.6.0-2]")
	require.Len(t, fresh, 5)
	for i := 0; i < 20; i++ {
		require.Equal(t, 1, r.delivered[fmt.Sprintf("m-%d", i)], "m-%d delivered to the application", i)
		require.Equal(t, fmt.Sprintf("m-%d", i), r.order[i], "delivery order")
	}
}

// TestE2EQoS2ExactlyOnceSubscriberDropsMidStream: a publisher streams QoS 2
// messages while a persistent subscriber drops its socket twice at
// arbitrary points of its flows and comes straight back (a takeover when
// the broker has not noticed the drop yet). The application gets every
// message exactly once, in order.
func TestE2EQoS2ExactlyOnceSubscriberDropsMidStream(t *testing.T) {
	t.Parallel()
	const n = 300
	s := startServer(t, Options{})
	const id = "eo-stream"
	sub := connectRaw(t, s, connectPacket(id, false, 0))
	require.Equal(t, byte(2), sub.subscribe(1, "eos/#", 2))

	var pubLost lostConn
	pub := newPaho(t, s, pubLost.option)
	pubErr := make(chan error, 1)
	go func() {
		var toks []paho.Token
		for i := 0; i < n; i++ {
			toks = append(toks, pub.Publish("eos/x", 2, false, fmt.Sprintf("m-%03d", i)))
			if i%20 == 19 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		pubErr <- waitAll(toks, time.Now().Add(10*time.Second))
	}()

	r := newQoS2Receiver(t)
	drops := map[int]bool{80: true, 190: true}
	deadline := time.Now().Add(15 * time.Second)
	for len(r.delivered) < n || len(r.pending) > 0 {
		require.True(t, time.Now().Before(deadline), "stalled: delivered %d, pending %d; publisher %v",
			len(r.delivered), len(r.pending), &pubLost)
		p, err := sub.next(time.Until(deadline))
		require.NoError(t, err, "delivered %d; publisher %v", len(r.delivered), &pubLost)
		r.handle(sub, p)
		if k := len(r.delivered); drops[k] {
			// Drop right after answering a PUBLISH with PUBREC: whether the
			// broker got that PUBREC is unknown to the client, as in life.
			delete(drops, k)
			sub.kill()
			sub = dialRaw(t, s)
			require.True(t, sub.mustConnect(connectPacket(id, false, 0)).SessionPresent)
		}
	}
	require.NoError(t, <-pubErr)
	sub.expectNothing(e2eSilent)
	require.Len(t, r.order, n)
	for i, m := range r.order {
		require.Equal(t, fmt.Sprintf("m-%03d", i), m, "delivery %d", i)
	}
	for m, k := range r.delivered {
		require.Equal(t, 1, k, "%s delivered %d times", m, k)
	}
}

// TestE2EQoS2PublisherResendNotRedelivered: a publisher that lost the
// PUBREC re-sends its PUBLISH with DUP after reconnecting; the broker
// answers PUBREC again and does not route it a second time [MQTT-4.3.3-2].
// After PUBCOMP the identifier is free for a new message.
func TestE2EQoS2PublisherResendNotRedelivered(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	h, got := collect(8)
	sub := newPaho(t, s, nil)
	wait(t, sub.Subscribe("eop/#", 2, h))

	const id = "eo-pub-resend"
	pub := connectRaw(t, s, connectPacket(id, false, 0))
	pub.publish("eop/x", "once", 2, false, 7)
	pub.expectAck(codec.PUBREC, 7)
	require.Equal(t, "once", recv(t, got, "first delivery").payload)
	closedBefore := s.Stats().ConnectionsClosed
	pub.kill()
	waitClosed(t, s, closedBefore+1)

	pub = dialRaw(t, s)
	require.True(t, pub.mustConnect(connectPacket(id, false, 0)).SessionPresent)
	pub.send(&codec.Publish{Dup: true, QoS: 2, Topic: []byte("eop/x"), Payload: []byte("once"), PacketID: 7})
	pub.expectAck(codec.PUBREC, 7)
	pub.ack(codec.PUBREL, 7)
	pub.expectAck(codec.PUBCOMP, 7)
	recvNone(t, got, e2eSilent)

	pub.publish("eop/x", "again", 2, false, 7)
	pub.expectAck(codec.PUBREC, 7)
	pub.ack(codec.PUBREL, 7)
	pub.expectAck(codec.PUBCOMP, 7)
	require.Equal(t, "again", recv(t, got, "new message reusing id 7").payload)
	recvNone(t, got, e2eSilent)
}
