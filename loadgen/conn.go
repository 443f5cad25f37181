package loadgen

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// Connection states; a connection moves forward only.
const (
	stateSetup   int32 = iota // dialing, CONNECT, SUBSCRIBE
	stateUp                   // set up and counted as up
	stateClosing              // the run is closing it: a read error is expected
	stateDropped              // the broker (or the network) ended it during the run
)

// Read buffers start small, so that idle connections stay cheap, and double
// when a read fills them, up to readBufMax (or the size of one frame).
const (
	readBufMin = 4 << 10
	readBufMax = 64 << 10
)

// conn is one MQTT client connection.
type conn struct {
	r    *runner
	spec *connSpec
	nc   net.Conn
	ver  codec.Version

	state atomic.Int32
	done  chan struct{} // closed when the reader ends
	rerr  error         // why the reader ended; read after done

	hs chan handshake // CONNACK and SUBACK, from the reader to setup

	lastWrite atomic.Int64  // ns since runner.base
	pings     atomic.Uint64 // PINGREQs written
	pongs     atomic.Uint64 // PINGRESPs read
	keepAlive time.Duration // as agreed in CONNACK

	pub *publisher // nil unless the connection publishes

	// Owned by the reader goroutine.
	dec     codec.Decoder
	rbuf    []byte
	abuf    []byte   // acknowledgements to write after the current batch
	lat     []int64  // end-to-end latencies (µs) to flush
	wlat    []int64  // latencies from the publisher's write (µs) to flush
	ackLat  []int64  // publish-to-ack latencies (µs) to flush
	streams []stream // one per expected source, from spec.expectLo
	foreign uint64   // messages not of this run, or from sources not expected
	inWin   uint64   // distinct messages that arrived in the measured window
	recvN   int64    // messages received in the current batch, duplicates included (runner.lastRecv)
	uniqueN int64    // first arrivals in the current batch (runner.delivered)
	ackedN  int64    // publishes acknowledged in the current batch
}

// handshake is what the reader saw of a CONNACK or SUBACK, copied out of
// the read buffer.
type handshake struct {
	t               codec.Type
	present         bool
	code            codec.ReasonCode
	receiveMax      uint16 // 0 when absent
	maxQoS          byte
	hasMaxQoS       bool
	serverKeepAlive uint16
	hasServerKA     bool
}

func newConn(r *runner, spec *connSpec, nc net.Conn) *conn {
	c := &conn{r: r, spec: spec, nc: nc, ver: codec.Version(r.cfg.protocolVersion()),
		done: make(chan struct{}), hs: make(chan handshake, 2)}
	c.dec.Version = c.ver
	c.rbuf = make([]byte, readBufMin)
	if spec.subscribes() {
		c.streams = make([]stream, spec.expectHi-spec.expectLo)
		c.lat = make([]int64, 0, 256)
		c.wlat = make([]int64, 0, 256)
	}
	if spec.publishes() {
		c.pub = newPublisher(c)
		c.ackLat = make([]int64, 0, 256)
	}
	return c
}

// connectPacket is the CONNECT of every connection the run opens: clean,
// with the run's credentials; connect adds the rest.
func (cfg *Config) connectPacket(ver codec.Version, clientID string) codec.Connect {
	cp := codec.Connect{Version: ver, CleanStart: true, ClientID: []byte(clientID)}
	if cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, []byte(cfg.Username)
	}
	if cfg.Password != "" {
		cp.PasswordFlag, cp.Password = true, []byte(cfg.Password)
	}
	return cp
}

