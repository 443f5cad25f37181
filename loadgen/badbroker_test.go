package loadgen

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// fakeBroker is a TCP server that misbehaves on purpose. Each connection is
// handled by behave with a frame reader.
type fakeBroker struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

type frameReader struct {
	c   net.Conn
	buf []byte
}

// next returns the next whole frame from the client.
func (f *frameReader) next() ([]byte, codec.FixedHeader, error) {
	for {
		h, n, err := codec.Split(f.buf, 0)
		if err != nil {
			return nil, h, err
		}
		if n > 0 {
			frame := append([]byte(nil), f.buf[:n]...)
			f.buf = f.buf[n:]
			return frame, h, nil
		}
		tmp := make([]byte, 4096)
		m, err := f.c.Read(tmp)
		if err != nil {
			return nil, h, err
		}
		f.buf = append(f.buf, tmp[:m]...)
	}
}

func startFake(t *testing.T, behave func(c net.Conn, r *frameReader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fb := &fakeBroker{ln: ln}
	fb.wg.Add(1)
	go func() {
		defer fb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fb.mu.Lock()
			fb.conns = append(fb.conns, c)
			fb.mu.Unlock()
			fb.wg.Add(1)
			go func() {
				defer fb.wg.Done()
				behave(c, &frameReader{c: c})
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		fb.mu.Lock()
		for _, c := range fb.conns {
			_ = c.Close()
		}
		fb.mu.Unlock()
		fb.wg.Wait()
	})
	return ln.Addr().String()
}

// fakeHandshake answers CONNECT (with code) and, when suback, SUBSCRIBE.
func fakeHandshake(c net.Conn, r *frameReader, code codec.ReasonCode, suback bool) (codec.Version, bool) {
	frame, _, err := r.next()
	if err != nil {
		return 0, false
	}
	p, err := codec.Decode(frame, codec.V311)
	if err != nil {
		return 0, false
	}
	v := p.(*codec.Connect).Version
	ack := codec.Connack{ReasonCode: code}
	_, _ = c.Write(ack.AppendTo(nil, v))
	if code != codec.Success {
		return v, false
	}
	if !suback {
		return v, true
	}
	// Only subscribers subscribe; a publisher's first frame is a PUBLISH.
	for {
		frame, h, err := r.next()
		if err != nil {
			return v, false
		}
		if h.Type == codec.SUBSCRIBE {
			p, _ := codec.Decode(frame, v)
			s := p.(*codec.Subscribe)
			sa := codec.Suback{PacketID: s.PacketID, ReasonCodes: []codec.ReasonCode{codec.ReasonCode(s.Subscriptions[0].QoS)}}
			_, _ = c.Write(sa.AppendTo(nil, v))
			return v, true
		}
		if h.Type == codec.PUBLISH {
			return v, true
		}
	}
}

func discard(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// badConfig is a short run whose bound is easy to check.
func badConfig(addr string) Config {
	return Config{Brokers: []string{addr}, Scenario: ScenarioPairs, N: 3, QoS: 1, Rate: 300, Inflight: 100,
		Duration: time.Second, ConnectTimeout: 500 * time.Millisecond, SetupTimeout: 2 * time.Second,
		Drain: time.Second}
}

// runBounded runs cfg and checks it ended within its documented bound.
func runBounded(t *testing.T, cfg Config) (*Result, error) {
	t.Helper()
	start := time.Now()
	res, err := Run(context.Background(), cfg)
	took := time.Since(start)
	require.NotNil(t, res)
	bound := cfg.SetupTimeout + cfg.Duration + cfg.Drain + stopGrace
	require.Less(t, took, bound, "a run ends within setup-timeout + duration + drain + %v", stopGrace)
	t.Logf("took %v, errors %+v", took.Round(time.Millisecond), res.Errors)
	return res, err
}

func errorCount(res *Result, kind string) int64 {
	for _, e := range res.Errors {
		if e.Kind == kind {
			return e.Count
		}
	}
	return 0
}

func TestBrokerThatNeverAnswersCONNECT(t *testing.T) {
	t.Parallel()
	addr := startFake(t, func(c net.Conn, _ *frameReader) { discard(c) })
	res, err := runBounded(t, badConfig(addr))
	require.ErrorIs(t, err, ErrNoConnections)
	require.Equal(t, int64(6), errorCount(res, "connack timeout"))
	require.Equal(t, int64(6), res.Connections.Failed)
}

func TestBrokerThatRefusesCONNECT(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		version int
		code    codec.ReasonCode
		kind    string
	}{
		{3, codec.ReasonCode(codec.ConnRefusedNotAuthorized), "connack refused (not authorized)"},
		{3, codec.ReasonCode(codec.ConnRefusedBadCredentials), "connack refused (bad user name or password)"},
		{5, codec.QuotaExceeded, "connack refused (" + codec.QuotaExceeded.String() + ")"},
	} {
		addr := startFake(t, func(c net.Conn, r *frameReader) {
			if _, ok := fakeHandshake(c, r, tc.code, true); !ok {
				return
			}
			discard(c)
		})
		cfg := badConfig(addr)
		cfg.Version = tc.version
		res, err := runBounded(t, cfg)
		require.ErrorIs(t, err, ErrNoConnections)
		require.Equal(t, int64(6), errorCount(res, tc.kind), "%+v", res.Errors)
	}
}

func TestBrokerThatNeverAnswersSUBSCRIBE(t *testing.T) {
	t.Parallel()
	addr := startFake(t, func(c net.Conn, r *frameReader) {
		if _, ok := fakeHandshake(c, r, codec.Success, false); ok {
			discard(c)
		}
	})
	res, err := runBounded(t, badConfig(addr))
	require.NoError(t, err, "the publishers are up")
	require.Equal(t, int64(3), errorCount(res, "suback timeout"))
	require.Equal(t, int64(3), res.Connections.Up)
	require.Zero(t, res.Messages.Expected, "nobody subscribed, so nothing is expected")
}

func TestBrokerThatDropsConnections(t *testing.T) {
	t.Parallel()
	addr := startFake(t, func(c net.Conn, r *frameReader) {
		if _, ok := fakeHandshake(c, r, codec.Success, true); !ok {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		discard(c)
		_ = c.Close()
	})
	res, err := runBounded(t, badConfig(addr))
	require.NoError(t, err)
	require.Equal(t, int64(6), res.Connections.Up)
	require.Equal(t, int64(6), res.Connections.Dropped)
	require.Equal(t, int64(6), errorCount(res, "run: connection closed by broker")+errorCount(res, "run: connection reset by broker"))
}

func TestBrokerDisconnectsWithReason(t *testing.T) {
	t.Parallel()
	addr := startFake(t, func(c net.Conn, r *frameReader) {
		v, ok := fakeHandshake(c, r, codec.Success, true)
		if !ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
		d := codec.Disconnect{ReasonCode: codec.ServerShuttingDown}
		_, _ = c.Write(d.AppendTo(nil, v))
		discard(c)
	})
	cfg := badConfig(addr)
	cfg.Version = 5
	res, err := runBounded(t, cfg)
	require.NoError(t, err)
	require.Equal(t, int64(6), errorCount(res, "run refused (broker sent DISCONNECT: "+codec.ServerShuttingDown.String()+")"))
}

// TestBrokerThatStopsReading: the broker sets up the connections, then
// never reads again. Publishers block in write (QoS 0) or on a full window
// (QoS 1); the run still ends on time and reports what was not sent.
func TestBrokerThatStopsReading(t *testing.T) {
	t.Parallel()
	for _, qos := range []byte{0, 1} {
		addr := startFake(t, func(c net.Conn, r *frameReader) {
			if _, ok := fakeHandshake(c, r, codec.Success, true); !ok {
				return
			}
			var b [1]byte
			_, _ = c.Read(b[:]) // wait for the end of the run, reading one byte
		})
		cfg := badConfig(addr)
		cfg.QoS = qos
		cfg.Rate = 3000
		if qos == 0 {
			// Fill the socket buffers (here up to 4 MB sent and 32 MB
			// received per connection) well within the second.
			cfg.Rate = 1000
			cfg.Size = 256 << 10
		}
		res, err := runBounded(t, cfg)
		require.NoError(t, err)
		m := res.Messages
		require.Positive(t, m.Unsent, "the schedule could not be kept")
		require.Equal(t, m.Expected, m.Lost, "nothing was delivered")
		if qos == 1 {
			require.Equal(t, int64(3*cfg.Inflight), m.Sent, "one full window per publisher")
		} else {
			require.Positive(t, m.Overruns)
		}
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	t.Parallel()
	addr := startEngine(t)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(700 * time.Millisecond); cancel() }()
	cfg := badConfig(addr)
	cfg.Duration = time.Minute
	start := time.Now()
	res, err := Run(ctx, cfg)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, int64(6), res.Connections.Up)
	require.True(t, errors.Is(ctx.Err(), context.Canceled))
}

// TestCredentialsAndVersionInCONNECT checks what CONNECT carries: the user
// name and password, the protocol level asked for, and (5.0) a Receive
// Maximum that does not limit the broker.
func TestCredentialsAndVersionInCONNECT(t *testing.T) {
	t.Parallel()
	for _, version := range []int{3, 5} {
		got := make(chan codec.Connect, 8)
		addr := startFake(t, func(c net.Conn, r *frameReader) {
			frame, _, err := r.next()
			if err != nil {
				return
			}
			p, err := codec.Decode(frame, codec.V311)
			if err != nil {
				return
			}
			cp := *p.(*codec.Connect)
			got <- cp
			ack := codec.Connack{}
			_, _ = c.Write(ack.AppendTo(nil, cp.Version))
			discard(c)
		})
		cfg := Config{Brokers: []string{addr}, Scenario: ScenarioConn, N: 1, Version: version,
			Username: "alice", Password: "s3cret", Duration: 200 * time.Millisecond}
		res, err := Run(context.Background(), cfg)
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Connections.Up)
		cp := <-got
		require.Equal(t, "alice", string(cp.Username))
		require.Equal(t, "s3cret", string(cp.Password))
		require.True(t, cp.CleanStart)
		if version == 5 {
			require.Equal(t, codec.V5, cp.Version)
			require.Equal(t, uint16(65535), cp.Properties.ReceiveMaximum)
		} else {
			require.Equal(t, codec.V311, cp.Version, "-version 3 means 3.1.1, protocol level 4")
		}
	}
}
