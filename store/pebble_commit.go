package store

import (
	"fmt"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// The commit pipeline of the on-disk store:
//
//	Commit ──queue──▶ committer ──synced──▶ log syncer (SyncAlways only)
//
// The committer (runCommitter) takes every batch waiting in queue, merges
// them into one pebble batch and applies it, which writes one log record to
// the operating system (walsync.go: pebble's own log fsync is skipped).
// Under SyncAlways it hands the group to the log syncer (runLogSyncer),
// which fsyncs the log once for every group that arrived since its last
// fsync and then calls their dones; meanwhile the committer applies the
// next groups, which share the next fsync. Under SyncInterval and SyncNone
// the committer calls the dones itself, and under SyncInterval the interval
// syncer (runIntervalSyncer) fsyncs the log on a ticker.
//
// Dones are called in commit order, each exactly once, by one goroutine:
// the log syncer under SyncAlways, else the committer.

// Group commit bounds: the committer stops merging pending batches into one
// pebble batch once it holds this many of them or this many bytes, so one
// group cannot grow without limit while callers keep committing.
const (
	maxGroupCommits = 1024
	maxGroupBytes   = 4 << 20
)

// maxGroupsAwaitingSync bounds the groups applied and waiting for the log
// syncer's fsync; past it the committer waits, then queue fills, then
// Commit blocks.
const maxGroupsAwaitingSync = 64

type pendingCommit struct {
	b     *Batch
	done  func(error)
	start time.Time
	err   error // the batch could not be encoded; it is not applied
}

// appliedGroup is a group the committer applied, waiting for its fsync.
type appliedGroup struct {
	commits []pendingCommit
	err     error // applying it failed
	wrote   bool  // it held records (a group of batches whose writes were all taken back holds none)
}

// Commit implements Store. It blocks only while QueueLen batches are
// already waiting for the committer (Stats.CommitWaits). After Close, done
// gets ErrClosed. done must not call Commit: with the queue full, the
// goroutine calling done would wait for itself.
func (p *Pebble) Commit(b *Batch, done func(error)) {
	c := pendingCommit{b: b, done: done, start: time.Now()}
	p.commitMu.RLock()
	defer p.commitMu.RUnlock()
	if p.closing {
		go done(ErrClosed)
		return
	}
	select {
	case p.queue <- c:
	default:
		t := time.Now()
		p.queue <- c
		p.waits.Add(1)
		p.waitNanos.Add(uint64(time.Since(t)))
	}
}

// startCommitPipeline starts the committer and the syncer the sync policy
// needs.
func (p *Pebble) startCommitPipeline() {
	p.queue = make(chan pendingCommit, p.opts.QueueLen)
	p.committed = make(chan struct{})
	// Group slices circulate between the committer and the log syncer.
	p.freeGroups = make(chan []pendingCommit, maxGroupsAwaitingSync+2)
	switch p.opts.Sync {
	case SyncAlways:
		p.synced = make(chan appliedGroup, maxGroupsAwaitingSync)
		p.syncerDone = make(chan struct{})
		go p.runLogSyncer()
	case SyncInterval:
		p.syncerStop = make(chan struct{})
		p.syncerDone = make(chan struct{})
		go p.runIntervalSyncer()
	}
	go p.runCommitter()
}

// stopCommitPipeline closes queue and waits for every done.
func (p *Pebble) stopCommitPipeline() {
	p.commitMu.Lock()
	p.closing = true
	close(p.queue)
	p.commitMu.Unlock()
	<-p.committed // closes synced, which stops the log syncer
	if p.syncerStop != nil {
		close(p.syncerStop)
	}
	if p.syncerDone != nil {
		<-p.syncerDone
	}
}

func (p *Pebble) newGroup() []pendingCommit {
	select {
	case g := <-p.freeGroups:
		return g[:0]
	default:
		return make([]pendingCommit, 0, 64)
	}
}

// runCommitter is the committer goroutine: the only writer of db.
func (p *Pebble) runCommitter() {
	defer close(p.committed)
	if p.synced != nil {
		defer close(p.synced)
	}
	pb := p.db.NewBatch()
	defer func() { _ = pb.Close() }()
	for {
		c, ok := <-p.queue
		if !ok {
			return
		}
		group := append(p.newGroup(), c)
		p.encode(pb, &group[0])
	drain:
		for len(group) < maxGroupCommits && pb.Len() < maxGroupBytes {
			select {
			case c, ok := <-p.queue:
				if !ok {
					break drain
				}
				group = append(group, c)
				p.encode(pb, &group[len(group)-1])
			default:
				break drain
			}
		}
		p.groups.mu.Lock()
		p.flushGroups(pb)
		p.groups.mu.Unlock()
		var err error
		wrote := pb.Count() > 0
		if wrote {
			// Sync under every policy: it makes pebble write the record
			// to the operating system before Apply returns; walSyncFS
			// skips pebble's fsync of the log (see walsync.go).
			err = p.db.Apply(pb, pebble.Sync)
			if err != nil {
				err = fmt.Errorf("store: commit: %w", err)
				_ = pb.Close()
				pb = p.db.NewBatch()
				p.reloadGroups()
			} else {
				p.dirty.Store(true)
				pb.Reset()
			}
		}
		if p.synced != nil {
			p.synced <- appliedGroup{commits: group, err: err, wrote: wrote}
			continue
		}
		if failed := p.syncFailed.Load(); err == nil && failed != nil {
			err = *failed // SyncInterval (runIntervalSyncer)
		}
		p.finish(group, err)
	}
}

// finish calls the dones of group, whose common outcome is err, and
// recycles it.
func (p *Pebble) finish(group []pendingCommit, err error) {
	for i := range group {
		c := &group[i]
		cerr := c.err
		if cerr == nil {
			cerr = err
		}
		if cerr == nil {
			p.records.Add(uint64(c.b.Len()))
		}
		p.commits.Add(1)
		p.commitNanos.Add(uint64(time.Since(c.start)))
		c.done(cerr)
		group[i] = pendingCommit{}
	}
	select {
	case p.freeGroups <- group:
	default:
	}
}

// runLogSyncer (SyncAlways) fsyncs the log once for all the groups applied
// since its last fsync, then calls their dones. A failed fsync fails every
// later commit too: after one, what the log holds is unknown.
func (p *Pebble) runLogSyncer() {
	defer close(p.syncerDone)
	var groups []appliedGroup
	var broken error
	for g := range p.synced {
		groups = append(groups[:0], g)
	drain:
		for {
			select {
			case g, ok := <-p.synced:
				if !ok {
					break drain
				}
				groups = append(groups, g)
			default:
				break drain
			}
		}
		wrote := false
		for i := range groups {
			wrote = wrote || groups[i].wrote
		}
		// Groups with no records (every write of their batches taken
		// back) need no fsync: the groups before them had theirs.
		if broken == nil && wrote {
			if err := p.fs.syncAll(); err != nil {
				broken = err
				p.log.Error("store: log sync failed; every later commit fails", "dir", p.dir, errAttr(err))
			}
		}
		for i := range groups {
			err := groups[i].err
			if err == nil {
				err = broken
			}
			p.finish(groups[i].commits, err)
			groups[i] = appliedGroup{}
		}
	}
}

// runIntervalSyncer (SyncInterval) fsyncs the log every SyncInterval if
// anything was written since the last time.
func (p *Pebble) runIntervalSyncer() {
	defer close(p.syncerDone)
	t := time.NewTicker(p.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-p.syncerStop:
			return
		case <-t.C:
			if p.dirty.Swap(false) && p.syncFailed.Load() == nil {
				if err := p.fs.syncAll(); err != nil {
					// What the log held may be gone from the page cache
					// without having reached the disk, and a later sync
					// would not say so: as under SyncAlways, nothing
					// committed from here on is promised.
					err = fmt.Errorf("store: periodic log sync: %w", err)
					p.syncFailed.Store(&err)
					p.log.Error("store: periodic log sync failed; every later commit fails", "dir", p.dir, errAttr(err))
				}
			}
		}
	}
}

