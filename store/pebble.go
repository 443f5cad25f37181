package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// PebbleOptions configure OpenPebble. The zero value is usable.
type PebbleOptions struct {
	// Sync says when a commit counts as durable; SyncAlways by default.
	Sync SyncPolicy
	// SyncInterval is how often the log is synced under SyncInterval;
	// 100 ms if zero.
	SyncInterval time.Duration
	// CacheBytes is the size of pebble's block cache; 32 MiB if zero.
	CacheBytes int64
	// Logger receives the store's and pebble's messages (pebble's at Debug
	// and Warn); nil discards them.
	Logger *slog.Logger
	// QueueLen is how many committed batches may wait for the committer
	// before Commit blocks (counted in Stats.CommitWaits); 4096 if zero.
	QueueLen int
}

func (o *PebbleOptions) setDefaults() {
	if o.SyncInterval <= 0 {
		o.SyncInterval = 100 * time.Millisecond
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 32 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.QueueLen <= 0 {
		o.QueueLen = 4096
	}
}

// ErrFormat is returned when a directory holds a store of another format
// (written by a newer loopmq) or something that is not a store.
var ErrFormat = errors.New("store: not a store of this format")

// Group commit bounds: the committer stops merging pending batches into one
// pebble batch once it holds this many of them or this many bytes, so one
// slow group cannot grow without limit while callers keep committing.
const (
	maxGroupCommits = 1024
	maxGroupBytes   = 4 << 20
)

// Pebble is the on-disk Store, on github.com/cockroachdb/pebble/v2 (key
// layout in keys.go, value encoding in codec.go).
//
// Commits go through a bounded queue to one committer goroutine, which
// merges every pending batch into one pebble batch, writes it with one log
// write (and one fsync under SyncAlways), then calls the dones in commit
// order. Under SyncInterval a syncer goroutine fsyncs the log every
// SyncInterval if anything was written since the last time. Reads iterate
// pebble directly from the caller's goroutine. All methods are safe for
// concurrent use; Close must not be called from a read's callback (it waits
// for reads to end).
type Pebble struct {
	db   *pebble.DB
	fs   *walSyncFS
	dir  string
	opts PebbleOptions
	log  *slog.Logger

	// commitMu is held shared by Commit while it hands a batch to queue
	// and exclusively by Close to close queue; closing is guarded by it.
	commitMu sync.RWMutex
	closing  bool
	queue    chan pendingCommit
	// committed is closed by the committer once queue is closed and
	// drained; syncerStop and syncerDone stop the SyncInterval syncer.
	committed  chan struct{}
	syncerStop chan struct{}
	syncerDone chan struct{}
	dirty      atomic.Bool // written since the syncer last synced

	// readMu guards readClosed; readers counts reads in progress, which
	// Close waits for before it closes db.
	readMu     sync.Mutex
	readClosed bool
	readers    sync.WaitGroup

	skips skipLog

	commits, records, commitNanos atomic.Uint64
	waits, waitNanos              atomic.Uint64
	finalDiskBytes                atomic.Uint64 // DiskBytes at Close

	closeOnce sync.Once
	closeErr  error
}

type pendingCommit struct {
	b     *Batch
	done  func(error)
	start time.Time
	err   error // the batch could not be encoded; it is not applied
}

// OpenPebble opens the store in dir, creating it if dir does not exist or
// is empty. It refuses a directory that holds other files but no store
// (ErrFormat), rather than create a store beside them.
func OpenPebble(dir string, opts PebbleOptions) (*Pebble, error) {
	opts.setDefaults()
	p, err := openPebble(dir, opts, false)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return p, nil
}

// openPebble opens dir; readOnly opens it for Check: no committer, no
// writes, and a missing store is an error.
func openPebble(dir string, opts PebbleOptions, readOnly bool) (*Pebble, error) {
	if err := checkDirHoldsStore(dir, readOnly); err != nil {
		return nil, err
	}
	fs := newWALSyncFS(vfs.Default, opts.Sync != SyncAlways)
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref() // the DB holds its own reference
	logger, events := pebbleLogging(opts.Logger)
	po := &pebble.Options{
		FS:                 fs,
		Cache:              cache,
		Logger:             logger,
		EventListener:      events,
		ReadOnly:           readOnly,
		ErrorIfNotExists:   readOnly,
		FormatMajorVersion: pebble.FormatNewest,
	}
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, err
	}
	p := &Pebble{db: db, fs: fs, dir: dir, opts: opts, log: opts.Logger}
	p.skips.log = opts.Logger
	if err := p.checkFormat(readOnly); err != nil {
		_ = db.Close()
		return nil, err
	}
	if readOnly {
		// Nothing may be committed: Commit reports ErrClosed.
		p.closing = true
		return p, nil
	}
	p.queue = make(chan pendingCommit, opts.QueueLen)
	p.committed = make(chan struct{})
	go p.runCommitter()
	if opts.Sync == SyncInterval {
		p.syncerStop = make(chan struct{})
		p.syncerDone = make(chan struct{})
		go p.runSyncer()
	}
	return p, nil
}

