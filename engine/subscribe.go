package engine

import (
	"strconv"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/trie"
)

// onSubscribe adds each filter to the session and the index, answers
// SUBACK with the granted QoS per filter [MQTT-3.8.4-1], then sends the
// retained messages that match each new subscription [MQTT-3.3.1-6].
func (c *client) onSubscribe(p *codec.Subscribe) {
	l := c.loop
	srv := l.srv
	s := c.sess
	var subID uint32 // [MQTT-3.8.2-...] one per SUBSCRIBE, for each of its filters
	if ids := p.Properties.SubscriptionIDs; len(ids) > 0 {
		subID = ids[0]
	}
	if c.refuseSubscribe(p, subID) { // capabilities.go
		return
	}
	codes := make([]codec.ReasonCode, len(p.Subscriptions))
	type retainedWork struct {
		filter string
		qos    byte
		subID  uint32
	}
	var work []retainedWork
	var refused []byte // the Reason String: each filter refused, and why
	for i := range p.Subscriptions {
		sub := &p.Subscriptions[i]
		// A 5.0 client's unsupported filters ended the connection above.
		_, unsupported := srv.subscribeUnsupported(sub.Filter, subID) // capabilities.go
		code := codec.ReasonCode(codec.SubackFailureV3)
		if !unsupported && !c.maySubscribe(sub.Filter) { // authz.go
			code, unsupported = c.subscribeDenied(), true
		}
		if unsupported {
			codes[i] = code
			if c.problemInfo() { // [MQTT-3.1.2-29]
				if refused != nil {
					refused = append(refused, ", "...)
				}
				refused = strconv.AppendQuote(refused, string(sub.Filter))
				refused = append(refused, ": "...)
				refused = append(refused, code.String()...)
			}
			continue
		}
		filter := string(sub.Filter)
		granted := min(sub.QoS, srv.maxQoS) // [MQTT-3.2.2-10]
		opts := trie.Options{QoS: granted, NoLocal: sub.NoLocal, RetainAsPublished: sub.RetainAsPublished,
			RetainHandling: sub.RetainHandling, SubscriptionID: subID}
		existed := srv.idx.subscribe(filter, s, opts)
		if !existed {
			l.stats.subscriptions.Add(1)
		}
		if s.subs == nil {
			s.subs = make(map[string]trie.Options)
		}
		s.subs[filter] = opts
		codes[i] = codec.ReasonCode(granted)
		_, _, shared := codec.SplitShared(sub.Filter)
		switch {
		case shared: // shared subscriptions get no retained messages
		case srv.opts.NoRetain:
		case sub.RetainHandling == 2:
		case sub.RetainHandling == 1 && existed:
		default:
			work = append(work, retainedWork{filter: filter, qos: granted, subID: subID})
		}
	}
	l.persistSession(s, c)
	ack := codec.Suback{PacketID: p.PacketID, ReasonCodes: codes}
	ack.Properties.ReasonString = refused
	c.writeReasoned(&ack, &ack.Properties.ReasonString) // [MQTT-3.9.2-1]
	for _, w := range work {
		srv.idx.matchRetained(w.filter, func(m *message) {
			if m.expired(l.mono) {
				return // [MQTT-3.3.2-5]
			}
			if srv.ps != nil {
				// A copy: the routing loop may be numbering m for the
				// store right now (persistDelivery writes m.seq after
				// route put m in the index), and a number is one
				// session's (persist.go).
				m = srv.copyMessage(m)
			} else {
				m.ref() // pinned: the reference only balances deliver's release
			}
			// [MQTT-3.3.1-8] retained messages sent for a new subscription
			// carry retain = 1.
			l.deliver(s, outMsg{msg: m, qos: min(m.qos, w.qos), retain: true, subID: w.subID}, false)
		})
	}
}

// onUnsubscribe removes filters and answers UNSUBACK [MQTT-3.10.4-4].
func (c *client) onUnsubscribe(p *codec.Unsubscribe) {
	srv := c.loop.srv
	s := c.sess
	codes := make([]codec.ReasonCode, len(p.Filters))
	for i, f := range p.Filters {
		filter := string(f)
		if _, ok := s.subs[filter]; ok {
			if srv.idx.unsubscribe(filter, s) {
				c.loop.stats.subscriptions.Add(-1)
			}
			delete(s.subs, filter)
		} else {
			codes[i] = codec.NoSubscriptionExisted
		}
	}
	c.loop.persistSession(s, c)
	ack := codec.Unsuback{PacketID: p.PacketID, ReasonCodes: codes}
	c.writePacket(&ack)
}
