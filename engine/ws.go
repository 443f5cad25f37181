package engine

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"
	"github.com/gobwas/ws/wsutil"
	"github.com/klauspost/compress/flate"
)

// WebSocket listeners: MQTT over WebSocket (ws://) and over WebSocket over
// TLS (wss://) [MQTT 3.1.1 section 6; MQTT 5.0 section 6]. The WebSocket
// handshake and framing are gobwas/ws; the MQTT bytes then go through the
// bridge (bridge.go) like any other.
//
// Frames carry a byte stream: the engine frames MQTT packets itself, so a
// packet split over several frames, or several packets in one frame,
// need nothing here [MQTT-6.0.0-2]. Towards the client, each chunk the
// engine wrote (up to 32 KiB) becomes one binary frame.
//
// Per-message deflate (RFC 7692) is accepted when the client offers it,
// with no context takeover in either direction, so every message is
// compressed and decompressed on its own and the (de)compressors are
// pooled between messages instead of held per connection. Compression is
// gobwas/ws's wsflate framing over github.com/klauspost/compress/flate
// (level BestSpeed; the same API as the standard library's, faster).

// wsProtocols are the WebSocket subprotocols accepted, in the client's
// order of preference: "mqtt" [MQTT-6.0.0-3], and "mqttv3.1", which 3.1
// clients offer. A client that offers none is served all the same.
func wsProtocol(p []byte) bool {
	return string(p) == "mqtt" || string(p) == "mqttv3.1"
}

// errWSClosed ends the inbound copy when the client sent a Close frame.
var errWSClosed = errors.New("websocket closed by the client")

// listenWS starts a WebSocket listener on addr; with cfg non-nil, over TLS.
func (b *bridge) listenWS(kind, addr string, cfg *tls.Config) (net.Addr, error) {
	return b.listen(kind, addr, func(nc net.Conn) (outerConn, *peerInfo, error) {
		var (
			conn = nc
			peer *peerInfo
		)
		if cfg != nil {
			tc, p, err := b.tlsHandshake(nc, cfg)
			if err != nil {
				return nil, nil, err
			}
			conn, peer = tc, p
		} else {
			// Options.TLSIdentity concerns TLS listeners only.
			peer = &peerInfo{remote: nc.RemoteAddr()}
		}
		wc, err := upgradeWS(conn)
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		return wc, peer, nil
	})
}

// wsConn is the server side of one MQTT-over-WebSocket connection. Read
// runs on the proxy's inbound goroutine, writeChunk on its outbound one;
// both may write (Read answers pings and Close), serialised by wmu.
type wsConn struct {
	nc  net.Conn
	rd  wsutil.Reader
	msg wsflate.MessageState // RSV1 of the message being read
	cur io.Reader            // the message being read: &rd, or inf over it; nil between messages
	inf *wsflate.Reader      // from inflaters, while a compressed message is read

	deflate bool // permessage-deflate negotiated

	wmu       sync.Mutex
	closeSent bool
}

// upgradeWS answers the HTTP Upgrade request on conn. RFC 6455 has the
// client wait for the answer before it sends frames (section 4.1), so the
// upgrader's read-ahead holds nothing of the stream.
func upgradeWS(conn net.Conn) (*wsConn, error) {
	ext := wsflate.Extension{Parameters: wsflate.Parameters{
		ServerNoContextTakeover: true,
		ClientNoContextTakeover: true,
	}}
	u := ws.Upgrader{Protocol: wsProtocol, Negotiate: ext.Negotiate}
	if _, err := u.Upgrade(conn); err != nil {
		return nil, fmt.Errorf("websocket upgrade: %w", err)
	}
	wc := &wsConn{nc: conn}
	_, wc.deflate = ext.Accepted()
	var src io.Reader = conn
	if _, isTLS := conn.(*tls.Conn); !isTLS {
		// crypto/tls buffers a record already; a plain socket would
		// otherwise cost a read per frame header.
		src = bufio.NewReaderSize(conn, 2048)
	}
	wc.rd = wsutil.Reader{Source: src, State: ws.StateServerSide}
	if wc.deflate {
		wc.rd.State |= ws.StateExtended
		wc.rd.Extensions = []wsutil.RecvExtension{&wc.msg}
	}
	wc.rd.OnIntermediate = func(h ws.Header, r io.Reader) error { return wc.control(h, r) }
	return wc, nil
}

// Read returns the payload bytes of the client's binary messages, as one
// stream. Control frames are answered on the way.
func (wc *wsConn) Read(p []byte) (int, error) {
	for {
		if wc.cur == nil {
			h, err := wc.rd.NextFrame()
			if err != nil {
				return 0, err
			}
			if h.OpCode.IsControl() {
				if err := wc.control(h, &wc.rd); err != nil {
					return 0, err
				}
				// The control frame's payload is read; wsutil needs to be
				// told the frame is done.
				_ = wc.rd.Discard()
				continue
			}
			if h.OpCode != ws.OpBinary || h.Rsv != 0 {
				// [MQTT-6.0.0-1] MQTT travels in binary frames only.
				wc.closeWith(ws.StatusUnsupportedData, "MQTT needs binary frames")
				return 0, fmt.Errorf("websocket %v frame (rsv %d): MQTT needs binary frames [MQTT-6.0.0-1]", h.OpCode, h.Rsv)
			}
			wc.cur = &wc.rd
			if wc.msg.IsCompressed() {
				wc.inf = inflaters.Get().(*wsflate.Reader)
				wc.inf.Reset(&wc.rd)
				wc.cur = wc.inf
			}
		}
		n, err := wc.cur.Read(p)
		if err == io.EOF {
			wc.endMessage()
			err = nil
			if n == 0 {
				continue
			}
		}
		return n, err
	}
}

