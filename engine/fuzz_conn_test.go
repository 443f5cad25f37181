package engine

// The client side of FuzzConnection (fuzz_test.go): a connection that
// writes whatever the fuzz input says and checks every packet the broker
// sends back against what the client announced in its CONNECT.

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// Bounds on every wait of a fuzz iteration.
const (
	fuzzBarrierWait = 300 * time.Millisecond // a PINGRESP after everything sent before it
	fuzzConnackWait = 200 * time.Millisecond // a CONNACK (or close) after CONNECT
	fuzzStuckWait   = 20 * time.Millisecond  // a barrier on a stuck connection
)

// fuzzConn is one fuzzed connection. It never fails the test on I/O
// errors: the broker closing it is a normal outcome. Protocol violations
// by the broker are returned as errors. Used by one goroutine.
type fuzzConn struct {
	conn   net.Conn
	ver    codec.Version
	closed bool // the broker closed it or the input killed it
	broken bool // a write failed: what the broker sent may still be read
	// stuck is set by a barrier that timed out or raw bytes written: the
	// broker may be waiting for the rest of a frame, so later barriers
	// wait only fuzzStuckWait instead of fuzzBarrierWait each.
	stuck bool

	// What the client announced in CONNECT (5.0), which bounds what the
	// broker may send it.
	maxPacket  uint32 // 0: none
	aliasMax   uint16
	receiveMax uint16 // 0: none announced (65535)
	clean      bool   // CONNECT's Clean Start
	accepted   bool   // a successful CONNACK arrived

	// Outgoing QoS 1/2 PUBLISH packets the broker sent and the client
	// has not finished acknowledging, by packet identifier: their QoS.
	outstanding map[uint16]byte
	// early are the identifiers the client acknowledged while the broker
	// had none of its PUBLISH packets with them out: the broker may
	// have sent one meanwhile and take the acknowledgement for it, so
	// the next PUBLISH with such an identifier is not counted.
	early map[uint16]bool

	rbuf []byte
	tmp  []byte

	trace func(format string, args ...any) // nil, or logs every packet (fuzzTrace)
	hist  []string                         // the last packets both ways, for failure messages
}

func dialFuzz(addr net.Addr) (*fuzzConn, error) {
	conn, err := net.DialTimeout("tcp", addr.String(), e2eWait)
	if err != nil {
		return nil, fmt.Errorf("dial fuzz broker: %w", err)
	}
	return &fuzzConn{conn: conn, ver: codec.V311, outstanding: make(map[uint16]byte), early: make(map[uint16]bool), tmp: make([]byte, 16<<10)}, nil
}

// connectSent records what p announces, for the checks on what the broker
// sends afterwards.
func (c *fuzzConn) connectSent(p *codec.Connect) {
	c.ver = p.Version
	c.clean = p.CleanStart
	if p.Version != codec.V5 {
		return
	}
	c.maxPacket = p.Properties.MaximumPacketSize
	c.aliasMax = p.Properties.TopicAliasMaximum
	c.receiveMax = p.Properties.ReceiveMaximum
}

// write sends b; after a failure it sends nothing more.
func (c *fuzzConn) write(b []byte) {
	if c.closed || c.broken {
		return
	}
	if c.trace != nil {
		c.trace("-> % x", head(b))
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(fuzzBarrierWait))
	if _, err := c.conn.Write(b); err != nil {
		c.broken = true
	}
}

// send encodes p for the connection's version and sends it, and forgets
// the outgoing flows p finishes.
func (c *fuzzConn) send(p codec.Packet) {
	if a, ok := p.(*codec.Ack); ok {
		c.acked(a)
	}
	c.note("->", p)
	if c.trace != nil {
		c.trace("-> %v %+v", p.Type(), p)
	}
	c.write(p.AppendTo(nil, c.ver))
}

// acked forgets the flow that a ends, as the broker must.
func (c *fuzzConn) acked(a *codec.Ack) {
	qos, ok := c.outstanding[a.PacketID]
	if !ok {
		if a.PacketType != codec.PUBREL {
			c.early[a.PacketID] = true
		}
		return
	}
	switch {
	case a.PacketType == codec.PUBACK && qos == 1,
		a.PacketType == codec.PUBCOMP && qos == 2,
		a.PacketType == codec.PUBREC && qos == 2 && a.ReasonCode >= 0x80 && c.ver == codec.V5:
		delete(c.outstanding, a.PacketID)
	}
}

func (c *fuzzConn) kill() {
	c.closed = true
	_ = c.conn.Close()
}

