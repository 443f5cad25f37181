package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// Harness constants shared by every scenario.
const (
	// readBufSize is each client's read buffer; a read takes whatever the
	// socket holds up to this size.
	readBufSize = 64 << 10
	// handshakeTimeout bounds CONNECT/CONNACK and SUBSCRIBE/SUBACK.
	handshakeTimeout = 5 * time.Second
)

// payloadSize is every PUBLISH's payload size: 64 bytes unless
// -bench.payload says otherwise.
func payloadSize() int { return *payloadFlag }

// Payload layout: the publisher's index, its sequence number, filler.
const (
	payloadPubOff = 0 // uint32, big endian
	payloadSeqOff = 4 // uint64, big endian, 1 for a publisher's first message
)

// errAborted ends a client's work when the fixture is torn down or failed.
var errAborted = errors.New("run aborted")

// frameReader splits a connection's byte stream into MQTT frames without
// allocating: one buffer, compacted in place when a frame straddles its end.
// It belongs to the goroutine that reads the connection.
type frameReader struct {
	conn       net.Conn
	buf        []byte
	start, end int // buffered bytes are buf[start:end]
}

// next returns the next complete buffered frame's header and body, or
// ok == false when more bytes are needed. The body is valid until the next
// call to fill.
func (r *frameReader) next() (h codec.FixedHeader, body []byte, ok bool, err error) {
	h, n, err := codec.Split(r.buf[r.start:r.end], len(r.buf))
	if err != nil {
		return h, nil, false, fmt.Errorf("split frame: %w", err)
	}
	if n == 0 {
		return h, nil, false, nil
	}
	body = r.buf[r.start+h.HeaderLen : r.start+n]
	r.start += n
	return h, body, true, nil
}

// fill moves a partial frame to the front of the buffer and reads once.
func (r *frameReader) fill() error {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	n, err := r.conn.Read(r.buf[r.end:])
	r.end += n
	if n > 0 {
		return nil // an error comes again with the next read
	}
	return err
}

// frame blocks until a whole frame is buffered (handshakes only).
func (r *frameReader) frame() (codec.FixedHeader, []byte, error) {
	for {
		h, body, ok, err := r.next()
		if err != nil || ok {
			return h, body, err
		}
		if err := r.fill(); err != nil {
			return h, nil, err
		}
	}
}

// mqttConn is a connected MQTT 3.1.1 or 5.0 client with a clean session
// and no keep alive (the broker never times it out mid-benchmark). A 5.0
// client accepts v5TopicAliases topic aliases from the broker.
type mqttConn struct {
	nc  *net.TCPConn
	rd  frameReader
	ver codec.Version
}

// v5TopicAliases is the Topic Alias Maximum a 5.0 benchmark client sends.
const v5TopicAliases = 16

// dialMQTT connects to addr and completes CONNECT/CONNACK as id with a
// clean session.
func dialMQTT(addr, id string, ver codec.Version) (*mqttConn, error) {
	return dialSession(addr, id, ver, false, 0)
}

// dialSession is dialMQTT with a choice of session: persistent keeps it
// after the connection (3.1.1 Clean Session 0, 5.0 Session Expiry
// Interval of an hour); a 5.0 client sends maxPacket as its Maximum
// Packet Size (0: none).
func dialSession(addr, id string, ver codec.Version, persistent bool, maxPacket uint32) (*mqttConn, error) {
	c, err := net.DialTimeout("tcp", addr, handshakeTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	nc := c.(*net.TCPConn) // Go sets TCP_NODELAY by default
	mc := &mqttConn{nc: nc, rd: frameReader{conn: nc, buf: make([]byte, readBufSize)}, ver: ver}
	if err := mc.connect(id, persistent, maxPacket); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("client %s: %w", id, err)
	}
	return mc, nil
}

func (mc *mqttConn) connect(id string, persistent bool, maxPacket uint32) error {
	_ = mc.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = mc.nc.SetDeadline(time.Time{}) }()
	p := codec.Connect{Version: mc.ver, CleanStart: !persistent, ClientID: []byte(id)}
	if mc.ver == codec.V5 {
		p.Properties.TopicAliasMaximum = v5TopicAliases
		p.Properties.MaximumPacketSize = maxPacket
		if persistent {
			p.CleanStart = true // a fresh session that outlives the connection
			p.Properties.SessionExpiry = 3600
			p.Properties.Present.Add(codec.PropSessionExpiry)
		}
	}
	if _, err := mc.nc.Write(p.AppendTo(nil, mc.ver)); err != nil {
		return fmt.Errorf("write CONNECT: %w", err)
	}
	h, body, err := mc.rd.frame()
	if err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if h.Type != codec.CONNACK {
		return fmt.Errorf("got %v, want CONNACK", h.Type)
	}
	var ack codec.Connack
	if err := ack.Decode(h, body, mc.ver); err != nil {
		return fmt.Errorf("decode CONNACK: %w", err)
	}
	if ack.ReasonCode != 0 {
		return fmt.Errorf("CONNACK return code %d", ack.ReasonCode)
	}
	return nil
}

