package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/internal/mqttclient"
	"github.com/loopmq/loopmq/store"
)

// Crash tests: the broker runs as a real process on a data directory and
// is killed with SIGKILL at random points while a publisher streams QoS 1
// or QoS 2 messages to an offline persistent subscriber. After a restart
// on the same directory, every message the publisher got an
// acknowledgement for must reach the subscriber, and a message that
// arrives twice must carry DUP the second time (QoS 2: exactly once).
//
// CI runs a few short rounds; LOOPMQ_CRASH_ROUNDS raises the count (make
// soak).

// buildLoopmqBinary builds cmd/loopmq once per test binary.
var buildLoopmqBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "loopmq-crash-bin")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "loopmq")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// brokerProc is a loopmq process.
type brokerProc struct {
	cmd    *exec.Cmd
	addr   string
	log    *os.File
	killed sync.Once // kill may be called from the test and a timer
}

// startBroker starts loopmq on dataDir at a free loopback port and waits
// until it accepts connections.
func startBroker(t *testing.T, dataDir string, extra ...string) *brokerProc {
	t.Helper()
	bin, err := buildLoopmqBinary()
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	logf, err := os.CreateTemp(t.TempDir(), "broker-*.log")
	require.NoError(t, err)
	// The queue bound is above the stream: what is tested is durability,
	// not the overflow policy.
	args := append([]string{"-listen", addr, "-data-dir", dataDir, "-loops", "2", "-max-queued", "20000"}, extra...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	p := &brokerProc{cmd: cmd, addr: addr, log: logf}
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return p
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("broker did not listen on %s: %v\n%s", addr, err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *brokerProc) kill() {
	p.killed.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	})
}

func (p *brokerProc) output() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}

// dialMQTT connects a 3.1.1 client (keep alive 60 s) to addr.
func dialMQTT(addr, id string, clean bool) (*mqttclient.Conn, *codec.Connack, error) {
	return mqttclient.Dial(addr, &codec.Connect{Version: codec.V311, ClientID: []byte(id), CleanStart: clean, KeepAlive: 60})
}

// crashRounds is how many kill -9 rounds each crash test runs.
func crashRounds() int {
	if n, err := strconv.Atoi(os.Getenv("LOOPMQ_CRASH_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// crashPublish streams n messages of qos to topic, numbered in their
// payload, with up to window unacknowledged, until the broker dies or all
// are acknowledged. It returns the numbers acknowledged (QoS 2: PUBREC;
// PUBREL and PUBCOMP follow).
func crashPublish(addr, topic string, qos byte, n, window int) (acked map[int]bool) {
	acked = make(map[int]bool)
	c, _, err := dialMQTT(addr, "crash-pub", true)
	if err != nil {
		return acked
	}
	defer c.Close()
	var mu sync.Mutex
	credit := make(chan struct{}, window)
	for range window {
		credit <- struct{}{}
	}
	idOf := func(i int) uint16 { return uint16(i%60000 + 1) }
	numOf := make(map[uint16]int) // packet id -> message number in flight
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			p, err := c.Next(10 * time.Second)
			if err != nil {
				return
			}
			a, ok := p.(*codec.Ack)
			if !ok {
				continue
			}
			switch a.PacketType {
			case codec.PUBACK, codec.PUBREC:
				mu.Lock()
				if num, ok := numOf[a.PacketID]; ok {
					acked[num] = true
					if a.PacketType == codec.PUBACK {
						delete(numOf, a.PacketID)
					}
				}
				mu.Unlock()
				if a.PacketType == codec.PUBREC {
					if c.Send(&codec.Ack{PacketType: codec.PUBREL, PacketID: a.PacketID}) != nil {
						return
					}
					continue
				}
				credit <- struct{}{}
			case codec.PUBCOMP:
				mu.Lock()
				delete(numOf, a.PacketID)
				mu.Unlock()
				credit <- struct{}{}
			}
		}
	}()
	for i := 0; i < n; i++ {
		select {
		case <-credit:
		case <-readerDone:
			mu.Lock()
			defer mu.Unlock()
			return copyAcked(acked)
		}
		id := idOf(i)
		mu.Lock()
		numOf[id] = i
		mu.Unlock()
		if c.Send(&codec.Publish{Topic: []byte(topic), QoS: qos, PacketID: id, Payload: []byte(strconv.Itoa(i))}) != nil {
			break
		}
	}
	// Wait for the last acknowledgements or the broker's death.
	select {
	case <-readerDone:
	case <-time.After(10 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	return copyAcked(acked)
}

func copyAcked(m map[int]bool) map[int]bool {
	c := make(map[int]bool, len(m))
	for k := range m {
		c[k] = true
	}
	return c
}

// crashReceive reconnects the persistent subscriber and reads until the
// broker is silent for quiet, acknowledging everything. It returns how
// often each number arrived and the numbers whose repeat lacked DUP.
func crashReceive(t *testing.T, addr, id string, qos byte, quiet time.Duration) (count map[int]int, repeatNoDup []int) {
	t.Helper()
	c, _, err := dialMQTT(addr, id, false)
	require.NoError(t, err)
	defer c.Close()
	count = make(map[int]int)
	for {
		p, err := c.Next(quiet)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return count, repeatNoDup
		}
		require.NoError(t, err)
		switch p := p.(type) {
		case *codec.Publish:
			num, err := strconv.Atoi(string(p.Payload))
			require.NoError(t, err)
			count[num]++
			if count[num] > 1 && !p.Dup {
				repeatNoDup = append(repeatNoDup, num)
			}
			switch p.QoS {
			case 1:
				require.NoError(t, c.Send(&codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID}))
			case 2:
				require.NoError(t, c.Send(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID}))
			}
		case *codec.Ack:
			if p.PacketType == codec.PUBREL {
				require.NoError(t, c.Send(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID}))
			}
		}
	}
}

