package loadgen

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/engine"
)

// startEngine runs an in-process loopmq broker on a free loopback port.
func startEngine(t testing.TB) string {
	t.Helper()
	return startEngineWith(t, engine.Options{}).Addr().String()
}

// startEngineWith is startEngine with o, on a free loopback port with two
// loops and no log.
func startEngineWith(t testing.TB, o engine.Options) *engine.Server {
	t.Helper()
	o.Listen, o.Loops, o.Logger = "127.0.0.1:0", 2, slog.New(slog.NewTextHandler(io.Discard, nil))
	s := engine.New(o)
	require.NoError(t, s.Start())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Stop(ctx)
		if n := s.Stats().Panics; n != 0 {
			t.Errorf("the broker recovered %d panics (each logged with its stack)", n)
		}
	})
	return s
}

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs Debian's Mosquitto on a free port, or skips the test
// when it is not installed.
func startMosquitto(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(mosquittoBin); err != nil {
		t.Skipf("mosquitto not installed (%s): apt-get install mosquitto", mosquittoBin)
	}
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "mosquitto.conf")
	// set_tcp_nodelay: without it Mosquitto's small acknowledgements wait
	// for Nagle's algorithm and publish-to-ack latency measures that.
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error\n", port)
	require.NoError(t, os.WriteFile(conf, []byte(body), 0o644))
	require.NoError(t, os.Chmod(filepath.Dir(conf), 0o755))
	cmd := exec.Command(mosquittoBin, "-c", conf)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 5*time.Second, 20*time.Millisecond, "mosquitto did not start listening on %s", addr)
	return addr
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
