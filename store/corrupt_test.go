package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/stretchr/testify/require"
)

func quietOptions(t testing.TB) PebbleOptions {
	return PebbleOptions{Logger: slog.New(slog.NewTextHandler(testLogWriter{t}, nil))}
}

type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func commitWait(t testing.TB, p Store, b *Batch) {
	t.Helper()
	ch := make(chan error, 1)
	p.Commit(b, func(err error) { ch <- err })
	require.NoError(t, <-ch)
}

// makeDamageableStore writes a store with records in a table file (flushed)
// and more in the log, and closes it; it returns how many records it holds.
func makeDamageableStore(t *testing.T, dir string) int {
	p, err := OpenPebble(dir, quietOptions(t))
	require.NoError(t, err)
	records := 0
	write := func(from, to int) {
		var b Batch
		for c := from; c < to; c++ {
			id := fmt.Sprintf("client-%03d", c)
			b.PutSession(&Session{ClientID: id, Version: 5, Subs: []Subscription{{Filter: "a/#", QoS: 1}}})
			for seq := uint64(0); seq < 20; seq++ {
				b.PutEntry(id, &Entry{Seq: seq, QoS: 1, Msg: Message{Topic: []byte("t"), Payload: bytes.Repeat([]byte{byte(seq)}, 100)}})
			}
			b.PutInbound(id, 1)
			records += 22
		}
		commitWait(t, p, &b)
	}
	write(0, 100)
	require.NoError(t, p.db.Flush())
	// One batch per client, so that the log holds many records and damage
	// in its middle is followed by good records (pebble takes a bad record
	// with nothing good after it for a torn write, and stops there).
	for c := 100; c < 150; c++ {
		write(c, c+1)
	}
	require.NoError(t, p.Close())
	return records
}

func copyDir(t *testing.T, from, to string) {
	require.NoError(t, os.MkdirAll(to, 0o755))
	es, err := os.ReadDir(from)
	require.NoError(t, err)
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(to, e.Name()), b, 0o644))
	}
}

// filesLike returns the files of dir whose names match pattern.
func filesLike(t *testing.T, dir, pattern string) []string {
	m, err := filepath.Glob(filepath.Join(dir, pattern))
	require.NoError(t, err)
	return m
}

// scribble overwrites n bytes in the middle of each file with random bytes.
func scribble(t *testing.T, rng *rand.Rand, n int, files ...string) {
	require.NotEmpty(t, files)
	for _, name := range files {
		b, err := os.ReadFile(name)
		require.NoError(t, err)
		if len(b) == 0 {
			continue
		}
		at := len(b) / 3
		for i := at; i < at+n && i < len(b); i++ {
			b[i] = byte(rng.Uint32())
		}
		require.NoError(t, os.WriteFile(name, b, 0o644))
	}
}

