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
)

func startBroker(t *testing.T) *engine.Server {
	t.Helper()
	s := engine.New(engine.Options{Listen: "127.0.0.1:0", Loops: 2,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	"$SYS/broker/store/messages/count",
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
