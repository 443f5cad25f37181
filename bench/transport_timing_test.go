package bench

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/loopmq/loopmq/codec"
)

// Transport benchmarks: the cost of TLS and WebSocket against plain TCP.
// The broker runs as its own process (cmd/loopmq, built by the benchmark)
// so that its CPU time (/proc/PID/stat) and resident memory
// (/proc/PID/status) are its own, not the clients'. Every transport is
// measured in the same invocation, TCP first as the baseline.
//
//	go test ./bench -run '^$' -bench 'Transport|IdleConn' -benchtime 200000x

// transports are the listeners measured, in order.
var transports = []string{"tcp", "tls", "ws", "wss"}

// brokerProc is a loopmq process with every listener on a free port.
type brokerProc struct {
	cmd   *exec.Cmd
	addrs map[string]string // transport → host:port
	tls   *tls.Config       // client configuration trusting the broker's CA
}

var listening = regexp.MustCompile(`msg="loopmq listening" (?:transport=(\w+) )?addr=(\S+)`)

func startBrokerProc(b *testing.B) *brokerProc {
	b.Helper()
	dir := b.TempDir()
	bin := filepath.Join(dir, "loopmq")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/loopmq").CombinedOutput(); err != nil {
		b.Fatalf("build loopmq: %v\n%s", err, out)
	}
	certFile, keyFile, pool := benchCert(b, dir)
	cmd := exec.Command(bin, "-loops", strconv.Itoa(brokerLoops), "-listen", "127.0.0.1:0",
		"-tls-listen", "127.0.0.1:0", "-ws-listen", "127.0.0.1:0", "-wss-listen", "127.0.0.1:0",
		"-tls-cert", certFile, "-tls-key", keyFile, "-persistence=false")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	bp := &brokerProc{cmd: cmd, addrs: map[string]string{}, tls: &tls.Config{RootCAs: pool}}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	for len(bp.addrs) < len(transports) && sc.Scan() {
		if m := listening.FindStringSubmatch(sc.Text()); m != nil {
			tr := m[1]
			if tr == "" {
				tr = "tcp"
			}
			bp.addrs[tr] = m[2]
		}
	}
	if len(bp.addrs) < len(transports) {
		b.Fatalf("broker did not report its listeners: %v", bp.addrs)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	return bp
}

