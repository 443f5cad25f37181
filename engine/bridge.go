package engine

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/loopmq/loopmq/codec"
)

// Bridged transports: TLS, WebSocket and WebSocket over TLS.
//
// gnet has no TLS and no WebSocket, so these listeners run on Go's net,
// crypto/tls and gobwas/ws, one goroutine per connection, and feed the
// same event loops, client and session code as plain TCP through a local
// stream socket: the broker's gnet engine also listens on a unix socket
// private to this Server (bridge.sock, in a directory only the broker's
// user may enter), and each bridged connection dials it once its
// handshake is done. gnet accepts that socket like a TCP one and spreads
// it over the loops round-robin with the TCP connections; from then on
// the engine sees an ordinary gnet.Conn carrying MQTT bytes. Two
// goroutines per connection copy bytes between the outer connection (TLS
// records or WebSocket frames) and the socket (bridge.proxy).
//
// Why a listener and not EventLoop.Enroll of one end of a socketpair:
// Enroll needs a gnet.EventLoop, and gnet hands those out only through a
// connection (Conn.EventLoop) or Engine.Register, whose round-robin
// counter is not synchronised with the acceptor that also advances it.
// A listener uses the acceptor itself: no race, the same balancing.
//
// The engine learns who is behind a bridged socket without a race: the
// proxy binds its end to a unique abstract name and records the peer
// (real remote address, client certificate identity) under that name
// before it connects; OnOpen, which runs before the engine reads a byte,
// takes the record by the accepted socket's peer name and wraps the
// gnet.Conn (bridgedConn) so that RemoteAddr, the logs and the
// Authenticator's ConnectInfo.Remote report the real client. A socket
// whose name is not recorded, or whose peer process is not this one
// (SO_PEERCRED), is closed at once: nothing else can pass as a bridged
// client.
//
// Plain TCP pays nothing for this: when no TLS/WS listener is configured
// the engine runs exactly as before (no extra listener), and with one,
// a TCP connection costs one type assertion in OnOpen. Nothing here runs
// per message on the TCP path.

// peerInfo is what the engine knows of the client behind a bridged
// socket. It is written by the proxy before the socket is connected and
// only read afterwards.
type peerInfo struct {
	remote net.Addr
	// identity is the user name taken from a verified client certificate
	// (Options.TLSIdentity); nil when not asked for.
	identity []byte
	// noCert is set when Options.TLSIdentity asks for the certificate's
	// identity and the client presented no verified certificate: its
	// CONNECT is refused.
	noCert bool
	// oc is the client's connection, whose proxy copies bytes both ways.
	oc outerConn
}

// bridgeDrain is how long the proxy may take to write what the engine
// sent before it closed the connection; a client that does not read it
// in that time is cut off.
const bridgeDrain = time.Second

// engineClosed tells the proxy that the engine closed the connection.
// The proxy sees that only when it next reads the engine's socket, which
// it never does while a write to a client that stopped reading blocks:
// the deadline ends that write, and with it the proxy and the client's
// connection. Any goroutine (the engine's OnClose).
func (p *peerInfo) engineClosed() {
	if p.oc != nil {
		_ = p.oc.SetWriteDeadline(time.Now().Add(bridgeDrain))
	}
}

// bridgedConn is the engine's view of a bridged socket: the gnet.Conn
// with the real client's address. Its other methods are gnet's.
type bridgedConn struct {
	gnet.Conn
	peer *peerInfo
}

// RemoteAddr returns the address of the client behind the bridge.
func (b *bridgedConn) RemoteAddr() net.Addr { return b.peer.remote }

// bridge owns the bridged listeners and connections of one Server. Its
// methods are safe for concurrent use.
type bridge struct {
	srv  *Server
	dir  string // private directory (mode 0700) holding sock
	sock string // path of the unix socket gnet listens on
	name string // prefix of the proxies' abstract socket names, "@loopmq-<random hex>"
	pid  int
	seq  atomic.Uint64

	mu          sync.Mutex
	pending     map[string]*peerInfo   // by the proxy end's socket name, until OnOpen takes it
	handshaking map[io.Closer]struct{} // accepted, handshake running: closed by stopListeners
	outer       map[io.Closer]struct{} // bridged: closed by wait if the engine's close does not end them
	listeners   []net.Listener
	closed      bool

	tlsAddr, wsAddr, wssAddr net.Addr       // written by Start, read after it
	wg                       sync.WaitGroup // accept loops and per-connection goroutines
}

// newBridge creates the bridge's private directory; the engine listens
// in it once started.
func newBridge(s *Server) (*bridge, error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("TLS and WebSocket listeners need Linux (abstract unix sockets, SO_PEERCRED)")
	}
	dir, err := os.MkdirTemp("", "loopmq-")
	if err != nil {
		return nil, fmt.Errorf("bridge socket directory: %w", err)
	}
	var r [12]byte
	_, _ = rand.Read(r[:])
	return &bridge{srv: s, dir: dir, sock: filepath.Join(dir, "bridge.sock"),
		name: "@loopmq-" + hex.EncodeToString(r[:]), pid: os.Getpid(),
		pending: make(map[string]*peerInfo), handshaking: make(map[io.Closer]struct{}),
		outer: make(map[io.Closer]struct{})}, nil
}

