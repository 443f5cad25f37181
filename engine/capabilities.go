package engine

import (
	"bytes"
	"strconv"

	"github.com/loopmq/loopmq/codec"
)

// Optional server capabilities: Options.MaxQoS, NoRetain,
// NoWildcardSubscriptions, NoSharedSubscriptions and
// NoSubscriptionIdentifiers. MQTT 5.0 (section 3.2.2.3) lets a server go
// without each and tell its 5.0 clients in CONNACK; a 5.0 client that
// uses one anyway has made a Protocol Error and gets DISCONNECT with the
// capability's reason code (a will: CONNACK). 3.x clients cannot be
// told: a PUBLISH closes the connection (as Mosquitto), a will refuses
// the CONNECT with return code 3 (Mosquitto closes without CONNACK), a
// filter gets SUBACK 0x80 [MQTT-3.8.3-2 of 3.1.1 for wildcards].

// connackCapabilities adds to a 5.0 CONNACK the capabilities that are
// off; an absent one means available.
func (srv *Server) connackCapabilities(props *codec.Properties) {
	o := &srv.opts
	off := func(id codec.PropID) { props.Present.Add(id) } // present with value 0
	if srv.maxQoS < 2 {
		props.MaximumQoS = srv.maxQoS
		off(codec.PropMaximumQoS) // [MQTT-3.2.2-9]
	}
	if o.NoRetain {
		off(codec.PropRetainAvailable)
	}
	if o.NoWildcardSubscriptions {
		off(codec.PropWildcardSubAvailable)
	}
	if o.NoSharedSubscriptions {
		off(codec.PropSharedSubAvailable)
	}
	if o.NoSubscriptionIdentifiers {
		off(codec.PropSubIDAvailable)
	}
}

// publishUnsupported reports whether a PUBLISH, or a will, with qos and
// retain needs a capability that is off, and which: 0x9B QoS not
// supported or 0x9A Retain not supported, with why.
func (srv *Server) publishUnsupported(qos byte, retain bool) (codec.ReasonCode, string, bool) {
	switch {
	case qos > srv.maxQoS:
		return codec.QoSNotSupported, "QoS " + strconv.Itoa(int(qos)) + " is above the server's Maximum QoS " +
			strconv.Itoa(int(srv.maxQoS)), true
	case retain && srv.opts.NoRetain:
		return codec.RetainNotSupported, "RETAIN 1, but the server keeps no retained messages", true
	}
	return codec.Success, "", false
}

// refusePublish ends the connection of a client whose PUBLISH p needs a
// capability that is off: DISCONNECT 0x9B or 0x9A to a 5.0 client (MQTT
// 5.0 sections 3.2.2.3.4 and 3.2.2.3.5), a closed connection for a 3.x
// one. It reports whether it did. A QoS 2 PUBLISH sent again for a
// packet identifier the session already holds (received before a restart
// that lowered MaxQoS) is let through, so that its flow can end
// [MQTT-4.4.0-1].
func (c *client) refusePublish(p *codec.Publish) bool {
	code, why, refused := c.loop.srv.publishUnsupported(p.QoS, p.Retain)
	if code == codec.QoSNotSupported && p.QoS == 2 && !p.Retain {
		if _, held := c.sess.inboundQoS2[p.PacketID]; held {
			return false
		}
	}
	if refused {
		c.protocolError(&codec.Error{Code: code, Packet: codec.PUBLISH, Reason: why})
	}
	return refused
}

// refuseSubscribe ends the connection of a 5.0 client whose SUBSCRIBE p
// uses a capability that CONNACK said is off: a Protocol Error, answered
// with DISCONNECT 0x9E, 0xA1 or 0xA2 (MQTT 5.0 sections 3.2.2.3.11–13,
// [MQTT-4.13.1-1]) before anything of it is subscribed. It reports
// whether it did; a 3.x client's filters are refused one by one instead
// (SUBACK 0x80, onSubscribe).
func (c *client) refuseSubscribe(p *codec.Subscribe, subID uint32) bool {
	if c.version != codec.V5 {
		return false
	}
	for i := range p.Subscriptions {
		f := p.Subscriptions[i].Filter
		if code, unsupported := c.loop.srv.subscribeUnsupported(f, subID); unsupported {
			c.protocolError(&codec.Error{Code: code, Packet: codec.SUBSCRIBE,
				Reason: strconv.Quote(string(f)) + ": " + code.String()})
			return true
		}
	}
	return false
}

// subscribeUnsupported reports whether filter, in a SUBSCRIBE that
// carries Subscription Identifier subID (0: none), needs a capability
// that is off, and which: 0x9E, 0xA2 or 0xA1, in that order of checks.
func (srv *Server) subscribeUnsupported(filter []byte, subID uint32) (codec.ReasonCode, bool) {
	o := &srv.opts
	_, inner, shared := codec.SplitShared(filter)
	if !shared {
		inner = filter
	}
	switch {
	case shared && o.NoSharedSubscriptions:
		return codec.SharedSubscriptionsNotSupported, true
	case o.NoWildcardSubscriptions && bytes.ContainsAny(inner, "+#"):
		return codec.WildcardSubscriptionsNotSupported, true
	case subID != 0 && o.NoSubscriptionIdentifiers:
		return codec.SubscriptionIdentifiersNotSupported, true
	}
	return 0, false
}
