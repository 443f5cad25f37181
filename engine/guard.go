package engine

import (
	"fmt"
	"net"
	"runtime/debug"

	"github.com/panjf2000/gnet/v2"
)

// Panic containment on the event loops.
//
// A loop serves thousands of connections and runs code the broker does not
// own (an Authenticator, an Authorizer). Without a guard a panic in any of
// it, or a broker defect reached by one client's packets, unwinds out of
// gnet's loop goroutine and ends the process: every connection and every
// in-memory session is lost. Each event handler (OnOpen, OnTraffic,
// OnClose) and each task a loop runs for another (loop.Run)
// therefore recovers a panic, logs it at error level with its stack,
// counts it (Stats.Panics), and closes the connection it blames. A TLS or
// WebSocket connection's own goroutines do the same (recoverBridge).
//
// What is guaranteed after a recovered panic: the loop keeps serving its
// other connections, and its re-entrancy flags are reset so that it keeps
// writing. What is not: the state the panicking code was changing may be
// half updated (a session, a subscription, a message's references). The
// blamed connection's unwritten batch is dropped without releasing its
// messages when the panic came from inside its flush (a message released
// twice would be reused while still queued elsewhere); at worst such
// messages are left to the garbage collector. The log line says so, and
// an operator who prefers a restart to running on can act on the counter.

// recovered handles v, a panic recovered on l while handling event for c
// (nil when no connection is to blame). It closes c without writing to it
// and returns the action for gnet. Runs on l.
func (l *loop) recovered(v any, c *client, event string) gnet.Action {
	stack := debug.Stack()
	l.stats.panics.Add(1)
	l.traffic = nil
	l.inEndBatch = false // a panic inside endBatch must not stop every later one
	args := []any{"event", event, "panic", fmt.Sprint(v), "loop", l.idx}
	if c != nil {
		args = append(args, "client", c.clientID, "remote", c.remote())
	}
	args = append(args, "stack", string(stack))
	l.srv.log.Error("recovered a panic on an event loop; the connection is closed and broker state may be inconsistent", args...)
	if c != nil {
		l.contain(event, c.abandon)
	}
	return gnet.Close
}

// contain runs f, recovering (and logging) a panic in it: used for the
// clean-up after a recovered panic, which may meet the same broken state.
func (l *loop) contain(event string, f func()) {
	defer func() {
		if v := recover(); v != nil {
			l.stats.panics.Add(1)
			l.srv.log.Error("recovered a second panic while cleaning up after one", "event", event,
				"panic", fmt.Sprint(v), "loop", l.idx, "stack", string(debug.Stack()))
		}
	}()
	f()
}

// abandon closes c after a panic without writing to it. A batch that was
// being written when the panic came may have released some of its
// messages already: it is dropped unreleased rather than released twice.
// OnClose then ends the client as for any closed connection.
func (c *client) abandon() {
	if c.flushing {
		c.out, c.flushing = nil, false
	}
	if c.state == stateClosed {
		return
	}
	if c.state == stateConnected {
		c.loop.stats.connected.Add(-1)
	}
	c.state = stateClosed
	_ = c.conn.Close()
}

// recoverBridge is deferred by the goroutines of a TLS or WebSocket
// connection (bridge.go): a panic in its handshake (which runs the
// caller's tls.Config callbacks) or in its copying (WebSocket framing of
// the client's bytes) is logged and counted as on a loop, and end runs to
// close the connection. Other connections are not touched.
func (s *Server) recoverBridge(kind string, remote net.Addr, end func()) {
	v := recover()
	if v == nil {
		return
	}
	s.bridgePanics.Add(1)
	s.log.Error("recovered a panic in a "+kind+" connection's goroutine; the connection is closed",
		"panic", fmt.Sprint(v), "remote", fmt.Sprint(remote), "stack", string(debug.Stack()))
	end()
}

// runTasks runs batch[from:] and returns the index after the last task it
// ran: len(batch), or the one after a task that panicked (cleared). Run
// calls it until every task ran: one deferred call per drain, not per task.
func (l *loop) runTasks(batch []task, from int) (next int) {
	next = from
	defer func() {
		if v := recover(); v != nil {
			var c *client
			if s := batch[next].sess; s != nil && s.owner.Load() == l {
				c = s.client // only the owner may touch it
			}
			l.recovered(v, c, "task")
			batch[next] = task{}
			next++
		}
	}()
	for ; next < len(batch); next++ {
		l.runTask(&batch[next])
		batch[next] = task{}
	}
	return next
}
