package engine

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/loopmq/loopmq/codec"
	"golang.org/x/sys/unix"
)

// Kinds of work one loop hands another.
const (
	taskDeliver   = iota // deliver out to sess
	taskFunc             // run fn on the loop (rare control work: takeover, sweeps)
	taskTakeBack         // take back sess's put out.put of out.msg, acknowledged on another loop (persist.go)
	taskAcksDue          // every delivery of out.msg was acknowledged: its publisher's PUBACK may go (earlyack.go)
	taskAddWaiter        // register fn, a publisher's heldAcks.wake, with congested sess (flow.go)
)

// task is one unit of cross-loop work. A delivery, take-back or acks-due
// task owns one reference to out.msg.
type task struct {
	kind byte
	// forwarded marks a delivery that a previous owner of sess passed on
	// after the session moved: it is older than any delivery routed to the
	// new owner directly (see session.holding).
	forwarded bool
	// transit marks a delivery counted in sess.inTransit.
	transit bool
	sess    *session
	out     outMsg
	fn      func(l *loop)
}

// loop is loopmq's state for one gnet event loop. Everything in it but the
// inbox is owned by that loop's goroutine: only code running in a gnet
// callback or an Execute runnable of this loop touches it.
//
// Work from other goroutines arrives through the inbox: a mutex-guarded
// slice that the loop swaps out and drains in one Execute runnable. At most
// one drain is scheduled at a time (scheduled), so a burst of hand-offs
// costs one Execute, not one per message: each is a wake-up of the loop (an
// eventfd write), and takes the poller's one preallocated slot
// (third_party/gnet/LOOPMQ.md), which is free whenever this posts.
type loop struct {
	srv *Server
	el  gnet.EventLoop
	idx int

	inboxMu   sync.Mutex
	inbox     []task
	scheduled atomic.Bool

	// Owned by the loop.
	spare      []task
	clients    []*client // every open connection of this loop; client.slot is its index
	dirty      []*client // clients with frames waiting in their write batch
	pend       [][]task  // per target loop index: deliveries to post at the end of the batch
	pendTo     []int     // indexes of pend that are non-empty
	mono       int64     // time at the start of the current event: nanoseconds since the server started (monotonic)
	inEndBatch bool
	iovecs     []unix.Iovec // reused by writev
	iovScratch [][]byte     // reused by client.flush
	// Write batches (batches.go): the spare ones, how many clients hold
	// one, and the most that held one at once since the last sweep.
	spareBatches []*writeBatch
	batchesOut   int
	batchesPeak  int
	sweepScratch []*client // the sweep's copy of clients
	// traffic is the client whose inbound frames onTraffic is handling,
	// nil outside onTraffic.
	traffic *client
	match   matchScratch
	// rematch is reshare's: it can run inside route's iteration of match
	// (a delivery to a member that left), which must not see it change.
	rematch matchScratch
	dec     codec.Decoder // decodes every frame of this loop's clients
	subIDs  []uint32      // scratch for a PUBLISH's subscription identifiers
	// expiredScratch holds the messages session.dropExpired takes out.
	expiredScratch []outMsg
	hdr5           v5HeaderCache // the last 5.0 PUBLISH header encoded
	arena          []byte        // 5.0 headers of the current batch; reset once it is written
	expiring       expiryHeap    // offline sessions with a deadline (expiry.go)
	// nextExpiry is no later than the earliest deadline in expiring (loop
	// clock; noDeadline: none), for OnTick to read from its goroutine.
	nextExpiry atomic.Int64
	st         loopStore  // writes to the store of the current event (persist.go)
	acc        loopCounts // counters published into stats by endBatch (stats.go)
	accPub     loopCounts // acc as last published
	accAt      int64      // loop clock when acc was last published
	stats      loopStats
}

func newLoop(srv *Server, el gnet.EventLoop, idx int) *loop {
	l := &loop{srv: srv, el: el, idx: idx, pend: make([][]task, srv.opts.Loops)}
	l.nextExpiry.Store(noDeadline)
	return l
}

// setNow reads the clock once for the current event.
func (l *loop) setNow() {
	l.mono = int64(time.Since(l.srv.started))
}

// now sets and returns the loop clock.
func (l *loop) now() int64 {
	l.setNow()
	return l.mono
}

// addClient and removeClient keep loop.clients dense.
func (l *loop) addClient(c *client) {
	c.slot = int32(len(l.clients))
	l.clients = append(l.clients, c)
}

func (l *loop) removeClient(c *client) {
	last := len(l.clients) - 1
	i := int(c.slot)
	if i > last || l.clients[i] != c {
		return
	}
	l.clients[i] = l.clients[last]
	l.clients[i].slot = c.slot
	l.clients[last] = nil
	l.clients = l.clients[:last]
}

// post hands tasks to l from any goroutine. The caller gives up the
// references the tasks hold.
func (l *loop) post(ts ...task) {
	l.inboxMu.Lock()
	l.inbox = append(l.inbox, ts...)
	l.inboxMu.Unlock()
	if l.scheduled.CompareAndSwap(false, true) {
		if err := l.el.Execute(context.Background(), l); err != nil {
			// The engine is shutting down: nothing will run the inbox.
			l.scheduled.Store(false)
			l.dropInbox()
		}
	}
}

// Run drains the inbox on the loop; it implements gnet.Runnable.
func (l *loop) Run(context.Context) error {
	l.scheduled.Store(false) // posts from now on schedule another drain
	l.inboxMu.Lock()
	batch := l.inbox
	l.inbox = l.spare[:0]
	l.inboxMu.Unlock()
	l.setNow()
	start := l.mono
	l.acc.inboxRuns++
	l.acc.tasks += uint64(len(batch))
	for i := 0; i < len(batch); {
		i = l.runTasks(batch, i) // guard.go: a task that panics is skipped
	}
	l.spare = batch[:0]
	l.endBatch()
	l.observeEvent(start)
	return nil
}

