// Package pool reuses byte buffers in power-of-two size classes from
// 64 B to 1 MiB, so encoding and queueing frames does not allocate in
// steady state.
//
// Ownership: a buffer obtained from [Bytes.Get] belongs to exactly one
// holder at a time — the goroutine or event loop that took it, or whoever
// it is explicitly handed to. The holder returns it with [Bytes.Put] once
// nothing reads it any more (for a frame: after the socket write that
// consumed it completed); after Put the holder must not touch it. A buffer
// shared by several readers (one encoded PUBLISH sent to many subscribers)
// needs a reference count owned by the caller; this package does not count.
//
// The pool is safe for concurrent use: it is a set of sync.Pool values, one
// per size class, and has no global state — each owner creates its own.
// It imports nothing from loopmq.
package pool
