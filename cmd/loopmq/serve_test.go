package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/passwd"
)

// Tests of the loopmq binary as an operator runs it: built once (with a
// -ldflags -X version), started as a subprocess with JSON logs, driven
// with signals and real MQTT clients.

const testVersion = "v0.0.0-test"

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// removeTestBinary removes what loopmqBinary built; TestMain calls it.
func removeTestBinary() {
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
}

// loopmqBinary builds cmd/loopmq once per test run.
func loopmqBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "loopmq-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "loopmq")
		out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+testVersion, "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// proc is a running loopmq.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	logs []map[string]any
	raw  strings.Builder
	more chan struct{} // signalled on every new log line
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
	addr string        // the MQTT TCP listener
}

// startLoopmq runs loopmq with args after a loopback listener on a free
// port, JSON logs and no $SYS, and waits until it listens.
func startLoopmq(t *testing.T, args ...string) *proc {
	t.Helper()
	all := append([]string{"-listen", "127.0.0.1:0", "-log-format", "json", "-sys-interval", "0", "-persistence=false"}, args...)
	p := &proc{t: t, cmd: exec.Command(loopmqBinary(t), all...), more: make(chan struct{}, 1), done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, p.cmd.Start())
	go p.read(stderr)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("loopmq's log:\n%s", p.log())
		}
	})
	l := p.waitLog("loopmq listening", 10*time.Second)
	p.addr, _ = l["addr"].(string)
	require.NotEmpty(t, p.addr)
	return p
}

func (p *proc) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		_ = json.Unmarshal([]byte(line), &m)
		p.mu.Lock()
		p.raw.WriteString(line + "\n")
		if m != nil {
			p.logs = append(p.logs, m)
		}
		p.mu.Unlock()
		select {
		case p.more <- struct{}{}:
		default:
		}
	}
	p.err = p.cmd.Wait()
	close(p.done)
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// waitLog waits for a log record whose message starts with msg and
// returns it; records already seen count.
func (p *proc) waitLog(msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	return p.waitLogAfter(0, msg, timeout)
}

// waitLogAfter is waitLog for records after the first n.
func (p *proc) waitLogAfter(n int, msg string, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.logs[min(n, len(p.logs)):] {
			if s, _ := l["msg"].(string); strings.HasPrefix(s, msg) {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.more:
		case <-p.done:
			p.t.Fatalf("loopmq exited (%v) before logging %q", p.err, msg)
		case <-deadline:
			p.t.Fatalf("no %q in loopmq's log within %v", msg, timeout)
		}
	}
}

func (p *proc) nlogs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.logs)
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(s))
}

// pahoConnect connects a Paho 3.1.1 client as user (with password pw)
// and returns it, or the CONNECT's error.
func pahoConnect(t *testing.T, addr, id, user, pw string) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetUsername(user).SetPassword(pw).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second), "connect timeout")
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func writePasswords(t *testing.T, path string, users ...string) {
	t.Helper()
	var b strings.Builder
	for _, u := range users {
		fmt.Fprintf(&b, "%s:%s\n", u, passwd.HashPBKDF2([]byte(u+"-pw"), 101))
	}
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
}

func TestVersionCommand(t *testing.T) {
	out, err := exec.Command(loopmqBinary(t), "version").Output()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(out), "loopmq "+testVersion+" go"), "%s", out)
}

// TestServeBanner: the start-up banner names the version, listeners,
// limits and data directory.
func TestServeBanner(t *testing.T) {
	// A directory of the test's own: a fixed /tmp path is shared by every
	// checkout on the machine, and a store another build wrote there in a
	// newer format made this test fail.
	dir := filepath.Join(t.TempDir(), "data")
	p := startLoopmq(t, "-max-inflight", "7", "-persistence=true", "-data-dir", dir)
	require.Equal(t, "loopmq "+testVersion, p.waitLog("loopmq "+testVersion, time.Second)["msg"])
	require.Equal(t, "tcp=127.0.0.1:0", p.waitLog("listeners", time.Second)["mqtt"])
	limits := p.waitLog("limits", time.Second)
	require.Equal(t, 7.0, limits["max_inflight"])
	require.Equal(t, 2.0, limits["max_qos"])
	require.Equal(t, "none", limits["capabilities_off"])
	require.Equal(t, dir, p.waitLog("persistence", time.Second)["data_dir"])
}

