package engine

import (
	"context"
	"errors"
	"log/slog"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopmq/loopmq/codec"
)

// Connection states.
const (
	stateNew       = iota // waiting for CONNECT
	stateAuth             // CONNECT received, enhanced authentication exchange running (auth.go)
	stateWaiting          // CONNECT accepted, session being handed over from another loop
	stateConnected        // session bound, packets flow
	stateClosed           // closing or closed; inbound bytes are ignored
)

// Why a connection closes, for logs and for the will.
const (
	reasonTimeout  = "keep alive timeout"
	reasonProtocol = "protocol error"
	reasonTakeover = "session taken over"
	// reasonStoreFailed closes a publisher whose message the store lost.
	reasonStoreFailed = "store write failed"
	reasonClient      = "client disconnected"
	reasonShutdown    = "server shutting down"
)

// seg is one frame (or frame header) in a client's write batch: either a
// range of the client's wbuf or a header shared by many recipients,
// followed by an optional shared payload. A seg with a payload holds one
// reference to msg until the batch is written.
type seg struct {
	shared     []byte
	start, end int
	payload    []byte
	msg        *message
}

// client is one network connection. It is owned by the loop of its gnet
// connection: created in OnOpen, touched only by that loop's callbacks and
// runnables, dropped in OnClose.
type client struct {
	conn     gnet.Conn
	loop     *loop
	clientID string
	sess     *session
	will     *will        // nil without a will (will.go)
	extra    *clientExtra // what few connections need; nil until first used
	// ident is who authentication says the client is (authz.go), its
	// client id aside; nil for an anonymous client.
	ident *Identity
	// out is the write batch, flushed with one writev at the end of each
	// event. It is taken from the loop's spare batches by the first write
	// of an event and given back by the flush, so a connection holds one
	// only while it has frames waiting (batches.go).
	out *writeBatch

	// lastSeen is the loop clock of the last inbound bytes once CONNECT
	// is accepted, and the time of the accept until then (the connect
	// timeout runs from it, checked by the 1 s sweep); once the
	// connection is closed, the time of the close (a delayed will's
	// interval runs from it: parkWill).
	lastSeen int64
	slot     int32 // index in loop.clients
	// Terms granted at CONNECT (lifecycle.go): the Session Expiry
	// Interval in force (seconds) and the keep alive (seconds); terms
	// says what a 5.0 CONNACK must tell (termExpiryCapped and so on).
	expiry       uint32
	maxPacketOut uint32 // the client's 5.0 Maximum Packet Size; 0 for no limit
	keepAlive    uint16
	sendQuota    uint16 // QoS 1/2 messages in flight towards the client: min(MaxInflight, its Receive Maximum)
	state        uint8
	version      codec.Version
	terms        uint8
	cleanStart   bool
	disconnect   bool // DISCONNECT received: no will [MQTT-3.1.2-10]
	inDirty      bool
	gone         bool // gnet closed the connection: nothing more is written
	flushing     bool // inside flush (gnet may re-enter through OnClose)
}

// The fields above are ordered by size so that a client fits the 112-byte
// size class: every open connection has one (TestClientFitsSizeClass).

// The bits of client.terms: what the broker decided at CONNECT that a 5.0
// CONNACK tells the client.
const (
	termExpiryCapped uint8 = 1 << iota // the Session Expiry Interval is not the one asked for
	termKeepAlive                      // the keep alive was capped (Server Keep Alive)
	termAssignedID                     // the broker assigned clientID [MQTT-3.2.2-16]
	// termNoProblemInfo is not told: the client sent Request Problem
	// Information 0, so no Reason String goes on its acknowledgements
	// [MQTT-3.1.2-29] (problemInfo).
	termNoProblemInfo
	termResponseInfo // the client asked for Response Information [MQTT 5.0 section 3.1.2.11.7]
)

