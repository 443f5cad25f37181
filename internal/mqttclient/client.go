// Package mqttclient is a blocking MQTT client driven by hand, for tests
// that run a broker and check what it sends: it sends exactly the packets
// it is given and answers nothing by itself. It exists because the engine's
// churn soak and cmd/loopmq's crash tests both need one outside the engine
// package (whose e2e helpers fail the test instead of returning errors).
// One goroutine uses a Conn; Close may be called from any.
package mqttclient

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// ErrRefused is Dial's error when the broker answered the CONNECT with
// something else than a CONNACK accepting it (wrapped, with the packet).
var ErrRefused = errors.New("CONNECT not accepted")

// Conn is one client connection.
type Conn struct {
	NC   net.Conn
	ver  codec.Version
	rbuf []byte // bytes read, not yet returned as packets
	tmp  []byte
}

// Dial connects to addr, sends cp and waits (5 s at most) for a CONNACK,
// which must accept the connection (ErrRefused otherwise).
func Dial(addr string, cp *codec.Connect) (*Conn, *codec.Connack, error) {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, nil, err
	}
	c := &Conn{NC: nc, ver: cp.Version, tmp: make([]byte, 64<<10)}
	if err := c.Send(cp); err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	p, err := c.Next(5 * time.Second)
	if err != nil {
		_ = nc.Close()
		return nil, nil, err
	}
	ca, ok := p.(*codec.Connack)
	if !ok || ca.ReasonCode != codec.Success {
		_ = nc.Close()
		return nil, nil, fmt.Errorf("%w: %+v", ErrRefused, p)
	}
	return c, ca, nil
}

// Send writes p for the connection's protocol version (2 s at most).
func (c *Conn) Send(p codec.Packet) error {
	_ = c.NC.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.NC.Write(p.AppendTo(nil, c.ver))
	return err
}

// Next returns the next packet from the broker, waiting at most timeout;
// the packet owns its memory. The error is the read's (a net.Error with
// Timeout() for a timeout) or the decoder's.
func (c *Conn) Next(timeout time.Duration) (codec.Packet, error) {
	deadline := time.Now().Add(timeout)
	for {
		_, n, err := codec.Split(c.rbuf, 0)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			frame := append([]byte(nil), c.rbuf[:n]...)
			c.rbuf = append(c.rbuf[:0], c.rbuf[n:]...)
			return codec.Decode(frame, c.ver)
		}
		_ = c.NC.SetReadDeadline(deadline)
		m, err := c.NC.Read(c.tmp)
		c.rbuf = append(c.rbuf, c.tmp[:m]...)
		if err != nil && m == 0 {
			return nil, err
		}
	}
}

// Close closes the connection without DISCONNECT.
func (c *Conn) Close() error { return c.NC.Close() }