// errBarrierTimeout reports a barrier that saw neither its PINGRESP nor a
// close in time. Not a failure by itself: a broker may stop reading a
// connection for a while (flow control, a slow store).
var errBarrierTimeout = errors.New("no PINGRESP in time")

// barrier sends PINGREQ and reads until the PINGRESP, a close or
// fuzzBarrierWait. Every packet read on the way is checked; with ackAll,
// the client acknowledges every PUBLISH and PUBREL it reads, as a well-
// behaved client would.
func (c *fuzzConn) barrier(ackAll bool) error {
	if c.closed {
		return nil
	}
	c.write((&codec.Pingreq{}).AppendTo(nil, c.ver))
	wait := fuzzBarrierWait
	if c.stuck {
		wait = fuzzStuckWait
	}
	err := c.readUntil(time.Now().Add(wait), ackAll, codec.PINGRESP)
	if err == errBarrierTimeout {
		c.stuck = true
	}
	return err
}

// writeRaw sends b, which may end in the middle of a frame.
func (c *fuzzConn) writeRaw(b []byte) {
	c.stuck = true
	c.write(b)
}

// readUntil reads and checks packets until one of type stop arrives, the
// connection closes, or deadline (errBarrierTimeout). It returns the first
// protocol violation by the broker.
func (c *fuzzConn) readUntil(deadline time.Time, ackAll bool, stop ...codec.Type) error {
	for !c.closed {
		p, err := c.next(deadline)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errBarrierTimeout
			}
			if isClosedErr(err) || errors.Is(err, errBrokerClosed) {
				c.closed = true
				if c.trace != nil {
					c.trace("<- closed")
				}
				return nil
			}
			return err
		}
		if ackAll {
			c.ackIncoming(p)
		}
		for _, t := range stop {
			if p.Type() == t {
				return nil
			}
		}
	}
	return nil
}

var errBrokerClosed = errors.New("broker closed the connection")

// ackIncoming answers p as a well-behaved client.
func (c *fuzzConn) ackIncoming(p codec.Packet) {
	switch p := p.(type) {
	case *codec.Publish:
		switch p.QoS {
		case 1:
			c.send(&codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID})
		case 2:
			c.send(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID})
		}
	case *codec.Ack:
		if p.PacketType == codec.PUBREL {
			c.send(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID})
		}
	}
}

// next returns the next packet from the broker, checked, or the read
// error. A DISCONNECT from the broker is returned as a packet; the close
// that follows as errBrokerClosed or the read error.
func (c *fuzzConn) next(deadline time.Time) (codec.Packet, error) {
	for {
		h, n, err := codec.Split(c.rbuf, 0)
		if err != nil {
			return nil, fmt.Errorf("broker sent an unframeable packet (% x): %w", head(c.rbuf), err)
		}
		if n > 0 {
			frame := append([]byte(nil), c.rbuf[:n]...)
			c.rbuf = c.rbuf[n:]
			p, err := codec.Decode(frame, c.ver)
			if err != nil {
				return nil, fmt.Errorf("broker sent an undecodable %v to a %v client (% x): %w\nlast packets:\n%s",
					h.Type, c.ver, head(frame), err, strings.Join(c.hist, "\n"))
			}
			c.note("<-", p)
			if c.trace != nil {
				c.trace("<- %v %+v", p.Type(), p)
			}
			if err := c.check(p, n); err != nil {
				return nil, fmt.Errorf("%w\nlast packets:\n%s", err, strings.Join(c.hist, "\n"))
			}
			return p, nil
		}
		if err := c.conn.SetReadDeadline(deadline); err != nil {
			return nil, errBrokerClosed
		}
		m, err := c.conn.Read(c.tmp)
		c.rbuf = append(c.rbuf, c.tmp[:m]...)
		if err != nil && m == 0 {
			return nil, err
		}
	}
}

// note keeps a one-line summary of p in c.hist, the last fuzzHistory.
func (c *fuzzConn) note(dir string, p codec.Packet) {
	line := dir + " " + p.Type().String()
	switch p := p.(type) {
	case *codec.Publish:
		line += fmt.Sprintf(" %q qos %d id %d dup %v", p.Topic, p.QoS, p.PacketID, p.Dup)
	case *codec.Ack:
		line += fmt.Sprintf(" id %d code %#x", p.PacketID, byte(p.ReasonCode))
	case *codec.Connack:
		line += fmt.Sprintf(" present %v code %#x", p.SessionPresent, byte(p.ReasonCode))
	case *codec.Connect:
		line += fmt.Sprintf(" %q clean %v", p.ClientID, p.CleanStart)
	}
	if len(c.hist) == fuzzHistory {
		c.hist = c.hist[1:]
	}
	c.hist = append(c.hist, line)
}