// endMessage forgets the message just read and returns its inflater.
func (wc *wsConn) endMessage() {
	if wc.inf != nil {
		// A compressed message ends with the deflate stream; whatever its
		// frames still hold is not MQTT.
		_, _ = io.Copy(io.Discard, &wc.rd)
		inflaters.Put(wc.inf)
		wc.inf = nil
	}
	wc.cur = nil
}

// control answers a control frame whose payload r holds: Ping with Pong,
// Close with Close (and errWSClosed); Pong is ignored.
func (wc *wsConn) control(h ws.Header, r io.Reader) error {
	var buf [ws.MaxControlFramePayloadSize]byte
	n, err := io.ReadFull(r, buf[:h.Length])
	if err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		wc.wmu.Lock()
		defer wc.wmu.Unlock()
		if wc.closeSent {
			return nil
		}
		return ws.WriteFrame(wc.nc, ws.NewPongFrame(buf[:n]))
	case ws.OpClose:
		code, _ := ws.ParseCloseFrameData(buf[:n])
		if code.Empty() {
			code = ws.StatusNormalClosure
		}
		wc.closeWith(code, "")
		return errWSClosed
	}
	return nil
}

// closeWith sends a Close frame, once.
func (wc *wsConn) closeWith(code ws.StatusCode, reason string) {
	wc.wmu.Lock()
	defer wc.wmu.Unlock()
	if wc.closeSent {
		return
	}
	wc.closeSent = true
	_ = wc.nc.SetWriteDeadline(time.Now().Add(time.Second))
	_ = ws.WriteFrame(wc.nc, ws.NewCloseFrame(ws.NewCloseFrameBody(code, reason)))
}

// writeChunk sends buf[off:] as one binary frame, compressed when
// permessage-deflate was negotiated.
func (wc *wsConn) writeChunk(buf []byte, off int) error {
	if wc.deflate {
		return wc.writeDeflated(buf[off:])
	}
	start := putFrameHeader(buf, off, false)
	wc.wmu.Lock()
	defer wc.wmu.Unlock()
	if wc.closeSent {
		return errWSClosed
	}
	_, err := wc.nc.Write(buf[start:])
	return err
}

// writeDeflated sends p as one compressed binary message (RSV1 set).
func (wc *wsConn) writeDeflated(p []byte) error {
	zb := deflateBufs.Get().(*bytes.Buffer)
	defer deflateBufs.Put(zb)
	zb.Reset()
	zb.Write(noHeader[:]) // room for the header
	zw := deflaters.Get().(*wsflate.Writer)
	zw.Reset(zb)
	_, err := zw.Write(p)
	if err == nil {
		err = zw.Flush()
	}
	deflaters.Put(zw)
	if err != nil {
		return fmt.Errorf("deflate: %w", err)
	}
	buf := zb.Bytes()
	start := putFrameHeader(buf, chunkHeadroom, true)
	wc.wmu.Lock()
	defer wc.wmu.Unlock()
	if wc.closeSent {
		return errWSClosed
	}
	_, err = wc.nc.Write(buf[start:])
	if zb.Cap() > 64<<10 {
		zb.Reset()
		*zb = bytes.Buffer{} // do not pool a buffer grown by an incompressible burst
	}
	return err
}

var noHeader [chunkHeadroom]byte

// putFrameHeader writes the header of an unmasked final binary frame
// whose payload is buf[off:] into the bytes just before off, and returns
// where the frame starts [RFC 6455 section 5.2].
func putFrameHeader(buf []byte, off int, compressed bool) int {
	n := len(buf) - off
	b0 := byte(0x80) | byte(ws.OpBinary) // FIN
	if compressed {
		b0 |= 0x40 // RSV1: Per-Message Compressed [RFC 7692 section 6]
	}
	var start int
	switch {
	case n < 126:
		start = off - 2
		buf[start+1] = byte(n)
	case n <= 0xffff:
		start = off - 4
		buf[start+1] = 126
		buf[start+2], buf[start+3] = byte(n>>8), byte(n)
	default:
		start = off - 10
		buf[start+1] = 127
		for i := range 8 {
			buf[start+2+i] = byte(uint64(n) >> (56 - 8*i))
		}
	}
	buf[start] = b0
	return start
}

// Close sends a normal Close frame if none was sent, and closes the
// connection.
func (wc *wsConn) Close() error {
	// A write to a client that stopped reading holds wmu: end it first,
	// so that the close does not wait for that client.
	_ = wc.nc.SetWriteDeadline(time.Now())
	wc.closeWith(ws.StatusNormalClosure, "")
	return wc.nc.Close()
}

// SetWriteDeadline bounds the writes to the client.
func (wc *wsConn) SetWriteDeadline(t time.Time) error { return wc.nc.SetWriteDeadline(t) }

// (De)compressors are large (the standard library's deflater is about
// 1 MiB) and, without context takeover, needed only while one message is
// read or written: pooled, never held by an idle connection.
var (
	deflaters = sync.Pool{New: func() any {
		return wsflate.NewWriter(nil, func(w io.Writer) wsflate.Compressor {
			fw, _ := flate.NewWriter(w, flate.BestSpeed) // only fails on a bad level
			return fw
		})
	}}
	inflaters = sync.Pool{New: func() any {
		return wsflate.NewReader(nil, func(r io.Reader) wsflate.Decompressor {
			return &inflater{flate.NewReader(r)}
		})
	}}
	deflateBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}
)

// inflater lets wsflate.Reader reuse a flate reader across messages
// (flate.Resetter's Reset takes a dictionary, wsflate's does not).
type inflater struct{ io.ReadCloser }

func (i *inflater) Reset(r io.Reader) { _ = i.ReadCloser.(flate.Resetter).Reset(r, nil) }