// clientExtra is the state of a connection that most connections never
// need, behind one pointer so that an idle connection does not pay for
// it. Owned by the client's loop.
type clientExtra struct {
	held    *heldAcks    // acknowledgements withheld for back-pressure (flow.go)
	auth    *authState   // enhanced authentication (auth.go); nil unless CONNECT named a method
	aliases topicAliases // 5.0 topic aliases (alias.go)
	// userMemo holds the user properties that ended the client's last 5.0
	// PUBLISH, so that the same ones again are not validated again.
	userMemo codec.UserMemo
}

// authState returns c's enhanced authentication state, nil for none.
func (c *client) authState() *authState {
	if c.extra == nil {
		return nil
	}
	return c.extra.auth
}

// extras returns c's clientExtra, allocating it on first use.
func (c *client) extras() *clientExtra {
	if c.extra == nil {
		c.extra = &clientExtra{}
	}
	return c.extra
}

// heldAcks returns c's withheld acknowledgements, nil for none.
func (c *client) heldAcks() *heldAcks {
	if c.extra == nil {
		return nil
	}
	return c.extra.held
}

// writeBatch holds the frames a client is sent in one event.
type writeBatch struct {
	wbuf    []byte
	segs    []seg
	pending int // bytes in the batch
}

// batch returns c's write batch, taking one from the loop on first use.
func (c *client) batch() *writeBatch {
	if c.out == nil {
		c.out = c.loop.getBatch()
	}
	return c.out
}

// remote returns the peer address for logs. Runs on the client's loop.
func (c *client) remote() string {
	if c.gone {
		return ""
	}
	if a := c.conn.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}

func (c *client) id() string {
	if c.clientID == "" {
		return "(none)"
	}
	return c.clientID
}

// onTraffic consumes every complete frame in the connection's inbound
// buffer. A partial frame stays buffered for the next event.
func (c *client) onTraffic() gnet.Action {
	l := c.loop
	l.setNow()
	start := l.mono
	if c.state != stateNew && c.state != stateAuth {
		c.lastSeen = l.mono // until CONNECT is accepted it is the accept time
	}
	buf, _ := c.conn.Peek(-1)
	if c.state == stateNew && len(buf) > 0 && buf[0] != 0x10 {
		// [MQTT-3.1.0-1] the first packet must be CONNECT, whose first
		// byte is 0x10 [MQTT-2.1.3-1]: said at the first byte, not after
		// waiting for as many bytes as it would have been long (an HTTP
		// request or a TLS hello to the MQTT port waited for
		// ConnectTimeout).
		c.loop.srv.log.Info("first packet is not CONNECT, closing", "first_byte", buf[0], "remote", c.remote())
		_, _ = c.conn.Discard(len(buf))
		c.close(reasonProtocol)
		l.endBatch()
		return gnet.Close
	}
	off := 0
	frames := 0
	l.traffic = c
	for c.state == stateNew || c.state == stateAuth || c.state == stateConnected {
		h, n, err := codec.Split(buf[off:], c.loop.srv.opts.MaxPacketSize)
		if err != nil {
			c.protocolError(err)
			break
		}
		if n == 0 {
			break
		}
		c.handle(h, buf[off+h.HeaderLen:off+n])
		off += n
		frames++
	}
	l.traffic = nil
	// Counted once per event, not per frame.
	l.acc.trafficEvents++
	l.acc.packetsIn += uint64(frames)
	l.acc.bytesIn += uint64(off)
	if c.state == stateClosed {
		off = len(buf)
	}
	if off > 0 {
		// Never Discard(0): gnet reads n <= 0 as "discard everything",
		// which would throw away a partial frame and misalign the stream.
		_, _ = c.conn.Discard(off)
	}
	l.endBatch()
	l.observeEvent(start)
	if c.state == stateClosed {
		return gnet.Close
	}
	return gnet.None
}

