// Command schedprobe measures how long goroutines other than the event
// loops wait for a P in a loopmq broker's process (issue 6: the loops hold
// their Ps while they wait in epoll_wait and yield them at most every
// 5 ms, third_party/gnet/LOOPMQ.md). It runs engine.Server in-process on
// -listen with -loops loops and, while loadgen drives it from outside,
// measures for -d (after 2 s):
//
//   - timer: a goroutine sleeping 1 ms in a loop, the lateness of each
//     wake-up (the keep-alive sweep, $SYS and the store's tickers are such
//     timers);
//   - net: a goroutine reading a loopback TCP socket to which a second
//     process (this command, re-run with -writer) writes its clock every
//     2 ms, from the write to the read returning (TLS and WebSocket
//     connections and HTTP handlers are such goroutines);
//   - chan: a goroutine woken through a channel by another that a 2 ms
//     timer wakes (a hand-off between two goroutines, neither a loop).
//
// It prints the median, p99, p99.9 and worst of each. docs/architecture.md
// (Goroutines) has the figures:
//
//	GOMAXPROCS=2 schedprobe -listen 127.0.0.1:18830 -loops 2 &
//	loadgen -broker 127.0.0.1:18830 -scenario pairs -n 50 -qos 1 -rate 5000 -duration 11s
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/loopmq/loopmq/engine"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:18830", "MQTT listener")
	loops := flag.Int("loops", 2, "event loops")
	d := flag.Duration("d", 8*time.Second, "how long to measure, after 2 s")
	writer := flag.String("writer", "", "internal: write the clock every 2 ms to this address")
	flag.Parse()
	if *writer != "" {
		write(*writer)
		return
	}
	srv := engine.New(engine.Options{Listen: *addr, Loops: *loops, MaxInflight: 32, MaxQueued: 100000})
	if err := srv.Start(); err != nil {
		fail(err)
	}
	fmt.Fprintln(os.Stderr, "listening", srv.Addr(), "GOMAXPROCS", runtime.GOMAXPROCS(0))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	w := exec.Command(os.Args[0], "-writer", ln.Addr().String())
	w.Stderr = os.Stderr
	if err := w.Start(); err != nil {
		fail(err)
	}
	defer func() { _ = w.Process.Kill() }()
	c, err := ln.Accept()
	if err != nil {
		fail(err)
	}

	start := time.Now().Add(2 * time.Second)
	end := start.Add(*d)
	type result struct {
		name string
		lat  []time.Duration
	}
	res := make(chan result, 3)
	go func() {
		var lat []time.Duration
		for time.Now().Before(end) {
			t0 := time.Now()
			time.Sleep(time.Millisecond)
			if l := time.Since(t0) - time.Millisecond; t0.After(start) {
				lat = append(lat, l)
			}
		}
		res <- result{"timer", lat}
	}()
	go func() {
		var lat []time.Duration
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				fail(err)
			}
			now := time.Now()
			sent, _ := strconv.ParseInt(line[:len(line)-1], 10, 64)
			if now.After(end) {
				break
			}
			if now.After(start) {
				lat = append(lat, time.Duration(now.UnixNano()-sent))
			}
		}
		res <- result{"net", lat}
	}()
	go func() {
		ch := make(chan time.Time)
		done := make(chan []time.Duration)
		go func() {
			var lat []time.Duration
			for t := range ch {
				if l := time.Since(t); t.After(start) {
					lat = append(lat, l)
				}
			}
			done <- lat
		}()
		for time.Now().Before(end) {
			time.Sleep(2 * time.Millisecond)
			ch <- time.Now()
		}
		close(ch)
		res <- result{"chan", <-done}
	}()
	for range 3 {
		r := <-res
		if len(r.lat) == 0 {
			fmt.Printf("%-5s none\n", r.name)
			continue
		}
		slices.Sort(r.lat)
		q := func(p float64) time.Duration {
			return r.lat[min(len(r.lat)-1, int(p*float64(len(r.lat))))].Round(time.Microsecond)
		}
		fmt.Printf("%-5s n %d p50 %v p99 %v p99.9 %v max %v\n", r.name, len(r.lat), q(.5), q(.99), q(.999), q(1))
	}
}

// write sends the wall clock in nanoseconds, one line every 2 ms, to
// addr until the connection ends.
func write(addr string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	for {
		if _, err := fmt.Fprintf(c, "%d\n", time.Now().UnixNano()); err != nil {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "schedprobe:", err)
	os.Exit(1)
}
