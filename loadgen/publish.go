package loadgen

import (
	"fmt"
	"sync"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// writeBatch bounds the bytes one write carries, so that a publisher far
// behind its schedule still gives the reader a chance to free the window.
const writeBatch = 64 << 10

// Slot states of an outgoing QoS 1/2 PUBLISH.
const (
	slotFree      uint8 = iota
	slotAwaitAck        // QoS 1: PUBLISH sent, PUBACK due
	slotAwaitRec        // QoS 2: PUBLISH sent, PUBREC due
	slotAwaitComp       // QoS 2: PUBREL sent, PUBCOMP due
)

// publisher is the sending side of a connection: its sources, its timetable
// and its in-flight window. The writer goroutine (run) owns the timetable and
// the write buffer; the fields under mu are shared with the reader, which
// releases slots as acknowledgements arrive.
type publisher struct {
	c          *conn
	srcs       []pubSource
	qos        byte
	paced      bool // on a timetable (Rate > 0); otherwise as fast as the window allows
	fenced     bool // QoS 0 without a timetable: PINGREQ fences bound the window
	window     int
	fenceEvery uint64

	wake chan struct{} // the clock's wake-up, or the reader freed room in the window

	clockDue int64 // the wake-up pending with the clock (ns since base); under clock.mu

	mu        sync.Mutex
	needWake  bool      // the writer waits for room in the window
	free      []uint16  // free packet identifiers, used as a stack
	slots     []pubSlot // indexed by packet identifier, 1..window
	total     uint64    // fenced: messages sent
	confirmed uint64    // fenced: messages covered by an answered PINGREQ
	lastFence uint64    // fenced: total at the last PINGREQ
	fences    [4]fence  // fenced: ring of unanswered PINGREQs
	fenceHead int
	fenceN    int

	// Owned by the writer goroutine.
	rr         int // next source, round robin
	pace       pacer
	wbuf       []byte
	frames     []batchFrame // the messages in wbuf
	windowSent uint64       // messages sent (written) within the measured window
	expect     int64        // deliveries due for the messages of the current batch (runner.expected); writer-owned
}

// batchFrame is one message of the write buffer.
type batchFrame struct {
	end int    // offset in wbuf just past its frame
	src int32  // index into srcs
	pid uint16 // packet identifier; 0 at QoS 0
}

type pubSource struct {
	id    uint32
	tmpl  frameTemplate
	seq   uint64 // next sequence number; writer-owned
	sent  uint64 // messages written; writer-owned
	acked uint64 // under publisher.mu
}

type pubSlot struct {
	at    int64 // intended send time, ns since T0
	src   int32
	state uint8
}

// fence is a PINGREQ sent after count messages; ping is its number among
// the connection's PINGREQs, so it is answered once pongs reaches ping.
type fence struct {
	ping  uint64
	count uint64
}

func newPublisher(c *conn) *publisher {
	r := c.r
	p := &publisher{c: c, qos: r.cfg.QoS, paced: c.spec.rate > 0, wake: make(chan struct{}, 1)}
	p.fenced = !p.paced && p.qos == 0
	for _, s := range c.spec.sources {
		p.srcs = append(p.srcs, pubSource{id: s.id, tmpl: newFrameTemplate(s.topic, p.qos, r.cfg.Size, c.ver)})
	}
	p.pace = pacer{sched: c.spec.schedule(&r.cfg), slack: r.cfg.OverrunSlack}
	p.setWindow(r.cfg.Inflight)
	return p
}

// setWindow sizes the window; only before the writer starts.
func (p *publisher) setWindow(n int) {
	p.window = n
	p.fenceEvery = uint64(max(1, n/2))
	if p.qos == 0 {
		return
	}
	p.slots = make([]pubSlot, n+1)
	p.free = make([]uint16, 0, n)
	for id := n; id >= 1; id-- {
		p.free = append(p.free, uint16(id))
	}
}

// limitWindow lowers the window to the broker's Receive Maximum, before
// the writer starts (under mu: a broker may acknowledge out of turn).
func (p *publisher) limitWindow(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < p.window {
		p.setWindow(n)
	}
}

func (p *publisher) wakeUp() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run is the writer goroutine: it sends every message when it is due (or as
// soon as the window allows) until the schedule ends or the run aborts.
func (p *publisher) run() {
	c := p.c
	r := c.r
	defer r.wg.Done()
	var timer *time.Timer // only without the precise clock
	// wait blocks until the clock's wake-up at due (ns since T0), or with
	// due < 0 until the reader frees room; false means stop.
	wait := func(due int64) bool {
		var tc <-chan time.Time
		if due >= 0 {
			if r.clock.precise() {
				r.clock.wakeAt(p, r.t0.Load()+due)
			} else {
				d := time.Duration(due - r.sinceT0())
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				tc = timer.C
			}
		}
		select {
		case <-tc:
			return true
		case <-p.wake:
			return true
		case <-r.abort:
			return false
		case <-c.done:
			return false
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		now := time.Duration(r.sinceT0())
		if now < 0 {
			if !wait(0) {
				return
			}
			continue
		}
		p.wbuf = p.wbuf[:0]
		pace := p.pace // as before fill, should the write fail
		_, next, full, done := p.fill(now)
		if p.expect > 0 {
			// Before the write: a subscriber may see a message before
			// the write returns, and the drain waits for what is owed.
			r.expected.Add(p.expect)
			p.expect = 0
		}
		if len(p.wbuf) > 0 {
			w, err := c.writeN(p.wbuf)
			if err != nil {
				p.unwind(w, pace, now)
			}
			p.sent()
			if err != nil {
				return // the reader sees the connection fail and reports it
			}
		}
		switch {
		case done:
			return
		case full:
			if !wait(-1) {
				return
			}
		case next > now:
			if !wait(int64(next)) {
				return
			}
		}
	}
}

// sent counts the messages of the batch, written now.
func (p *publisher) sent() {
	r := p.c.r
	for _, f := range p.frames {
		p.srcs[f.src].sent++
	}
	n := len(p.frames)
	if now := r.sinceT0(); now >= r.measureFrom && now < r.measureTo {
		// Counted when the write completes, as deliveries are when they
		// arrive: a backlog sent during the drain, or a write that
		// blocked until then, is not the window's send rate.
		p.windowSent += uint64(n)
	}
	r.sent.Add(int64(n))
}

// unwind takes the messages of the batch that the failed write did not
// wholly carry (it wrote w bytes) back out of it: they were never sent.
// Their packet identifiers are freed, their deliveries no longer owed,
// and the timetable is as if only the written ones had gone out at now
// (the rest count as unsent).
func (p *publisher) unwind(w int, pace pacer, now time.Duration) {
	r := p.c.r
	k := 0
	for k < len(p.frames) && p.frames[k].end <= w {
		k++
	}
	p.mu.Lock()
	for _, f := range p.frames[k:] {
		if f.pid != 0 && p.slots[f.pid].state != slotFree { // not freed by a bogus acknowledgement
			p.slots[f.pid] = pubSlot{}
			p.free = append(p.free, f.pid)
			r.inflight.Add(-1)
		}
		if id := p.srcs[f.src].id; int(id) < len(r.sinks) {
			r.expected.Add(-int64(r.sinks[id]))
		}
	}
	p.mu.Unlock()
	p.frames = p.frames[:k]
	if p.paced {
		p.pace = pace
		for range k {
			p.pace.sent(now)
		}
	}
}

// fill appends to wbuf every message due at now that the window admits,
// and each one's place to frames. It reports how many it appended, when
// the next one is due (0 when it is due now), and whether the window is
// full or the schedule over.
func (p *publisher) fill(now time.Duration) (n int, next time.Duration, full, done bool) {
	r := p.c.r
	p.frames = p.frames[:0]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fenced {
		p.confirmFences()
	}
	for len(p.wbuf) < writeBatch {
		at := now
		if p.paced {
			at2, due, over := p.pace.next(now)
			if over {
				return n, 0, false, true
			}
			if !due {
				return n, at2, false, false
			}
			at = at2
		} else if int64(now) >= r.measureTo {
			return n, 0, false, true
		}
		var pid uint16
		switch {
		case p.qos > 0:
			if len(p.free) == 0 {
				p.needWake = true
				return n, 0, true, false
			}
			pid = p.free[len(p.free)-1]
			p.free = p.free[:len(p.free)-1]
			st := slotAwaitAck
			if p.qos == 2 {
				st = slotAwaitRec
			}
			p.slots[pid] = pubSlot{at: int64(at), src: int32(p.rr), state: st}
			r.inflight.Add(1)
		case p.fenced:
			if p.total-p.confirmed >= uint64(p.window) || p.fenceN == len(p.fences) {
				p.needWake = true
				return n, 0, true, false
			}
		}
		src := &p.srcs[p.rr]
		if int(src.id) < len(r.sinks) {
			p.expect += int64(r.sinks[src.id])
		}
		p.wbuf = src.tmpl.appendTo(p.wbuf, pid, stamp{run: r.cfg.RunID, source: src.id, seq: src.seq, at: int64(at), wrote: int64(now)})
		p.frames = append(p.frames, batchFrame{end: len(p.wbuf), src: int32(p.rr), pid: pid})
		src.seq++
		n++
		if p.paced {
			p.pace.sent(now)
		}
		if p.rr++; p.rr == len(p.srcs) {
			p.rr = 0
		}
		if p.fenced {
			p.total++
			if p.total-p.lastFence >= p.fenceEvery {
				p.wbuf = append(p.wbuf, byte(codec.PINGREQ)<<4, 0)
				ping := p.c.pings.Add(1)
				p.fences[(p.fenceHead+p.fenceN)%len(p.fences)] = fence{ping: ping, count: p.total}
				p.fenceN++
				p.lastFence = p.total
			}
		}
	}
	return n, 0, false, false
}

// confirmFences moves the confirmed count past every answered PINGREQ.
// Under mu.
func (p *publisher) confirmFences() {
	pongs := p.c.pongs.Load()
	for p.fenceN > 0 && pongs >= p.fences[p.fenceHead].ping {
		p.confirmed = p.fences[p.fenceHead].count
		p.fenceHead = (p.fenceHead + 1) % len(p.fences)
		p.fenceN--
	}
}

// onAck handles PUBACK, PUBREC and PUBCOMP on the reader goroutine; now is
// the arrival time in ns since T0.
func (p *publisher) onAck(a *codec.Ack, now int64) {
	c := p.c
	r := c.r
	want := slotAwaitAck
	switch a.PacketType {
	case codec.PUBREC:
		want = slotAwaitRec
	case codec.PUBCOMP:
		want = slotAwaitComp
	}
	p.mu.Lock()
	var sl *pubSlot
	if int(a.PacketID) < len(p.slots) && p.slots[a.PacketID].state == want {
		sl = &p.slots[a.PacketID]
	}
	if sl == nil {
		p.mu.Unlock()
		r.errs.add("unexpected "+a.PacketType.String()+" from broker",
			fmt.Sprintf("%s: %v for packet identifier %d, which is not awaiting one", c.spec.clientID, a.PacketType, a.PacketID), "")
		return
	}
	refused := a.ReasonCode.IsError()
	if a.PacketType == codec.PUBREC && !refused {
		// Exactly once, sender side: release the identifier only at
		// PUBCOMP [MQTT 4.3.3].
		sl.state = slotAwaitComp
		rel := codec.Ack{PacketType: codec.PUBREL, PacketID: a.PacketID}
		c.abuf = rel.AppendTo(c.abuf, c.ver)
		p.mu.Unlock()
		return
	}
	at := sl.at
	if !refused {
		p.srcs[sl.src].acked++
	}
	*sl = pubSlot{}
	p.free = append(p.free, a.PacketID)
	wake := p.needWake
	p.needWake = false
	p.mu.Unlock()
	r.inflight.Add(-1)
	if refused {
		r.errs.add(fmt.Sprintf("%v refused (%v)", a.PacketType, a.ReasonCode),
			fmt.Sprintf("%s: %v %d with reason %v", c.spec.clientID, a.PacketType, a.PacketID, a.ReasonCode), "")
	} else {
		c.ackedN++
		if at >= r.measureFrom && at < r.measureTo {
			c.ackLat = append(c.ackLat, max(now-at, 0)/1000)
		}
	}
	if wake {
		p.wakeUp()
	}
}

// onPong wakes a fenced writer waiting for a PINGRESP; on the reader.
func (p *publisher) onPong() {
	p.mu.Lock()
	wake := p.needWake
	p.needWake = false
	p.mu.Unlock()
	if wake {
		p.wakeUp()
	}
}