// handle dispatches one frame. The decoded packet's views point into the
// inbound buffer and are valid only during this call.
func (c *client) handle(h codec.FixedHeader, body []byte) {
	if c.state == stateNew && h.Type != codec.CONNECT {
		// [MQTT-3.1.0-1] the first packet must be CONNECT.
		c.loop.srv.log.Info("first packet is not CONNECT, closing", "type", h.Type, "remote", c.remote())
		c.close(reasonProtocol)
		return
	}
	if c.state != stateNew && h.Type == codec.CONNECT {
		// [MQTT-3.1.0-2] a second CONNECT is a protocol violation.
		c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: codec.CONNECT,
			Reason: "second CONNECT [MQTT-3.1.0-2]"})
		return
	}
	if c.state == stateAuth && h.Type != codec.AUTH && h.Type != codec.DISCONNECT {
		c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: h.Type,
			Reason: "only AUTH or DISCONNECT until CONNACK [MQTT-3.1.2-30]"})
		return
	}
	// One decoder per loop, not per connection: its packet values are
	// only used during this call (they are a few KiB, per loop instead of
	// per idle connection).
	dec := &c.loop.dec
	dec.Version = c.version
	dec.UserMemo = nil
	if h.Type == codec.PUBLISH && c.extra != nil {
		// User properties a client repeats message after message are
		// validated once per connection (codec.UserMemo).
		dec.UserMemo = &c.extra.userMemo
	}
	pkt, err := dec.DecodeBody(h, body)
	if err != nil {
		c.protocolError(err)
		return
	}
	switch p := pkt.(type) {
	case *codec.Connect:
		if c.authenticate(h, p, body) {
			c.onConnect(p)
		}
	case *codec.Publish:
		if c.extra == nil && len(p.Properties.User) > 0 {
			// A memo from the next PUBLISH on: a client that sends no
			// user properties allocates none (clientExtra).
			c.extras()
		}
		c.onPublish(p)
	case *codec.Ack:
		c.onAck(p)
	case *codec.Subscribe:
		c.onSubscribe(p)
	case *codec.Unsubscribe:
		c.onUnsubscribe(p)
	case *codec.Pingreq:
		c.writeRaw(byte(codec.PINGRESP)<<4, 0)
	case *codec.Disconnect:
		c.onDisconnect(p)
	case *codec.Auth:
		c.onAuth(p)
	default:
		// CONNACK, SUBACK, UNSUBACK and PINGRESP are never sent by a client.
		c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: h.Type,
			Reason: "packet type not expected from a client"})
	}
}

// protocolError logs err, tells a 5.0 client why with a DISCONNECT, and
// closes the connection.
func (c *client) protocolError(err error) {
	c.loop.stats.protocolErrors.Add(1)
	var e *codec.Error
	code := codec.UnspecifiedError
	if errors.As(err, &e) {
		code = e.Code
	}
	c.loop.srv.log.Info("closing connection", "client", c.id(), "remote", c.remote(), "error", err)
	if c.state == stateNew {
		if code == codec.UnsupportedProtocolVersion {
			// [MQTT-3.1.2-2] answer with CONNACK 0x01 (3.1.1) or 0x84 (5.0).
			c.version = c.loop.dec.Version // the level the client asked for
			c.loop.refused(RefusedProtocolVersion)
			c.writeConnack(false, code, nil, "")
		}
	} else if c.state == stateAuth {
		// No DISCONNECT before a successful CONNACK [MQTT-3.14.0-1].
		reason := ""
		if e != nil {
			reason = e.Reason
		}
		c.writeConnack(false, code, nil, reason)
	} else if c.version == codec.V5 {
		d := codec.Disconnect{ReasonCode: code}
		if e != nil {
			// Allowed in DISCONNECT whatever Request Problem Information
			// says [MQTT-3.1.2-29], within the client's Maximum Packet
			// Size [MQTT-3.14.2-3].
			d.Properties.ReasonString = []byte(e.Reason)
		}
		c.writeReasoned(&d, &d.Properties.ReasonString)
	}
	c.close(reasonProtocol)
}

// close marks the connection closing; the bytes already batched are
// written and gnet closes it at the end of the current event. Safe to call
// from any code running on the client's loop.
func (c *client) close(reason string) {
	if c.state == stateClosed {
		return
	}
	if c.state == stateConnected {
		c.loop.stats.connected.Add(-1)
	}
	c.state = stateClosed
	if log := c.loop.srv.log; log.Enabled(context.Background(), slog.LevelDebug) {
		log.Debug("closing connection", "client", c.id(), "remote", c.remote(), "reason", reason)
	}
	c.flush()
	_ = c.conn.Close()
}