// benchCert writes a throw-away CA-signed certificate for 127.0.0.1.
func benchCert(b *testing.B, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	b.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		b.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		b.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// cpu returns the broker's utime+stime.
func (bp *brokerProc) cpu(b *testing.B) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", bp.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// rss returns the broker's resident set size in bytes.
func (bp *brokerProc) rss(b *testing.B) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", bp.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// dial opens a client connection over transport tr: a byte stream of
// MQTT packets whatever is underneath.
func (bp *brokerProc) dial(b *testing.B, tr string) net.Conn {
	b.Helper()
	addr := bp.addrs[tr]
	var (
		c   net.Conn
		err error
	)
	switch tr {
	case "tcp":
		c, err = net.DialTimeout("tcp", addr, handshakeTimeout)
	case "tls":
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: handshakeTimeout}, "tcp", addr, bp.tls)
	case "ws", "wss":
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		d := ws.Dialer{Protocols: []string{"mqtt"}, TLSConfig: bp.tls}
		var br *bufio.Reader
		c, br, _, err = d.Dial(ctx, tr+"://"+addr+"/mqtt")
		if err == nil {
			var src io.Reader = c
			if br != nil {
				src = io.MultiReader(br, c)
			}
			c = &wsClientConn{Conn: c, rd: wsutil.NewClientSideReader(src)}
		}
	}
	if err != nil {
		b.Fatalf("dial %s: %v", tr, err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// wsClientConn is a client-side WebSocket connection read and written as
// a byte stream: each Write one masked binary frame.
type wsClientConn struct {
	net.Conn
	rd    *wsutil.Reader
	inMsg bool
}

func (c *wsClientConn) Read(p []byte) (int, error) {
	for {
		if !c.inMsg {
			h, err := c.rd.NextFrame()
			if err != nil {
				return 0, err
			}
			if h.OpCode.IsControl() {
				if err := c.rd.Discard(); err != nil {
					return 0, err
				}
				continue
			}
			c.inMsg = true
		}
		n, err := c.rd.Read(p)
		if err == io.EOF {
			c.inMsg = false
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsClientConn) Write(p []byte) (int, error) {
	if err := ws.WriteFrame(c.Conn, ws.MaskFrame(ws.NewBinaryFrame(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// mqttHandshake sends CONNECT (and SUBSCRIBE to filter unless empty) and
// waits for the answers.
func mqttHandshake(b *testing.B, c net.Conn, rd *frameReader, id, filter string) {
	b.Helper()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	out := (&codec.Connect{Version: codec.V311, CleanStart: true, ClientID: []byte(id)}).AppendTo(nil, codec.V311)
	if filter != "" {
		out = (&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte(filter)}}}).AppendTo(out, codec.V311)
	}
	if _, err := c.Write(out); err != nil {
		b.Fatal(err)
	}
	want := []codec.Type{codec.CONNACK}
	if filter != "" {
		want = append(want, codec.SUBACK)
	}
	for _, typ := range want {
		h, _, err := rd.frame()
		if err != nil || h.Type != typ {
			b.Fatalf("%s: got %v (%v), want %v", id, h.Type, err, typ)
		}
	}
}

// BenchmarkTransport: QoS 0, 64-byte payloads, one publisher to one
// subscriber over each transport; b.N messages. The publisher keeps at
// most 256 messages ahead of the subscriber (bursts of 32), so the run
// measures the broker, not socket buffers. broker-cpu-ns/msg is the
// broker process's CPU time (10 ms resolution: use a b.N of 10^5 or more).
func BenchmarkTransport(b *testing.B) {
	bp := startBrokerProc(b)
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) {
			sub, pub := bp.dial(b, tr), bp.dial(b, tr)
			srd := &frameReader{conn: sub, buf: make([]byte, readBufSize)}
			prd := &frameReader{conn: pub, buf: make([]byte, readBufSize)}
			topic := fmt.Sprintf("bench/transport/%s/%d", tr, b.N)
			mqttHandshake(b, sub, srd, "sub-"+topic, topic)
			mqttHandshake(b, pub, prd, "pub-"+topic, "")
			var got atomic.Int64
			subErr := make(chan error, 1)
			go func() {
				for got.Load() < int64(b.N) {
					h, _, ok, err := srd.next()
					if err == nil && !ok {
						err = srd.fill()
					}
					if err != nil {
						subErr <- err
						return
					}
					if ok && h.Type == codec.PUBLISH {
						got.Add(1)
					}
				}
				subErr <- nil
			}()
			var burst []byte
			for range 32 {
				burst = (&codec.Publish{Topic: []byte(topic), Payload: make([]byte, payloadSize())}).AppendTo(burst, codec.V311)
			}
			one := len(burst) / 32
			cpu0, t0 := bp.cpu(b), time.Now()
			b.ResetTimer()
			for sent := 0; sent < b.N; {
				k := min(32, b.N-sent)
				for int64(sent)-got.Load() > 256-32 {
					time.Sleep(20 * time.Microsecond)
				}
				if _, err := pub.Write(burst[:k*one]); err != nil {
					b.Fatal(err)
				}
				sent += k
			}
			select {
			case err := <-subErr:
				if err != nil {
					b.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				b.Fatalf("%s: %d of %d delivered", tr, got.Load(), b.N)
			}
			b.StopTimer()
			el, cpu := time.Since(t0), bp.cpu(b)-cpu0
			b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "broker-cpu-ns/msg")
		})
	}
}

// BenchmarkIdleConnMemory: the broker's resident memory per idle,
// CONNECTed client over each transport (2,000 of them, on a fresh broker
// process per transport; b.N is ignored). RSS includes garbage the
// broker's GC has not returned yet, so the figures are upper bounds, and
// kernel socket memory is not in it.
func BenchmarkIdleConnMemory(b *testing.B) {
	const conns = 2000
	for _, tr := range transports {
		b.Run(tr, func(b *testing.B) {
			bp := startBrokerProc(b)
			time.Sleep(time.Second)
			before := bp.rss(b)
			cs := make([]net.Conn, 0, conns)
			for i := range conns {
				c := bp.dial(b, tr)
				mqttHandshake(b, c, &frameReader{conn: c, buf: make([]byte, 256)}, fmt.Sprintf("idle-%s-%d-%d", tr, b.N, i), "")
				cs = append(cs, c)
			}
			time.Sleep(3 * time.Second) // write batches of idle clients are dropped after 2 s
			after := bp.rss(b)
			b.ReportMetric(float64(after-before)/conns, "broker-RSS-B/conn")
			for _, c := range cs {
				_ = c.Close()
			}
		})
	}
}