const fuzzHistory = 40

func head(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// check returns an error when the broker had no right to send p, a frame
// of size bytes, to this client.
func (c *fuzzConn) check(p codec.Packet, size int) error {
	if c.maxPacket != 0 && uint32(size) > c.maxPacket {
		// A PUBLISH too large for the client is dropped [MQTT-3.1.2-25];
		// other packets lose their Reason String and User Properties
		// ([MQTT-3.2.2-19], [MQTT-3.14.2-3] and so on) but are sent even
		// when still too large: a client may announce less than a CONNACK
		// needs.
		if pr := packetProperties(p); p.Type() == codec.PUBLISH || pr != nil && (pr.Has(codec.PropReasonString) || pr.Has(codec.PropUser)) {
			return fmt.Errorf("broker sent a %v of %d bytes to a client with Maximum Packet Size %d", p.Type(), size, c.maxPacket)
		}
	}
	switch p.Type() {
	case codec.CONNACK, codec.PUBLISH, codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP,
		codec.SUBACK, codec.UNSUBACK, codec.PINGRESP:
	case codec.DISCONNECT, codec.AUTH:
		if c.ver != codec.V5 {
			return fmt.Errorf("broker sent %v to a %v client", p.Type(), c.ver)
		}
	default:
		return fmt.Errorf("broker sent %v, a client-to-server packet", p.Type())
	}
	if ca, ok := p.(*codec.Connack); ok {
		if ca.SessionPresent && (c.clean || ca.ReasonCode != codec.Success) {
			// [MQTT-3.2.2-2] [MQTT-3.2.2-6]
			return fmt.Errorf("CONNACK %v with Session Present after a CONNECT with Clean Start %v", ca.ReasonCode, c.clean)
		}
		c.accepted = ca.ReasonCode == codec.Success
		return nil
	}
	if !c.accepted && p.Type() != codec.AUTH {
		// [MQTT-3.2.0-1] [MQTT-3.14.0-1]: CONNACK first.
		return fmt.Errorf("broker sent %v before a successful CONNACK", p.Type())
	}
	pub, ok := p.(*codec.Publish)
	if !ok {
		return nil
	}
	if a := pub.Properties.TopicAlias; pub.Properties.Has(codec.PropTopicAlias) && (a == 0 || a > c.aliasMax) {
		// [MQTT-3.3.2-9] [MQTT-3.3.2-8]
		return fmt.Errorf("broker used topic alias %d with a client whose Topic Alias Maximum is %d", a, c.aliasMax)
	}
	if pub.QoS == 0 {
		return nil
	}
	if pub.PacketID == 0 {
		return fmt.Errorf("broker sent a QoS %d PUBLISH with packet identifier 0", pub.QoS)
	}
	if c.early[pub.PacketID] {
		delete(c.early, pub.PacketID)
		return nil
	}
	if _, ok := c.outstanding[pub.PacketID]; ok && !pub.Dup {
		// [MQTT-2.2.1-3]: an identifier is reused only once its flow ended.
		return fmt.Errorf("broker sent a new QoS %d PUBLISH with packet identifier %d, still unacknowledged", pub.QoS, pub.PacketID)
	} else if !ok {
		c.outstanding[pub.PacketID] = pub.QoS
		// Resends (DUP) of a resumed session count too: they go out
		// as quota allows (session.resendPending).
		if c.ver == codec.V5 && c.receiveMax != 0 && len(c.outstanding) > int(c.receiveMax) {
			// [MQTT-3.3.4-9]
			return fmt.Errorf("broker has %d unacknowledged QoS 1/2 PUBLISH packets out to a client with Receive Maximum %d",
				len(c.outstanding), c.receiveMax)
		}
	}
	return nil
}

// packetProperties returns p's properties, nil for a packet without.
func packetProperties(p codec.Packet) *codec.Properties {
	switch p := p.(type) {
	case *codec.Connack:
		return &p.Properties
	case *codec.Ack:
		return &p.Properties
	case *codec.Suback:
		return &p.Properties
	case *codec.Unsuback:
		return &p.Properties
	case *codec.Disconnect:
		return &p.Properties
	case *codec.Auth:
		return &p.Properties
	}
	return nil
}