// ---- write batching ----

func (c *client) markDirty() {
	if !c.inDirty {
		c.inDirty = true
		c.loop.dirty = append(c.loop.dirty, c)
	}
}

// writeRaw batches literal bytes.
func (c *client) writeRaw(bs ...byte) {
	b := c.batch()
	start := len(b.wbuf)
	b.wbuf = append(b.wbuf, bs...)
	c.addSeg(b, start)
}

// writePacket batches an encoded control packet.
func (c *client) writePacket(p codec.Packet) {
	b := c.batch()
	start := len(b.wbuf)
	b.wbuf = p.AppendTo(b.wbuf, c.version)
	c.addSeg(b, start)
}

// writeReasoned batches p, whose Reason String is *reason, without the
// Reason String when p with it is larger than the client's Maximum
// Packet Size [MQTT-3.1.2-24] (as MQTT 5.0 says of every packet that has
// one: [MQTT-3.9.2-1], [MQTT-3.14.2-3] and so on). A Reason String longer
// than maxReasonString bytes (it may quote what the client sent: topics,
// filters, a method name) is cut there, at a character boundary, and
// ends with "...".
func (c *client) writeReasoned(p codec.Packet, reason *[]byte) {
	if r := *reason; len(r) > maxReasonString {
		n := maxReasonString - 3
		for n > 0 && r[n]&0xC0 == 0x80 { // not inside a UTF-8 sequence [MQTT-1.5.4-1]
			n--
		}
		*reason = append(r[:n:n], "..."...)
	}
	b := c.batch()
	start := len(b.wbuf)
	b.wbuf = p.AppendTo(b.wbuf, c.version)
	if len(*reason) > 0 && !c.fits(len(b.wbuf)-start) {
		*reason = nil
		b.wbuf = p.AppendTo(b.wbuf[:start], c.version)
	}
	c.addSeg(b, start)
}

// maxReasonString bounds the Reason Strings the broker sends.
const maxReasonString = 512

func (c *client) addSeg(b *writeBatch, start int) {
	b.segs = append(b.segs, seg{start: start, end: len(b.wbuf)})
	b.pending += len(b.wbuf) - start
	c.markDirty()
}

// writeAck batches a PUBACK, PUBREC, PUBREL or PUBCOMP. It calls
// Ack.AppendTo directly rather than through writePacket: passing the Ack as
// a codec.Packet would move it to the heap, once per QoS 1/2 message.
func (c *client) writeAck(t codec.Type, id uint16, code codec.ReasonCode) {
	a := codec.Ack{PacketType: t, PacketID: id, ReasonCode: code}
	if code >= 0x80 && c.problemInfo() {
		// A failure says why [MQTT 5.0 sections 3.4.2.2.2, 3.5.2.2.2,
		// 3.6.2.2.2, 3.7.2.2.2], unless that would make the packet too
		// large for the client [MQTT-3.4.2-2, 3.5.2-2, 3.6.2-2, 3.7.2-2].
		// A copy, on the heap for writeReasoned: a successful one's Ack
		// stays on the stack.
		f := a
		f.Properties.ReasonString = []byte(ackReason(t, code))
		c.writeReasoned(&f, &f.Properties.ReasonString)
		return
	}
	b := c.batch()
	start := len(b.wbuf)
	b.wbuf = a.AppendTo(b.wbuf, c.version)
	c.addSeg(b, start)
}

// ackReason is the Reason String of a PUBACK, PUBREC, PUBREL or PUBCOMP
// of type t with failure code.
func ackReason(t codec.Type, code codec.ReasonCode) string {
	switch code {
	case codec.NotAuthorized:
		return "not authorized to publish to this topic"
	case codec.PayloadFormatInvalid:
		return "the payload format indicator is 1 but the payload is not valid UTF-8"
	case codec.PacketIdentifierNotFound:
		if t == codec.PUBREL {
			return "PUBREC for a packet identifier with no QoS 2 PUBLISH in flight"
		}
		return "PUBREL for a packet identifier with no QoS 2 PUBLISH awaiting release"
	}
	return code.String()
}