// subscribeOffline creates the persistent subscription and disconnects.
func subscribeOffline(t *testing.T, addr, id, filter string, qos byte) {
	t.Helper()
	c, _, err := dialMQTT(addr, id, false)
	require.NoError(t, err)
	require.NoError(t, c.Send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte(filter), QoS: qos}}}))
	p, err := c.Next(5 * time.Second)
	require.NoError(t, err)
	require.IsType(t, &codec.Suback{}, p)
	require.NoError(t, c.Send(&codec.Disconnect{}))
	_ = c.Close()
}

func runCrashRounds(t *testing.T, qos byte) {
	if testing.Short() {
		t.Skip("builds and kills a broker process")
	}
	const n = 10000
	for round := range crashRounds() {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			b := startBroker(t, dir)
			subscribeOffline(t, b.addr, "crash-sub", "crash/t", qos)
			// Kill after a random part of the stream: between a few
			// milliseconds and the time the whole stream takes.
			killAfter := time.Duration(5+rand.IntN(250)) * time.Millisecond
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case <-time.After(killAfter):
					b.kill()
				case <-ctx.Done():
				}
			}()
			acked := crashPublish(b.addr, "crash/t", qos, n, 64)
			b.kill()
			cancel()

			b2 := startBroker(t, dir)
			count, noDup := crashReceive(t, b2.addr, "crash-sub", qos, 1500*time.Millisecond)
			var lost []int
			for num := range acked {
				if count[num] == 0 {
					lost = append(lost, num)
				}
			}
			dups := 0
			for _, k := range count {
				if k > 1 {
					dups += k - 1
				}
			}
			t.Logf("killed after %v: %d acknowledged, %d received, %d duplicates", killAfter, len(acked), len(count), dups)
			require.Empty(t, lost, "acknowledged messages lost; broker log:\n%s", b2.output())
			require.Empty(t, noDup, "repeated without DUP")
			if qos == 2 {
				require.Zero(t, dups, "QoS 2 delivered more than once")
			}
		})
	}
}

// TestCrashQoS1: no acknowledged QoS 1 message is lost to kill -9.
func TestCrashQoS1(t *testing.T) { runCrashRounds(t, 1) }