// connect dials spec's broker, sends CONNECT and SUBSCRIBE and waits for
// their acknowledgements, all within Config.ConnectTimeout. On success the
// connection's reader is running.
func (r *runner) connect(ctx context.Context, spec *connSpec) (*conn, error) {
	cfg := &r.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	nc, err := r.dialer.dial(ctx, spec.index, cfg.Brokers[spec.broker])
	if err != nil {
		return nil, err
	}
	c := newConn(r, spec, nc)
	r.wg.Add(1)
	go c.readLoop()
	fail := func(stage string, err error) (*conn, error) {
		_ = nc.Close()
		<-c.done
		return nil, stageErr{stage, err}
	}

	deadline, _ := ctx.Deadline()
	_ = nc.SetWriteDeadline(deadline)
	cp := cfg.connectPacket(c.ver, spec.clientID)
	if cfg.Persistent && spec.subscribes() {
		cp.CleanStart = false
		if c.ver == codec.V5 {
			cp.Properties.SessionExpiry = PersistentExpiry
			cp.Properties.Present.Add(codec.PropSessionExpiry)
		}
	}
	if cfg.KeepAlive > 0 {
		cp.KeepAlive = uint16(min(cfg.KeepAlive/time.Second, 65535))
		c.keepAlive = time.Duration(cp.KeepAlive) * time.Second
	}
	if c.ver == codec.V5 {
		// Let the broker send as many unacknowledged messages as it likes:
		// its own limit is what is measured, not ours.
		cp.Properties.ReceiveMaximum = 65535
	}
	if err := c.write(cp.AppendTo(nil, c.ver)); err != nil {
		return fail("connack", err)
	}
	ack, err := c.await(ctx, codec.CONNACK)
	if err != nil {
		return fail("connack", err)
	}
	if ack.code != codec.Success {
		return fail("connack", refusedError{connackReason(c.ver, ack.code)})
	}
	if ack.hasServerKA {
		c.keepAlive = time.Duration(ack.serverKeepAlive) * time.Second
	}
	if c.pub != nil {
		if ack.hasMaxQoS && ack.maxQoS < cfg.QoS {
			return fail("connack", refusedError{fmt.Sprintf("broker's Maximum QoS is %d", ack.maxQoS)})
		}
		if ack.receiveMax > 0 {
			c.pub.limitWindow(int(ack.receiveMax))
		}
	}
	if spec.subscribes() {
		sp := codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte(spec.filter), QoS: cfg.QoS}}}
		if err := c.write(sp.AppendTo(nil, c.ver)); err != nil {
			return fail("suback", err)
		}
		ack, err := c.await(ctx, codec.SUBACK)
		if err != nil {
			return fail("suback", err)
		}
		if ack.code.IsError() {
			return fail("suback", refusedError{subackReason(c.ver, ack.code)})
		}
		if byte(ack.code) < cfg.QoS {
			r.errs.add(fmt.Sprintf("suback granted QoS %d < %d", ack.code, cfg.QoS),
				fmt.Sprintf("%s subscribed to %s at QoS %d, asked %d", spec.clientID, spec.filter, ack.code, cfg.QoS), "")
		}
	}
	_ = nc.SetWriteDeadline(time.Time{})
	if !c.state.CompareAndSwap(stateSetup, stateUp) {
		return fail("suback", io.EOF)
	}
	select {
	case <-c.done:
		// The reader ended between the acknowledgement and now; it did not
		// count the drop because the connection was not up yet.
		c.dropped()
	default:
	}
	return c, nil
}

// await waits for the reader to see a packet of type t.
func (c *conn) await(ctx context.Context, t codec.Type) (handshake, error) {
	select {
	case h := <-c.hs:
		if h.t != t {
			return h, &protocolError{"protocol error", fmt.Sprintf("broker sent %v while waiting for %v", h.t, t)}
		}
		return h, nil
	case <-c.done:
		if c.rerr != nil {
			return handshake{}, c.rerr
		}
		return handshake{}, io.EOF
	case <-ctx.Done():
		return handshake{}, ctx.Err()
	}
}

// write writes whole frames; a net.Conn serialises concurrent writers.
func (c *conn) write(b []byte) error {
	_, err := c.writeN(b)
	return err
}

// writeN is write, and says how many bytes were written (all of b unless
// err is set).
func (c *conn) writeN(b []byte) (int, error) {
	n, err := c.nc.Write(b)
	c.lastWrite.Store(int64(time.Since(c.r.base)))
	return n, err
}