// problemInfo reports whether c may get a Reason String on a packet other
// than CONNACK, PUBLISH and DISCONNECT: a 5.0 client that did not send
// Request Problem Information 0 [MQTT-3.1.2-29].
func (c *client) problemInfo() bool {
	return c.version == codec.V5 && c.terms&termNoProblemInfo == 0
}

// fits reports whether a packet of n bytes is within c's 5.0 Maximum
// Packet Size [MQTT-3.1.2-24].
func (c *client) fits(n int) bool {
	return c.maxPacketOut == 0 || n <= int(c.maxPacketOut)
}

// writeConnack batches a CONNACK. A 5.0 refusal carries reason, if not
// empty, as its Reason String (allowed whatever Request Problem
// Information says [MQTT-3.1.2-29]) when the packet stays within the
// client's Maximum Packet Size [MQTT-3.2.2-19].
func (c *client) writeConnack(present bool, code codec.ReasonCode, props *codec.Properties, reason string) {
	ca := codec.Connack{SessionPresent: present, ReasonCode: code}
	if c.version != codec.V5 {
		ca.ReasonCode = codec.ReasonCode(codec.ConnackCodeV3(code))
		reason = ""
	} else {
		if code == codec.Success {
			props = c.connackAuthProps(props)
			reason = ""
		}
		if props != nil {
			ca.Properties = *props
		}
	}
	// Connack.AppendTo directly, not through writePacket: as a
	// codec.Packet the Connack (its Properties are a few hundred bytes)
	// would move to the heap, once per connection.
	if reason != "" {
		r := ca // a copy, on the heap for writeReasoned, for refusals only
		r.Properties.ReasonString = []byte(reason)
		c.writeReasoned(&r, &r.Properties.ReasonString)
		return
	}
	b := c.batch()
	start := len(b.wbuf)
	b.wbuf = ca.AppendTo(b.wbuf, c.version)
	c.addSeg(b, start)
}

// writePublish batches one PUBLISH of out with packet identifier id (0 for
// QoS 0). The payload is not copied: the batch holds a reference to the
// message until it is written. For QoS 0 the caller's reference in out
// moves to the batch; for QoS 1/2 the in-flight window keeps the caller's
// and the batch takes its own, since the window may drop the message (the
// session ends) before the batch is written.
//
// 3.x recipients of a QoS 0 message share its frame0. A 5.0 recipient's
// header is encoded here: the message's forwarded properties plus its own
// remaining expiry, subscription identifiers and topic alias. It reports
// false, writing nothing (and for QoS 0 releasing the reference), when the
// frame exceeds the client's Maximum Packet Size [MQTT-3.1.2-25].
func (c *client) writePublish(out outMsg, id uint16, dup bool) bool {
	m := out.msg
	b := c.batch()
	var s seg
	switch {
	case out.qos == 0 && !out.retain && c.version != codec.V5:
		s = seg{shared: m.frame0, msg: m} // identical for every such recipient: encoded once
	case c.version != codec.V5:
		p := codec.Publish{Dup: dup, QoS: out.qos, Retain: out.retain, Topic: m.topic, PacketID: id, Payload: m.payload}
		s = seg{start: len(b.wbuf), payload: m.payload, msg: m}
		b.wbuf = p.AppendHeader(b.wbuf, c.version)
		s.end = len(b.wbuf)
	default:
		l := c.loop
		var remaining uint32
		if m.expiry != 0 {
			remaining = m.remainingExpiry(l.mono)
		}
		if c.maxPacketOut > 0 && c.v5Size(out, remaining) > int(c.maxPacketOut) {
			l.stats.droppedTooLarge.Add(1)
			if out.qos == 0 {
				m.release()
			}
			return false
		}
		var alias uint16
		known := false
		if a := c.aliasesOut(); a != nil {
			alias, known = a.alias(m.topic)
		}
		hdr, pidOff := l.v5Header(out, dup, alias, known, remaining)
		if out.qos == 0 {
			if pidOff < 0 {
				s = seg{shared: hdr, msg: m} // the whole frame, shared with the next such recipient
			} else {
				s = seg{shared: hdr, payload: m.payload, msg: m} // same header for the next such recipient
			}
			break
		}
		s = seg{start: len(b.wbuf), payload: m.payload, msg: m}
		b.wbuf = append(b.wbuf, hdr...)
		b.wbuf[len(b.wbuf)-len(hdr)+pidOff] = byte(id >> 8)
		b.wbuf[len(b.wbuf)-len(hdr)+pidOff+1] = byte(id)
		if len(m.payload) <= inlinePayload {
			b.wbuf = append(b.wbuf, m.payload...) // one iovec instead of two
			s.payload = nil
		}
		s.end = len(b.wbuf)
	}
	if out.qos > 0 {
		m.ref()
	}
	b.segs = append(b.segs, s)
	b.pending += len(s.shared) + s.end - s.start + len(s.payload)
	c.loop.stats.msgsOut[out.qos].Add(1)
	c.loop.acc.payloadOut[out.qos] += uint64(len(m.payload))
	c.markDirty()
	return true
}