// TestCrashQoS2: acknowledged QoS 2 messages arrive exactly once after
// kill -9.
func TestCrashQoS2(t *testing.T) { runCrashRounds(t, 2) }

// TestCrashRetained: a retained message acknowledged before kill -9 is
// there after the restart.
func TestCrashRetained(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a broker process")
	}
	dir := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, dir)
	c, _, err := dialMQTT(b.addr, "ret-pub", true)
	require.NoError(t, err)
	for i := range 100 {
		require.NoError(t, c.Send(&codec.Publish{Topic: []byte(fmt.Sprintf("ret/%d", i)), QoS: 1, Retain: true, PacketID: uint16(i + 1), Payload: []byte("v")}))
	}
	for range 100 {
		p, err := c.Next(5 * time.Second)
		require.NoError(t, err)
		require.IsType(t, &codec.Ack{}, p)
	}
	b.kill()
	b2 := startBroker(t, dir)
	s, _, err := dialMQTT(b2.addr, "ret-sub", true)
	require.NoError(t, err)
	require.NoError(t, s.Send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("ret/#"), QoS: 0}}}))
	got := 0
	for {
		p, err := s.Next(time.Second)
		if err != nil {
			break
		}
		if pub, ok := p.(*codec.Publish); ok {
			require.True(t, pub.Retain)
			got++
		}
	}
	require.Equal(t, 100, got, "retained messages after kill -9")
}

// TestCorruptDataDirectory: a data directory whose files were overwritten
// with random bytes does not stop the broker: it says what it could not
// read, moves it aside and starts empty; "loopmq store check" reports the
// damage first.
func TestCorruptDataDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a broker process")
	}
	dir := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, dir)
	subscribeOffline(t, b.addr, "corrupt-sub", "c/t", 1)
	b.kill()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		junk := make([]byte, 4096)
		for i := range junk {
			junk[i] = byte(rand.IntN(256))
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, e.Name()), junk, 0o644))
	}
	bin, err := buildLoopmqBinary()
	require.NoError(t, err)
	out, err := exec.Command(bin, "store", "check", dir).CombinedOutput()
	require.Error(t, err, "store check must fail on a damaged store:\n%s", out)
	t.Logf("store check: %s", out)

	b2 := startBroker(t, dir)
	c, ca, err := dialMQTT(b2.addr, "corrupt-sub", false)
	require.NoError(t, err)
	require.False(t, ca.SessionPresent, "a clean start")
	_ = c.Close()
	require.Contains(t, b2.output(), "moved aside")
	matches, _ := filepath.Glob(dir + ".corrupt-*")
	require.Len(t, matches, 1, "the damaged directory is kept for inspection")
}

// TestStopUnderLoadKeepsAcknowledged: SIGTERM while a publisher streams
// QoS 1 to an offline persistent subscriber drains the broker (exit 0) and
// every acknowledged message is there after the restart (issue 10).
func TestStopUnderLoadKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a broker process")
	}
	dir := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, dir)
	subscribeOffline(t, b.addr, "term-sub", "term/t", 1)
	exited := make(chan error, 1)
	go func() {
		time.Sleep(time.Duration(20+rand.IntN(150)) * time.Millisecond)
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		exited <- b.cmd.Wait()
	}()
	acked := crashPublish(b.addr, "term/t", 1, 10000, 64)
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM; log:\n%s", b.output())
	case <-time.After(15 * time.Second):
		t.Fatal("broker did not exit after SIGTERM")
	}
	b.killed.Do(func() {}) // already waited for

	b2 := startBroker(t, dir)
	count, noDup := crashReceive(t, b2.addr, "term-sub", 1, 1500*time.Millisecond)
	for num := range acked {
		require.NotZero(t, count[num], "acknowledged message %d lost", num)
	}
	require.Empty(t, noDup)
	t.Logf("%d acknowledged before SIGTERM, %d received after the restart", len(acked), len(count))
}

