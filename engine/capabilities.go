package engine

import (
	"bytes"
	"strconv"

	"github.com/loopmq/loopmq/codec"
)

// Optional server capabilities: Options.MaxQoS, NoRetain,
// NoWildcardSubscriptions, NoSharedSubscriptions and
// NoSubscriptionIdentifiers. MQTT 5.0 (section 3.2.2.3) lets a server go
// without each and tell its 5.0 clients in CONNACK; a client that uses
// one anyway gets the capability's reason code. 3.x clients cannot be
// told: they get what Mosquitto gives them (a closed connection for a
// PUBLISH, a refused CONNECT for a will, SUBACK 0x80 for a filter).

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
// one. It reports whether it did.
func (c *client) refusePublish(p *codec.Publish) bool {
	code, why, refused := c.loop.srv.publishUnsupported(p.QoS, p.Retain)
	if refused {
		c.protocolError(&codec.Error{Code: code, Packet: codec.PUBLISH, Reason: why})
	}
	return refused
}

// subscribeUnsupported reports whether filter, in a SUBSCRIBE that
// carries Subscription Identifier subID (0: none), needs a capability
// that is off, and its SUBACK code: 0x9E, 0xA1 or 0xA2 for 5.0 (MQTT 5.0
// section 3.9.3), 0x80 for 3.x.
func (c *client) subscribeUnsupported(filter []byte, subID uint32) (codec.ReasonCode, bool) {
	o := &c.loop.srv.opts
	_, inner, shared := codec.SplitShared(filter)
	if !shared {
		inner = filter
	}
	code := codec.Success
	switch {
	case shared && o.NoSharedSubscriptions:
		code = codec.SharedSubscriptionsNotSupported
	case o.NoWildcardSubscriptions && bytes.ContainsAny(inner, "+#"):
		code = codec.WildcardSubscriptionsNotSupported
	case subID != 0 && o.NoSubscriptionIdentifiers:
		code = codec.SubscriptionIdentifiersNotSupported
	default:
		return 0, false
	}
	if c.version != codec.V5 {
		code = codec.ReasonCode(codec.SubackFailureV3)
	}
	return code, true
}
