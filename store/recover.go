package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// RecoveryReport says what OpenPebbleRecovering found and did.
type RecoveryReport struct {
	Dir string
	// MovedTo is where the unreadable store was moved ("" if the store
	// opened); Reason is why.
	MovedTo string
	Reason  string
	// Records is how many records the read pass found in the store that
	// was opened, Undecodable how many of them do not decode (reads skip
	// those and count them in Stats.Skipped).
	Records     int
	Undecodable int
	// Duration is the time taken, read pass included.
	Duration time.Duration
}

// maxOpenAttempts is how many starts in a row may die while opening a
// store before the next one moves it aside without trying (see
// OpenPebbleRecovering).
const maxOpenAttempts = 2

// OpenPebbleRecovering opens the store in dir like OpenPebble and reads
// every record once. If the store cannot be opened or read to the end, it
// moves dir aside to "<dir>.corrupt-<UTC yyyymmddThhmmss>", logs what and
// why, and opens a fresh, empty store in dir. Records that cannot be decoded
// do not make the store unreadable: reads skip them.
//
// It does not move a store that another process holds open, one it may not
// read, one of a newer format, a directory that holds files other than a
// store's (ErrFormat), or when the disk is full: those return an error.
// If opening the fresh store fails too, it returns the error rather than
// try again.
//
// To keep a broker from dying over and over on a store whose damage kills
// the process (a panic in a pebble goroutine it cannot catch), each attempt
// is counted in "<dir>.opening" until the read pass ends: after
// maxOpenAttempts attempts that never finished, the store is moved aside
// without being opened.
func OpenPebbleRecovering(dir string, opts PebbleOptions) (*Pebble, *RecoveryReport, error) {
	opts.setDefaults()
	start := time.Now()
	rep := &RecoveryReport{Dir: dir}
	defer func() { rep.Duration = time.Since(start) }()

	// A store another process has open is neither opened nor counted as
	// an attempt: a second broker on a live directory (a duplicate service
	// restarting in a loop) would otherwise run the count up to
	// maxOpenAttempts and have the healthy store moved aside at the first
	// broker's next start.
	if err := checkNotInUse(dir); err != nil {
		return nil, rep, err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		// Nothing to move aside: a count left from starts before the
		// directory was removed does not apply to the store made now.
		clearAttempts(dir)
	}
	attempts := readAttempts(dir)
	var err error
	if attempts >= maxOpenAttempts {
		err = fmt.Errorf("%w: the last %d attempts to open it did not finish", errCorrupt, attempts)
	} else {
		if werr := writeAttempts(dir, attempts+1); werr != nil {
			opts.Logger.Warn("store: cannot count open attempts", "dir", dir, "err", werr)
		}
		var p *Pebble
		p, err = openVerified(dir, opts, rep)
		if err == nil {
			clearAttempts(dir)
			return p, rep, nil
		}
		if inUse(err) {
			// Taken between checkNotInUse and the open: take back this
			// attempt, leave the other process's.
			if attempts > 0 {
				_ = writeAttempts(dir, attempts)
			} else {
				clearAttempts(dir)
			}
			return nil, rep, inUseError(dir)
		}
		if !movable(err) {
			clearAttempts(dir)
			return nil, rep, fmt.Errorf("store: open %s: %w", dir, err)
		}
	}

	moved, merr := moveAside(dir)
	if merr != nil {
		// Leave the attempt count: the next start tries again.
		return nil, rep, fmt.Errorf("store: open %s: %w; moving it aside failed: %w", dir, err, merr)
	}
	clearAttempts(dir)
	rep.MovedTo, rep.Reason = moved, err.Error()
	rep.Records, rep.Undecodable = 0, 0
	opts.Logger.Error("store: unreadable; moved aside, starting with an empty store",
		"dir", dir, "moved_to", moved, errAttr(err))
	p, err := openPebble(dir, opts, false)
	if err != nil {
		return nil, rep, fmt.Errorf("store: open fresh store %s: %w", dir, err)
	}
	return p, rep, nil
}

