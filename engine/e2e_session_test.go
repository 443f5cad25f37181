package engine

import (
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// connectPaho connects a Paho 3.1.1 client like newPaho and also returns
// the CONNACK's session present flag.
func connectPaho(t testing.TB, s *Server, configure func(*paho.ClientOptions)) (paho.Client, bool) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).
		SetClientID(fmt.Sprintf("t-%d", clientSeq.Add(1))).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(true).SetConnectTimeout(e2eWait)
	if configure != nil {
		configure(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect().(*paho.ConnectToken)
	require.True(t, tok.WaitTimeout(e2eWait), "connect timeout")
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(50) })
	return c, tok.SessionPresent()
}

// sessionOwnerLoop returns the index of the event loop that owns id's
// session, or -1 when there is none.
func sessionOwnerLoop(s *Server, id string) int {
	sh := s.reg.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sess := sh.m[id]; sess != nil {
		if o := sess.owner.Load(); o != nil {
			return o.idx
		}
	}
	return -1
}

// TestE2E_MQTT_3_1_2_4_PersistentSessionQueuesWhileOffline: a session with
// Clean Session = 0 keeps its subscription while the client is away and
// receives the QoS 1 messages published meanwhile, in order, on
// reconnection [MQTT-3.1.2-4] [MQTT-3.1.2-5].
func TestE2E_MQTT_3_1_2_4_PersistentSessionQueuesWhileOffline(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	const queued = 100 // more than the in-flight window (32): most wait in the queue
	h, got := collect(queued + 8)
	persistent := func(o *paho.ClientOptions) {
		o.SetClientID("persist-1").SetCleanSession(false).SetDefaultPublishHandler(h)
	}
	sub, present := connectPaho(t, s, persistent)
	require.False(t, present)
	wait(t, sub.Subscribe("off/#", 1, h))
	sub.Disconnect(250)
	require.Eventually(t, func() bool { st := s.Stats(); return st.ConnectionsClosed == 1 }, e2eWait, 5*time.Millisecond)

	pub := newPaho(t, s, nil)
	for i := range queued {
		wait(t, pub.Publish("off/a", 1, false, fmt.Sprintf("offline-%d", i)))
	}
	wait(t, pub.Publish("off/a", 0, false, "qos0-offline")) // may be dropped: QoS 0 is not queued for offline clients

	_, present = connectPaho(t, s, persistent)
	require.True(t, present, "session present [MQTT-3.2.2-2]")
	for i := range queued {
		m := recv(t, got, fmt.Sprintf("offline-%d", i))
		require.Equal(t, fmt.Sprintf("offline-%d", i), m.payload)
		require.Equal(t, byte(1), m.qos)
		require.Equal(t, "off/a", m.topic)
	}
	select {
	case m := <-got:
		require.Equal(t, "qos0-offline", m.payload, "only the QoS 0 message may follow")
	case <-time.After(e2eSilent):
	}
	// The subscription is still there without subscribing again.
	wait(t, pub.Publish("off/b", 1, false, "online"))
	require.Equal(t, "online", recv(t, got, "online message").payload)
}

// TestE2E_MQTT_3_1_2_6_CleanSessionGetsNothing: with Clean Session = 1 the
// session ends with the connection: nothing published while the client is
// away reaches it, its subscription is gone, and a later clean connection
// of a persistent session discards that session [MQTT-3.1.2-6].
func TestE2E_MQTT_3_1_2_6_CleanSessionGetsNothing(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := newPaho(t, s, nil)

	t.Run("clean then clean", func(t *testing.T) {
		h, got := collect(16)
		clean := func(o *paho.ClientOptions) {
			o.SetClientID("clean-1").SetCleanSession(true).SetDefaultPublishHandler(h)
		}
		sub, _ := connectPaho(t, s, clean)
		wait(t, sub.Subscribe("cs/#", 1, h))
		sub.Disconnect(250)
		require.Eventually(t, func() bool { return sessionOwnerLoop(s, "clean-1") == -1 }, e2eWait, 5*time.Millisecond,
			"clean session outlived its connection")
		for i := range 3 {
			wait(t, pub.Publish("cs/a", 1, false, fmt.Sprintf("missed-%d", i)))
		}
		_, present := connectPaho(t, s, clean)
		require.False(t, present)
		wait(t, pub.Publish("cs/a", 1, false, "after"))
		recvNone(t, got, e2eSilent)
	})

	t.Run("persistent then clean", func(t *testing.T) {
		h, got := collect(16)
		sub, _ := connectPaho(t, s, func(o *paho.ClientOptions) {
			o.SetClientID("clean-2").SetCleanSession(false).SetDefaultPublishHandler(h)
		})
		wait(t, sub.Subscribe("cs2/#", 1, h))
		sub.Disconnect(250)
		require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= 3 }, e2eWait, 5*time.Millisecond)
		for i := range 3 {
			wait(t, pub.Publish("cs2/a", 1, false, fmt.Sprintf("queued-%d", i)))
		}
		_, present := connectPaho(t, s, func(o *paho.ClientOptions) {
			o.SetClientID("clean-2").SetCleanSession(true).SetDefaultPublishHandler(h)
		})
		require.False(t, present, "Clean Session = 1 discards the stored session")
		wait(t, pub.Publish("cs2/a", 1, false, "after"))
		recvNone(t, got, e2eSilent)
	})
}