// runTask runs one task handed to l.
func (l *loop) runTask(t *task) {
	switch t.kind {
	case taskDeliver:
		if t.transit {
			t.sess.inTransit.Add(-1)
		}
		l.deliver(t.sess, t.out, t.forwarded)
	case taskFunc:
		t.fn(l)
	case taskTakeBack:
		l.takeBackPut(t.sess, t.out.put, t.out.msg.seq)
		t.out.msg.release()
	case taskAcksDue:
		t.out.msg.publisher.releaseEarly()
		t.out.msg.release()
	case taskAddWaiter:
		l.addWaiter(t.sess, t.fn)
	}
}

func (l *loop) dropInbox() {
	l.inboxMu.Lock()
	batch := l.inbox
	l.inbox = nil
	l.inboxMu.Unlock()
	for _, t := range batch {
		switch t.kind {
		case taskDeliver, taskTakeBack, taskAcksDue: // they own a reference to out.msg
			t.out.msg.release()
		}
	}
}

// handOff queues a delivery for a session owned by another loop; it is
// posted at the end of the current batch.
func (l *loop) handOff(to *loop, t task) {
	if len(l.pend[to.idx]) == 0 {
		l.pendTo = append(l.pendTo, to.idx)
	}
	l.pend[to.idx] = append(l.pend[to.idx], t)
}

// endBatch posts pending hand-offs (one post per target loop) and writes
// every client's batched frames (one writev per client).
//
// gnet may call OnClose synchronously from inside Writev when the socket
// fails, and OnClose ends in endBatch again: a nested call returns at once
// and the outer one, which walks the lists by index, also picks up what the
// nested OnClose added.
func (l *loop) endBatch() {
	if l.inEndBatch {
		return
	}
	l.inEndBatch = true
	if l.srv.ps != nil {
		l.flushStore() // group commit (persist.go)
	}
	for i := 0; i < len(l.dirty); i++ {
		if c := l.dirty[i]; c != nil { // nil: flushed before a panic (guard.go)
			l.dirty[i] = nil
			c.flush()
		}
	}
	l.dirty = l.dirty[:0]
	for _, idx := range l.pendTo {
		ts := l.pend[idx]
		l.srv.loopAt(idx).post(ts...)
		clear(ts)
		l.pend[idx] = ts[:0]
	}
	l.pendTo = l.pendTo[:0]
	// Every batch is written: the headers in the arena are no longer
	// referenced (a segment gnet could not write at once was copied).
	l.arena = l.arena[:0]
	l.hdr5 = v5HeaderCache{}
	l.maybePublishCounts()
	l.inEndBatch = false
	if l.st.handed {
		// The store's committer goroutine was made runnable on this
		// loop's P. gnet yields the P before blocking in epoll_wait at
		// most every few milliseconds (third_party/gnet/LOOPMQ.md); when
		// no P is idle the committer would wait for sysmon to take this
		// one back, up to 10 ms. Yield now so that it starts the commit.
		l.st.handed = false
		runtime.Gosched()
	}
}

// heldBackstop is the longest a publisher's acknowledgements stay held
// (plus up to one sweep interval).
const heldBackstop = 3 * time.Second

// sweep closes clients whose keepalive or CONNECT deadline passed, lets
// spare write batches go, and ends the offline sessions (and publishes the
// delayed wills) whose time has come.
func (l *loop) sweep() {
	now := l.mono
	connectTimeout := int64(l.srv.opts.ConnectTimeout)
	// Closing removes clients from l.clients (possibly from inside gnet's
	// Writev), so walk a copy of the current list, kept from one sweep to
	// the next: a fresh one each second was the only garbage an idle
	// broker made.
	clients := append(l.sweepScratch[:0], l.clients...)
	for _, c := range clients {
		switch {
		case (c.state == stateNew || c.state == stateAuth) && now-c.lastSeen > connectTimeout:
			// An authentication exchange must end within the same time.
			l.srv.log.Info("no CONNECT or authentication in time, closing", "remote", c.remote())
			l.refused(RefusedConnectTimeout)
			c.close(reasonTimeout)
		case c.state == stateConnected && c.keepAlive > 0 && now-c.lastSeen > int64(c.keepAlive)*int64(time.Second)*3/2:
			// [MQTT-3.1.2-24] (5.0: [MQTT-3.1.2-22]) 1.5 times the keep
			// alive without a packet; a 5.0 client is told (0x8D).
			l.srv.log.Info("keep alive expired, closing", "client", c.id(), "remote", c.remote())
			c.serverDisconnect(codec.KeepAliveTimeout, reasonTimeout)
		}
		if c.sess != nil && c.state == stateConnected {
			c.sess.checkStall(l)
			if q := c.sess.q; q != nil && q.spill != nil {
				c.sess.pump() // the watermark may have passed the spill (spill.go)
			}
		}
		if h := c.heldAcks(); h != nil && h.on != nil && now-h.since > int64(heldBackstop) {
			// A subscriber that is saturated but drains very slowly:
			// let the publisher send another window's worth.
			c.releaseHeld()
		}
	}
	clear(clients)
	l.sweepScratch = clients[:0]
	if cap(clients) > 2*len(l.clients)+64 {
		l.sweepScratch = nil // most connections have gone
	}
	l.trimBatches()
	if l.srv.ps != nil {
		l.adoptOrphans()
		l.flushStore() // deferred deletes whose entries became durable
		l.checkStall(now)
	}
	l.expireSessions()
	l.expireRetained()
	l.trimMatch()
	l.publishCounts() // an idle loop's last counts become visible too
}
