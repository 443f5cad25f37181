package engine

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ipLimiter refuses connections from a source address that opens too many
// per second (Options.MaxConnRatePerIP) or that failed authentication too
// often in the last minute (Options.MaxAuthFailuresPerIP): brute force and
// connection floods cost the broker an accept and a close, not a CONNECT
// and a password hash each.
//
// It is shared by every loop, like the registry: sharded maps behind
// mutexes, touched when a connection opens and when authentication fails,
// never per message. Bound: one entry per source address seen in the last
// minute; stale entries are dropped when a shard grows past
// ipShardPrune.
type ipLimiter struct {
	connsPerSec int // 0: unlimited
	failsPerMin int // 0: unlimited
	shards      [32]ipShard
}

type ipShard struct {
	mu sync.Mutex
	m  map[netip.Addr]*ipRate
}

// ipRate counts one address's connections in the current second and its
// failed authentications in the current minute.
type ipRate struct {
	sec, min     int64 // the second and the minute counted (Unix time)
	conns, fails int
}

// ipShardPrune is the shard size past which stale entries are dropped.
const ipShardPrune = 4096

func newIPLimiter(o *Options) *ipLimiter {
	if o.MaxConnRatePerIP <= 0 && o.MaxAuthFailuresPerIP <= 0 {
		return nil
	}
	x := &ipLimiter{connsPerSec: o.MaxConnRatePerIP, failsPerMin: o.MaxAuthFailuresPerIP}
	for i := range x.shards {
		x.shards[i].m = make(map[netip.Addr]*ipRate)
	}
	return x
}

func ipOf(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, ok := netip.AddrFromSlice(ta.IP)
		return ip.Unmap(), ok
	}
	return netip.Addr{}, false
}

// with runs fn on ip's entry, under its shard's lock.
func (x *ipLimiter) with(ip netip.Addr, now time.Time, fn func(r *ipRate, sec, min int64)) {
	b := ip.As16()
	sh := &x.shards[xxhash.Sum64(b[:])%uint64(len(x.shards))]
	sec := now.Unix()
	min := sec / 60
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.m[ip]
	if r == nil {
		if len(sh.m) >= ipShardPrune {
			for k, v := range sh.m {
				if v.sec < sec && v.min < min {
					delete(sh.m, k)
				}
			}
		}
		r = &ipRate{}
		sh.m[ip] = r
	}
	if r.sec != sec {
		r.sec, r.conns = sec, 0
	}
	if r.min != min {
		r.min, r.fails = min, 0
	}
	fn(r, sec, min)
}

// admit counts a new connection from a and reports whether it may stay,
// and why not. Addresses that are not IP (unix sockets) are not limited.
func (x *ipLimiter) admit(a net.Addr, now time.Time) (ok bool, why string) {
	if x == nil {
		return true, ""
	}
	ip, isIP := ipOf(a)
	if !isIP {
		return true, ""
	}
	ok = true
	x.with(ip, now, func(r *ipRate, _, _ int64) {
		switch {
		case x.failsPerMin > 0 && r.fails >= x.failsPerMin:
			ok, why = false, "too many failed authentications from this address in the last minute"
		case x.connsPerSec > 0 && r.conns >= x.connsPerSec:
			ok, why = false, "too many new connections from this address in the last second"
		default:
			r.conns++
		}
	})
	return ok, why
}

// failed counts a failed authentication from a.
func (x *ipLimiter) failed(a net.Addr, now time.Time) {
	if x == nil || x.failsPerMin <= 0 {
		return
	}
	ip, isIP := ipOf(a)
	if !isIP {
		return
	}
	x.with(ip, now, func(r *ipRate, _, _ int64) { r.fails++ })
}
