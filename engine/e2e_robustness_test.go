package engine

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// reset closes the socket with SO_LINGER 0: the broker gets an RST, and its
// next write to the connection fails with ECONNRESET or EPIPE.
func (c *rawClient) reset() {
	if tc, ok := c.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.conn.Close()
}

// TestE2ESubscriberResetDuringDeliveryKeepsBrokerUp: subscribers that
// vanish with an RST while a publisher streams to them make the broker's
// writes fail mid-batch (gnet then closes the connection, and runs
// OnClose, from inside the write). The broker must survive it, keep
// serving everyone else, and account for every connection.
func TestE2ESubscriberResetDuringDeliveryKeepsBrokerUp(t *testing.T) {
	t.Parallel()
	s := startServer(t, Options{})
	pub := connectRaw(t, s, connectPacket("rst-pub", true, 0))

	stop := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		frame := (&codec.Publish{Topic: []byte("rst/x"), Payload: make([]byte, 512)}).AppendTo(nil, codec.V311)
		batch := make([]byte, 0, 20*len(frame))
		for range 20 {
			batch = append(batch, frame...)
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.conn.SetWriteDeadline(time.Now().Add(e2eWait))
			if _, err := pub.conn.Write(batch); err != nil {
				return
			}
			sent.Add(20)
			time.Sleep(200 * time.Microsecond)
		}
	}()

	const rounds = 40
	for i := range rounds {
		var subs []*rawClient
		for j := range 4 {
			c := connectRaw(t, s, connectPacket(fmt.Sprintf("rst-sub-%d-%d", i, j), true, 0))
			c.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("rst/#")}}})
			subs = append(subs, c)
		}
		for _, c := range subs {
			c.expect(codec.SUBACK)
			c.expect(codec.PUBLISH) // the stream reaches it
		}
		for _, c := range subs {
			c.reset()
		}
	}
	close(stop)
	wg.Wait()

	// The broker still works and saw every subscriber go.
	h, got := collect(1)
	sub := newPaho(t, s, nil)
	wait(t, sub.Subscribe("rst/alive", 1, h))
	other := newPaho(t, s, nil)
	wait(t, other.Publish("rst/alive", 1, false, "yes"))
	require.Equal(t, "yes", recv(t, got, "round trip after the resets").payload)
	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.ConnectionsOpened-st.ConnectionsClosed == 3
	}, e2eWait, 10*time.Millisecond, "connections left open: %+v", s.Stats())
	t.Logf("%d messages published during %d rounds of 4 resets; stats %+v", sent.Load(), rounds, s.Stats())
}

// TestE2ELargeBatchOfSmallFrames: one TCP read can carry thousands of small
// frames, so one event's write batch can hold thousands of frames for one
// client: 2,000 PUBACKs for the publisher, 2,000 PUBLISH frames (header +
// payload each) for the subscriber. writev takes at most IOV_MAX (1024)
// buffers; the broker must still deliver everything and keep both
// connections open.
func TestE2ELargeBatchOfSmallFrames(t *testing.T) {
	t.Parallel()
	const n = 2000
	s := startServer(t, Options{MaxQueued: 2 * n, MaxInflight: 65535})
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) {
			topic := fmt.Sprintf("batch/q%d", qos)
			sub := connectRaw(t, s, connectPacket(fmt.Sprintf("batch-sub-%d", qos), true, 0))
			require.Equal(t, qos, sub.subscribe(1, topic, qos))
			pub := connectRaw(t, s, connectPacket(fmt.Sprintf("batch-pub-%d", qos), true, 0))

			var burst []byte
			for i := range n {
				p := codec.Publish{Topic: []byte(topic), Payload: []byte{byte(i >> 8), byte(i)}, QoS: qos}
				if qos > 0 {
					p.PacketID = uint16(i + 1)
				}
				burst = p.AppendTo(burst, codec.V311)
			}
			pub.sendBytes(burst) // one write: the broker reads it in one or a few events
			if qos > 0 {
				for i := range n {
					pub.expectAck(codec.PUBACK, uint16(i+1))
				}
			}
			for i := range n {
				p, err := sub.next(e2eWait)
				require.NoError(t, err, "subscriber: message %d of %d (stats %+v)", i, n, s.Stats())
				pp, ok := p.(*codec.Publish)
				require.True(t, ok, "got %v", p.Type())
				require.Equal(t, []byte{byte(i >> 8), byte(i)}, pp.Payload)
				if qos > 0 {
					sub.ack(codec.PUBACK, pp.PacketID)
				}
			}
			pub.send(&codec.Pingreq{})
			pub.expect(codec.PINGRESP)
		})
	}
}
