package store

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// CheckReport is what Check found in a store directory.
type CheckReport struct {
	Dir string
	// Format is the store's format version (formatVersion); 0 if the
	// store has none recorded.
	Format byte
	// Records of each kind that decode; GroupedEntries counts the
	// entries the Groups records hold (groups.go).
	Sessions, Entries, Groups, Inbound, Retained, Meta int
	GroupedEntries                                     int
	// Messages counts message records, EntryRefs the entries that refer
	// to one, and DeletedRefs those among them whose record is gone: they
	// were acknowledged before a crash, reads skip them and the next open
	// forgets them (groups.go).
	Messages, EntryRefs, DeletedRefs int
	// Undecodable counts the records that do not decode (reads skip them)
	// and keys of no known kind; BadRecords lists the first
	// maxReportedBadRecords of them.
	Undecodable int
	BadRecords  []BadRecord
	// DiskBytes is the size of the files in Dir.
	DiskBytes uint64
}

// BadRecord is one record that does not decode.
type BadRecord struct {
	Key  []byte
	Kind string
	Err  string
}

// maxReportedBadRecords bounds CheckReport.BadRecords.
const maxReportedBadRecords = 100

// Records returns the number of records that decode.
func (r *CheckReport) Records() int {
	return r.Sessions + r.Entries + r.Groups + r.Inbound + r.Retained + r.Meta + r.Messages
}

// OK reports whether every record decoded.
func (r *CheckReport) OK() bool { return r.Undecodable == 0 }

// String formats the report for a person, one fact a line.
func (r *CheckReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "store %s: format %d, %d bytes on disk\n", r.Dir, r.Format, r.DiskBytes)
	fmt.Fprintf(&b, "sessions %d, entries %d, groups %d holding %d entries, inbound %d, retained %d, meta %d\n",
		r.Sessions, r.Entries, r.Groups, r.GroupedEntries, r.Inbound, r.Retained, r.Meta)
	fmt.Fprintf(&b, "messages %d, referred to by %d entries (%d of them acknowledged before a crash)\n",
		r.Messages, r.EntryRefs, r.DeletedRefs)
	fmt.Fprintf(&b, "undecodable %d\n", r.Undecodable)
	for _, br := range r.BadRecords {
		fmt.Fprintf(&b, "  %s %s: %s\n", br.Kind, printableKey(br.Key), br.Err)
	}
	if n := r.Undecodable - len(r.BadRecords); n > 0 {
		fmt.Fprintf(&b, "  ... and %d more\n", n)
	}
	return b.String()
}

// Check opens the store in dir read-only, reads every record and reports
// what it holds. The error is non-nil if the store cannot be opened or read
// to the end (the report then has what was read before); undecodable
// records are not an error but are counted and listed in the report. It
// fails on a store that a running broker holds open (pebble's lock).
func Check(dir string) (CheckReport, error) {
	rep := CheckReport{Dir: dir, DiskBytes: dirBytes(dir)}
	opts := PebbleOptions{}
	opts.setDefaults()
	var p *Pebble
	err := catchPanic(func() error {
		var err error
		p, err = openPebble(dir, opts, true)
		return err
	})
	if err != nil && inUse(err) {
		return rep, fmt.Errorf("store: check %s: %w (stop the broker, or check a copy)", dir, ErrInUse)
	}
	if err != nil {
		return rep, fmt.Errorf("store: check %s: open: %w", dir, err)
	}
	err = catchPanic(func() error { return p.checkRecords(&rep) })
	if cerr := catchPanic(p.Close); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("store: check %s: %w", dir, err)
	}
	return rep, nil
}