// TestOpenPebbleRecoveringDamage damages a store's files in the ways disks
// and people do; OpenPebbleRecovering must return a usable store every
// time, without panicking: an empty one with the damaged directory moved
// aside, or (where pebble tolerates the damage, as a torn log tail) the
// records it can still read, every one of them decodable.
func TestOpenPebbleRecoveringDamage(t *testing.T) {
	pristine := filepath.Join(t.TempDir(), "pristine")
	total := makeDamageableStore(t, pristine)
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name       string
		damage     func(t *testing.T, dir string)
		mustMove   bool // the damage must be found
		checkFails bool // Check must report it
	}{
		{"truncate every file", func(t *testing.T, dir string) {
			for _, f := range filesLike(t, dir, "*") {
				require.NoError(t, os.Truncate(f, 0))
			}
		}, true, true},
		{"truncate every file to half", func(t *testing.T, dir string) {
			for _, f := range filesLike(t, dir, "*") {
				fi, err := os.Stat(f)
				require.NoError(t, err)
				require.NoError(t, os.Truncate(f, fi.Size()/2))
			}
		}, true, true},
		{"random bytes in MANIFEST", func(t *testing.T, dir string) {
			scribble(t, rng, 64, filesLike(t, dir, "MANIFEST-*")...)
		}, true, true},
		{"random bytes in sst", func(t *testing.T, dir string) {
			scribble(t, rng, 256, filesLike(t, dir, "*.sst")...)
		}, true, true},
		{"random bytes in WAL", func(t *testing.T, dir string) {
			scribble(t, rng, 256, filesLike(t, dir, "*.log")...)
		}, true, true},
		{"cut the WAL's last record short (a torn write: tolerated)", func(t *testing.T, dir string) {
			logs := filesLike(t, dir, "*.log")
			last := logs[len(logs)-1]
			fi, err := os.Stat(last)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(last, fi.Size()-100))
		}, false, false},
		{"delete the manifest marker (pebble v2's CURRENT)", func(t *testing.T, dir string) {
			files := append(filesLike(t, dir, "marker.manifest.*"), filesLike(t, dir, "CURRENT")...)
			require.NotEmpty(t, files)
			for _, f := range files {
				require.NoError(t, os.Remove(f))
			}
		}, true, true},
		{"delete the MANIFEST", func(t *testing.T, dir string) {
			for _, f := range filesLike(t, dir, "MANIFEST-*") {
				require.NoError(t, os.Remove(f))
			}
		}, true, true},
		{"delete the sst", func(t *testing.T, dir string) {
			for _, f := range filesLike(t, dir, "*.sst") {
				require.NoError(t, os.Remove(f))
			}
		}, true, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			copyDir(t, pristine, dir)
			c.damage(t, dir)

			rep, cerr := Check(dir)
			t.Logf("Check: err %v\n%s", cerr, rep.String())
			if c.checkFails {
				require.True(t, cerr != nil || !rep.OK() || rep.Records()+rep.Undecodable < total,
					"Check found no damage")
			}

			p, rrep, err := OpenPebbleRecovering(dir, quietOptions(t))
			require.NoError(t, err)
			t.Logf("recovery: %+v", *rrep)
			defer p.Close()
			if c.mustMove {
				require.NotEmpty(t, rrep.MovedTo, "damage not found")
			}
			if rrep.MovedTo != "" {
				require.True(t, strings.HasPrefix(filepath.Base(rrep.MovedTo), "store.corrupt-"), rrep.MovedTo)
				require.DirExists(t, rrep.MovedTo)
				require.NotEmpty(t, rrep.Reason)
				require.NoFileExists(t, dir+".opening")
				n := 0
				require.NoError(t, p.Sessions(func(*Session) error { n++; return nil }))
				require.Zero(t, n, "fresh store not empty")
				// The moved store still fails Check, for whoever looks at it.
				mrep, merr := Check(rrep.MovedTo)
				if c.checkFails {
					require.True(t, merr != nil || !mrep.OK() || mrep.Records() < total)
				}
			} else {
				// Only the torn record is lost.
				require.Zero(t, rrep.Undecodable)
				require.Equal(t, total-22, rrep.Records)
			}
			// Whatever was kept, the store works.
			var b Batch
			b.PutMeta("after", []byte("recovery"))
			commitWait(t, p, &b)
			v, err := p.Meta("after")
			require.NoError(t, err)
			require.Equal(t, []byte("recovery"), v)
			require.NoError(t, p.Close())
			// And it opens again without being moved.
			p, rrep, err = OpenPebbleRecovering(dir, quietOptions(t))
			require.NoError(t, err)
			require.Empty(t, rrep.MovedTo)
			require.NoError(t, p.Close())
		})
	}
}

func TestOpenPebbleRecoveringKeepsHealthyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	total := makeDamageableStore(t, dir)
	p, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
	require.NoError(t, err)
	require.Empty(t, rep.MovedTo)
	require.Equal(t, total, rep.Records)
	require.NoError(t, p.Close())

	crep, err := Check(dir)
	require.NoError(t, err)
	require.True(t, crep.OK())
	require.Equal(t, 150, crep.Sessions)
	require.Equal(t, 3000, crep.Entries)
	require.Equal(t, 150, crep.Inbound)
	require.Equal(t, formatVersion, crep.Format)
	require.Positive(t, crep.DiskBytes)
}

// TestOpenPebbleRecoveringRefuses: stores that are out of reach, not
// damaged, stay where they are.
func TestOpenPebbleRecoveringRefuses(t *testing.T) {
	t.Run("foreign directory", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o644))
		_, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
		require.ErrorIs(t, err, ErrFormat)
		require.Empty(t, rep.MovedTo)
		require.FileExists(t, filepath.Join(dir, "notes.txt"))
		_, err = OpenPebble(dir, quietOptions(t))
		require.ErrorIs(t, err, ErrFormat)
	})
	t.Run("open in another store", func(t *testing.T) {
		dir := t.TempDir()
		p, err := OpenPebble(dir, quietOptions(t))
		require.NoError(t, err)
		defer p.Close()
		_, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
		require.Error(t, err)
		require.Empty(t, rep.MovedTo)
		require.DirExists(t, dir)
		_, err = Check(dir)
		require.ErrorIs(t, err, ErrInUse, "Check of a store in use")
	})
	t.Run("in use, tried again and again", func(t *testing.T) {
		// A second broker started on a live data directory (a duplicate
		// service restarting in a loop) must neither count as a start
		// that died opening the store nor leave anything behind: once the
		// first broker stops, its store opens as it is.
		dir := filepath.Join(t.TempDir(), "store")
		total := makeDamageableStore(t, dir)
		p, err := OpenPebble(dir, quietOptions(t))
		require.NoError(t, err)
		for range maxOpenAttempts + 1 {
			_, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
			require.ErrorIs(t, err, ErrInUse)
			require.ErrorContains(t, err, "in use by another process")
			require.Empty(t, rep.MovedTo)
		}
		require.NoFileExists(t, dir+".opening")
		require.NoError(t, p.Close())
		p, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
		require.NoError(t, err)
		require.Empty(t, rep.MovedTo, "a healthy store that was in use is not moved aside")
		require.Equal(t, total, rep.Records)
		require.NoError(t, p.Close())
	})
	t.Run("newer format", func(t *testing.T) {
		dir := t.TempDir()
		db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{log: quietOptions(t).Logger}})
		require.NoError(t, err)
		require.NoError(t, db.Set(formatKey, []byte{formatVersion + 1}, pebble.Sync))
		require.NoError(t, db.Close())
		_, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
		require.ErrorIs(t, err, ErrFormat)
		require.Empty(t, rep.MovedTo)
	})
}

