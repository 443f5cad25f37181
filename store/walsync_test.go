package store

import (
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
)

// failSyncFS is the real file system whose files' fsyncs fail while fail
// is set: a disk error.
type failSyncFS struct {
	vfs.FS
	fail atomic.Bool
}

func (fs *failSyncFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil {
		return nil, err
	}
	return &failSyncFile{File: f, fs: fs}, nil
}

func (fs *failSyncFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return &failSyncFile{File: f, fs: fs}, nil
}

type failSyncFile struct {
	vfs.File
	fs *failSyncFS
}

var errInjected = errors.New("injected fsync failure")

func (f *failSyncFile) Sync() error {
	if f.fs.fail.Load() {
		return errInjected
	}
	return f.File.Sync()
}

func (f *failSyncFile) SyncData() error {
	if f.fs.fail.Load() {
		return errInjected
	}
	return f.File.SyncData()
}

// TestSyncIntervalFailedSyncFailsLaterCommits: under SyncInterval a
// commit's done comes before its fsync. Once a periodic fsync fails,
// what was written may be lost without a later sync saying so: every
// later commit fails, as under SyncAlways, rather than be promised.
func TestSyncIntervalFailedSyncFailsLaterCommits(t *testing.T) {
	fs := &failSyncFS{FS: vfs.Default}
	opts := quietOptions(t)
	opts.Sync, opts.SyncInterval, opts.fs = SyncInterval, 5*time.Millisecond, fs
	p, err := OpenPebble(filepath.Join(t.TempDir(), "store"), opts)
	require.NoError(t, err)
	defer func() { fs.fail.Store(false); _ = p.Close() }()

	put := func(seq uint64) error {
		var b Batch
		b.PutEntry("c", &Entry{Seq: seq, QoS: 1, Msg: Message{Topic: []byte("t"), Payload: []byte("x")}})
		ch := make(chan error, 1)
		p.Commit(&b, func(err error) { ch <- err })
		return <-ch
	}
	require.NoError(t, put(1))
	fs.fail.Store(true)
	require.NoError(t, put(2), "done before the fsync, which fails afterwards")
	require.Eventually(t, func() bool { return p.syncFailed.Load() != nil }, 5*time.Second, 5*time.Millisecond)
	fs.fail.Store(false) // a later fsync would succeed: it must not hide the failed one
	err = put(3)
	require.ErrorIs(t, err, errInjected)
	require.ErrorContains(t, err, "periodic log sync")
}