// subscribe subscribes to filter at qos and waits for the SUBACK, after
// which the broker routes matching messages to this client.
func (mc *mqttConn) subscribe(filter string, qos byte) error {
	_ = mc.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = mc.nc.SetDeadline(time.Time{}) }()
	p := codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte(filter), QoS: qos}}}
	if _, err := mc.nc.Write(p.AppendTo(nil, mc.ver)); err != nil {
		return fmt.Errorf("write SUBSCRIBE: %w", err)
	}
	h, body, err := mc.rd.frame()
	if err != nil {
		return fmt.Errorf("read SUBACK: %w", err)
	}
	if h.Type != codec.SUBACK {
		return fmt.Errorf("got %v, want SUBACK", h.Type)
	}
	var ack codec.Suback
	if err := ack.Decode(h, body, mc.ver); err != nil {
		return fmt.Errorf("decode SUBACK: %w", err)
	}
	if len(ack.ReasonCodes) != 1 || byte(ack.ReasonCodes[0]) != qos {
		return fmt.Errorf("SUBACK codes %v, want [%d]", ack.ReasonCodes, qos)
	}
	return nil
}

// defineAlias makes topic alias 1 stand for topic on a 5.0 connection,
// with an empty QoS 0 message sent before anyone subscribes, and waits
// until the broker has processed it (PINGREQ/PINGRESP).
func (mc *mqttConn) defineAlias(topic string) error {
	_ = mc.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	defer func() { _ = mc.nc.SetDeadline(time.Time{}) }()
	p := codec.Publish{Topic: []byte(topic), Properties: codec.Properties{TopicAlias: 1}}
	b := p.AppendTo(nil, mc.ver)
	b = (&codec.Pingreq{}).AppendTo(b, mc.ver)
	if _, err := mc.nc.Write(b); err != nil {
		return fmt.Errorf("write alias PUBLISH: %w", err)
	}
	h, _, err := mc.rd.frame()
	if err != nil {
		return fmt.Errorf("read PINGRESP: %w", err)
	}
	if h.Type != codec.PINGRESP {
		return fmt.Errorf("got %v, want PINGRESP", h.Type)
	}
	return nil
}

// publisher sends one topic's messages. Its goroutine owns every field
// but need and wake, which subscribers touch to hand it credit.
type publisher struct {
	idx    int // in the fixture; written into every payload
	mc     *mqttConn
	qos    byte
	window int // end-to-end: at most this many messages not yet received by every subscriber
	burst  int // messages per write

	frameLen int
	frames   []byte // burst copies of one encoded PUBLISH, patched per send
	seqOff   int    // sequence number offset within a frame
	pidOff   int    // packet identifier offset within a frame (QoS 1)

	sent uint64 // messages sent so far over all runs: the last sequence number
	// published is sent, stored after each write for other goroutines.
	published atomic.Uint64
	nextPID   uint16 // QoS 1: identifier of the next PUBLISH
	ackPID    uint16 // QoS 1: identifier the next PUBACK must carry
	unacked   int    // QoS 1: PUBLISHes awaiting PUBACK
	ack       codec.Ack

	// heard holds, for every subscriber that receives this publisher's
	// messages, that subscriber's count of them.
	heard []*atomic.Uint64
	// need is the count every subscriber must reach before the publisher
	// may send again, 0 while it is not waiting. A subscriber whose count
	// reaches need sends on wake.
	need atomic.Uint64
	wake chan struct{}

	start chan int // the benchmark goroutine hands out a run's message count
}

// v5UserProperties are what every 5.0 benchmark PUBLISH carries.
var v5UserProperties = []codec.UserProperty{
	{Key: []byte("device-type"), Value: []byte("thermostat")},
	{Key: []byte("firmware"), Value: []byte("4.2.1")},
	{Key: []byte("site"), Value: []byte("plant-7")},
}