// TestOpenPebbleRecoveringAfterCrashedAttempts: after maxOpenAttempts
// starts that died while opening, the store is moved aside unopened.
func TestOpenPebbleRecoveringAfterCrashedAttempts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	makeDamageableStore(t, dir)
	require.NoError(t, writeAttempts(dir, 1))
	p, rep, err := OpenPebbleRecovering(dir, quietOptions(t))
	require.NoError(t, err)
	require.Empty(t, rep.MovedTo, "one unfinished attempt is not enough")
	require.NoError(t, p.Close())
	require.NoFileExists(t, dir+".opening")

	require.NoError(t, writeAttempts(dir, maxOpenAttempts))
	p, rep, err = OpenPebbleRecovering(dir, quietOptions(t))
	require.NoError(t, err)
	require.NotEmpty(t, rep.MovedTo)
	require.Contains(t, rep.Reason, "did not finish")
	require.NoFileExists(t, dir+".opening")
	require.NoError(t, p.Close())

	// The directory removed by hand after such starts: the count left
	// behind does not stop a fresh store from opening.
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, writeAttempts(dir, maxOpenAttempts))
	p, rep, err = OpenPebbleRecovering(dir, quietOptions(t))
	require.NoError(t, err)
	require.Empty(t, rep.MovedTo)
	require.NoFileExists(t, dir+".opening")
	require.NoError(t, p.Close())
}

// TestUndecodableRecordsSkipped writes records no decoder accepts: reads
// skip them, count them and log each once; Check lists their keys.
func TestUndecodableRecordsSkipped(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	opts := PebbleOptions{Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	p, err := OpenPebble(dir, opts)
	require.NoError(t, err)
	var b Batch
	b.PutSession(&Session{ClientID: "good"})
	b.PutEntry("good", &Entry{Seq: 1})
	b.PutEntry("good", &Entry{Seq: 3})
	b.PutInbound("good", 1)
	b.PutRetained(&Message{Topic: []byte("good")})
	commitWait(t, p, &b)
	garbage := []byte{0xde, 0xad}
	for _, k := range [][]byte{
		appendSessionKey(nil, "bad"),
		appendEntryKey(nil, "good", 2),
		append(appendClientPrefix(nil, kindEntry, "good"), 1, 2, 3), // key too short
		appendInboundKey(nil, "good", 2),
		appendRetainedKey(nil, []byte("bad")),
		appendMetaKey(nil, "bad"),
		{'z', 'z'},
	} {
		require.NoError(t, p.db.Set(k, garbage, pebble.Sync))
	}
	read := func() {
		var ids []string
		require.NoError(t, p.Sessions(func(s *Session) error { ids = append(ids, s.ClientID); return nil }))
		require.Equal(t, []string{"good"}, ids)
		var seqs []uint64
		require.NoError(t, p.Entries("good", 0, 0, func(e *Entry) bool { seqs = append(seqs, e.Seq); return true }))
		require.Equal(t, []uint64{1, 3}, seqs)
		n := 0
		require.NoError(t, p.Inbound(func(string, uint16) error { n++; return nil }))
		require.Equal(t, 1, n)
		n = 0
		require.NoError(t, p.Retained(func(*Message) error { n++; return nil }))
		require.Equal(t, 1, n)
		v, err := p.Meta("bad")
		require.NoError(t, err)
		require.Nil(t, v)
	}
	read()
	require.EqualValues(t, 6, p.Stats().Skipped) // session, 2 entries, inbound, retained, meta
	read()
	require.EqualValues(t, 12, p.Stats().Skipped)
	require.Equal(t, 6, strings.Count(logs.String(), "skipping undecodable record"), logs.String())
	require.NoError(t, p.Close())

	rep, err := Check(dir)
	require.NoError(t, err)
	t.Log(rep.String())
	require.False(t, rep.OK())
	require.Equal(t, 7, rep.Undecodable)
	require.Len(t, rep.BadRecords, 7)
	require.Equal(t, 1, rep.Sessions)
	require.Equal(t, 2, rep.Entries)
	var kinds []string
	for _, br := range rep.BadRecords {
		kinds = append(kinds, br.Kind)
	}
	require.ElementsMatch(t, []string{"session", "entry", "entry", "inbound", "retained", "meta", "unknown(0x7a)"}, kinds)

	p2, rrep, err := OpenPebbleRecovering(dir, opts)
	require.NoError(t, err)
	require.Empty(t, rrep.MovedTo, "undecodable records do not make a store unreadable")
	require.Equal(t, 7, rrep.Undecodable)
	require.NoError(t, p2.Close())
}
