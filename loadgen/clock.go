package loadgen

import (
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// clock wakes publishers at their intended send times with microsecond
// precision. Go's timers on Linux sleep in epoll_pwait with a millisecond
// timeout, so a time.Sleep(200µs) here takes about a millisecond: every
// message would leave up to 1 ms late and the latency floor (measured from
// the intended time) would be the generator's, not the broker's. The clock
// is one goroutine locked to its thread, sleeping in ppoll with a
// nanosecond timeout (and a 1 µs timer slack) on an eventfd that a
// publisher writes when it needs waking earlier than the clock's current
// deadline.
type clock struct {
	base time.Time

	mu       sync.Mutex
	heap     []clockEntry // min-heap by due
	sleeping int64        // the deadline (ns since base) the clock sleeps to; -1 forever; 0 awake
	stopped  bool

	efd  int // eventfd; -1 when it could not be made (then Go timers)
	done chan struct{}
}

type clockEntry struct {
	due int64 // ns since base
	p   *publisher
}

func newClock(base time.Time) *clock {
	c := &clock{base: base, done: make(chan struct{})}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		c.efd = -1
		close(c.done)
		return c
	}
	c.efd = efd
	go c.run()
	return c
}

// precise reports whether the clock runs; without it publishers fall back
// to Go timers.
func (c *clock) precise() bool { return c.efd >= 0 }

// wakeAt asks for p.wakeUp() at due (ns since base). A publisher has at most
// one wake-up pending: asking again for the same time is free, and an
// earlier request's entry is skipped when it comes up.
func (c *clock) wakeAt(p *publisher, due int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p.clockDue == due || c.stopped {
		return
	}
	p.clockDue = due
	c.push(clockEntry{due: due, p: p})
	if c.heap[0].p == p && c.heap[0].due == due && c.sleeping != 0 && (c.sleeping < 0 || due < c.sleeping) {
		c.kick() // under mu, so that stop cannot close the eventfd meanwhile
	}
}

// kick interrupts the clock's ppoll. Under mu (or by stop).
func (c *clock) kick() {
	var one = [8]byte{1}
	_, _ = unix.Write(c.efd, one[:])
}

// stop ends the clock goroutine.
func (c *clock) stop() {
	if !c.precise() {
		return
	}
	c.mu.Lock()
	c.stopped = true
	c.kick()
	c.mu.Unlock()
	<-c.done
	_ = unix.Close(c.efd)
}

func (c *clock) run() {
	defer close(c.done)
	// The thread sleeps in ppoll; keep it to this goroutine and make its
	// timer slack 1 µs instead of the default 50 µs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	fds := []unix.PollFd{{Fd: int32(c.efd), Events: unix.POLLIN}}
	var buf [8]byte
	for {
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			return
		}
		now := int64(time.Since(c.base))
		for len(c.heap) > 0 && c.heap[0].due <= now {
			e := c.pop()
			if e.p.clockDue == e.due { // not superseded
				e.p.clockDue = 0
				e.p.wakeUp()
			}
		}
		c.sleeping = -1
		var ts *unix.Timespec
		if len(c.heap) > 0 {
			c.sleeping = c.heap[0].due
			t := unix.NsecToTimespec(c.heap[0].due - now)
			ts = &t
		}
		c.mu.Unlock()
		n, _ := unix.Ppoll(fds, ts, nil)
		c.mu.Lock()
		c.sleeping = 0
		c.mu.Unlock()
		if n > 0 {
			_, _ = unix.Read(c.efd, buf[:])
		}
	}
}

func (c *clock) push(e clockEntry) {
	h := append(c.heap, e)
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if h[parent].due <= h[i].due {
			break
		}
		h[parent], h[i] = h[i], h[parent]
		i = parent
	}
	c.heap = h
}

func (c *clock) pop() clockEntry {
	h := c.heap
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = clockEntry{}
	h = h[:last]
	for i := 0; ; {
		l, small := 2*i+1, i
		if l < len(h) && h[l].due < h[small].due {
			small = l
		}
		if r := l + 1; r < len(h) && h[r].due < h[small].due {
			small = r
		}
		if small == i {
			break
		}
		h[i], h[small] = h[small], h[i]
		i = small
	}
	c.heap = h
	return top
}
