package systopics

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/store"
)

func startBroker(t *testing.T) *engine.Server {
	t.Helper()
	return startBrokerWith(t, engine.Options{})
}

// startBrokerWith starts a broker with o on a free loopback port; the
// test's cleanup stops it.
func startBrokerWith(t *testing.T, o engine.Options) *engine.Server {
	t.Helper()
	o.Listen, o.Loops = "127.0.0.1:0", 2
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := engine.New(o)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
	})
	return s
}

// runPublisher runs a Publisher for s every interval until the test ends.
func runPublisher(t *testing.T, s *engine.Server, interval time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := New(Options{Server: s, Interval: interval, Version: "1.2.3"})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// mosquittoNames are $SYS topics Mosquitto 2.0 publishes that loopmq
// publishes under the same name.
var mosquittoNames = []string{
	"$SYS/broker/version", "$SYS/broker/uptime",
	"$SYS/broker/clients/total", "$SYS/broker/clients/connected", "$SYS/broker/clients/disconnected",
	"$SYS/broker/clients/maximum", "$SYS/broker/clients/expired", "$SYS/broker/clients/active", "$SYS/broker/clients/inactive",
	"$SYS/broker/messages/received", "$SYS/broker/messages/sent", "$SYS/broker/messages/stored",
	"$SYS/broker/store/messages/count", "$SYS/broker/store/messages/bytes",
	"$SYS/broker/subscriptions/count", "$SYS/broker/retained messages/count",
	"$SYS/broker/heap/current", "$SYS/broker/heap/maximum",
	"$SYS/broker/publish/messages/received", "$SYS/broker/publish/messages/sent", "$SYS/broker/publish/messages/dropped",
	"$SYS/broker/publish/bytes/received", "$SYS/broker/publish/bytes/sent",
	"$SYS/broker/bytes/received", "$SYS/broker/bytes/sent",
	"$SYS/broker/load/messages/received/1min", "$SYS/broker/load/messages/received/5min", "$SYS/broker/load/messages/received/15min",
	"$SYS/broker/load/messages/sent/1min", "$SYS/broker/load/publish/received/1min", "$SYS/broker/load/publish/sent/1min",
	"$SYS/broker/load/bytes/received/1min", "$SYS/broker/load/bytes/sent/1min",
	"$SYS/broker/load/connections/1min", "$SYS/broker/load/sockets/1min",
}

// TestSysWithPaho subscribes to $SYS/# with Paho and checks the names,
// the formats, and that values follow what clients do.
func TestSysWithPaho(t *testing.T) {
	s := startBroker(t)
	runPublisher(t, s, 50*time.Millisecond)

	var mu sync.Mutex
	got := map[string]string{}
	o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).SetClientID("sys-paho").
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(50) })
	tok = c.Subscribe("$SYS/#", 0, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got[m.Topic()] = string(m.Payload())
		mu.Unlock()
	})
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	// Some traffic, so that the message counts move.
	for i := range 5 {
		c.Publish("app/x", 1, false, strconv.Itoa(i)).WaitTimeout(5 * time.Second)
	}

	get := func(topic string) string {
		mu.Lock()
		defer mu.Unlock()
		return got[topic]
	}
	require.Eventually(t, func() bool {
		for _, n := range mosquittoNames {
			if get(n) == "" {
				return false
			}
		}
		return get("$SYS/broker/publish/messages/received") == "5"
	}, 5*time.Second, 10*time.Millisecond, "every name published, and the 5 PUBLISH counted")
	require.Equal(t, "loopmq version 1.2.3", get("$SYS/broker/version"))
	require.Regexp(t, `^\d+ seconds$`, get("$SYS/broker/uptime"))
	require.Equal(t, "1", get("$SYS/broker/clients/connected"))
	require.Equal(t, "1", get("$SYS/broker/subscriptions/count"))
	require.Regexp(t, `^\d+\.\d\d$`, get("$SYS/broker/load/messages/received/1min"))
	require.NotEqual(t, "0", get("$SYS/broker/heap/current"))
	retained, err := strconv.Atoi(get("$SYS/broker/retained messages/count"))
	require.NoError(t, err)
	require.Greater(t, retained, len(mosquittoNames)/2, "$SYS topics are retained")
	storeBytes, err := strconv.Atoi(get("$SYS/broker/store/messages/bytes"))
	require.NoError(t, err)
	require.Greater(t, storeBytes, retained, "the retained $SYS payloads are in store/messages/bytes")
}