// newPublisher prepares a publisher's frames. A 5.0 publisher sends
// three user properties and topic alias 1 with an empty topic: defineAlias
// must have told the broker what the alias stands for.
func newPublisher(idx int, mc *mqttConn, topic string, qos byte, window, burst int) *publisher {
	p := &publisher{idx: idx, mc: mc, qos: qos, window: window, burst: burst, nextPID: 1, ackPID: 1,
		wake: make(chan struct{}, 1), start: make(chan int)}
	pub := codec.Publish{QoS: qos, Topic: []byte(topic), Payload: make([]byte, payloadSize())}
	if mc.ver == codec.V5 {
		pub.Topic = nil
		pub.Properties.TopicAlias = 1
		pub.Properties.User = v5UserProperties
	}
	if qos > 0 {
		pub.PacketID = 1
	}
	for i := payloadSeqOff + 8; i < payloadSize(); i++ {
		pub.Payload[i] = byte('a' + i%26)
	}
	binary.BigEndian.PutUint32(pub.Payload[payloadPubOff:], uint32(idx))
	frame := pub.AppendTo(nil, mc.ver)
	h, _, _ := codec.Split(frame, 0)
	p.frameLen = len(frame)
	p.seqOff = len(frame) - payloadSize() + payloadSeqOff
	p.pidOff = h.HeaderLen + 2 + len(pub.Topic)
	p.frames = make([]byte, 0, burst*len(frame))
	for range burst {
		p.frames = append(p.frames, frame...)
	}
	return p
}

// run publishes n messages within the windows and, at QoS 1, waits for
// every PUBACK. It does not allocate.
func (p *publisher) run(n int, abort <-chan struct{}) error {
	for left := n; left > 0; {
		k := min(p.burst, left)
		for p.qos > 0 && p.unacked+k > *maxUnacked {
			if err := p.readAcks(); err != nil {
				return err
			}
		}
		if err := p.awaitCredit(k, abort); err != nil {
			return err
		}
		b := p.frames[:k*p.frameLen]
		for off := 0; off < len(b); off += p.frameLen {
			p.sent++
			binary.BigEndian.PutUint64(b[off+p.seqOff:], p.sent)
			if p.qos > 0 {
				binary.BigEndian.PutUint16(b[off+p.pidOff:], p.nextPID)
				p.nextPID = nextPacketID(p.nextPID)
			}
		}
		if _, err := p.mc.nc.Write(b); err != nil {
			return fmt.Errorf("publisher %d: write: %w", p.idx, err)
		}
		p.published.Store(p.sent)
		p.unacked += k
		left -= k
	}
	for p.qos > 0 && p.unacked > 0 {
		if err := p.readAcks(); err != nil {
			return err
		}
	}
	p.unacked = 0
	return nil
}

func nextPacketID(id uint16) uint16 {
	if id == 65535 {
		return 1
	}
	return id + 1
}

// awaitCredit blocks until k more messages fit in the end-to-end window:
// every subscriber has received at least sent+k-window of them.
func (p *publisher) awaitCredit(k int, abort <-chan struct{}) error {
	if p.sent+uint64(k) <= uint64(p.window) {
		return nil
	}
	target := p.sent + uint64(k) - uint64(p.window)
	if p.minHeard() >= target {
		return nil
	}
	// Publish the target before re-reading the counts: a subscriber that
	// reaches it either sees need and wakes us, or did so before our
	// second look, which then sees its count.
	p.need.Store(target)
	defer p.need.Store(0)
	for p.minHeard() < target {
		select {
		case <-p.wake:
		case <-abort:
			return errAborted
		}
	}
	return nil
}

func (p *publisher) minHeard() uint64 {
	m := ^uint64(0)
	for _, h := range p.heard {
		m = min(m, h.Load())
	}
	return m
}

// readAcks reads once and consumes every PUBACK buffered; they must come
// in publishing order.
func (p *publisher) readAcks() error {
	if err := p.mc.rd.fill(); err != nil {
		return fmt.Errorf("publisher %d: read PUBACK: %w", p.idx, err)
	}
	for {
		h, body, ok, err := p.mc.rd.next()
		if err != nil {
			return fmt.Errorf("publisher %d: %w", p.idx, err)
		}
		if !ok {
			return nil
		}
		if h.Type != codec.PUBACK {
			return fmt.Errorf("publisher %d: got %v, want PUBACK", p.idx, h.Type)
		}
		if err := p.ack.Decode(h, body, p.mc.ver); err != nil {
			return fmt.Errorf("publisher %d: decode PUBACK: %w", p.idx, err)
		}
		if p.ack.PacketID != p.ackPID || p.unacked == 0 {
			return fmt.Errorf("publisher %d: PUBACK %d, want %d (%d unacked)", p.idx, p.ack.PacketID, p.ackPID, p.unacked)
		}
		p.ackPID = nextPacketID(p.ackPID)
		p.unacked--
	}
}

// fromPublisher is what a subscriber knows of one publisher it hears.
type fromPublisher struct {
	pub *publisher
	n   atomic.Uint64 // messages received from pub: also the last sequence number seen
}

