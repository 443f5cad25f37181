package engine

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovMax is Linux's IOV_MAX: the most buffers one writev takes. Passing
// more fails with EINVAL.
const iovMax = 1024

// writeIOV writes bufs to c's socket in order and hands what the socket
// does not take to gnet, which keeps it in the connection's outbound buffer
// and sends it when the socket is writable again.
//
// When gnet has nothing buffered for the connection, writeIOV calls writev
// itself with the loop's reused iovec array: x/sys/unix.Writev, which gnet
// uses, allocates an iovec array for every call with more than eight
// buffers, i.e. for nearly every batch of several messages
// (BenchmarkQoS0/fanout100 measured 0.076 allocations per delivery from
// that alone). Writing to the descriptor directly while gnet's outbound
// buffer is empty is exactly what gnet's own Writev does. Runs on c's loop.
func (c *client) writeIOV(bufs [][]byte) {
	if c.conn.OutboundBuffered() == 0 {
		for len(bufs) > 0 {
			k := min(len(bufs), iovMax)
			n, err := c.loop.writev(c.conn.Fd(), bufs[:k])
			if err != nil {
				if errors.Is(err, unix.EAGAIN) {
					break
				}
				// The socket failed: let gnet close the connection the
				// usual way (OnClose runs on this loop later).
				_ = c.conn.Close()
				return
			}
			var whole bool
			bufs, whole = advance(bufs, n, k)
			if !whole {
				break // the socket is full; gnet buffers the rest
			}
		}
	}
	for len(bufs) > 0 && !c.gone {
		// gnet's Writev may close the connection and run OnClose (which
		// sets gone) before it returns; then bufs may already be reused.
		k := min(len(bufs), iovMax)
		_, _ = c.conn.Writev(bufs[:k])
		bufs = bufs[k:]
	}
}

// advance drops the first n bytes from bufs, of which the first k buffers
// were written. whole reports that all k were written completely.
func advance(bufs [][]byte, n, k int) ([][]byte, bool) {
	for i := 0; i < k; i++ {
		if n < len(bufs[i]) {
			bufs[i] = bufs[i][n:]
			return bufs[i:], false
		}
		n -= len(bufs[i])
	}
	return bufs[k:], true
}

// writev is one writev(2) with the loop's reused iovec array, retried on
// EINTR. Empty buffers are skipped.
func (l *loop) writev(fd int, bufs [][]byte) (int, error) {
	iov := l.iovecs[:0]
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		v := unix.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		iov = append(iov, v)
	}
	l.iovecs = iov
	if len(iov) == 0 {
		return 0, nil
	}
	for {
		n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		if errno == unix.EINTR {
			continue
		}
		runtime.KeepAlive(bufs)
		clear(iov) // do not keep payloads reachable from the loop
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}