// TestSysWithMosquittoSub reads $SYS with Debian's mosquitto_sub, as an
// operator would: the retained values arrive at once.
func TestSysWithMosquittoSub(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mosquitto_sub missing in CI: %v", err)
		}
		t.Skipf("mosquitto_sub not found (apt-get install mosquitto-clients): %v", err)
	}
	s := startBroker(t)
	// A connection first, so that a loop exists and the counts are not all 0.
	conn, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	runPublisher(t, s, 100*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a few updates

	host, port, err := net.SplitHostPort(s.Addr().String())
	require.NoError(t, err)
	sub := func(topic string, n int) map[string]string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "mosquitto_sub", "-h", host, "-p", port, "-t", topic,
			"-C", strconv.Itoa(n), "-v", "-W", "5").CombinedOutput()
		require.NoError(t, err, "%s", out)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, n)
		seen := map[string]string{}
		for _, l := range lines {
			topic, payload, ok := strings.Cut(l, " ")
			require.True(t, ok, l)
			require.True(t, strings.HasPrefix(topic, "$SYS/broker/"), l)
			seen[topic] = payload
		}
		return seen
	}
	require.Len(t, sub("$SYS/#", 20), 20, "20 different retained topics")
	require.Equal(t, map[string]string{"$SYS/broker/version": "loopmq version 1.2.3"}, sub("$SYS/broker/version", 1))
	require.Regexp(t, `^\d+ seconds$`, sub("$SYS/broker/uptime", 1)["$SYS/broker/uptime"])
}

// TestLoadAverage checks the moving averages against Mosquitto's formula:
// a constant rate converges on itself, per minute.
func TestLoadAverage(t *testing.T) {
	s := startBroker(t)
	p := New(Options{Server: s, Interval: time.Second})
	for range 3000 {
		p.load("x", 10, 1) // 10 per second = 600 per minute
	}
	require.InDelta(t, 600, p.loads["x"][0], 0.01)
	require.InDelta(t, 600, p.loads["x"][1], 1)
	require.InDelta(t, 600, p.loads["x"][2], 25)
	p2 := New(Options{Server: s, Interval: time.Second})
	p2.load("x", 60, 60) // one minute at 1/s from 0
	require.InDelta(t, 60*(1-1/2.718281828), p2.loads["x"][0], 0.01)
}

// TestClientsMaximumAfterRestart: $SYS/broker/clients/maximum is
// Mosquitto's, the largest clients/total (connected clients and
// persistent disconnected ones) seen at an update since the broker
// started: after a restart that restored persistent sessions it counts
// them, it is never below clients/total, and it keeps its peak when
// clients go. (QA: it read 0 after a restart that restored 3 sessions,
// while clients/total read 3.)
func TestClientsMaximumAfterRestart(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s := startBrokerWith(t, engine.Options{Store: st})
	connect := func(s *engine.Server, id string, clean bool) paho.Client {
		t.Helper()
		o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).SetClientID(id).
			SetCleanSession(clean).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		c := paho.NewClient(o)
		tok := c.Connect()
		require.True(t, tok.WaitTimeout(5*time.Second))
		require.NoError(t, tok.Error())
		return c
	}
	settled := func(s *engine.Server, sessions int, connected int64) {
		t.Helper()
		require.Eventually(t, func() bool {
			st := s.Stats()
			return st.Sessions == sessions && st.Connected == connected
		}, 5*time.Second, 10*time.Millisecond)
	}
	for i := range 3 {
		connect(s, "dev"+strconv.Itoa(i), false).Disconnect(50)
	}
	settled(s, 3, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))

	s = startBrokerWith(t, engine.Options{Store: st}) // restores the 3 sessions
	p := New(Options{Server: s, Interval: time.Hour})
	update := func() map[string]string {
		p.Update(time.Now())
		const c = "$SYS/broker/clients/"
		return map[string]string{"total": p.last[c+"total"], "connected": p.last[c+"connected"],
			"disconnected": p.last[c+"disconnected"], "maximum": p.last[c+"maximum"]}
	}
	require.Equal(t, map[string]string{"total": "3", "connected": "0", "disconnected": "3", "maximum": "3"}, update())

	back := connect(s, "dev0", false)
	a, b := connect(s, "new-a", true), connect(s, "new-b", true)
	settled(s, 5, 3)
	require.Equal(t, map[string]string{"total": "5", "connected": "3", "disconnected": "2", "maximum": "5"}, update())

	for _, c := range []paho.Client{back, a, b} {
		c.Disconnect(50)
	}
	settled(s, 3, 0)
	require.Equal(t, map[string]string{"total": "3", "connected": "0", "disconnected": "3", "maximum": "5"}, update())
}