// TestServeSIGHUPReloadsPasswords: SIGHUP changes who may log in, and
// nobody connected is disconnected; a bad file keeps the previous one.
func TestServeSIGHUPReloadsPasswords(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "passwd")
	writePasswords(t, pwFile, "alice")
	p := startLoopmq(t, "-password-file", pwFile)

	alice, err := pahoConnect(t, p.addr, "alice-1", "alice", "alice-pw")
	require.NoError(t, err)
	got := make(chan string, 10)
	tok := alice.Subscribe("chat", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	_, err = pahoConnect(t, p.addr, "bob-1", "bob", "bob-pw")
	require.Error(t, err, "bob is not in the file yet")

	writePasswords(t, pwFile, "bob")
	n := p.nlogs()
	p.signal(syscall.SIGHUP)
	l := p.waitLogAfter(n, "SIGHUP: password and ACL files reloaded", 5*time.Second)
	require.Equal(t, 1.0, l["users"])
	require.Equal(t, 1.0, l["users_before"])

	bob, err := pahoConnect(t, p.addr, "bob-2", "bob", "bob-pw")
	require.NoError(t, err, "bob may log in now")
	_, err = pahoConnect(t, p.addr, "alice-2", "alice", "alice-pw")
	require.Error(t, err, "alice may not log in any more")
	require.True(t, alice.IsConnectionOpen(), "alice's connection stays up")
	require.True(t, bob.Publish("chat", 1, false, "hello").WaitTimeout(5*time.Second))
	select {
	case m := <-got:
		require.Equal(t, "hello", m, "alice's session still receives")
	case <-time.After(5 * time.Second):
		t.Fatal("alice's subscription got nothing after the reload")
	}

	// A broken file is refused; the previous one stays in force.
	require.NoError(t, os.WriteFile(pwFile, []byte("bob:not-a-hash\n"), 0o600))
	n = p.nlogs()
	p.signal(syscall.SIGHUP)
	l = p.waitLogAfter(n, "SIGHUP: keeping the previous password and ACL files", 5*time.Second)
	require.Contains(t, l["error"], "passwd")
	_, err = pahoConnect(t, p.addr, "bob-3", "bob", "bob-pw")
	require.NoError(t, err, "bob still may log in")
	require.True(t, alice.IsConnectionOpen())
}