// TestE2E_MQTT_3_1_4_2_Takeover: a second connection with a connected
// client id closes the first [MQTT-3.1.4-2], publishes its will (it sent no
// DISCONNECT), and inherits the session: its subscription, its
// unacknowledged messages (re-sent with DUP) and its queued messages, in
// order. Repeated until the old and new connections have landed on the
// same event loop and on different ones.
func TestE2E_MQTT_3_1_4_2_Takeover(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{MaxInflight: 2})
	wh, wills := collect(32)
	observer := newPaho(t, s, nil)
	wait(t, observer.Subscribe("tk/will/#", 1, wh))
	pub := newPaho(t, s, nil)

	same, cross := 0, 0
	for i := 0; i < 16 && (same < 3 || cross < 3); i++ {
		id := fmt.Sprintf("tk-%d", i)
		old := dialRaw(t, s)
		require.False(t, old.mustConnect(withWill(connectPacket(id, false, 0), "tk/will/"+id, "bye-"+id, 1, false)).SessionPresent)
		require.Equal(t, byte(1), old.subscribe(1, "tk/data/"+id, 1))
		oldLoop := sessionOwnerLoop(s, id)

		for k := range 5 {
			wait(t, pub.Publish("tk/data/"+id, 1, false, fmt.Sprintf("d%d", k)))
		}
		// The window (2) is full and unacknowledged; d2..d4 are queued.
		for k := range 2 {
			p := old.expectPublish()
			require.Equal(t, fmt.Sprintf("d%d", k), string(p.Payload))
		}
		if i%2 == 1 {
			// Shift gnet's round robin so that the next connection lands on
			// the other loop than it would have.
			connectRaw(t, s, connectPacket(id+"-filler", true, 0))
		}

		nc := dialRaw(t, s)
		require.True(t, nc.mustConnect(connectPacket(id, false, 0)).SessionPresent, "takeover keeps the session")
		old.expectClosed(e2eWait)
		w := recv(t, wills, "will of the taken-over connection")
		require.Equal(t, "bye-"+id, w.payload)
		require.Equal(t, "tk/will/"+id, w.topic)
		newLoop := sessionOwnerLoop(s, id)
		if newLoop == oldLoop {
			same++
		} else {
			cross++
		}

		for k := range 5 {
			p := nc.expectPublish()
			require.Equal(t, fmt.Sprintf("d%d", k), string(p.Payload), "takeover %d (loop %d -> %d)", i, oldLoop, newLoop)
			require.Equal(t, byte(1), p.QoS)
			require.Equal(t, k < 2, p.Dup, "d%d DUP flag: only re-sent messages carry it", k)
			nc.ack(codec.PUBACK, p.PacketID)
		}
		wait(t, pub.Publish("tk/data/"+id, 1, false, "after"))
		p := nc.expectPublish()
		require.Equal(t, "after", string(p.Payload), "subscription kept")
		nc.ack(codec.PUBACK, p.PacketID)
		nc.expectNothing(50 * time.Millisecond)
		nc.disconnect()
	}
	recvNone(t, wills, e2eSilent) // no will after DISCONNECT
	t.Logf("takeovers on the same loop: %d, across loops: %d", same, cross)
	require.NotZero(t, same, "no takeover landed on the session's own loop")
	require.NotZero(t, cross, "no takeover crossed loops")
}

