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

	// fs replaces the operating system's file system in tests (nil: the
	// real one).
	fs vfs.FS
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
	if o.fs == nil {
		o.fs = vfs.Default
	}
}

// ErrFormat is returned when a directory holds a store of another format
// (written by a newer loopmq) or something that is not a store.
var ErrFormat = errors.New("store: not a store of this format")

// ErrInUse is returned when another process (or another store in this
// one) has the data directory open: pebble's LOCK file in it is held.
var ErrInUse = errors.New("in use by another process")

// Pebble is the on-disk Store, on github.com/cockroachdb/pebble/v2 (key
// layout in keys.go, value encoding in codec.go).
//
// Commits go through a bounded queue to one committer goroutine, which
// merges every pending batch into one pebble batch and writes it with one
// log write; under SyncAlways a log syncer goroutine fsyncs once for every
// group written meanwhile (pebble_commit.go). Dones are called in commit
// order. Reads iterate pebble directly from the caller's goroutine
// (pebble_read.go). All methods are safe for concurrent use; Close must not
// be called from a read's callback (it waits for reads to end).
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
	// drained. synced carries applied groups to the log syncer
	// (SyncAlways); freeGroups returns their slices. syncerStop stops the
	// interval syncer; syncerDone is closed when either syncer ends.
	committed  chan struct{}
	synced     chan appliedGroup
	freeGroups chan []pendingCommit
	syncerStop chan struct{}
	syncerDone chan struct{}
	dirty      atomic.Bool // written since the interval syncer last synced
	// syncFailed is the interval syncer's failed fsync: every later
	// commit fails with it (SyncInterval; SyncAlways keeps its own).
	syncFailed atomic.Pointer[error]

	// readMu guards readClosed; readers counts reads in progress, which
	// Close waits for before it closes db.
	readMu     sync.Mutex
	readClosed bool
	readers    sync.WaitGroup

	skips    skipLog
	msgCache msgCache // message records read last (pebble_read.go)

	// keyBuf, valBuf and endBuf are the committer's scratch for encoding
	// (encode): only the committer goroutine touches them.
	keyBuf, valBuf, endBuf []byte

	// groups indexes the group records (groups.go); building holds the
	// entries put once in the commit group being encoded, per client,
	// freeBuilders the builders to reuse, gkey, groupBuf and seqBuf the
	// scratch they are written with: the committer's only.
	groups         groupIndex
	building       map[string]*groupBuilder
	freeBuilders   []*groupBuilder
	gkey, groupBuf []byte
	seqBuf         []uint64
	// runs are the runs of puts once of one Seq in that commit group,
	// which share a message record; entryBuf, mkey and refBuf are scratch
	// too. The committer's only.
	runs           []msgRun
	entryBuf, mkey []byte
	refBuf         []uint64

	commits, records, commitNanos atomic.Uint64
	waits, waitNanos              atomic.Uint64
	finalDiskBytes                atomic.Uint64 // DiskBytes at Close

	closeOnce sync.Once
	closeErr  error
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
	if err := checkDirHoldsStore(opts.fs, dir, readOnly); err != nil {
		return nil, err
	}
	fs := newWALSyncFS(opts.fs)
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
	if err := p.openGroups(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: read entry groups: %w", err)
	}
	p.startCommitPipeline()
	return p, nil
}

// openGroups loads the index of entry groups (groups.go) and deletes what
// a crash left of them that no read may return.
func (p *Pebble) openGroups() error {
	pb := p.db.NewBatch()
	defer pb.Close()
	if err := p.loadGroups(pb); err != nil {
		return err
	}
	if pb.Empty() {
		return nil
	}
	return p.db.Apply(pb, pebble.Sync)
}

// checkDirHoldsStore refuses a directory that is not empty and holds no
// pebble store: pebble would create a new store there, next to (and
// eventually deleting) files that may be a damaged store's. A directory of
// pebble's files without a manifest is a damaged store (errNoManifest);
// one with other files is not a store at all (ErrFormat).
func checkDirHoldsStore(fs vfs.FS, dir string, readOnly bool) error {
	names, err := fs.List(dir)
	if errors.Is(err, os.ErrNotExist) && !readOnly {
		return nil
	}
	if err != nil {
		return err
	}
	desc, err := pebble.Peek(dir, fs)
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
		if !isPebbleFile(n) {
			return fmt.Errorf("%w: %s holds %q and no store", ErrFormat, dir, n)
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
	if f < formatVersion && f >= 1 && !readOnly {
		// Format 1 had no group records, format 2 no message records,
		// format 3 no sent packet identifiers in session records, format
		// 4 no groups in shared entries; they read the same.
		return p.db.Set(formatKey, []byte{formatVersion}, pebble.Sync)
	}
	if f > formatVersion || f < 1 {
		return fmt.Errorf("%w: format version %d, this loopmq reads %d", ErrFormat, f, formatVersion)
	}
	return nil
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
	readOnly := p.closing // read-only stores have no commit pipeline
	p.commitMu.Unlock()
	if !readOnly {
		p.stopCommitPipeline()
	}
	p.readMu.Lock()
	p.readClosed = true
	p.readMu.Unlock()
	p.readers.Wait()

	var err error
	if !readOnly {
		// Deletes of grouped entries are in memory only (groups.go).
		err = p.rewritePartialGroups()
	}
	if serr := p.fs.syncAll(); err == nil {
		err = serr
	}
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