// v5Size is the size of out's PUBLISH frame towards c, with the topic
// and at most a topic alias property, for the Maximum Packet Size check.
func (c *client) v5Size(out outMsg, remaining uint32) int {
	m := out.msg
	var h codec.ForwardHeader
	c.loop.forwardHeader(&h, out, false, remaining)
	if c.aliasesOut() != nil {
		h.TopicAlias = 1
	}
	return h.Size() + len(m.payload)
}

// forwardHeader fills h, which must be zero, with out's 5.0 PUBLISH header
// with the recipient's remaining Message Expiry Interval [MQTT-3.3.2-6] and
// Subscription Identifiers [MQTT-3.3.4-3] (in the loop's scratch slice,
// valid until the next call), packet identifier 1 and no topic alias.
//
// It fills the caller's value field by field instead of returning one
// built from a composite literal: that is assembled on the stack and
// copied, a dozen words per delivery, partly in 16-byte loads over 8-byte
// and 1-byte stores that stall on store forwarding.
func (l *loop) forwardHeader(h *codec.ForwardHeader, out outMsg, dup bool, remaining uint32) {
	m := out.msg
	h.Dup, h.QoS, h.Retain = dup, out.qos, out.retain
	h.Topic, h.Raw, h.PayloadLen = m.topic, m.props, len(m.payload)
	h.HasExpiry, h.Expiry = m.expiry != 0, remaining
	if out.qos > 0 {
		h.PacketID = 1
	}
	if out.subID != 0 {
		ids := append(l.subIDs[:0], out.subID)
		ids = append(ids, out.moreSubIDs()...)
		h.SubIDs = ids
		l.subIDs = ids[:0]
	}
}

// inlinePayload is the largest payload copied next to its per-recipient
// header rather than written from the message as an iovec of its own: for
// small messages one iovec less costs the kernel more than the copy.
const inlinePayload = 256

// v5HeaderCache is a loop's last encoded 5.0 PUBLISH header. Recipients of
// one message usually follow each other (fan-out) and often need the same
// header: a QoS 0 one is then shared as is, a QoS 1/2 one copied with its
// packet identifier patched at pidOff. The header lives in the loop's
// arena, which is reset when the batch has been written; hdr == nil means
// no header is cached.
//
// The other fields are what the header depends on besides the packet
// identifier. They are compared and set one by one, the message first: a
// key struct built per delivery and compared or copied whole costs a
// store-forwarding stall, and with one recipient per message (pairs,
// fan-in) the message alone tells a miss.
type v5HeaderCache struct {
	hdr       []byte
	pidOff    int
	msg       *message
	remaining uint32
	alias     uint16
	qos       byte
	retain    bool
	dup       bool
	known     bool
}