// TestE2ETakeoverByCleanSession: a connection with Clean Session = 1 and a
// connected client id closes the old connection (will sent) and starts
// afresh: no session present, the old subscription and queue are gone.
func TestE2ETakeoverByCleanSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	wh, wills := collect(4)
	observer := newPaho(t, s, nil)
	wait(t, observer.Subscribe("tkc/will", 1, wh))
	pub := newPaho(t, s, nil)

	old := connectRaw(t, s, withWill(connectPacket("tkc", false, 0), "tkc/will", "bye", 1, false))
	require.Equal(t, byte(1), old.subscribe(1, "tkc/data", 1))
	wait(t, pub.Publish("tkc/data", 1, false, "unacked"))
	old.expectPublish()

	nc := dialRaw(t, s)
	require.False(t, nc.mustConnect(connectPacket("tkc", true, 0)).SessionPresent)
	old.expectClosed(e2eWait)
	require.Equal(t, "bye", recv(t, wills, "will").payload)
	wait(t, pub.Publish("tkc/data", 1, false, "after"))
	nc.expectNothing(e2eSilent) // neither the re-send nor the new message: no subscription
	require.Equal(t, byte(1), nc.subscribe(1, "tkc/data", 1))
	wait(t, pub.Publish("tkc/data", 1, false, "subscribed"))
	require.Equal(t, "subscribed", string(nc.expectPublish().Payload))
}

// TestE2EPersistentSessionMosquittoSub: mosquitto_sub -c (Clean Session =
// 0) gets on its next run the QoS 1 messages published between runs.
func TestE2EPersistentSessionMosquittoSub(t *testing.T) {
	t.Parallel()
	needMosquitto(t)
	s := startServer(t, Options{})
	pub := newPaho(t, s, nil)
	first := startMosquittoSub(t, s, "-c", "-i", "mosq-persist", "-q", "1", "-t", "mp/#", "-C", "1", "-W", "10")
	wait(t, pub.Publish("mp/a", 1, false, "online"))
	msgs, err := first.wait(t)
	require.NoError(t, err, first.log())
	require.Equal(t, []mosqMsg{{qos: 1, topic: "mp/a", payload: "online"}}, msgs)
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= 1 }, e2eWait, 5*time.Millisecond)

	for i := range 3 {
		wait(t, pub.Publish("mp/b", 1, false, fmt.Sprintf("queued-%d", i)))
	}
	second := startMosquittoSub(t, s, "-c", "-i", "mosq-persist", "-q", "1", "-t", "mp/#", "-C", "3", "-W", "10")
	msgs, err = second.wait(t)
	require.NoError(t, err, second.log())
	require.Equal(t, []mosqMsg{
		{qos: 1, topic: "mp/b", payload: "queued-0"},
		{qos: 1, topic: "mp/b", payload: "queued-1"},
		{qos: 1, topic: "mp/b", payload: "queued-2"},
	}, msgs)
}

// TestE2ETakeoverWhileStreaming: a persistent QoS 1 subscriber is taken
// over again and again (the client just connects again; the broker closes
// the old connection) while a publisher streams to it; across the
// takeovers (same loop and cross loop) no message is lost and, counting
// re-sent ones once, the order is kept [MQTT-4.6.0-6].
func TestE2ETakeoverWhileStreaming(t *testing.T) {
	t.Parallel()
	const n = 2000
	s := startServer(t, Options{MaxQueued: 2 * n})
	const id = "tk-stream"
	c := connectRaw(t, s, connectPacket(id, false, 0))
	require.Equal(t, byte(1), c.subscribe(1, "tks/#", 1))

	var pubLost lostConn
	pub := newPaho(t, s, pubLost.option)
	pubErr := make(chan error, 1)
	go func() {
		var toks []paho.Token
		for i := range n {
			toks = append(toks, pub.Publish("tks/x", 1, false, fmt.Sprintf("%05d", i)))
			if i%50 == 49 {
				time.Sleep(time.Millisecond)
			}
		}
		pubErr <- waitAll(toks, time.Now().Add(10*time.Second))
	}()

	seen := make(map[int]bool, n) // sequence numbers received at least once
	next := 0                     // lowest sequence number not yet received
	takeovers := 0                // connections replaced
	var jumps []string            // first-time deliveries that overtook an older message
	deadline := time.Now().Add(15 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		pk, err := c.next(time.Until(deadline))
		if err != nil {
			break
		}
		p, ok := pk.(*codec.Publish)
		require.True(t, ok, "unexpected %v", pk.Type())
		var seq int
		_, err = fmt.Sscanf(string(p.Payload), "%d", &seq)
		require.NoError(t, err)
		switch {
		case seen[seq]:
			require.True(t, p.Dup, "message %d delivered again without DUP", seq)
		case seq != next && len(jumps) < 5:
			jumps = append(jumps, fmt.Sprintf("%d before %d (DUP=%v, after %d takeovers)", seq, next, p.Dup, takeovers))
		}
		seen[seq] = true
		for seen[next] {
			next++
		}
		c.ack(codec.PUBACK, p.PacketID)
		if len(seen)%300 == 150 && !p.Dup {
			// Take over without closing the old connection: the broker
			// closes it.
			nc := dialRaw(t, s)
			require.True(t, nc.mustConnect(connectPacket(id, false, 0)).SessionPresent)
			takeovers++
			c = nc
		}
	}
	assert.Empty(t, jumps, "order per topic broken across takeovers [MQTT-4.6.0-6]")
	require.Equal(t, n, len(seen), "messages missing, first %d; publisher %v; stats %+v", next, &pubLost, s.Stats())
	require.NoError(t, <-pubErr)
	t.Logf("%d messages, %d takeovers", n, takeovers)
}