// dropped records, once, that the connection ended during the run.
func (c *conn) dropped() {
	if !c.state.CompareAndSwap(stateUp, stateDropped) {
		return
	}
	c.r.dropped.Add(1)
	err := c.rerr
	if err == nil {
		err = io.EOF
	}
	c.r.errs.addErr("run", err)
}

// readLoop reads and handles frames until the connection ends.
func (c *conn) readLoop() {
	defer c.r.wg.Done()
	defer close(c.done)
	w := 0
	for {
		n, err := c.nc.Read(c.rbuf[w:])
		w += n
		if n > 0 {
			filled := w == len(c.rbuf)
			used, need, perr := c.consume(c.rbuf[:w])
			c.flush()
			if perr != nil {
				c.rerr = perr
				_ = c.nc.Close()
				c.dropped()
				return
			}
			w = copy(c.rbuf, c.rbuf[used:w])
			if need > len(c.rbuf) || (filled && len(c.rbuf) < readBufMax) {
				// A frame larger than the buffer, or input arriving faster
				// than one buffer per read.
				nb := make([]byte, max(need, 2*len(c.rbuf)))
				copy(nb, c.rbuf[:w])
				c.rbuf = nb
			}
		}
		if err != nil {
			if c.state.Load() == stateClosing {
				return
			}
			c.rerr = err
			c.dropped()
			return
		}
	}
}

// consume handles every complete frame at the start of b. It returns how
// many bytes it used and, when b ends in a partial frame whose size is
// known, that size.
func (c *conn) consume(b []byte) (used, need int, err error) {
	now := c.r.sinceT0()
	for {
		h, n, err := codec.Split(b[used:], 0)
		if err != nil {
			return used, 0, &protocolError{"malformed frame from broker", err.Error()}
		}
		if n == 0 {
			if h.HeaderLen > 0 {
				need = h.Size()
			}
			return used, need, nil
		}
		p, err := c.dec.DecodeBody(h, b[used+h.HeaderLen:used+n])
		used += n
		if err != nil {
			return used, 0, &protocolError{"malformed " + h.Type.String() + " from broker", err.Error()}
		}
		if err := c.handle(p, now); err != nil {
			return used, 0, err
		}
	}
}

// handle acts on one decoded packet; now is the batch's arrival time in ns
// since T0.
func (c *conn) handle(p codec.Packet, now int64) error {
	switch p := p.(type) {
	case *codec.Publish:
		c.onPublish(p, now)
	case *codec.Ack:
		switch p.PacketType {
		case codec.PUBREL:
			// Exactly once, receiver side: the message was counted on
			// PUBLISH; PUBCOMP ends the flow [MQTT 4.3.3].
			a := codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID}
			c.abuf = a.AppendTo(c.abuf, c.ver)
		default:
			if c.pub == nil {
				return &protocolError{"protocol error", fmt.Sprintf("%v for a connection that does not publish", p.PacketType)}
			}
			c.pub.onAck(p, now)
		}
	case *codec.Pingresp:
		c.pongs.Add(1)
		if c.pub != nil {
			c.pub.onPong()
		}
	case *codec.Connack:
		h := handshake{t: codec.CONNACK, present: p.SessionPresent, code: p.ReasonCode}
		if pr := &p.Properties; c.ver == codec.V5 {
			h.receiveMax = pr.ReceiveMaximum
			h.maxQoS, h.hasMaxQoS = pr.MaximumQoS, pr.Has(codec.PropMaximumQoS)
			h.serverKeepAlive, h.hasServerKA = pr.ServerKeepAlive, pr.Has(codec.PropServerKeepAlive)
		}
		c.report(h)
	case *codec.Suback:
		h := handshake{t: codec.SUBACK, code: codec.ReasonCode(codec.SubackFailureV3)}
		if len(p.ReasonCodes) > 0 {
			h.code = p.ReasonCodes[0]
		}
		c.report(h)
	case *codec.Disconnect:
		return refusedError{"broker sent DISCONNECT: " + p.ReasonCode.String()}
	default:
		return &protocolError{"protocol error", fmt.Sprintf("unexpected %v from broker", p.Type())}
	}
	return nil
}

