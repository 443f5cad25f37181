package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/loopmq/loopmq/codec"
)

// Server is an MQTT broker. Create it with New, then Start; Stop ends it.
// Its methods are safe for concurrent use.
type Server struct {
	gnet.BuiltinEventEngine

	opts Options
	log  *slog.Logger
	reg  *registry
	msgs *messagePool
	idx  *index
	ps   *persistence // nil without Options.Store (persist.go)
	// authz is the Authorizer in force (authz.go); never nil.
	authz atomic.Pointer[authzConf]

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	loopArr atomic.Pointer[[]*loop] // by loop index, grows as loops are discovered

	started time.Time  // monotonic origin of the loops' clocks
	ipl     *ipLimiter // per-address connection and failed-login limits; nil when off (iplimit.go)
	// transitHigh is how many QoS 1/2 deliveries may be on their way to
	// one session before its publishers are held back (flow.go).
	transitHigh int32
	// pressureHigh is the queue length past which a saturated session
	// holds its publishers back (flow.go).
	pressureHigh int
	// maxQoS is Options.MaxQoS, 2 when not set (capabilities.go).
	maxQoS    byte
	eng       gnet.Engine
	addr      net.Addr
	bridge    *bridge       // TLS and WebSocket listeners (bridge.go); nil without any
	publishRR atomic.Uint32 // spreads Publish over the loops (selfpublish.go)
	// bridgePanics counts panics recovered in TLS and WebSocket
	// connections' goroutines (guard.go); the loops count their own.
	bridgePanics atomic.Uint64
	// respInfo is Options.ResponseInformation, converted once; nil when
	// empty (connackTerms).
	respInfo []byte
	ticks    uint32 // OnTick calls (OnTick's goroutine only)
	booted   chan struct{}
	done     chan error
	stopped  atomic.Bool
}

// New returns a Server with the given options; it does not listen yet.
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{opts: opts, log: opts.Logger, reg: newRegistry(), msgs: newMessagePool(),
		loops: make(map[gnet.EventLoop]*loop), booted: make(chan struct{}), done: make(chan error, 1),
		started: time.Now()}
	s.idx = newIndex()
	s.authz.Store(&authzConf{a: opts.Authorizer})
	s.pressureHigh = max(min(s.opts.MaxQueued/2, max(256, 8*s.opts.MaxInflight)), 1)
	s.transitHigh = int32(max(s.pressureHigh/2, 1))
	if opts.ResponseInformation != "" {
		s.respInfo = []byte(opts.ResponseInformation)
	}
	s.maxQoS = 2
	if opts.MaxQoS != nil && *opts.MaxQoS < 2 {
		s.maxQoS = *opts.MaxQoS
	}
	s.ipl = newIPLimiter(&s.opts)
	if opts.Store != nil {
		s.ps = &persistence{st: opts.Store, stallAfter: storeStallAfter}
		if opts.storeStallAfter > 0 {
			s.ps.stallAfter = opts.storeStallAfter
		}
	}
	empty := make([]*loop, 0, opts.Loops)
	s.loopArr.Store(&empty)
	return s
}

// Start begins listening and returns once the listener is ready.
func (s *Server) Start() error {
	if s.respInfo != nil && !codec.ValidString(s.respInfo) {
		return fmt.Errorf("response information %q: not a valid MQTT string (UTF-8 without U+0000, at most 65535 bytes)", s.respInfo)
	}
	if s.ps != nil {
		if err := s.recoverStore(); err != nil {
			return fmt.Errorf("recover from the store: %w", err)
		}
	}
	addr := s.opts.Listen
	if !strings.Contains(addr, "://") {
		addr = "tcp://" + addr
	}
	addrs := []string{addr}
	if s.opts.bridged() {
		b, err := newBridge(s)
		if err != nil {
			return err
		}
		s.bridge = b
		addrs = append(addrs, "unix://"+b.sock)
	}
	if n, want := runtime.GOMAXPROCS(0), SuggestedGOMAXPROCS(s.opts); n < want {
		s.log.Warn("GOMAXPROCS leaves no P free of event loops: TLS and WebSocket traffic will wait milliseconds for one (engine.SuggestedGOMAXPROCS)",
			"gomaxprocs", n, "suggested", want)
	}
	go func() {
		err := gnet.Rotate(s, addrs,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.opts.Loops),
			gnet.WithReusePort(false),
			gnet.WithReuseAddr(true), // restart on the same port while old sockets sit in TIME_WAIT
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithTicker(true),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		s.done <- err
	}()
	select {
	case <-s.booted:
		s.log.Info("loopmq listening", "addr", s.addr.String(), "loops", s.opts.Loops)
	case err := <-s.done:
		s.bridge.removeDir()
		return fmt.Errorf("start listener %s: %w", s.opts.Listen, err)
	}
	if s.bridge != nil {
		if err := s.bridge.startListeners(); err != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = s.Stop(ctx)
			return err
		}
	}
	if s.ps != nil && s.ps.orphans.Load() != nil {
		s.discoverLoop()
	}
	return nil
}