// TestServeSIGTERMDrains: SIGTERM tells 5.0 clients the server is
// shutting down (DISCONNECT 0x8B) and exits 0 in bounded time.
func TestServeSIGTERMDrains(t *testing.T) {
	p := startLoopmq(t)
	conn, err := net.DialTimeout("tcp", p.addr, 5*time.Second)
	require.NoError(t, err)
	disc := make(chan *paho5.Disconnect, 1)
	c5 := paho5.NewClient(paho5.ClientConfig{Conn: conn, OnClientError: func(error) {},
		OnServerDisconnect: func(d *paho5.Disconnect) { disc <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c5.Connect(ctx, &paho5.Connect{ClientID: "v5-drain", CleanStart: true, KeepAlive: 30})
	require.NoError(t, err)
	c3, err := pahoConnect(t, p.addr, "v3-drain", "", "")
	require.NoError(t, err)
	require.True(t, c3.IsConnectionOpen())

	start := time.Now()
	p.signal(syscall.SIGTERM)
	select {
	case d := <-disc:
		require.Equal(t, byte(0x8B), d.ReasonCode, "Server shutting down")
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT for the 5.0 client")
	}
	select {
	case <-p.done:
	case <-time.After(drainTimeout + 2*time.Second):
		t.Fatal("loopmq did not exit in bounded time")
	}
	require.NoError(t, p.err, "exit status 0")
	require.Less(t, time.Since(start), 5*time.Second)
	p.waitLog("stopped", time.Second)
}

// TestServeEndpoints: a config file turns on metrics, pprof and $SYS;
// the pprof endpoint returns a CPU profile that pprof parses.
func TestServeEndpoints(t *testing.T) {
	cfg := writeFile(t, "loopmq.yaml", `
metrics:
  listen: 127.0.0.1:0
pprof:
  listen: 127.0.0.1:0
`)
	p := startLoopmq(t, "-config", cfg, "-sys-interval", "1")
	metricsAddr := p.waitLog("metrics endpoint listening", time.Second)["addr"].(string)
	pprofAddr := p.waitLog("pprof endpoint listening", time.Second)["addr"].(string)

	get := func(url string) (int, []byte) {
		t.Helper()
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, body
	}
	code, _ := get("http://" + metricsAddr + "/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _ = get("http://" + metricsAddr + "/readyz")
	require.Equal(t, http.StatusOK, code)
	code, body := get("http://" + metricsAddr + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), `loopmq_build_info{version="`+testVersion+`"} 1`)

	// $SYS through the broker, with Paho.
	c, err := pahoConnect(t, p.addr, "sys-reader", "", "")
	require.NoError(t, err)
	version := make(chan string, 1)
	tok := c.Subscribe("$SYS/broker/version", 0, func(_ paho.Client, m paho.Message) {
		select {
		case version <- string(m.Payload()):
		default:
		}
	})
	require.True(t, tok.WaitTimeout(5*time.Second))
	select {
	case v := <-version:
		require.Equal(t, "loopmq version "+testVersion, v)
	case <-time.After(5 * time.Second):
		t.Fatal("no $SYS/broker/version")
	}

	code, body = get("http://" + pprofAddr + "/debug/pprof/profile?seconds=1")
	require.Equal(t, http.StatusOK, code)
	prof, err := profile.ParseData(body)
	require.NoError(t, err)
	require.NoError(t, prof.CheckValid())
	require.NotEmpty(t, prof.SampleType)
	require.Equal(t, "samples", prof.SampleType[0].Type)
	code, body = get("http://" + pprofAddr + "/debug/pprof/mutex?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "mutex", "mutex profiling is on")
}

func TestGOMAXPROCSFor(t *testing.T) {
	f := func(suggested, current int, env string, want int) {
		t.Helper()
		require.Equal(t, want, gomaxprocsFor(suggested, current, env))
	}
	f(0, 2, "", 0) // no TLS or WebSocket listener
	f(3, 2, "", 3)
	f(3, 3, "", 0)
	f(3, 8, "", 0)  // never lowered
	f(3, 2, "2", 0) // the environment decides
}

// TestServeGOMAXPROCS: with a WebSocket listener loopmq runs with one P
// more than it has event loops, unless GOMAXPROCS is in the environment
// (then the engine warns); without one it leaves GOMAXPROCS alone.
func TestServeGOMAXPROCS(t *testing.T) {
	loops := strconv.Itoa(runtime.NumCPU()) // at least the default GOMAXPROCS
	t.Setenv("GOMAXPROCS", "")
	p := startLoopmq(t, "-loops", loops, "-ws-listen", "127.0.0.1:0")
	l := p.waitLog("GOMAXPROCS raised", time.Second)
	require.Equal(t, float64(runtime.NumCPU()+1), l["to"])

	t.Setenv("GOMAXPROCS", loops)
	p = startLoopmq(t, "-loops", loops, "-ws-listen", "127.0.0.1:0")
	require.NotContains(t, p.log(), "GOMAXPROCS raised")
	require.Equal(t, float64(runtime.NumCPU()), p.waitLog("GOMAXPROCS leaves no P free", time.Second)["gomaxprocs"], "the engine says so")

	t.Setenv("GOMAXPROCS", "")
	p = startLoopmq(t, "-loops", loops)
	require.NotContains(t, p.log(), "GOMAXPROCS")

	// Default loops: one per P, counted before GOMAXPROCS is raised.
	p = startLoopmq(t, "-ws-listen", "127.0.0.1:0")
	to := p.waitLog("GOMAXPROCS raised", time.Second)["to"]
	require.Equal(t, to.(float64)-1, p.waitLog("loopmq listening", time.Second)["loops"])

	// A CPU limit (here the variable) bounds the default loops.
	t.Setenv("GOMAXPROCS", "1")
	p = startLoopmq(t)
	require.Equal(t, float64(1), p.waitLog("loopmq listening", time.Second)["loops"])
}

// TestServeMosquittoConfPersistenceLocation: Debian's mosquitto.conf sets
// persistence_location to the directory where Mosquitto keeps
// mosquitto.db. loopmq run with that file starts, with its store in a
// directory of its own below it, and leaves Mosquitto's file alone. (Found
// by exploratory QA: it refused to start, the directory holding a file
// that is not its store.)
func TestServeMosquittoConfPersistenceLocation(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "mosquitto.db")
	require.NoError(t, os.WriteFile(db, []byte("\x00\xb5\x00mosquitto db"), 0o600))
	conf := writeFile(t, "mosquitto.conf", "persistence true\npersistence_location "+dir+"/\nallow_anonymous true\n")
	p := startLoopmq(t, "-mosquitto-conf", conf, "-persistence=true")
	require.Equal(t, filepath.Join(dir, "loopmq"), p.waitLog("persistence", time.Second)["data_dir"])
	b, err := os.ReadFile(db)
	require.NoError(t, err)
	require.Equal(t, "\x00\xb5\x00mosquitto db", string(b))
}