// checkDirHoldsStore refuses a directory that is not empty and holds no
// pebble store: pebble would create a new store there, next to (and
// eventually deleting) files that may be a damaged store's. A directory of
// pebble's files without a manifest is a damaged store (errNoManifest);
// one with other files is not a store at all (ErrFormat).
func checkDirHoldsStore(dir string, readOnly bool) error {
	names, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) && !readOnly {
		return nil
	}
	if err != nil {
		return err
	}
	desc, err := pebble.Peek(dir, vfs.Default)
	if err != nil {
		return err
	}
	if desc.Exists {
		return nil
	}
	if len(names) == 0 && !readOnly {
		return nil
	}
	for _, n := range names {
		if !isPebbleFile(n.Name()) {
			return fmt.Errorf("%w: %s holds %q and no store", ErrFormat, dir, n.Name())
		}
	}
	return fmt.Errorf("%w: %d files", errNoManifest, len(names))
}

// errNoManifest: the directory holds pebble's files but no manifest (or
// no marker naming it).
var errNoManifest = errors.New("store files without a manifest")

// isPebbleFile reports whether name is one pebble makes in its directory.
func isPebbleFile(name string) bool {
	switch {
	case name == "LOCK", name == "CURRENT",
		strings.HasPrefix(name, "MANIFEST-"), strings.HasPrefix(name, "OPTIONS-"),
		strings.HasPrefix(name, "marker."), strings.HasPrefix(name, "temporary."),
		strings.HasSuffix(name, ".sst"), strings.HasSuffix(name, ".log"),
		strings.HasSuffix(name, ".blob"), strings.HasSuffix(name, ".dbtmp"):
		return true
	}
	return false
}