// subscriber receives and checks deliveries. Its goroutine owns every
// field; the benchmark goroutine sets target and reads total, publishers
// read the counts in from.
type subscriber struct {
	idx  int
	mc   *mqttConn
	qos  byte
	from []fromPublisher // by publisher index; pub == nil for publishers not heard

	dec  codec.Publish
	acks []byte // QoS 1: PUBACKs for one read, written at once

	total     atomic.Uint64 // deliveries over all runs
	target    atomic.Uint64 // total at which the current run is complete for this subscriber
	signalled uint64        // last target reported on done
}

// loop reads deliveries until the connection fails or closes. At each
// target it sends its index on done; any protocol or ordering error goes
// to fail. It does not allocate, but on error.
func (s *subscriber) loop(done chan<- int, fail func(error)) {
	var total uint64
	for {
		if err := s.mc.rd.fill(); err != nil {
			fail(fmt.Errorf("subscriber %d: read: %w", s.idx, err))
			return
		}
		for {
			h, body, ok, err := s.mc.rd.next()
			if err != nil {
				fail(fmt.Errorf("subscriber %d: %w", s.idx, err))
				return
			}
			if !ok {
				break
			}
			if err := s.deliver(h, body); err != nil {
				fail(err)
				return
			}
			total++
		}
		if len(s.acks) > 0 {
			if _, err := s.mc.nc.Write(s.acks); err != nil {
				fail(fmt.Errorf("subscriber %d: write PUBACK: %w", s.idx, err))
				return
			}
			s.acks = s.acks[:0]
		}
		s.total.Store(total)
		if t := s.target.Load(); total >= t && s.signalled != t {
			s.signalled = t
			done <- s.idx
		}
	}
}

// deliver checks one delivered frame and counts it.
func (s *subscriber) deliver(h codec.FixedHeader, body []byte) error {
	if h.Type != codec.PUBLISH {
		return fmt.Errorf("subscriber %d: got %v, want PUBLISH", s.idx, h.Type)
	}
	d := &s.dec
	if err := decodeForCheck(d, h, body, s.mc.ver); err != nil {
		return fmt.Errorf("subscriber %d: decode PUBLISH: %w", s.idx, err)
	}
	if d.QoS != s.qos || d.Dup || d.Retain || len(d.Payload) != payloadSize() {
		return fmt.Errorf("subscriber %d: PUBLISH qos=%d dup=%v retain=%v payload %d B, want qos=%d, %d B",
			s.idx, d.QoS, d.Dup, d.Retain, len(d.Payload), s.qos, payloadSize())
	}
	pi := binary.BigEndian.Uint32(d.Payload[payloadPubOff:])
	if int(pi) >= len(s.from) || s.from[pi].pub == nil {
		return fmt.Errorf("subscriber %d: message from publisher %d it does not hear", s.idx, pi)
	}
	f := &s.from[pi]
	n := f.n.Load() + 1
	if seq := binary.BigEndian.Uint64(d.Payload[payloadSeqOff:]); seq != n {
		return fmt.Errorf("subscriber %d: publisher %d's message %d arrived, want %d (lost, duplicated or reordered)",
			s.idx, pi, seq, n)
	}
	f.n.Store(n)
	if f.pub.need.Load() == n {
		select {
		case f.pub.wake <- struct{}{}:
		default:
		}
	}
	if s.qos > 0 {
		s.acks = append(s.acks, byte(codec.PUBACK)<<4, 2, byte(d.PacketID>>8), byte(d.PacketID))
	}
	return nil
}

// decodeForCheck decodes what deliver checks. A 5.0 PUBLISH's properties
// are skipped by their length rather than decoded (codec's full decode
// validates every user property as UTF-8): the benchmark's CPU figure
// includes its clients, and the 5.0 comparison is about the broker.
func decodeForCheck(d *codec.Publish, h codec.FixedHeader, body []byte, v codec.Version) error {
	if v != codec.V5 {
		return d.Decode(h, body, v)
	}
	d.QoS = (h.Flags >> 1) & 3
	d.Dup = h.Flags&0x08 != 0
	d.Retain = h.Flags&0x01 != 0
	if len(body) < 2 {
		return errors.New("truncated topic")
	}
	off := 2 + int(binary.BigEndian.Uint16(body))
	d.PacketID = 0
	if d.QoS > 0 {
		if len(body) < off+2 {
			return errors.New("truncated packet identifier")
		}
		d.PacketID = binary.BigEndian.Uint16(body[off:])
		off += 2
	}
	n, shift := 0, 0
	for {
		if off >= len(body) || shift > 21 {
			return errors.New("bad property length")
		}
		c := body[off]
		off++
		n |= int(c&0x7f) << shift
		shift += 7
		if c < 0x80 {
			break
		}
	}
	if off+n > len(body) {
		return errors.New("truncated properties")
	}
	d.Payload = body[off+n:]
	return nil
}