// report hands a handshake packet to setup; a second one nobody waits for
// is dropped rather than blocking the reader.
func (c *conn) report(h handshake) {
	select {
	case c.hs <- h:
	default:
	}
}

// onPublish accounts for one delivered message and queues its
// acknowledgement.
func (c *conn) onPublish(p *codec.Publish, now int64) {
	r := c.r
	switch p.QoS {
	case 1:
		a := codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID}
		c.abuf = a.AppendTo(c.abuf, c.ver)
	case 2:
		a := codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID}
		c.abuf = a.AppendTo(c.abuf, c.ver)
	}
	st, ok := readStamp(p.Payload)
	spec := c.spec
	if !ok || st.run != r.cfg.RunID || st.source < spec.expectLo || st.source >= spec.expectHi {
		c.foreign++
		return
	}
	sm := &c.streams[st.source-spec.expectLo]
	before := sm.unique
	sm.add(st.seq)
	c.recvN++
	if sm.unique == before {
		// A duplicate is counted in its stream (duplicated), and is
		// neither a delivery of the window nor a message's latency.
		return
	}
	c.uniqueN++
	if st.at >= r.measureFrom && st.at < r.measureTo {
		sm.measured++
		c.lat = append(c.lat, max(now-st.at, 0)/1000)
		if st.wrote > 0 {
			c.wlat = append(c.wlat, max(now-st.wrote, 0)/1000)
		}
	}
	if now >= r.measureFrom && now < r.measureTo {
		c.inWin++
	}
}

// flush writes the batch's acknowledgements and hands its figures over.
func (c *conn) flush() {
	r := c.r
	if len(c.abuf) > 0 {
		_ = c.write(c.abuf) // a failed write shows up as a failed read
		c.abuf = c.abuf[:0]
	}
	if len(c.lat) > 0 {
		r.lat.record(c.spec.index, c.lat)
		c.lat = c.lat[:0]
	}
	if len(c.wlat) > 0 {
		r.writeLat.record(c.spec.index, c.wlat)
		c.wlat = c.wlat[:0]
	}
	if len(c.ackLat) > 0 {
		r.ackLat.record(c.spec.index, c.ackLat)
		c.ackLat = c.ackLat[:0]
	}
	if c.uniqueN > 0 {
		r.delivered.Add(c.uniqueN)
		c.uniqueN = 0
	}
	if c.recvN > 0 {
		r.lastRecv.Store(int64(time.Since(r.base)))
		c.recvN = 0
	}
	if c.ackedN > 0 {
		r.acked.Add(c.ackedN)
		c.ackedN = 0
	}
}

// close ends the connection at the end of the run: DISCONNECT, then close.
func (c *conn) close(deadline time.Time) {
	if c.state.CompareAndSwap(stateUp, stateClosing) {
		_ = c.nc.SetWriteDeadline(deadline)
		d := codec.Disconnect{}
		_ = c.write(d.AppendTo(nil, c.ver))
	}
	_ = c.nc.Close()
}

// connackReason names a CONNACK failure code in the connection's version.
func connackReason(v codec.Version, code codec.ReasonCode) string {
	if v == codec.V5 {
		return code.String()
	}
	switch byte(code) {
	case codec.ConnRefusedVersion:
		return "unacceptable protocol version"
	case codec.ConnRefusedIdentifier:
		return "identifier rejected"
	case codec.ConnRefusedUnavailable:
		return "server unavailable"
	case codec.ConnRefusedBadCredentials:
		return "bad user name or password"
	case codec.ConnRefusedNotAuthorized:
		return "not authorized"
	}
	return fmt.Sprintf("return code %d", code)
}

func subackReason(v codec.Version, code codec.ReasonCode) string {
	if v == codec.V5 {
		return code.String()
	}
	return "failure 0x80"
}
