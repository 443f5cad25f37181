package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// Timeouts shared by the end-to-end tests. Every wait in them is bounded by
// one of these, so a broken broker fails a test instead of hanging it.
const (
	e2eWait   = 5 * time.Second        // something that should happen promptly
	e2eSilent = 300 * time.Millisecond // how long "nothing arrives" is watched
)

// rawClient is a hand-driven MQTT client on a plain TCP connection. It
// sends exactly the packets a test gives it and never answers anything by
// itself, so a test decides every acknowledgement, withholds one, stops
// reading, or drops the socket without DISCONNECT. Not safe for concurrent
// use, except close.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	ver  codec.Version
	rbuf []byte // bytes read but not yet returned as packets
	tmp  []byte
}

// dialRaw opens a TCP connection to s; the test's cleanup closes it.
func dialRaw(t testing.TB, s *Server) *rawClient {
	t.Helper()
	return dialRawWith(t, s, nil)
}

// dialRawWith is dialRaw with a socket option hook run before connect (to
// shrink SO_RCVBUF, for example).
func dialRawWith(t testing.TB, s *Server, control func(network, address string, c syscall.RawConn) error) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: e2eWait, Control: control}
	conn, err := d.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	c := &rawClient{t: t, conn: conn, ver: codec.V311, tmp: make([]byte, 64<<10)}
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// connectPacket returns a 3.1.1 CONNECT for id.
func connectPacket(id string, clean bool, keepAlive uint16) *codec.Connect {
	return &codec.Connect{Version: codec.V311, ClientID: []byte(id), CleanStart: clean, KeepAlive: keepAlive}
}

// withWill adds a will to p and returns p.
func withWill(p *codec.Connect, topic, payload string, qos byte, retain bool) *codec.Connect {
	p.WillFlag = true
	p.Will.Topic, p.Will.Payload, p.Will.QoS, p.Will.Retain = []byte(topic), []byte(payload), qos, retain
	return p
}

// send writes one packet for the client's protocol version.
func (c *rawClient) send(p codec.Packet) {
	c.t.Helper()
	c.sendBytes(p.AppendTo(nil, c.ver))
}

// sendBytes writes b as is (for malformed frames).
func (c *rawClient) sendBytes(b []byte) {
	c.t.Helper()
	require.NoError(c.t, c.conn.SetWriteDeadline(time.Now().Add(e2eWait)))
	_, err := c.conn.Write(b)
	require.NoError(c.t, err, "write to broker")
}

// trySend writes p and reports the error instead of failing (the broker may
// have closed the connection already).
func (c *rawClient) trySend(p codec.Packet) error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(e2eWait))
	_, err := c.conn.Write(p.AppendTo(nil, c.ver))
	return err
}

// next returns the next packet from the broker, waiting at most timeout.
// The packet owns its memory. It returns the read error (a net.Error with
// Timeout() for a timeout, io.EOF or a reset for a closed connection).
func (c *rawClient) next(timeout time.Duration) (codec.Packet, error) {
	deadline := time.Now().Add(timeout)
	for {
		h, n, err := codec.Split(c.rbuf, 0)
		if err != nil {
			return nil, fmt.Errorf("broker sent an unframeable packet: %w", err)
		}
		if n > 0 {
			frame := append([]byte(nil), c.rbuf[:n]...)
			c.rbuf = c.rbuf[n:]
			p, err := codec.Decode(frame, c.ver)
			if err != nil {
				return nil, fmt.Errorf("broker sent an undecodable %v: %w", h.Type, err)
			}
			return p, nil
		}
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return nil, err
		}
		m, err := c.conn.Read(c.tmp)
		c.rbuf = append(c.rbuf, c.tmp[:m]...)
		if err != nil && m == 0 {
			return nil, err
		}
	}
}

// expect reads the next packet and requires it to be of type typ.
func (c *rawClient) expect(typ codec.Type) codec.Packet {
	c.t.Helper()
	p, err := c.next(e2eWait)
	require.NoError(c.t, err, "waiting for %v", typ)
	require.Equal(c.t, typ, p.Type(), "unexpected packet %+v", p)
	return p
}