// openVerified opens dir and reads every record, catching pebble's panics.
func openVerified(dir string, opts PebbleOptions, rep *RecoveryReport) (*Pebble, error) {
	var p *Pebble
	err := catchPanic(func() error {
		var err error
		p, err = openPebble(dir, opts, false)
		return err
	})
	if err != nil {
		return nil, err
	}
	var cr CheckReport
	err = catchPanic(func() error { return p.checkRecords(&cr) })
	if err != nil {
		_ = catchPanic(p.Close)
		return nil, err
	}
	rep.Records, rep.Undecodable = cr.Records()+cr.Undecodable, cr.Undecodable
	if cr.Undecodable > 0 {
		opts.Logger.Warn("store: undecodable records; reads skip them", "dir", dir, "count", cr.Undecodable)
	}
	return p, nil
}

// movable reports whether err, from opening a store, means the store is
// damaged rather than out of reach: only a damaged store is moved aside.
func movable(err error) bool {
	switch {
	case errors.Is(err, ErrFormat),
		errors.Is(err, os.ErrPermission),
		errors.Is(err, syscall.ENOSPC),
		errors.Is(err, syscall.EROFS),
		errors.Is(err, syscall.EMFILE),
		errors.Is(err, syscall.ENFILE),
		errors.Is(err, syscall.ENOMEM),
		errors.Is(err, syscall.ENOTDIR):
		return false
	}
	return true
}

// checkNotInUse returns ErrInUse, wrapped with what to do about it, if
// another process (or another store in this one) holds dir's lock. It takes
// the lock only where pebble's LOCK file already exists, so that it creates
// nothing in a directory that is not a store yet (or not a store at all).
func checkNotInUse(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "LOCK")); err != nil {
		return nil
	}
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err == nil {
		_ = lock.Close()
		return nil
	}
	if inUse(err) {
		return inUseError(dir)
	}
	return nil // anything else, the open reports
}

func inUseError(dir string) error {
	return fmt.Errorf("store: %s: %w (pebble's LOCK file in it is held: is another loopmq running with this data directory?)", dir, ErrInUse)
}

// inUse reports whether err is pebble's failure to lock a directory that
// another process (fcntl's EAGAIN) or this one holds. (POSIX also allows
// EACCES for a held lock, but that is permission denied too, which the
// open reports as it is.)
func inUse(err error) bool {
	return errors.Is(err, syscall.EAGAIN) || strings.Contains(err.Error(), "lock held by current process")
}

// moveAside renames dir to dir.corrupt-<UTC time> (with a -N suffix if
// that exists) while holding the store's lock, so a store another process
// has open is never moved.
func moveAside(dir string) (string, error) {
	lock, err := pebble.LockDirectory(dir, vfs.Default)
	if err != nil {
		return "", fmt.Errorf("lock: %w", err)
	}
	defer lock.Close()
	base := strings.TrimRight(dir, string(filepath.Separator)) + ".corrupt-" + time.Now().UTC().Format("20060102T150405")
	to := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, os.ErrNotExist) {
			break
		}
		if i > 100 {
			return "", fmt.Errorf("no free name like %s", base)
		}
		to = base + "-" + strconv.Itoa(i)
	}
	if err := os.Rename(dir, to); err != nil {
		return "", err
	}
	syncDir(filepath.Dir(to))
	return to, nil
}

// syncDir makes a rename in dir durable, as far as it can.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

func attemptsFile(dir string) string {
	return strings.TrimRight(dir, string(filepath.Separator)) + ".opening"
}

func readAttempts(dir string) int {
	b, err := os.ReadFile(attemptsFile(dir))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

func writeAttempts(dir string, n int) error {
	name := attemptsFile(dir)
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(n) + "\n")
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	syncDir(filepath.Dir(name))
	return err
}

func clearAttempts(dir string) { _ = os.Remove(attemptsFile(dir)) }