// TestE2E_MQTT_3_1_3_8_EmptyClientID: an empty client id is accepted with
// Clean Session = 1 (the broker assigns one) [MQTT-3.1.3-6] [MQTT-3.1.3-7]
// and refused with CONNACK 0x02 and a close otherwise [MQTT-3.1.3-8].
func TestE2E_MQTT_3_1_3_8_EmptyClientID(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})

	t.Run("clean session accepted", func(t *testing.T) {
		c := dialRaw(t, s)
		ca := c.connect(connectPacket("", true, 0))
		require.Equal(t, codec.Success, ca.ReasonCode)
		require.False(t, ca.SessionPresent)
		require.Equal(t, byte(0), c.subscribe(1, "empty/x", 0))
		c.publish("empty/x", "hello", 0, false, 0)
		require.Equal(t, "hello", string(c.expectPublish().Payload))
		// Two anonymous clients get distinct sessions: neither takes the
		// other over.
		c2 := dialRaw(t, s)
		require.Equal(t, codec.Success, c2.connect(connectPacket("", true, 0)).ReasonCode)
		c.publish("empty/x", "still", 0, false, 0)
		require.Equal(t, "still", string(c.expectPublish().Payload))
	})

	t.Run("persistent session refused", func(t *testing.T) {
		c := dialRaw(t, s)
		ca := c.connect(connectPacket("", false, 0))
		require.Equal(t, codec.ReasonCode(codec.ConnRefusedIdentifier), ca.ReasonCode, "CONNACK return code 0x02")
		require.False(t, ca.SessionPresent)
		c.expectClosed(e2eWait)
	})

	t.Run("paho with empty id", func(t *testing.T) {
		h, got := collect(1)
		c, _ := connectPaho(t, s, func(o *paho.ClientOptions) { o.SetClientID("").SetCleanSession(true) })
		wait(t, c.Subscribe("empty/paho", 1, h))
		wait(t, c.Publish("empty/paho", 1, false, "p"))
		require.Equal(t, "p", recv(t, got, "echo").payload)
	})
}