// bridged reports whether any TLS or WebSocket listener is configured.
func (o *Options) bridged() bool {
	return o.TLSListen != "" || o.WSListen != "" || o.WSSListen != ""
}

// take returns the peer recorded for the accepted bridge socket conn and
// forgets it, or nil when conn is not one of this bridge's proxies.
// Runs in OnOpen, on conn's loop.
func (b *bridge) take(conn gnet.Conn) *peerInfo {
	ua, ok := conn.RemoteAddr().(*net.UnixAddr)
	if !ok {
		return nil
	}
	b.mu.Lock()
	p := b.pending[ua.Name]
	delete(b.pending, ua.Name)
	b.mu.Unlock()
	if p == nil {
		return nil
	}
	if pid, err := peerPID(conn.Fd()); err != nil || pid != b.pid {
		return nil
	}
	return p
}

// track adds c to set (b.handshaking or b.outer) so that Stop can close
// it; it reports false, having closed c, when the bridge is stopping.
func (b *bridge) track(set map[io.Closer]struct{}, c io.Closer) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_ = c.Close()
		return false
	}
	set[c] = struct{}{}
	return true
}

func (b *bridge) untrack(set map[io.Closer]struct{}, c io.Closer) {
	b.mu.Lock()
	delete(set, c)
	b.mu.Unlock()
}

// serve accepts on ln until it is closed; handshake runs on each
// connection's own goroutine and returns the connection to proxy, or an
// error (it closes what it opened).
func (b *bridge) serve(ln net.Listener, kind string, handshake func(net.Conn) (outerConn, *peerInfo, error)) {
	defer b.wg.Done()
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			b.srv.log.Warn("accept failed", "listener", kind, "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !b.track(b.handshaking, nc) {
			return
		}
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer b.srv.recoverBridge(kind, nc.RemoteAddr(), func() { b.untrack(b.handshaking, nc); _ = nc.Close() })
			_ = nc.SetDeadline(b.handshakeDeadline())
			oc, peer, err := handshake(nc)
			b.untrack(b.handshaking, nc)
			if err != nil {
				_ = nc.Close()
				b.srv.log.Info("handshake failed", "listener", kind, "remote", nc.RemoteAddr().String(), "error", err)
				return
			}
			_ = nc.SetDeadline(time.Time{})
			// The handshake grew this goroutine's stack (TLS key exchange
			// and signatures use deep, wide frames); fresh goroutines
			// start small, so the proxy does not keep that stack for the
			// connection's life.
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.proxy(oc, peer, kind)
			}()
		}()
	}
}

// outerConn is a bridged client's connection after its handshake: a byte
// stream of MQTT packets in both directions (TLS records or WebSocket
// frames underneath). Read and writeChunk are called by one goroutine
// each; Close may be called by any, more than once.
type outerConn interface {
	io.ReadCloser
	// writeChunk sends buf[off:] to the client as one write (TLS) or one
	// frame (WebSocket); buf[:off] is free room for a frame header.
	writeChunk(buf []byte, off int) error
	// SetWriteDeadline bounds a write (and the close notification).
	SetWriteDeadline(time.Time) error
}

// proxy connects a bridged client to the engine and copies bytes both
// ways until either side closes. Its goroutine does the inbound copy and
// starts one more for the outbound copy.
func (b *bridge) proxy(oc outerConn, peer *peerInfo, kind string) {
	name := b.name + "-" + strconv.FormatUint(b.seq.Add(1), 10)
	peer.oc = oc
	b.mu.Lock()
	b.pending[name] = peer
	b.mu.Unlock()
	sock, err := net.DialUnix("unix", &net.UnixAddr{Name: name, Net: "unix"}, &net.UnixAddr{Name: b.sock, Net: "unix"})
	if err != nil {
		b.mu.Lock()
		delete(b.pending, name)
		b.mu.Unlock()
		_ = oc.Close()
		b.srv.log.Warn("cannot reach the engine", "listener", kind, "remote", peer.remote.String(), "error", err)
		return
	}
	if !b.track(b.outer, oc) {
		_ = sock.Close()
		return
	}
	var once sync.Once
	shut := func() {
		once.Do(func() {
			_ = sock.Close()
			// A client that stopped reading must not hold Stop.
			_ = oc.SetWriteDeadline(time.Now().Add(bridgeDrain))
			_ = oc.Close()
			b.untrack(b.outer, oc)
		})
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		defer b.srv.recoverBridge(kind, peer.remote, shut)
		defer shut()
		copyOut(oc, sock)
	}()
	defer b.srv.recoverBridge(kind, peer.remote, shut)
	defer shut()
	// Inbound: the client's MQTT bytes into the socket. The engine reads
	// what it was sent before it sees the close.
	copyIn(sock, oc)
}