// discoverLoop connects to the broker's own listener and waits until the
// connection's loop is known (loopFor), then closes it. gnet hands loops
// out only with connections, and recovered sessions wait for a loop's
// sweep to adopt them (recover.go): without this, a broker restarted with
// sessions nobody connects to never ends them when they expire, nor
// publishes their delayed wills. Best effort: failing, the first client's
// loop does it.
func (s *Server) discoverLoop() {
	if s.addr == nil {
		return
	}
	c, err := net.DialTimeout("tcp", s.addr.String(), 2*time.Second)
	if err != nil {
		s.log.Warn("cannot reach the listener to start the recovered sessions' expiry; the first client will", "error", err)
		return
	}
	defer c.Close()
	for deadline := time.Now().Add(2 * time.Second); len(s.loopsSnapshot()) == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// Addr returns the listener's address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.addr }

// Stop closes the listener and every connection and waits until the event
// loops have ended or ctx is done.
func (s *Server) Stop(ctx context.Context) error {
	if !s.stopped.CompareAndSwap(false, true) {
		return nil
	}
	s.bridge.stopListeners() // no new TLS/WebSocket clients (bridge.go)
	s.noticeShutdown(ctx)    // 5.0 clients get DISCONNECT 0x8B first (lifecycle.go)
	if err := s.eng.Stop(ctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	select {
	case err := <-s.done:
		if s.ps != nil {
			s.commitAtStop() // the loops have ended (persist.go)
		}
		// Bridged clients got what the engine sent before it closed
		// their sockets; wait for the proxies to pass it on.
		s.bridge.wait(ctx.Done())
		s.bridge.removeDir()
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("stop: %w", err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// OnBoot records the engine and the listener's real address.
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	fd, err := eng.Dup()
	if err != nil && s.bridge != nil { // two listeners: TCP and the bridge's
		addr := s.opts.Listen
		if _, a, ok := strings.Cut(addr, "://"); ok {
			addr = a
		}
		fd, err = eng.DupListener("tcp", addr)
	}
	if err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			s.addr = sockaddrToTCP(sa)
		}
		_ = unix.Close(fd)
	}
	close(s.booted)
	return gnet.None
}

func sockaddrToTCP(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]).To4(), Port: a.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
	}
	return nil
}

// loopFor returns loopmq's state for gnet loop el, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	if l, ok := s.loops[el]; ok {
		return l
	}
	arr := *s.loopArr.Load()
	l := newLoop(s, el, len(arr))
	s.loops[el] = l
	next := append(arr[:len(arr):len(arr)], l)
	s.loopArr.Store(&next)
	return l
}

func (s *Server) loopAt(idx int) *loop { return (*s.loopArr.Load())[idx] }

func (s *Server) loopsSnapshot() []*loop { return *s.loopArr.Load() }