// checkFormat reads the store's format version, writing it into a new
// store.
func (p *Pebble) checkFormat(readOnly bool) error {
	v, closer, err := p.db.Get(formatKey)
	if errors.Is(err, pebble.ErrNotFound) {
		if readOnly {
			return nil // Check reports it
		}
		return p.db.Set(formatKey, []byte{formatVersion}, pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read format version: %w", err)
	}
	defer closer.Close()
	f, err := decodeFormatValue(v)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if f != formatVersion {
		return fmt.Errorf("%w: format version %d, this loopmq reads %d", ErrFormat, f, formatVersion)
	}
	return nil
}

// Commit implements Store. It blocks only while QueueLen batches are
// already waiting for the committer. After Close, done gets ErrClosed.
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

// runCommitter is the committer goroutine: the only writer of db.
func (p *Pebble) runCommitter() {
	defer close(p.committed)
	pb := p.db.NewBatch()
	defer func() { _ = pb.Close() }()
	group := make([]pendingCommit, 0, 64)
	for {
		c, ok := <-p.queue
		if !ok {
			return
		}
		group = append(group[:0], c)
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
		var err error
		if pb.Count() > 0 {
			// Sync under every policy: it makes pebble hand the record to
			// the operating system before Apply returns; walSyncFS decides
			// whether the log's fsync happens (see walsync.go).
			err = p.db.Apply(pb, pebble.Sync)
			if err != nil {
				err = fmt.Errorf("store: commit: %w", err)
				_ = pb.Close()
				pb = p.db.NewBatch()
			} else {
				p.dirty.Store(true)
				pb.Reset()
			}
		}
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
	}
}

// encode adds c's operations to pb, or sets c.err and adds nothing if one
// of them cannot be stored.
func (p *Pebble) encode(pb *pebble.Batch, c *pendingCommit) {
	if err := validateBatch(c.b); err != nil {
		c.err = err
		return
	}
	var key, val, end []byte
	for i := range c.b.ops {
		op := &c.b.ops[i]
		key, val = key[:0], val[:0]
		switch op.Kind {
		case OpPutSession:
			key = appendSessionKey(key, op.ClientID)
			val = appendSessionValue(val, op.Session)
			_ = pb.Set(key, val, nil)
		case OpDeleteSession:
			_ = pb.Delete(appendSessionKey(key, op.ClientID), nil)
			for _, kind := range [...]byte{kindEntry, kindInbound} {
				key = appendClientPrefix(key[:0], kind, op.ClientID)
				end = prefixEnd(end[:0], key)
				_ = pb.DeleteRange(key, end, nil)
			}
		case OpPutEntry:
			key = appendEntryKey(key, op.ClientID, op.Seq)
			val = appendEntryValue(val, &op.Entry)
			_ = pb.Set(key, val, nil)
		case OpDeleteEntry:
			_ = pb.Delete(appendEntryKey(key, op.ClientID, op.Seq), nil)
		case OpPutInbound:
			_ = pb.Set(appendInboundKey(key, op.ClientID, op.PacketID), appendInboundValue(val), nil)
		case OpDeleteInbound:
			_ = pb.Delete(appendInboundKey(key, op.ClientID, op.PacketID), nil)
		case OpPutRetained:
			key = appendRetainedKey(key, op.Msg.Topic)
			val = appendRetainedValue(val, &op.Msg)
			_ = pb.Set(key, val, nil)
		case OpDeleteRetained:
			_ = pb.Delete(appendRetainedKey(key, op.Msg.Topic), nil)
		case OpPutMeta:
			_ = pb.Set(appendMetaKey(key, op.Key), appendMetaValue(val, op.Value), nil)
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
		case OpDeleteSession, OpPutEntry, OpDeleteEntry, OpPutInbound, OpDeleteInbound:
			if err := checkClientID(op.ClientID); err != nil {
				return fmt.Errorf("operation %d: %w", i, err)
			}
		case OpPutRetained, OpDeleteRetained, OpPutMeta:
		default:
			return fmt.Errorf("store: operation %d: unknown kind %d", i, op.Kind)
		}
	}
	return nil
}

// runSyncer fsyncs the log every SyncInterval while there are writes to
// sync (SyncInterval only).
func (p *Pebble) runSyncer() {
	defer close(p.syncerDone)
	t := time.NewTicker(p.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-p.syncerStop:
			return
		case <-t.C:
			if p.dirty.Swap(false) {
				if err := p.fs.syncAll(); err != nil {
					p.log.Error("store: periodic log sync failed", "dir", p.dir, "err", err)
				}
			}
		}
	}
}

// beginRead registers a read; it fails once Close has begun.
func (p *Pebble) beginRead() error {
	p.readMu.Lock()
	defer p.readMu.Unlock()
	if p.readClosed {
		return ErrClosed
	}
	p.readers.Add(1)
	return nil
}

// Stats implements Store. Syncs counts fsyncs of the log that reached the
// disk, whatever caused them (commits, the syncer, log rotation, Close).
func (p *Pebble) Stats() Stats {
	s := Stats{
		Commits:         p.commits.Load(),
		Syncs:           p.fs.syncs.Load(),
		Records:         p.records.Load(),
		CommitNanos:     p.commitNanos.Load(),
		CommitWaits:     p.waits.Load(),
		CommitWaitNanos: p.waitNanos.Load(),
		Skipped:         p.skips.count.Load(),
	}
	if p.beginRead() == nil {
		s.DiskBytes = p.db.Metrics().DiskSpaceUsage()
		p.readers.Done()
	} else {
		s.DiskBytes = p.finalDiskBytes.Load()
	}
	return s
}

// Close implements Store: it waits for every committed batch's done, then
// for reads in progress, syncs the log and closes pebble.
func (p *Pebble) Close() error {
	p.closeOnce.Do(func() { p.closeErr = p.close() })
	return p.closeErr
}

func (p *Pebble) close() error {
	p.commitMu.Lock()
	wasClosing := p.closing // read-only stores never had a committer
	p.closing = true
	if !wasClosing {
		close(p.queue)
	}
	p.commitMu.Unlock()
	if !wasClosing {
		<-p.committed
	}
	if p.syncerStop != nil {
		close(p.syncerStop)
		<-p.syncerDone
	}
	p.readMu.Lock()
	p.readClosed = true
	p.readMu.Unlock()
	p.readers.Wait()

	err := p.fs.syncAll()
	p.finalDiskBytes.Store(p.db.Metrics().DiskSpaceUsage())
	if cerr := p.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: close %s: %w", p.dir, err)
	}
	return nil
}

// Dir returns the directory the store was opened in.
func (p *Pebble) Dir() string { return p.dir }