// qos2Receiver is the receiving side of QoS 2 as a client implements it
// (method B of MQTT 4.3.3): a PUBLISH is delivered to the application on
// its first arrival, its packet identifier kept until PUBREL, and a
// PUBLISH with a kept identifier is not delivered again. The state
// survives reconnections, as a persistent session's must.
type qos2Receiver struct {
	mu        sync.Mutex
	pending   map[uint16]bool
	delivered map[int]int
}

// run reads from c until it fails, answering and recording.
func (r *qos2Receiver) run(c *mqttclient.Conn) {
	for {
		p, err := c.Next(30 * time.Second)
		if err != nil {
			return
		}
		switch p := p.(type) {
		case *codec.Publish:
			r.mu.Lock()
			if !r.pending[p.PacketID] {
				r.pending[p.PacketID] = true
				if num, err := strconv.Atoi(string(p.Payload)); err == nil {
					r.delivered[num]++
				}
			}
			r.mu.Unlock()
			if c.Send(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID}) != nil {
				return
			}
		case *codec.Ack:
			if p.PacketType == codec.PUBREL {
				r.mu.Lock()
				delete(r.pending, p.PacketID)
				r.mu.Unlock()
				if c.Send(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID}) != nil {
					return
				}
			}
		}
	}
}

// crashOnline runs one online-subscriber crash round: the persistent
// subscriber id (on filter topic at qos) is connected, r reading for it,
// while a publisher streams 5,000 messages and the broker is killed at a
// random point; the broker restarts on the same directory and the
// subscriber reconnects, r reading again for 1.5 s. It returns the
// numbers the publisher got acknowledged and when the kill came.
func crashOnline(t *testing.T, id, topic string, qos byte, r interface{ run(*mqttclient.Conn) }) (acked map[int]bool, killAfter time.Duration) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	b := startBroker(t, dir)
	subscribeOffline(t, b.addr, id, topic, qos)
	read := func(addr string) (stop func()) { return runReceiver(t, addr, id, r) }
	stop := read(b.addr)
	killAfter = time.Duration(20+rand.IntN(200)) * time.Millisecond
	go func() { time.Sleep(killAfter); b.kill() }()
	acked = crashPublish(b.addr, topic, qos, 5000, 32)
	b.kill()
	stop()

	b2 := startBroker(t, dir)
	stop = read(b2.addr)
	time.Sleep(1500 * time.Millisecond)
	stop()
	return acked, killAfter
}

// runReceiver connects id's persistent session and runs r on it until
// stop closes the connection.
func runReceiver(t *testing.T, addr, id string, r interface{ run(*mqttclient.Conn) }) (stop func()) {
	t.Helper()
	sc, _, err := dialMQTT(addr, id, false)
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { r.run(sc); close(done) }()
	return func() { _ = sc.Close(); <-done }
}

// TestCrashQoS1FanOut: one stream to three persistent subscribers, two
// connected and acknowledging and one offline, through kill -9. The
// broker writes a message grouped for several of them once, as a message
// record deleted with the last acknowledgement (store/groups.go). After the
// restart every message the publisher got PUBACK for reaches each
// subscriber, and a repeat carries DUP.
func TestCrashQoS1FanOut(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a broker process")
	}
	for round := range crashRounds() {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			b := startBroker(t, dir)
			online := []string{"fan-on-0", "fan-on-1"}
			for _, id := range append(online, "fan-off") {
				subscribeOffline(t, b.addr, id, "fan/t", 1)
			}
			rs := []*qos1Receiver{{count: map[int]int{}}, {count: map[int]int{}}}
			readAll := func(addr string) (stop func()) {
				var stops []func()
				for i, id := range online {
					stops = append(stops, runReceiver(t, addr, id, rs[i]))
				}
				return func() {
					for _, s := range stops {
						s()
					}
				}
			}
			stop := readAll(b.addr)
			killAfter := time.Duration(20+rand.IntN(200)) * time.Millisecond
			go func() { time.Sleep(killAfter); b.kill() }()
			acked := crashPublish(b.addr, "fan/t", 1, 5000, 32)
			b.kill()
			stop()
			rep, err := store.Check(dir)
			require.NoError(t, err)

			b2 := startBroker(t, dir)
			stop = readAll(b2.addr)
			count, noDup := crashReceive(t, b2.addr, "fan-off", 1, 1500*time.Millisecond)
			stop()
			for num := range acked {
				require.NotZero(t, count[num], "acknowledged message %d lost to the offline subscriber", num)
			}
			require.Empty(t, noDup, "repeated without DUP to the offline subscriber")
			for i, r := range rs {
				r.mu.Lock()
				for num := range acked {
					require.NotZero(t, r.count[num], "acknowledged message %d lost to %s", num, online[i])
				}
				require.Empty(t, r.repeatNoDup, "repeated without DUP to %s", online[i])
				r.mu.Unlock()
			}
			t.Logf("killed after %v: %d acknowledged, offline subscriber got %d; the store held %d message records referred to by %d entries",
				killAfter, len(acked), len(count), rep.Messages, rep.EntryRefs)
		})
	}
}