// OnOpen creates the client for a new connection on its loop.
func (s *Server) OnOpen(conn gnet.Conn) (out []byte, action gnet.Action) {
	defer func() {
		if v := recover(); v != nil {
			c, _ := conn.Context().(*client)
			out, action = nil, s.loopFor(conn.EventLoop()).recovered(v, c, "open")
		}
	}()
	if s.stopped.Load() {
		// Stop has begun: gnet still accepts until its engine stops, so
		// a connection arriving while 5.0 clients are told 0x8B is
		// closed at once rather than admitted and cut.
		return nil, gnet.Close
	}
	gc := conn
	if s.bridge != nil {
		if _, tcp := conn.RemoteAddr().(*net.TCPAddr); !tcp {
			p := s.bridge.take(conn)
			if p == nil {
				return nil, gnet.Close // not one of this Server's proxies
			}
			gc = &bridgedConn{Conn: conn, peer: p} // a TLS or WebSocket client (bridge.go)
		}
	}
	l := s.loopFor(conn.EventLoop())
	if ok, why := s.ipl.admit(gc.RemoteAddr(), time.Now()); !ok {
		// Debug: a flood would otherwise flood the log too; the counter
		// says how many.
		l.refused(RefusedAddressLimit)
		s.log.Debug("connection refused", "remote", gc.RemoteAddr().String(), "reason", why)
		return nil, gnet.Close
	}
	l.setNow()
	c := &client{conn: gc, loop: l, lastSeen: l.mono}
	conn.SetContext(c)
	l.addClient(c)
	l.stats.connsOpened.Add(1)
	return nil, gnet.None
}

// OnTraffic handles the bytes that arrived on one connection. A panic
// while handling them closes that connection only (guard.go).
func (s *Server) OnTraffic(conn gnet.Conn) (action gnet.Action) {
	c, ok := conn.Context().(*client)
	if !ok {
		return gnet.Close
	}
	defer func() {
		if v := recover(); v != nil {
			action = c.loop.recovered(v, c, "traffic")
			c.loop.contain("traffic", c.loop.endBatch) // what the others were sent
		}
	}()
	return c.onTraffic()
}

// OnClose ends the client: the will is published unless the client sent
// DISCONNECT, and a clean session ends with it.
func (s *Server) OnClose(conn gnet.Conn, _ error) gnet.Action {
	c, ok := conn.Context().(*client)
	if !ok {
		return gnet.None
	}
	l := c.loop
	defer func() {
		if v := recover(); v != nil {
			// The connection is closed already; the session may be left
			// online with no client until it is taken over.
			l.recovered(v, nil, "close")
			l.contain("close", l.endBatch)
		}
	}()
	l.setNow()
	if c.state == stateConnected {
		l.stats.connected.Add(-1)
	}
	waiting := c.state == stateWaiting
	c.state = stateClosed
	c.lastSeen = l.mono
	c.gone = true
	c.flush()
	l.removeClient(c)
	l.stats.connsClosed.Add(1)
	if bc, ok := c.conn.(*bridgedConn); ok {
		bc.peer.engineClosed() // a TLS or WebSocket client (bridge.go)
	}
	if sess := c.sess; sess != nil {
		c.sess = nil
		sess.client = nil
		sess.setFlag(flagOnline, false)
		if sess.flag(flagClean) {
			sess.end() // redistributes its shared messages first
		} else {
			sess.redistributeShared(l)
			sess.setPressure(l)
			sess.wentOffline(l, c) // expiry.go: a delayed will moves into the session
		}
	}
	if waiting {
		// Its session is on its way here (attach): the binding, on this
		// loop, finds c closed and takes the will, which may have to
		// wait for its delay in the session (bind).
	} else {
		c.sendWill() // no-op after DISCONNECT or when the CONNECT was refused
	}

	l.endBatch()
	return gnet.None
}

// tickEvery is how often OnTick runs: a will's delay and a session's
// expiry are kept to within it. The full sweep (keep alives, the store,
// retained expiry...) runs every sweepTicks ticks, a second.
const (
	tickEvery  = 250 * time.Millisecond
	sweepTicks = 4
)

// OnTick asks every loop to sweep its clients for expired keep-alives
// every second, and in between a loop with a session deadline due before
// the next tick to run its expiries. gnet calls it from one goroutine.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	s.ticks++
	if s.ticks%sweepTicks != 1 {
		soon := int64(time.Since(s.started) + tickEvery)
		for _, l := range s.loopsSnapshot() {
			if l.nextExpiry.Load() <= soon {
				l.post(task{kind: taskFunc, fn: func(l *loop) { l.setNow(); l.expireSessions() }})
			}
		}
		return tickEvery, gnet.None
	}
	if s.ps != nil {
		s.checkDiskBound()
	}
	for _, l := range s.loopsSnapshot() {
		l.post(task{kind: taskFunc, fn: func(l *loop) { l.sweep() }})
	}
	return tickEvery, gnet.None
}
