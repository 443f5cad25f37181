package engine

import (
	"time"

	"github.com/loopmq/loopmq/codec"
)

// The terms a connection starts with and how it ends: the Session Expiry
// Interval the broker grants at CONNECT and the client's DISCONNECT.
//
// Ownership: everything here runs on the client's loop, which owns the
// client and, while the client is bound, its session.

// expiryNever is the Session Expiry Interval of a session that never
// expires [MQTT 5.0 section 3.1.2.11.2].
const expiryNever = 0xFFFFFFFF

// capExpiry returns the Session Expiry Interval (seconds) the broker uses
// for one a client asked for: at most MaxSessionExpiry, rounded up to whole
// seconds. A cap never turns a non-zero interval into 0, nor any interval
// into expiryNever.
func (o *Options) capExpiry(secs uint32) uint32 {
	if o.MaxSessionExpiry <= 0 {
		return secs
	}
	limit := min((o.MaxSessionExpiry+time.Second-1)/time.Second, expiryNever-1)
	return uint32(min(time.Duration(secs), limit))
}

// negotiate sets the keep alive and the Session Expiry Interval in force
// for the connection that sent p, within the broker's caps.
func (c *client) negotiate(p *codec.Connect) {
	o := &c.loop.srv.opts
	c.keepAlive = time.Duration(p.KeepAlive) * time.Second

	var want uint32
	switch {
	case p.Version == codec.V5:
		// Absent means 0: the session ends with the connection
		// [MQTT 5.0 section 3.1.2.11.2].
		want = p.Properties.SessionExpiry
	case !p.CleanStart:
		want = expiryNever // 3.x Clean Session = 0: kept until the client returns [MQTT-3.1.2-4]
	}
	c.expiry = o.capExpiry(want)
	// MQTT 5.0 section 3.2.2.3.2: CONNACK carries the interval when the
	// broker uses another one than the client asked for.
	c.expiryCapped = p.Version == codec.V5 && c.expiry != want
}

// connackTerms adds to a 5.0 CONNACK's properties the terms the broker
// changed: its Session Expiry Interval (section 3.2.2.3.2).
func (c *client) connackTerms(props *codec.Properties) {
	if c.expiryCapped {
		props.SessionExpiry = c.expiry
		props.Present.Add(codec.PropSessionExpiry)
	}
}

// setExpiry changes the Session Expiry Interval in force for c and its
// session. Runs on c's loop, the session's owner while it is bound.
func (c *client) setExpiry(secs uint32) {
	c.expiry = secs
	if s := c.sess; s != nil {
		s.setExpiry(secs)
	}
}

// setExpiry sets s's Session Expiry Interval. Runs on s's owner.
func (s *session) setExpiry(secs uint32) {
	s.expiry = secs
	s.clean.Store(secs == 0)
}

// onDisconnect handles the client's DISCONNECT. A 5.0 client may change
// the Session Expiry Interval in it, but not from 0 to non-zero (MQTT 5.0
// section 3.14.2.2.2: a Protocol Error, answered with DISCONNECT 0x82,
// and the will is published as for any abnormal close). Reason 0x04 asks
// for the will to be published; every other reason discards it
// [MQTT-3.14.4-3].
func (c *client) onDisconnect(p *codec.Disconnect) {
	if c.version == codec.V5 && p.Properties.Has(codec.PropSessionExpiry) {
		want := p.Properties.SessionExpiry
		if c.expiry == 0 && want != 0 {
			c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: codec.DISCONNECT,
				Reason: "non-zero Session Expiry Interval in DISCONNECT after 0 in CONNECT (MQTT 5.0 section 3.14.2.2.2)"})
			return
		}
		c.setExpiry(c.loop.srv.opts.capExpiry(want))
	}
	c.disconnect = c.version != codec.V5 || p.ReasonCode != codec.DisconnectWithWill
	c.close(reasonClient)
}