// copyIn copies the client's bytes to sock until either fails. Read
// blocks while the client is idle, holding its buffer: a small one of
// the connection's own, switched for a pooled large one while reads fill
// it (a burst, a large PUBLISH) and given back at the first small read,
// so an idle connection holds inboundSmall bytes.
func copyIn(sock *net.UnixConn, oc outerConn) {
	small := make([]byte, inboundSmall)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			outPool.Put(big)
		}
	}()
	for {
		n, err := oc.Read(buf)
		if n > 0 {
			if _, werr := sock.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
		switch {
		case big == nil && n == len(buf):
			big = outPool.Get().(*[]byte)
			buf = *big
		case big != nil && n < inboundSmall:
			outPool.Put(big)
			big, buf = nil, small
		}
	}
}

// inboundSmall is the client → engine copy buffer an idle connection
// holds. MQTT inbound traffic is mostly small packets (PINGREQ, acks,
// small PUBLISHes); a fuller read switches to an outboundBuf from the pool.
const inboundSmall = 512

// outboundBuf is the engine → client chunk: one TLS write or one
// WebSocket frame, after chunkHeadroom bytes kept free for the frame
// header. Taken from a pool only while bytes are in hand, so an idle
// connection holds none.
const (
	outboundBuf   = chunkHeadroom + 32<<10
	chunkHeadroom = 14 // the longest server-to-client WebSocket frame header
)

var outPool = sync.Pool{New: func() any { b := make([]byte, outboundBuf); return &b }}

// copyOut copies what the engine writes to sock to the client, one chunk
// per write, until sock ends or the client fails.
func copyOut(oc outerConn, sock *net.UnixConn) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return
	}
	for {
		var (
			bp   *[]byte
			n    int
			rerr error
		)
		// Wait for readability without holding a buffer: the callback
		// takes one from the pool, and gives it back when the socket has
		// nothing yet.
		err := rc.Read(func(fd uintptr) bool {
			bp = outPool.Get().(*[]byte)
			n, rerr = unix.Read(int(fd), (*bp)[chunkHeadroom:])
			if rerr == unix.EAGAIN {
				outPool.Put(bp)
				bp = nil
				return false
			}
			if rerr == unix.EINTR {
				outPool.Put(bp)
				bp = nil
				n = 0
				rerr = nil
				return true
			}
			return true
		})
		if bp == nil {
			if err != nil {
				return
			}
			continue
		}
		if err == nil && rerr == nil && n > 0 {
			err = oc.writeChunk((*bp)[:chunkHeadroom+n], chunkHeadroom)
		} else if err == nil {
			err = io.EOF // n == 0: the engine closed; or the read failed
		}
		outPool.Put(bp)
		if err != nil {
			return
		}
	}
}

// stopListeners closes the bridged listeners and the connections still in
// their handshake, so that no new client reaches the engine. Connections
// already bridged end with the engine's side of their socket.
func (b *bridge) stopListeners() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.closed = true
	lns := b.listeners
	b.listeners = nil
	for c := range b.handshaking {
		_ = c.Close()
	}
	b.mu.Unlock()
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// wait waits until every bridged connection ended, or closes what is left
// when done is closed.
func (b *bridge) wait(done <-chan struct{}) {
	if b == nil {
		return
	}
	ended := make(chan struct{})
	go func() {
		b.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		return
	case <-done:
	}
	// Closed outside b.mu: a Close may wait for a write in progress
	// (wsConn), whose proxy then needs b.mu to untrack the connection.
	b.mu.Lock()
	left := make([]io.Closer, 0, len(b.outer))
	for c := range b.outer {
		left = append(left, c)
	}
	b.mu.Unlock()
	for _, c := range left {
		_ = c.Close()
	}
	<-ended
}

// removeDir removes the bridge socket's directory, once gnet closed the
// socket.
func (b *bridge) removeDir() {
	if b == nil {
		return
	}
	if err := os.RemoveAll(b.dir); err != nil {
		b.srv.log.Warn("cannot remove the bridge socket directory", "dir", b.dir, "error", err)
	}
}

// certIdentity makes a bridged client's certificate identity the User
// Name of its CONNECT p, dropping the Password (Options.TLSIdentity). It
// reports false when the identity is required and the client has none:
// the caller refuses the CONNECT. Other connections are left alone.
// Runs on c's loop.
func (c *client) certIdentity(p *codec.Connect) bool {
	b, ok := c.conn.(*bridgedConn)
	if !ok {
		return true
	}
	if b.peer.noCert {
		return false
	}
	if b.peer.identity != nil {
		p.UsernameFlag, p.Username = true, b.peer.identity
		p.PasswordFlag, p.Password = false, nil
	}
	return true
}
