package engine

import (
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/loopmq/loopmq/codec"
)

// idleConnHeap opens n CONNECTed idle connections to a fresh broker and
// returns the broker's live heap per connection (after a GC) and what it
// allocated per connection to set them up (live or not), in bytes and in
// objects. The clients are
// raw blocking sockets driven by system calls, so the test's side of each
// connection is one int on the heap, not a net.Conn.
func idleConnHeap(t testing.TB, n int) (live, alloc, objects float64) {
	t.Helper()
	s := startServer(t, Options{})
	sa := &unix.SockaddrInet4{Port: s.Addr().(*net.TCPAddr).Port}
	copy(sa.Addr[:], net.IPv4(127, 0, 0, 1).To4())
	fds := make([]int, 0, n+100)
	t.Cleanup(func() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
	})
	connects := make([][]byte, n+100) // encoded before the measured window
	for i := range connects {
		p := connectPacket(fmt.Sprintf("idle-%06d", i), true, 60)
		connects[i] = p.AppendTo(nil, codec.V311)
	}
	ack := make([]byte, 4)
	open := func(i int) {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		require.NoError(t, err)
		fds = append(fds, fd)
		require.NoError(t, unix.Connect(fd, sa))
		_, err = unix.Write(fd, connects[i])
		require.NoError(t, err)
		got := 0
		for got < len(ack) {
			m, err := unix.Read(fd, ack[got:])
			require.NoError(t, err)
			require.Positive(t, m, "connection closed before CONNACK")
			got += m
		}
		require.Equal(t, []byte{0x20, 2, 0, 0}, ack, "CONNACK accepted")
	}
	// The first connections grow what every loop keeps whatever the
	// number of clients (decoders, scratch slices, spare write batches).
	for i := range 100 {
		open(i)
	}
	settle := func() runtime.MemStats {
		// The sweep (1 s) has run and the heap is what stays.
		time.Sleep(1500 * time.Millisecond)
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m
	}
	m0 := settle()
	for i := range n {
		open(100 + i)
	}
	m1 := settle()
	return float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n),
		float64(m1.TotalAlloc-m0.TotalAlloc) / float64(n), float64(m1.Mallocs-m0.Mallocs) / float64(n)
}

// TestIdleConnectionHeap guards issue 6 (under 1 KiB of broker RSS per idle
// connection, docs/benchmarks.md "Idle connections"). RSS is the live heap
// plus what the GC has not reclaimed yet: up to twice the live heap under
// GOGC=100, less the less garbage each connection leaves. Both are bounded
// here. Measured when this was written (2,000 connections, 2 loops): about
// 620 B live, of which gnet's connection with its addresses and map entry
// is about 370 B, the client 112, the session 112 and the registry entry
// with the client id about 50; about 1,110 B allocated in all (1,200 under
// the race detector), half of it gnet's. Before issue 6's fixes (b12c606):
// 795 B live (each client still held its write batch 1.5 s after its
// CONNACK) and 1,795 B allocated. Since gnet accepts without unix.Accept4's
// escaping address (third_party/gnet/LOOPMQ.md): about 900 B and 14.3
// objects allocated (about 1,000 B under the race detector), 620 B live.
// The bounds leave room for noise (maps grow by doubling), not for another
// per-connection allocation.
func TestIdleConnectionHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2,100 connections")
	}
	live, alloc, objects := idleConnHeap(t, 2000)
	t.Logf("per idle connection: %.0f B live heap, %.0f B allocated in %.1f objects", live, alloc, objects)
	require.Less(t, live, 740.0, "live heap per idle connection")
	require.Less(t, alloc, 1200.0, "bytes allocated per connection set up")
}

// BenchmarkIdleConnHeap reports the same figures (b.N is ignored: each run
// opens 2,000 connections).
func BenchmarkIdleConnHeap(b *testing.B) {
	for range b.N {
		live, alloc, objects := idleConnHeap(b, 2000)
		b.ReportMetric(live, "live-B/conn")
		b.ReportMetric(alloc, "alloc-B/conn")
		b.ReportMetric(objects, "allocs/conn")
	}
}