// TestE2EPipelinedConnectResumesSession: a client that sends CONNECT,
// SUBSCRIBE, PUBLISH and PINGREQ in one write, for a persistent session
// that may live on another event loop (the session is handed over while
// the later frames wait in the buffer), gets every answer.
func TestE2EPipelinedConnectResumesSession(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	const id = "pipelined"
	first := connectRaw(t, s, connectPacket(id, false, 0))
	first.disconnect()
	require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed == 1 }, e2eWait, 5*time.Millisecond)

	loops := map[int]bool{}
	for i := range 6 {
		if i%2 == 1 {
			dialRaw(t, s) // shift gnet's round robin: the next one lands on the other loop
		}
		c := dialRaw(t, s)
		var burst []byte
		burst = connectPacket(id, false, 0).AppendTo(burst, codec.V311)
		burst = (&codec.Subscribe{PacketID: 10, Subscriptions: []codec.Subscription{{Filter: []byte("pipe/x"), QoS: 1}}}).AppendTo(burst, codec.V311)
		burst = (&codec.Publish{Topic: []byte("pipe/x"), Payload: []byte(fmt.Sprint(i)), QoS: 1, PacketID: 20}).AppendTo(burst, codec.V311)
		burst = (&codec.Pingreq{}).AppendTo(burst, codec.V311)
		c.sendBytes(burst)

		ca := c.expect(codec.CONNACK).(*codec.Connack)
		require.Equal(t, codec.Success, ca.ReasonCode)
		require.True(t, ca.SessionPresent)
		got := map[codec.Type]int{}
		for range 4 { // SUBACK, PUBACK, PUBLISH (own message), PINGRESP
			p, err := c.next(e2eWait)
			require.NoError(t, err, "round %d, got so far %v", i, got)
			got[p.Type()]++
			if pp, ok := p.(*codec.Publish); ok {
				require.Equal(t, fmt.Sprint(i), string(pp.Payload))
				c.ack(codec.PUBACK, pp.PacketID)
			}
		}
		require.Equal(t, map[codec.Type]int{codec.SUBACK: 1, codec.PUBACK: 1, codec.PUBLISH: 1, codec.PINGRESP: 1}, got)
		loops[sessionOwnerLoop(s, id)] = true
		c.disconnect()
		require.Eventually(t, func() bool { return s.Stats().ConnectionsClosed >= uint64(2+i) }, e2eWait, 5*time.Millisecond)
	}
	require.Len(t, loops, 2, "the session never moved between loops")
}

// alive reports whether the broker still answers PINGREQ on c.
func (c *rawClient) alive() bool {
	if c.trySend(&codec.Pingreq{}) != nil {
		return false
	}
	for {
		p, err := c.next(time.Second)
		if err != nil {
			return false
		}
		if p.Type() == codec.PINGRESP {
			return true
		}
	}
}

// TestE2E_MQTT_3_1_4_2_TakeoverRaceWithCleanStart: a persistent session is
// resumed by connection B (Clean Session = 0) while connection D with the
// same client id and Clean Session = 1 connects at the same moment. Whatever
// the order the broker picks, one connection must win and the other be
// closed [MQTT-3.1.4-2]; the winner must have a working session. B and D are
// placed on the same event loop and the session on the other one, the case
// where B's session is in transit between loops when D arrives.
func TestE2E_MQTT_3_1_4_2_TakeoverRaceWithCleanStart(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	for i := range 60 {
		id := fmt.Sprintf("race-%d", i)
		// Four connections per round keep gnet's round robin in step: A on
		// one loop, B and D on the other.
		a := connectRaw(t, s, connectPacket(id, false, 0))
		a.disconnect()
		b := dialRaw(t, s)
		dialRaw(t, s) // filler
		d := dialRaw(t, s)
		b.sendBytes(connectPacket(id, false, 0).AppendTo(nil, codec.V311))
		d.sendBytes(connectPacket(id, true, 0).AppendTo(nil, codec.V311))
		b.expect(codec.CONNACK)
		d.expect(codec.CONNACK)
		// Both may answer for a moment (the loser is closed by a task that
		// travels between loops); one must be closed soon after.
		bAlive, dAlive := b.alive(), d.alive()
		for deadline := time.Now().Add(2 * time.Second); bAlive && dAlive && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			bAlive, dAlive = b.alive(), d.alive()
		}
		require.False(t, bAlive && dAlive,
			"round %d: both connections of client id %q stay open (B, Clean Session 0, owner loop now %d)", i, id, sessionOwnerLoop(s, id))
		require.True(t, bAlive || dAlive, "round %d: both connections closed", i)
		winner := b
		if dAlive {
			winner = d
		}
		require.Equal(t, byte(1), winner.subscribe(1, "race/"+id, 1))
		winner.publish("race/"+id, "mine", 1, false, 2)
		got := map[codec.Type]int{}
		for range 2 {
			p, err := winner.next(e2eWait)
			require.NoError(t, err)
			got[p.Type()]++
			if pp, ok := p.(*codec.Publish); ok {
				winner.ack(codec.PUBACK, pp.PacketID)
			}
		}
		require.Equal(t, map[codec.Type]int{codec.PUBLISH: 1, codec.PUBACK: 1}, got, "round %d: the winner's session works", i)
		winner.disconnect()
	}
}