func (c *rawClient) expectPublish() *codec.Publish {
	c.t.Helper()
	return c.expect(codec.PUBLISH).(*codec.Publish)
}

func (c *rawClient) expectAck(typ codec.Type, id uint16) {
	c.t.Helper()
	a := c.expect(typ).(*codec.Ack)
	require.Equal(c.t, id, a.PacketID, "%v packet identifier", typ)
}

// expectClosed requires the broker to close the connection within timeout.
// Packets that arrive before the close are returned.
func (c *rawClient) expectClosed(timeout time.Duration) []codec.Packet {
	c.t.Helper()
	var got []codec.Packet
	deadline := time.Now().Add(timeout)
	for {
		p, err := c.next(time.Until(deadline))
		if err == nil {
			got = append(got, p)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("connection still open after %v (packets meanwhile: %d)", timeout, len(got))
		}
		require.True(c.t, isClosedErr(err), "expected the broker to close the connection, got %v", err)
		return got
	}
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, net.ErrClosed)
}

// expectNothing requires that no packet arrives for d and the connection
// stays open.
func (c *rawClient) expectNothing(d time.Duration) {
	c.t.Helper()
	p, err := c.next(d)
	require.Error(c.t, err, "unexpected packet %+v", p)
	var ne net.Error
	require.True(c.t, errors.As(err, &ne) && ne.Timeout(), "expected silence, got %v", err)
}

// receiveQoS2 receives n QoS 2 PUBLISHes and completes every flow:
// PUBREC for each PUBLISH, PUBCOMP for each PUBREL, until none is open.
// It returns the payloads in the order they came.
func (c *rawClient) receiveQoS2(n int) []string {
	c.t.Helper()
	var got []string
	open := 0
	for len(got) < n || open > 0 {
		p, err := c.next(e2eWait)
		require.NoError(c.t, err, "received %v", got)
		switch p := p.(type) {
		case *codec.Publish:
			got = append(got, string(p.Payload))
			open++
			c.ack(codec.PUBREC, p.PacketID)
		case *codec.Ack:
			require.Equal(c.t, codec.PUBREL, p.PacketType)
			open--
			c.ack(codec.PUBCOMP, p.PacketID)
		}
	}
	return got
}

// connect sends p and returns the CONNACK.
func (c *rawClient) connect(p *codec.Connect) *codec.Connack {
	c.t.Helper()
	if p.Version != 0 {
		c.ver = p.Version
	}
	c.send(p)
	return c.expect(codec.CONNACK).(*codec.Connack)
}

// mustConnect connects and requires success.
func (c *rawClient) mustConnect(p *codec.Connect) *codec.Connack {
	c.t.Helper()
	ca := c.connect(p)
	require.Equal(c.t, codec.Success, ca.ReasonCode, "CONNACK code")
	return ca
}

// subscribe subscribes to filter at qos with packet identifier id and
// returns the granted QoS. Packets other than the SUBACK are not expected.
func (c *rawClient) subscribe(id uint16, filter string, qos byte) byte {
	c.t.Helper()
	c.send(&codec.Subscribe{PacketID: id, Subscriptions: []codec.Subscription{{Filter: []byte(filter), QoS: qos}}})
	sa := c.expect(codec.SUBACK).(*codec.Suback)
	require.Equal(c.t, id, sa.PacketID)
	require.Len(c.t, sa.ReasonCodes, 1)
	return byte(sa.ReasonCodes[0])
}

// publish sends a PUBLISH.
func (c *rawClient) publish(topic, payload string, qos byte, retain bool, id uint16) {
	c.t.Helper()
	c.send(&codec.Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: id})
}

// ack sends a PUBACK, PUBREC, PUBREL or PUBCOMP.
func (c *rawClient) ack(typ codec.Type, id uint16) {
	c.t.Helper()
	c.send(&codec.Ack{PacketType: typ, PacketID: id})
}