// checkRecords reads every record of the store into rep's counts; it fails
// if pebble cannot read them all.
func (p *Pebble) checkRecords(rep *CheckReport) error {
	if err := p.beginRead(); err != nil {
		return err
	}
	defer p.readers.Done()
	it, err := p.db.NewIter(&pebble.IterOptions{})
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	var s Session
	var e Entry
	var m Message
	msgs := make(map[uint64]bool) // message records: they sort before entries and groups
	for valid := it.First(); valid; valid = it.Next() {
		key := it.Key()
		value, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		if err := checkRecord(rep, key, value, &s, &e, &m, msgs); err != nil {
			rep.Undecodable++
			if len(rep.BadRecords) < maxReportedBadRecords {
				kind := "empty key"
				if len(key) > 0 {
					kind = kindName(key[0])
				}
				rep.BadRecords = append(rep.BadRecords, BadRecord{
					Key: append([]byte(nil), key...), Kind: kind, Err: err.Error(),
				})
			}
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// checkRecord decodes one record and counts it in rep; s, e and m are
// scratch space, msgs the message records seen so far.
func checkRecord(rep *CheckReport, key, value []byte, s *Session, e *Entry, m *Message, msgs map[uint64]bool) error {
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", errCorrupt)
	}
	switch key[0] {
	case kindFormat:
		if string(key) != string(formatKey) {
			return fmt.Errorf("%w: unknown key", errCorrupt)
		}
		f, err := decodeFormatValue(value)
		if err != nil {
			return err
		}
		rep.Format = f
	case kindSession:
		if err := decodeSessionValue(value, s); err != nil {
			return err
		}
		rep.Sessions++
	case kindEntry:
		_, seq, ok := parseEntryKey(key)
		if !ok {
			return fmt.Errorf("%w: bad entry key", errCorrupt)
		}
		ref, err := decodeEntryValue(value, e)
		if err != nil {
			return err
		}
		rep.countRef(ref, seq, msgs)
		rep.Entries++
	case kindGroup:
		_, suffix, ok := parseClientKey(key, 8)
		if !ok {
			return fmt.Errorf("%w: bad group key", errCorrupt)
		}
		n := 0
		var eerr error
		err := decodeGroupValue(value, binary.BigEndian.Uint64(suffix), func(seq uint64, v []byte) bool {
			var ref bool
			ref, eerr = decodeEntryValue(v, e)
			rep.countRef(ref, seq, msgs)
			n++
			return eerr == nil
		})
		if err == nil {
			err = eerr
		}
		if err != nil {
			return err
		}
		rep.GroupedEntries += n
		rep.Groups++
	case kindInbound:
		if _, _, ok := parseInboundKey(key); !ok {
			return fmt.Errorf("%w: bad inbound key", errCorrupt)
		}
		if err := decodeInboundValue(value); err != nil {
			return err
		}
		rep.Inbound++
	case kindRetained:
		if err := decodeRetainedValue(value, m); err != nil {
			return err
		}
		rep.Retained++
	case kindMeta:
		if _, err := decodeMetaValue(value); err != nil {
			return err
		}
		rep.Meta++
	case kindMessage:
		if len(key) != 9 {
			return fmt.Errorf("%w: bad message key", errCorrupt)
		}
		if err := decodeMessageValue(value, m); err != nil {
			return err
		}
		msgs[binary.BigEndian.Uint64(key[1:])] = true
		rep.Messages++
	default:
		return fmt.Errorf("%w: unknown kind of key", errCorrupt)
	}
	return nil
}

// countRef counts an entry of Seq seq that refers to a message record.
func (r *CheckReport) countRef(ref bool, seq uint64, msgs map[uint64]bool) {
	if !ref {
		return
	}
	r.EntryRefs++
	if !msgs[seq] {
		r.DeletedRefs++
	}
}

// dirBytes sums the sizes of the regular files under dir; 0 if it cannot
// be read.
func dirBytes(dir string) uint64 {
	var n uint64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += uint64(fi.Size())
		}
		return nil
	})
	return n
}

// catchPanic runs fn and turns a panic (pebble panics on some damage it
// finds in the files it reads) into an error.
func catchPanic(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: pebble panicked: %v", errCorrupt, r)
		}
	}()
	return fn()
}
