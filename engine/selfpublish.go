package engine

import (
	"errors"
	"fmt"

	"github.com/loopmq/loopmq/codec"
)

// ErrNotRunning is returned by Publish before Start and after Stop.
var ErrNotRunning = errors.New("engine: server not running")

// Publish routes a message the broker publishes itself ($SYS topics, for
// instance) exactly as if a client had published it: a retained message
// is stored (an empty payload deletes the topic's), and every matching
// subscription gets it at min(qos, granted QoS), after the usual Read
// authorization. The message has no publisher client id, so No Local never
// filters it, and it is not counted in Stats.MessagesIn.
//
// Safe for concurrent use. The payload is copied before Publish returns;
// routing happens on one of the event loops afterwards. Before any client
// has connected there is no loop and nobody to deliver to: a retained
// message is stored directly. With Options.NoRetain, retain is ignored:
// the message is published as any other.
func (s *Server) Publish(topic string, payload []byte, qos byte, retain bool) error {
	if qos > 2 {
		return fmt.Errorf("publish %q: QoS %d", topic, qos)
	}
	retain = retain && !s.opts.NoRetain
	if !codec.ValidTopicName([]byte(topic)) {
		return fmt.Errorf("publish %q: not a valid topic name", topic)
	}
	if !s.Ready() {
		return ErrNotRunning
	}
	m := s.msgs.newMessage([]byte(topic), payload, qos, retain, "", nil, nil, 0)
	loops := s.loopsSnapshot()
	if len(loops) == 0 {
		if retain {
			s.setRetained(m) // the index takes the pinned message; no reference to give back
			return nil
		}
		m.release()
		return nil
	}
	l := loops[int(s.publishRR.Add(1))%len(loops)]
	l.post(task{kind: taskFunc, fn: func(l *loop) { l.route(m) }}) // route consumes the reference
	return nil
}
