package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// The terms a connection starts with and how it ends: the keep alive and
// Session Expiry Interval the broker grants at CONNECT, the client's
// DISCONNECT, and the DISCONNECT the broker sends a 5.0 client when it
// closes the connection itself [MQTT 5.0 section 4.13.2].
//
// Ownership: everything here runs on the client's loop, which owns the
// client and, while the client is bound, its session; noticeShutdown
// only posts to the loops.

// expiryNever is the Session Expiry Interval of a session that never
// expires [MQTT 5.0 section 3.1.2.11.2].
const expiryNever = 0xFFFFFFFF

// maxKeepAliveSecs returns MaxKeepAlive in whole seconds (at least 1),
// or 0 when the broker accepts every client's keep alive.
func (o *Options) maxKeepAliveSecs() uint16 {
	if o.MaxKeepAlive <= 0 {
		return 0
	}
	return uint16(min(max(o.MaxKeepAlive/time.Second, 1), 65535))
}

// capExpiry returns the Session Expiry Interval (seconds) the broker uses
// for one a client asked for: at most MaxSessionExpiry, rounded up to whole
// seconds. A cap never turns a non-zero interval into 0, nor any interval
// into expiryNever.
func (o *Options) capExpiry(secs uint32) uint32 {
	if o.MaxSessionExpiry <= 0 {
		return secs
	}
	limit := uint32(expiryNever - 1)
	if o.MaxSessionExpiry < time.Duration(limit)*time.Second {
		limit = uint32((o.MaxSessionExpiry + time.Second - 1) / time.Second)
	}
	return min(secs, limit)
}

// negotiate sets the keep alive and the Session Expiry Interval in force
// for the connection that sent p, within the broker's caps. It reports
// false when it refused the CONNECT.
func (c *client) negotiate(p *codec.Connect) bool {
	o := &c.loop.srv.opts
	ka := p.KeepAlive
	if limit := o.maxKeepAliveSecs(); limit > 0 && (ka == 0 || ka > limit) {
		if p.Version != codec.V5 {
			// A 3.x client cannot be told the broker's value: held to it,
			// it would be cut off while pinging as it said it would, and
			// reconnect to be cut off again. Refused instead, with the
			// code Mosquitto (2.0.12 on) sends for this: 2, identifier
			// rejected.
			c.refuse(codec.ClientIdentifierNotValid, fmt.Sprintf(
				"keep alive %d s (0: none) is above the broker's maximum, %d s; a 3.x client cannot be told to use less", ka, limit))
			return false
		}
		// A 5.0 client is told in CONNACK and must use this value
		// [MQTT-3.2.2-21].
		ka = limit
		c.terms |= termKeepAlive
	}
	c.keepAlive = ka

	var want uint32
	switch {
	case p.Version == codec.V5:
		// Absent means 0: the session ends with the connection
		// [MQTT 5.0 section 3.1.2.11.2].
		want = p.Properties.SessionExpiry
	case !p.CleanStart:
		want = expiryNever // 3.x Clean Session = 0: kept until the client returns (3.1.1 [MQTT-3.1.2-4])
	}
	c.expiry = o.capExpiry(want)
	// MQTT 5.0 section 3.2.2.3.2: CONNACK carries the interval when the
	// broker uses another one than the client asked for.
	if p.Version == codec.V5 && c.expiry != want {
		c.terms |= termExpiryCapped
	}
	return true
}

// connackTerms adds to a 5.0 CONNACK's properties the terms the broker
// changed: its Session Expiry Interval (section 3.2.2.3.2) and its Server
// Keep Alive [MQTT-3.2.2-21]. Without them the client's values stand
// [MQTT-3.2.2-22].
func (c *client) connackTerms(props *codec.Properties) {
	if c.terms&termExpiryCapped != 0 {
		props.SessionExpiry = c.expiry
		props.Present.Add(codec.PropSessionExpiry)
	}
	if c.terms&termKeepAlive != 0 {
		props.ServerKeepAlive = c.keepAlive
		props.Present.Add(codec.PropServerKeepAlive)
	}
	if c.terms&termResponseInfo != 0 {
		props.ResponseInfo = c.loop.srv.respInfo // nil when none is configured
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
	s.setFlag(flagClean, secs == 0)
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

// serverDisconnect closes the connection on the broker's initiative. A
// connected 5.0 client is told why first; nothing follows the DISCONNECT
// [MQTT-3.14.4-1], and none is sent before CONNACK [MQTT-3.14.0-1]. The
// broker never puts a Session Expiry Interval in it [MQTT-3.14.2-2].
func (c *client) serverDisconnect(code codec.ReasonCode, reason string) {
	if c.version == codec.V5 && c.state == stateConnected {
		d := codec.Disconnect{ReasonCode: code}
		c.writePacket(&d)
	}
	c.close(reason)
}

// shutdownNotice bounds how long Stop waits for the loops to tell their
// 5.0 clients that the server is shutting down.
const shutdownNotice = 2 * time.Second

// noticeShutdown sends DISCONNECT 0x8B (Server shutting down) to every
// connected 5.0 client, flushed, and closes those connections; it returns
// when every loop has done so, or after shutdownNotice or when ctx ends.
// 3.x clients have no such packet: they are closed by the engine's stop.
func (s *Server) noticeShutdown(ctx context.Context) {
	loops := s.loopsSnapshot()
	done := make(chan struct{}, len(loops))
	for _, l := range loops {
		l.post(task{kind: taskFunc, fn: func(l *loop) {
			// Closing removes clients from l.clients: walk a copy.
			for _, c := range append([]*client(nil), l.clients...) {
				if c.version == codec.V5 && c.state == stateConnected {
					c.serverDisconnect(codec.ServerShuttingDown, reasonShutdown)
				}
			}
			done <- struct{}{}
		}})
	}
	timer := time.NewTimer(shutdownNotice)
	defer timer.Stop()
	for range loops {
		select {
		case <-done:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