// disconnect sends DISCONNECT and closes the socket.
func (c *rawClient) disconnect() {
	c.t.Helper()
	c.send(&codec.Disconnect{})
	_ = c.conn.Close()
}

// kill closes the socket without DISCONNECT, as a crashed client would.
func (c *rawClient) kill() { _ = c.conn.Close() }

// ---- Paho helpers ----

// waitAll waits for every token until deadline (one deadline for all, so a
// stuck broker cannot multiply the wait by the number of tokens) and
// returns the first failure.
func waitAll(toks []paho.Token, deadline time.Time) error {
	for i, tok := range toks {
		if !tok.WaitTimeout(time.Until(deadline)) {
			return fmt.Errorf("token %d of %d not complete by the deadline", i, len(toks))
		}
		if err := tok.Error(); err != nil {
			return fmt.Errorf("token %d of %d: %w", i, len(toks), err)
		}
	}
	return nil
}

// pahoMsg is what a Paho handler saw, copied out of Paho's goroutine.
type pahoMsg struct {
	topic    string
	payload  string
	qos      byte
	retained bool
	dup      bool
}

// collect returns a handler that sends every message to a buffered channel.
func collect(n int) (paho.MessageHandler, chan pahoMsg) {
	ch := make(chan pahoMsg, n)
	return func(_ paho.Client, m paho.Message) {
		ch <- pahoMsg{topic: m.Topic(), payload: string(m.Payload()), qos: m.Qos(), retained: m.Retained(), dup: m.Duplicate()}
	}, ch
}

// recv waits for one message on ch.
func recv(t testing.TB, ch <-chan pahoMsg, what string) pahoMsg {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(e2eWait):
		t.Fatalf("timeout waiting for %s", what)
		return pahoMsg{}
	}
}

// recvNone requires that nothing arrives on ch for d.
func recvNone(t testing.TB, ch <-chan pahoMsg, d time.Duration) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected message %+v", m)
	case <-time.After(d):
	}
}

// pahoConn records the net.Conn a Paho client dials, so a test can kill
// the socket under it (no DISCONNECT, like a crash or a network cut).
type pahoConn struct {
	mu   sync.Mutex
	conn net.Conn
}

func (pc *pahoConn) option(o *paho.ClientOptions) {
	o.SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		c, err := net.DialTimeout("tcp", uri.Host, e2eWait)
		if err == nil {
			pc.mu.Lock()
			pc.conn = c
			pc.mu.Unlock()
		}
		return c, err
	})
}

func (pc *pahoConn) kill() {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.conn != nil {
		_ = pc.conn.Close()
	}
}

// lostConn records why a Paho client lost its connection, for failure
// messages (a broker that drops a publisher shows up as a stall otherwise).
type lostConn struct{ err atomic.Pointer[error] }

func (lc *lostConn) option(o *paho.ClientOptions) {
	o.SetConnectionLostHandler(func(_ paho.Client, err error) { lc.err.Store(&err) })
}

// String reports the connection loss, if any.
func (lc *lostConn) String() string {
	if p := lc.err.Load(); p != nil {
		return fmt.Sprintf("connection lost: %v", *p)
	}
	return "connection not lost"
}

// ---- mosquitto client helpers ----

// needMosquitto skips the test unless Debian's mosquitto clients are installed.
func needMosquitto(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not found (apt-get install mosquitto-clients): %v", bin, err)
		}
	}
}

func hostPort(t testing.TB, s *Server) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.Addr().String())
	require.NoError(t, err)
	return host, port
}

