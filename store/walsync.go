package store

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walCategory is the write category pebble gives the files of its
// write-ahead log when it creates them.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

// walSyncFS is the file system the on-disk store gives pebble. It exists
// because pebble offers no commit that returns once the log record reached
// the operating system without an fsync: a NoSync commit may leave the
// record in pebble's own buffer (up to a 32 KiB block) until a later sync or
// a full block, so a process crash after done would lose it, breaking the
// promise of SyncInterval and SyncNone. Instead every commit asks pebble to
// sync, which makes pebble write the record to the file before it returns,
// and the log files made here skip that sync. The store syncs them itself
// (syncAll): under SyncAlways once for every group of commits written
// while the previous fsync ran, under SyncInterval on a ticker; and each
// log file is synced when pebble closes it.
//
// Everything else (tables, manifest, directories) passes through untouched.
// Safe for concurrent use.
type walSyncFS struct {
	vfs.FS

	syncs atomic.Uint64 // fsyncs of log files

	mu   sync.Mutex
	open map[*walFile]struct{} // log files not yet closed
}

func newWALSyncFS(fs vfs.FS) *walSyncFS {
	return &walSyncFS{FS: fs, open: make(map[*walFile]struct{})}
}

// Create implements vfs.FS.
func (fs *walSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	return fs.wrap(f, category, err)
}

// ReuseForWrite implements vfs.FS; pebble recycles old log files with it.
func (fs *walSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	return fs.wrap(f, category, err)
}

func (fs *walSyncFS) wrap(f vfs.File, category vfs.DiskWriteCategory, err error) (vfs.File, error) {
	if err != nil || category != walCategory {
		return f, err
	}
	w := &walFile{File: f, fs: fs}
	fs.mu.Lock()
	fs.open[w] = struct{}{}
	fs.mu.Unlock()
	return w, nil
}

// syncAll makes everything written to the open log files durable. It may
// run concurrently with pebble writing them.
func (fs *walSyncFS) syncAll() error {
	fs.mu.Lock()
	files := make([]*walFile, 0, len(fs.open))
	for f := range fs.open {
		files = append(files, f)
	}
	fs.mu.Unlock()
	var first error
	for _, f := range files {
		if err := f.realSync(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// walFile is one log file. pebble calls Write and Sync from its log flusher
// goroutine, one at a time; realSync may come from the store's syncer at the
// same time, which the file descriptor allows (fdatasync while another
// goroutine writes), and mu keeps it from syncing a closed file.
type walFile struct {
	vfs.File
	fs *walSyncFS

	mu     sync.Mutex
	closed bool
}

func (f *walFile) realSync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil // Close synced it
	}
	if err := f.File.SyncData(); err != nil {
		return fmt.Errorf("store: sync log: %w", err)
	}
	f.fs.syncs.Add(1)
	return nil
}

// Sync implements vfs.File: it does nothing, see walSyncFS.
func (f *walFile) Sync() error { return nil }

// SyncData implements vfs.File: it does nothing, see walSyncFS.
func (f *walFile) SyncData() error { return nil }

// SyncTo implements vfs.File: it does nothing and says the file was not
// fully synced, see walSyncFS.
func (f *walFile) SyncTo(int64) (fullSync bool, err error) { return false, nil }

// Close implements vfs.File. A log file is synced before it is closed: the
// next syncAll no longer sees it.
func (f *walFile) Close() error {
	err := f.realSync()
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.fs.mu.Lock()
	delete(f.fs.open, f)
	f.fs.mu.Unlock()
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	return err
}