// TestCrashQoS2OnlineSubscriber: the subscriber is connected and
// acknowledging while the broker is killed; after the restart it resumes
// its session. Every message the publisher got PUBREC for reaches the
// application exactly once: the broker resends in-flight QoS 2 messages
// with their packet identifiers, which the client recognises.
func TestCrashQoS2OnlineSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a broker process")
	}
	for round := range crashRounds() {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			r := &qos2Receiver{pending: map[uint16]bool{}, delivered: map[int]int{}}
			acked, killAfter := crashOnline(t, "q2-online", "q2/t", 2, r)
			r.mu.Lock()
			defer r.mu.Unlock()
			for num := range acked {
				require.NotZero(t, r.delivered[num], "acknowledged message %d lost", num)
			}
			for num, k := range r.delivered {
				require.Equal(t, 1, k, "message %d delivered %d times", num, k)
			}
			t.Logf("killed after %v: %d acknowledged, %d delivered once each", killAfter, len(acked), len(r.delivered))
		})
	}
}

// qos1Receiver reads QoS 1 messages and acknowledges each, counting
// arrivals per number across reconnections and noting repeats that came
// without DUP.
type qos1Receiver struct {
	mu          sync.Mutex
	count       map[int]int
	repeatNoDup []int
}

// run reads from c until it fails.
func (r *qos1Receiver) run(c *mqttclient.Conn) {
	for {
		p, err := c.Next(30 * time.Second)
		if err != nil {
			return
		}
		pub, ok := p.(*codec.Publish)
		if !ok {
			continue
		}
		if num, err := strconv.Atoi(string(pub.Payload)); err == nil {
			r.mu.Lock()
			r.count[num]++
			if r.count[num] > 1 && !pub.Dup {
				r.repeatNoDup = append(r.repeatNoDup, num)
			}
			r.mu.Unlock()
		}
		if c.Send(&codec.Ack{PacketType: codec.PUBACK, PacketID: pub.PacketID}) != nil {
			return
		}
	}
}

// TestCrashQoS1OnlineSubscriber: the subscriber is connected and
// acknowledging while the broker is killed. After the restart every
// message the publisher got PUBACK for reaches it, and a message it
// receives a second time (sent before the crash, its acknowledgement not
// yet durable) carries DUP [MQTT-3.3.1-1].
func TestCrashQoS1OnlineSubscriber(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills a broker process")
	}
	for round := range crashRounds() {
		t.Run(fmt.Sprintf("round%d", round), func(t *testing.T) {
			r := &qos1Receiver{count: map[int]int{}}
			acked, killAfter := crashOnline(t, "q1-online", "q1/t", 1, r)
			r.mu.Lock()
			defer r.mu.Unlock()
			for num := range acked {
				require.NotZero(t, r.count[num], "acknowledged message %d lost", num)
			}
			require.Empty(t, r.repeatNoDup, "repeated without DUP")
			again := 0
			for _, k := range r.count {
				if k > 1 {
					again++
				}
			}
			t.Logf("killed after %v: %d acknowledged, %d received, %d of them again with DUP", killAfter, len(acked), len(r.count), again)
		})
	}
}
