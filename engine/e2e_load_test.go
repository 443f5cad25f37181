package engine

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// smallRcvBuf shrinks a dialled socket's receive buffer before connect, so
// a client that never reads pushes back on the broker after a few KiB.
func smallRcvBuf(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	if err != nil {
		return err
	}
	return serr
}

// TestE2ESlowSubscriberDoesNotSlowFastOne: a subscriber that never reads
// its socket loses QoS 0 messages once its outbound bound is reached; a
// fast subscriber of the same topic keeps getting (nearly) everything,
// and the broker's memory stays bounded.
func TestE2ESlowSubscriberDoesNotSlowFastOne(t *testing.T) {
	const (
		rate     = 10000 // messages per second
		duration = 2 * time.Second
		size     = 256
	)
	// 512 KiB: the slow subscriber hits it within a fraction of a second;
	// the fast one gets ~200 ms of slack for scheduling hiccups (-race on
	// two shared cores), so the drops it sees are not its own.
	s := startServer(t, Options{MaxOutbound: 512 << 10})

	slow := dialRawWith(t, s, smallRcvBuf)
	slow.mustConnect(connectPacket("slow", true, 0))
	require.Equal(t, byte(0), slow.subscribe(1, "flood/x", 0))
	// From here on the slow client never reads.

	var fastGot atomic.Int64
	fast := newPaho(t, s, func(o *paho.ClientOptions) { o.SetMessageChannelDepth(10000) })
	wait(t, fast.Subscribe("flood/x", 0, func(paho.Client, paho.Message) { fastGot.Add(1) }))

	pub := connectRaw(t, s, connectPacket("flooder", true, 0))
	frame := (&codec.Publish{Topic: []byte("flood/x"), Payload: make([]byte, size)}).AppendTo(nil, codec.V311)

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseline := ms.HeapInuse
	var peak atomic.Uint64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()

	// Open-loop schedule: every millisecond, send what the rate owes.
	start := time.Now()
	sent := 0
	var batch []byte
	for elapsed := time.Duration(0); elapsed < duration; elapsed = time.Since(start) {
		owed := int(elapsed.Seconds()*rate) - sent
		batch = batch[:0]
		for range owed {
			batch = append(batch, frame...)
		}
		if owed > 0 {
			pub.sendBytes(batch)
			sent += owed
		}
		time.Sleep(time.Millisecond)
	}
	pubTime := time.Since(start)
	// PINGRESP: the broker has routed everything sent before the PINGREQ.
	pub.send(&codec.Pingreq{})
	pub.expect(codec.PINGRESP)
	// Wait until the fast subscriber has everything or stops receiving.
	fastTime := time.Since(start)
	for last, quiet := fastGot.Load(), 0; last < int64(sent) && quiet < 10 && time.Since(start) < pubTime+e2eWait; {
		time.Sleep(50 * time.Millisecond)
		if cur := fastGot.Load(); cur != last {
			last, quiet, fastTime = cur, 0, time.Since(start)
		} else {
			quiet++
		}
	}
	close(stopSampling)
	sampler.Wait()

	st := s.Stats()
	got := fastGot.Load()
	growth := int64(peak.Load()) - int64(baseline)
	t.Logf("published %d x %d B in %v (%.0f msg/s); fast subscriber got %d (%.1f%%) in %v (%.0f msg/s)",
		sent, size, pubTime.Round(time.Millisecond), float64(sent)/pubTime.Seconds(),
		got, 100*float64(got)/float64(sent), fastTime.Round(time.Millisecond), float64(got)/fastTime.Seconds())
	t.Logf("dropped for slow consumers: %d; heap in use: baseline %d KiB, peak %+d KiB",
		st.DroppedSlowConsumer, baseline>>10, growth>>10)
	require.GreaterOrEqual(t, float64(got), 0.9*float64(sent), "fast subscriber lost more than 10%")
	require.NotZero(t, st.DroppedSlowConsumer, "the slow subscriber was never cut off")
	require.Less(t, growth, int64(64<<20), "heap grew by more than 64 MiB")
}

// TestE2EGoroutinesFlatWithConnections: connections cost no goroutines:
// 500 connected MQTT clients add fewer than 20 to the process.
func TestE2EGoroutinesFlatWithConnections(t *testing.T) {
	const n = 500
	s := startServer(t, Options{})
	settle := func() int {
		prev := runtime.NumGoroutine()
		for range 20 {
			time.Sleep(50 * time.Millisecond)
			cur := runtime.NumGoroutine()
			if cur == prev {
				return cur
			}
			prev = cur
		}
		return prev
	}
	base := settle()
	clients := make([]*rawClient, n)
	for i := range clients {
		c := dialRaw(t, s)
		c.send(connectPacket(fmt.Sprintf("g-%d", i), true, 30))
		clients[i] = c
	}
	for _, c := range clients {
		require.Equal(t, codec.Success, c.expect(codec.CONNACK).(*codec.Connack).ReasonCode)
	}
	require.Equal(t, n, s.Stats().Sessions)
	after := runtime.NumGoroutine()
	t.Logf("goroutines: %d before, %d with %d connections", base, after, n)
	require.Less(t, after-base, 20)
	// And they all work: a ping on the last one is answered.
	clients[n-1].send(&codec.Pingreq{})
	clients[n-1].expect(codec.PINGRESP)
}