// encode adds c's operations to pb, or sets c.err and adds nothing if one
// of them cannot be stored.
func (p *Pebble) encode(pb *pebble.Batch, c *pendingCommit) {
	if err := validateBatch(c.b); err != nil {
		c.err = err
		return
	}
	key, val, end := p.keyBuf, p.valBuf, p.endBuf
	defer func() { p.keyBuf, p.valBuf, p.endBuf = key[:0], val[:0], end[:0] }()
	p.groups.mu.Lock()
	defer p.groups.mu.Unlock()
	for i := range c.b.ops {
		op := &c.b.ops[i]
		key, val = key[:0], val[:0]
		switch op.Kind {
		case OpNone:
		case OpPutSession:
			key = appendSessionKey(key, op.ClientID)
			val = appendSessionValue(val, op.Session)
			_ = pb.Set(key, val, nil)
		case OpDeleteSession:
			key = appendSessionKey(key, op.ClientID)
			_ = pb.Delete(key, nil)
			p.dropBuilt(op.ClientID, 0, true)
			p.groups.dropClient(pb, op.ClientID)
			for _, kind := range [...]byte{kindEntry, kindGroup, kindInbound} {
				key = appendClientPrefix(key[:0], kind, op.ClientID)
				end = prefixEnd(end[:0], key)
				_ = pb.DeleteRange(key, end, nil)
			}
		case OpPutEntry:
			if op.Once {
				p.buildPut(op) // written by flushGroups
				continue
			}
			key = appendEntryKey(key, op.ClientID, op.Seq)
			val = appendEntryValue(val, &op.Entry)
			_ = pb.Set(key, val, nil)
		case OpDeleteEntry:
			if p.deleteGrouped(pb, op.ClientID, op.Seq) {
				continue
			}
			key = appendEntryKey(key, op.ClientID, op.Seq)
			if op.Once {
				// The put and this delete vanish together at the
				// flush or compaction where they meet.
				_ = pb.SingleDelete(key, nil)
			} else {
				_ = pb.Delete(key, nil)
			}
		case OpDeleteEntriesTo:
			key = appendEntryKey(key, op.ClientID, 0)
			if op.Seq == math.MaxUint64 {
				end = prefixEnd(end[:0], key[:len(key)-8]) // past the client's entries
			} else {
				end = appendEntryKey(end[:0], op.ClientID, op.Seq+1)
			}
			_ = pb.DeleteRange(key, end, nil)
			if err := p.deleteGroupedTo(pb, op.ClientID, op.Seq); err != nil {
				// Only a failing read of the store gets here; what the
				// group holds stays, as after a crash.
				p.log.Error("store: deleting grouped entries", errAttr(err))
			}
		case OpPutInbound:
			key, val = appendInboundKey(key, op.ClientID, op.PacketID), appendInboundValue(val)
			_ = pb.Set(key, val, nil)
		case OpDeleteInbound:
			key = appendInboundKey(key, op.ClientID, op.PacketID)
			_ = pb.Delete(key, nil)
		case OpPutRetained:
			key = appendRetainedKey(key, op.Msg.Topic)
			val = appendRetainedValue(val, &op.Msg)
			_ = pb.Set(key, val, nil)
		case OpDeleteRetained:
			key = appendRetainedKey(key, op.Msg.Topic)
			_ = pb.Delete(key, nil)
		case OpPutMeta:
			key, val = appendMetaKey(key, op.Key), appendMetaValue(val, op.Value)
			_ = pb.Set(key, val, nil)
		}
	}
}

// validateBatch checks what encode cannot store, before anything of the
// batch is encoded, so that a bad batch fails alone and whole.
func validateBatch(b *Batch) error {
	for i := range b.ops {
		op := &b.ops[i]
		switch op.Kind {
		case OpPutSession:
			if op.Session == nil {
				return fmt.Errorf("store: operation %d: PutSession without a session", i)
			}
		case OpDeleteSession, OpPutEntry, OpDeleteEntry, OpDeleteEntriesTo, OpPutInbound, OpDeleteInbound:
			if err := checkClientID(op.ClientID); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		case OpNone, OpPutRetained, OpDeleteRetained, OpPutMeta:
		default:
			return fmt.Errorf("store: operation %d: unknown kind %d", i, op.Kind)
		}
	}
	return nil
}