// mosquittoPub runs mosquitto_pub against s with args and requires success.
func mosquittoPub(t testing.TB, s *Server, args ...string) {
	t.Helper()
	host, port := hostPort(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", append([]string{"-h", host, "-p", port}, args...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "mosquitto_pub %v: %s", args, out)
}

// mosqMsg is one message mosquitto_sub printed.
type mosqMsg struct {
	qos     byte
	retain  bool
	topic   string
	payload string
}

// mosqSub is a running mosquitto_sub.
type mosqSub struct {
	cmd        *exec.Cmd
	subscribed chan struct{} // closed when mosquitto_sub reports its SUBACK
	msgs       chan mosqMsg
	done       chan struct{} // closed when mosquitto_sub exited; err is set then
	err        error
	mu         sync.Mutex
	debug      []string
}

// mosqFormat prints one parseable line per message (-F), distinct from the
// debug lines (-d) that tell when the subscription is in place.
const mosqFormat = "MSG|%q|%r|%t|%p"

// startMosquittoSub starts mosquitto_sub -d against s; args must include
// -C and -W so that it always exits. The test's cleanup kills it.
func startMosquittoSub(t testing.TB, s *Server, args ...string) *mosqSub {
	t.Helper()
	host, port := hostPort(t, s)
	all := append([]string{"mosquitto_sub", "-h", host, "-p", port, "-d", "-F", mosqFormat}, args...)
	// mosquitto_sub block-buffers its debug lines on a pipe; stdbuf makes
	// them arrive as they happen, so the SUBACK line can be waited for.
	lineBuffered := true
	if _, err := exec.LookPath("stdbuf"); err == nil {
		all = append([]string{"stdbuf", "-oL"}, all...)
	} else {
		lineBuffered = false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	ms := &mosqSub{cmd: exec.CommandContext(ctx, all[0], all[1:]...), subscribed: make(chan struct{}),
		msgs: make(chan mosqMsg, 1024), done: make(chan struct{})}
	out, err := ms.cmd.StdoutPipe()
	require.NoError(t, err)
	ms.cmd.Stderr = ms.cmd.Stdout
	require.NoError(t, ms.cmd.Start())
	t.Cleanup(func() {
		cancel()
		select {
		case <-ms.done:
		case <-time.After(e2eWait):
		}
	})
	go func() {
		sc := bufio.NewScanner(out)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "MSG|"); ok {
				f := strings.SplitN(rest, "|", 4)
				if len(f) == 4 {
					ms.msgs <- mosqMsg{qos: f[0][0] - '0', retain: f[1] == "1", topic: f[2], payload: f[3]}
					continue
				}
			}
			ms.mu.Lock()
			ms.debug = append(ms.debug, line)
			ms.mu.Unlock()
			if strings.Contains(line, "received SUBACK") {
				once.Do(func() { close(ms.subscribed) })
			}
		}
		ms.err = ms.cmd.Wait()
		close(ms.msgs)
		close(ms.done)
	}()
	if !lineBuffered {
		time.Sleep(time.Second) // no way to see the SUBACK in time: give it a moment
		return ms
	}
	select {
	case <-ms.subscribed:
	case <-ms.done:
		// A persistent session's queued messages can reach its -C count
		// before the SUBACK: a clean exit is fine, wait returns them.
		if ms.err != nil {
			t.Fatalf("mosquitto_sub exited before subscribing: %v\n%s", ms.err, ms.log())
		}
	case <-time.After(e2eWait):
		t.Fatalf("mosquitto_sub did not subscribe in time\n%s", ms.log())
	}
	return ms
}

func (ms *mosqSub) log() string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return strings.Join(ms.debug, "\n")
}

// wait collects messages until mosquitto_sub exits (its -C count reached or
// its -W timeout) and returns them with its exit error.
func (ms *mosqSub) wait(t testing.TB) ([]mosqMsg, error) {
	t.Helper()
	var got []mosqMsg
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m, ok := <-ms.msgs:
			if !ok {
				<-ms.done
				return got, ms.err
			}
			got = append(got, m)
		case <-timeout:
			t.Fatalf("mosquitto_sub did not exit\n%s", ms.log())
			return got, nil
		}
	}
}

// connectRaw dials s and completes CONNECT p (CONNACK accepted).
func connectRaw(t *testing.T, s *Server, p *codec.Connect) *rawClient {
	t.Helper()
	c := dialRaw(t, s)
	c.mustConnect(p)
	return c
}