// v5Header returns the 5.0 PUBLISH header (fixed header to properties,
// packet identifier 1) for out towards a client with the given topic alias
// state, and the offset of its packet identifier (QoS 1/2). For a QoS 0
// message of at most inlinePayload bytes it returns the whole frame and
// offset -1. The bytes stay valid until the end of the current batch.
func (l *loop) v5Header(out outMsg, dup bool, alias uint16, known bool, remaining uint32) ([]byte, int) {
	m := out.msg
	hc := &l.hdr5
	if hc.hdr != nil && hc.msg == m && out.subID == 0 && hc.qos == out.qos && hc.retain == out.retain &&
		hc.dup == dup && hc.known == known && hc.alias == alias && hc.remaining == remaining {
		return hc.hdr, hc.pidOff
	}
	var h codec.ForwardHeader
	l.forwardHeader(&h, out, dup, remaining)
	h.TopicAlias = alias
	if known {
		h.Topic = nil // the alias stands for the topic [MQTT-3.3.2-12]
	}
	start := len(l.arena)
	l.arena = h.AppendTo(l.arena)
	pidOff := -1
	if out.qos == 0 && len(m.payload) <= inlinePayload {
		// A small QoS 0 message: the whole frame in the arena, one iovec
		// per recipient as for 3.x's frame0.
		l.arena = append(l.arena, m.payload...)
	} else {
		hl := 2 // fixed header: type byte and a remaining length of 1 to 4 bytes
		for l.arena[start+hl-1]&0x80 != 0 {
			hl++
		}
		pidOff = hl + 2 + len(h.Topic)
	}
	hdr := l.arena[start:len(l.arena):len(l.arena)]
	if out.subID != 0 {
		hc.hdr = nil // per-subscription identifiers: not for the next recipient
		return hdr, pidOff
	}
	hc.hdr, hc.pidOff = hdr, pidOff
	hc.msg, hc.remaining, hc.alias = m, remaining, alias
	hc.qos, hc.retain, hc.dup, hc.known = out.qos, out.retain, dup, known
	return hdr, pidOff
}

// flush writes the batch with one writev and releases its references.
// gnet may run OnClose for c from inside Writev; the nested flush it makes
// returns at once and this one finishes the release.
func (c *client) flush() {
	c.inDirty = false
	b := c.out
	if b == nil || c.flushing {
		return
	}
	if len(b.segs) == 0 {
		c.out = nil
		c.loop.putBatch(b)
		return
	}
	c.flushing = true
	// The iovec list is the loop's: only one flush writes at a time
	// (gnet's re-entry through OnClose flushes no other client's batch
	// while this one is being built; endBatch ignores nested calls).
	iov := c.loop.iovScratch[:0]
	for i := range b.segs {
		s := &b.segs[i]
		if s.shared != nil {
			iov = append(iov, s.shared)
		} else if s.end > s.start {
			iov = append(iov, b.wbuf[s.start:s.end])
		}
		if len(s.payload) > 0 {
			iov = append(iov, s.payload)
		}
	}
	if !c.gone {
		// gnet copies what the socket does not take at once, so the
		// payloads may be released right after.
		c.writeIOV(iov)
		acc := &c.loop.acc
		acc.bytesOut += uint64(b.pending)
		acc.packetsOut += uint64(len(b.segs))
	}
	for i := range b.segs {
		if m := b.segs[i].msg; m != nil {
			m.release()
		}
		b.segs[i] = seg{}
	}
	if !c.loop.inEndBatch {
		// A flush inside an event (a close) may have freed a message
		// whose pooled struct a later delivery of this event reuses: the
		// header cached for it must not match that one (v5Header).
		c.loop.hdr5 = v5HeaderCache{}
	}
	clear(iov)
	c.loop.iovScratch = iov[:0]
	b.segs = b.segs[:0]
	b.wbuf = b.wbuf[:0]
	b.pending = 0
	c.flushing = false
	c.out = nil
	c.loop.putBatch(b)
}

// outboundFull reports whether the client's unsent bytes reached the bound
// past which QoS 0 messages to it are dropped.
func (c *client) outboundFull() bool {
	pending := 0
	if c.out != nil {
		pending = c.out.pending
	}
	return pending+c.conn.OutboundBuffered() >= c.loop.srv.opts.MaxOutbound
}
