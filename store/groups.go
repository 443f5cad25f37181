package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// Entry groups: how the on-disk store writes entries put once.
//
// An entry is a record of its own: one memtable insert when it is put, one
// when it is deleted, and their flush and compaction. A message fanned out
// to 100 persistent subscribers, or a burst of 16 routed to one, costs that
// 100 or 16 times over, and measured, the records were most of what
// persistence costs per delivery in fan-out. So the entries put with
// Batch.PutEntryOnce that one commit group (pebble_commit.go) holds for one
// client are written as one group record under a kindGroup key ending in
// the smallest Seq among them (the group's key Seq, which stays its key
// however many of them are deleted). A commit group with a single such
// entry for a client writes it as an ordinary entry.
//
// The group's entries are deleted one by one in memory (groupIndex, which
// every group on disk is in from the time the store opens) and the record
// is deleted when the last one is. Reads skip the deleted ones. Until then
// the deletes are not on disk: after a crash the deleted entries of groups
// with live ones come back (sent again, with DUP, which QoS 1 allows);
// Close rewrites such groups with their live entries only, so a clean
// restart brings back nothing deleted. DeleteEntriesTo rewrites at once
// every group it leaves partly live: what it deletes belongs to an ended
// session, and must not come back to a new one of the same client id.
//
// A group's value: codecVersion, the number of entries (uvarint), then per
// entry in ascending Seq order: Seq minus the key Seq (uvarint), the
// length of the entry's value (uvarint), and the entry's value as an entry
// record holds it (appendEntryValue), or without its message
// (appendEntryRefValue).
//
// Message records: a message fanned out to several clients' groups in one
// commit group is written once, as a message record under a kindMessage key
// ending in its Seq, and each of those grouped entries refers to it (the
// entryMsgRef flag) instead of holding a copy. Entries put once with the
// same Seq hold the same message (Batch.PutEntryOnce); the committer shares
// one record among a run of consecutive puts of one Seq, which is how the
// engine puts a message it routes. Only grouped entries refer to message
// records: a client's single entry in a commit stays an entry record with
// its message, so that entry records need no index (a queue filled one
// message per commit, the common case for an offline fan-out subscriber,
// costs the index nothing).
// groupIndex.msgs counts the live entries referring to each message
// record; the record is deleted in the commit that deletes the last of
// them. After a crash, the deleted entries of groups that came back may
// refer to a message record that was deleted: they were acknowledged,
// reads skip them, and opening the store counts them deleted (loadGroups).

// groupIndex holds every group on disk (and those of the pebble batch being
// built): per client, its groups by key Seq, with which of their entries are
// live. Written by the committer (and by open and close, which run without
// it), read by Entries on readers' goroutines; mu guards it.
type groupIndex struct {
	mu      sync.Mutex
	clients map[string][]*entryGroup // each client's groups, key Seq ascending
	msgs    map[uint64]int32         // per message record's Seq, the live entries referring to it
	key     [9]byte                  // a message record's key, built under mu
}

// entryGroup is one group record: seqs are its entries' Seqs, ascending;
// live has bit i set while seqs[i] is not deleted; left counts them; refs,
// nil if none, has bit i set if entry i refers to a message record.
type entryGroup struct {
	key  uint64 // fixed when the group is made: read without p.groups.mu (groupedReader)
	seqs []uint64
	live []uint64
	refs []uint64
	left int
}

// newEntryGroup returns a group of key holding seqs (copied), all live;
// refs (nil for none) has the bits of the entries that refer to a message
// record.
func newEntryGroup(key uint64, seqs []uint64, refs []uint64) *entryGroup {
	n := len(seqs)
	w := (n + 63) / 64
	size := n + w
	if refs != nil {
		size += w
	}
	buf := make([]uint64, size) // one allocation: seqs, live, refs
	copy(buf, seqs)
	g := &entryGroup{key: key, seqs: buf[:n:n], live: buf[n : n+w : n+w], left: n}
	if refs != nil {
		g.refs = buf[n+w:]
		copy(g.refs, refs)
	}
	for i := range n {
		g.live[i/64] |= 1 << (i % 64)
	}
	return g
}

func (g *entryGroup) isLive(i int) bool { return g.live[i/64]&(1<<(i%64)) != 0 }

// isRef reports whether entry i refers to a message record.
func (g *entryGroup) isRef(i int) bool { return g.refs != nil && g.refs[i/64]&(1<<(i%64)) != 0 }

// setBit sets bit i of bits, growing it.
func setBit(bits []uint64, i int) []uint64 {
	for len(bits) <= i/64 {
		bits = append(bits, 0)
	}
	bits[i/64] |= 1 << (i % 64)
	return bits
}

// kill deletes entry i; it reports whether it was live.
func (g *entryGroup) kill(i int) bool {
	if !g.isLive(i) {
		return false
	}
	g.live[i/64] &^= 1 << (i % 64)
	g.left--
	return true
}

// find returns the index of seq in g, or -1.
func (g *entryGroup) find(seq uint64) int {
	if i, ok := slices.BinarySearch(g.seqs, seq); ok {
		return i
	}
	return -1
}

// add inserts g among id's groups in key order.
func (x *groupIndex) add(id string, g *entryGroup) {
	if x.clients == nil {
		x.clients = make(map[string][]*entryGroup)
	}
	gs := x.clients[id]
	i := len(gs)
	for i > 0 && gs[i-1].key > g.key {
		i--
	}
	x.clients[id] = slices.Insert(gs, i, g)
}

// remove takes id's group g out of the index.
func (x *groupIndex) remove(id string, g *entryGroup) {
	gs := x.clients[id]
	if i := slices.Index(gs, g); i >= 0 {
		gs = slices.Delete(gs, i, i+1)
	}
	if len(gs) == 0 {
		delete(x.clients, id)
	} else {
		x.clients[id] = gs
	}
}

// ref counts n more live entries referring to the message record seq.
func (x *groupIndex) ref(seq uint64, n int32) {
	if x.msgs == nil {
		x.msgs = make(map[uint64]int32)
	}
	x.msgs[seq] += n
}

// unref counts one less live entry referring to the message record seq,
// and deletes the record in pb with the last.
func (x *groupIndex) unref(pb *pebble.Batch, seq uint64) {
	if n := x.msgs[seq] - 1; n > 0 {
		x.msgs[seq] = n
		return
	}
	delete(x.msgs, seq)
	_ = pb.Delete(appendMessageKey(x.key[:0], seq), nil)
}

// killRef deletes entry i of g, and its reference to a message record.
func (x *groupIndex) killRef(pb *pebble.Batch, g *entryGroup, i int) bool {
	if !g.kill(i) {
		return false
	}
	if g.isRef(i) {
		x.unref(pb, g.seqs[i])
	}
	return true
}

// dropClient takes id's groups out of the index (its session is deleted,
// and with it the records), with their live entries' references.
func (x *groupIndex) dropClient(pb *pebble.Batch, id string) {
	for _, g := range x.clients[id] {
		if g.refs == nil {
			continue
		}
		for i := range g.seqs {
			if g.isLive(i) && g.isRef(i) {
				x.unref(pb, g.seqs[i])
			}
		}
	}
	delete(x.clients, id)
}

// lookup returns id's group holding seq live and its index there.
func (x *groupIndex) lookup(id string, seq uint64) (*entryGroup, int) {
	for _, g := range x.clients[id] {
		if g.key > seq {
			break
		}
		if i := g.find(seq); i >= 0 && g.isLive(i) {
			return g, i
		}
	}
	return nil, -1
}

// groupBuilder collects the entries one client put once in the commit group
// being encoded. Owned by the committer.
type groupBuilder struct {
	entries []builtEntry
	live    int
}

// builtEntry is an entry put once: op is its operation, in a batch of the
// commit group (not reset before the group is applied); msg indexes its
// run in Pebble.runs.
type builtEntry struct {
	seq  uint64
	op   *Op
	msg  int32
	dead bool
}

// msgRun is a run of consecutive puts once of one Seq in the commit group
// being encoded (Batch.PutEntryOnce): with more than one, the grouped
// entries refer to one message record, written with the first of them;
// refs counts those written, added to groupIndex.msgs once per run.
type msgRun struct {
	seq     uint64
	msg     *Message
	puts    int
	refs    int32
	written bool
}

func (b *groupBuilder) reset() {
	clear(b.entries) // drop the pointers into the batches
	b.entries = b.entries[:0]
	b.live = 0
}

// remove deletes seq from b; it reports whether b held it.
func (b *groupBuilder) remove(seq uint64) bool {
	for i := range b.entries {
		if e := &b.entries[i]; e.seq == seq && !e.dead {
			e.dead = true
			b.live--
			return true
		}
	}
	return false
}

// buildPut adds an entry put once to its client's builder. Runs on the
// committer.
func (p *Pebble) buildPut(op *Op) {
	b := p.building[op.ClientID]
	if b == nil {
		if n := len(p.freeBuilders); n > 0 {
			b = p.freeBuilders[n-1]
			p.freeBuilders = p.freeBuilders[:n-1]
		} else {
			b = &groupBuilder{}
		}
		if p.building == nil {
			p.building = make(map[string]*groupBuilder)
		}
		p.building[op.ClientID] = b
	}
	if n := len(p.runs); n == 0 || p.runs[n-1].seq != op.Seq {
		p.runs = append(p.runs, msgRun{seq: op.Seq, msg: &op.Entry.Msg})
	}
	run := len(p.runs) - 1
	p.runs[run].puts++
	b.entries = append(b.entries, builtEntry{seq: op.Seq, op: op, msg: int32(run)})
	b.live++
}

// dropBuilt forgets what id's builder holds (its session was deleted after
// those puts), or only its entries up to seq.
func (p *Pebble) dropBuilt(id string, upTo uint64, all bool) {
	b := p.building[id]
	if b == nil {
		return
	}
	for i := range b.entries {
		if e := &b.entries[i]; !e.dead && (all || e.seq <= upTo) {
			e.dead = true
			b.live--
		}
	}
}

// flushGroups writes what the builders hold into pb, after every other
// operation of the commit group: a client's single entry as an entry
// record, several as a group record (added to the index). Runs on the
// committer, with p.groups.mu held.
func (p *Pebble) flushGroups(pb *pebble.Batch) {
	for id, b := range p.building {
		if b.live > 0 {
			p.writeBuilt(pb, id, b)
		}
		b.reset()
		p.freeBuilders = append(p.freeBuilders, b)
	}
	clear(p.building)
	for i := range p.runs {
		if r := &p.runs[i]; r.refs > 0 {
			p.groups.ref(r.seq, r.refs)
		}
	}
	clear(p.runs)
	p.runs = p.runs[:0]
}

func (p *Pebble) writeBuilt(pb *pebble.Batch, id string, b *groupBuilder) {
	es := b.entries[:0] // b is reset after: filtered in place
	for _, e := range b.entries {
		if !e.dead {
			es = append(es, e)
		}
	}
	bySeq := func(a, b builtEntry) int { return cmp.Compare(a.seq, b.seq) }
	if !slices.IsSortedFunc(es, bySeq) {
		slices.SortFunc(es, bySeq)
	}
	if len(es) == 1 {
		e := es[0]
		p.gkey = appendEntryKey(p.gkey[:0], id, e.seq)
		p.entryBuf = appendEntryValue(p.entryBuf[:0], &e.op.Entry)
		_ = pb.Set(p.gkey, p.entryBuf, nil)
		return
	}
	key := es[0].seq
	v := append(p.groupBuf[:0], codecVersion)
	v = binary.AppendUvarint(v, uint64(len(es)))
	seqs, refs := p.seqBuf[:0], p.refBuf[:0]
	for i, e := range es {
		seqs = append(seqs, e.seq)
		run := &p.runs[e.msg]
		if run.puts > 1 {
			if !run.written {
				p.mkey = appendMessageKey(p.mkey[:0], run.seq)
				p.entryBuf = appendMessageValue(p.entryBuf[:0], run.msg)
				_ = pb.Set(p.mkey, p.entryBuf, nil)
				run.written = true
			}
			run.refs++
			refs = setBit(refs, i)
			p.entryBuf = appendEntryRefValue(p.entryBuf[:0], &e.op.Entry)
		} else {
			p.entryBuf = appendEntryValue(p.entryBuf[:0], &e.op.Entry)
		}
		v = binary.AppendUvarint(v, e.seq-key)
		v = binary.AppendUvarint(v, uint64(len(p.entryBuf)))
		v = append(v, p.entryBuf...)
	}
	p.groupBuf, p.seqBuf = v, seqs
	p.gkey = appendGroupKey(p.gkey[:0], id, key)
	_ = pb.Set(p.gkey, v, nil)
	if len(refs) == 0 {
		refs = nil
	}
	p.groups.add(id, newEntryGroup(key, seqs, refs))
	if refs != nil {
		p.refBuf = refs[:0]
	}
}

// deleteGrouped deletes id's entry seq if a builder or a group holds it,
// and reports whether one did (else it is an entry record of its own).
// The group's record is deleted with its last entry. Runs on the
// committer, with p.groups.mu held.
func (p *Pebble) deleteGrouped(pb *pebble.Batch, id string, seq uint64) bool {
	if b := p.building[id]; b != nil && b.remove(seq) {
		return true
	}
	g, i := p.groups.lookup(id, seq)
	if g == nil {
		return false
	}
	p.groups.killRef(pb, g, i)
	if g.left == 0 {
		p.gkey = appendGroupKey(p.gkey[:0], id, g.key)
		_ = pb.Delete(p.gkey, nil)
		p.groups.remove(id, g)
	}
	return true
}

// deleteGroupedTo deletes id's grouped entries with a Seq up to seq: groups
// left with none are deleted, and those left with some are rewritten with
// only those, so that the deleted ones never come back (they are an ended
// session's, and the live ones a new session's). Runs on the committer,
// with p.groups.mu held.
func (p *Pebble) deleteGroupedTo(pb *pebble.Batch, id string, seq uint64) error {
	p.dropBuilt(id, seq, false)
	for _, g := range slices.Clone(p.groups.clients[id]) {
		if g.key > seq {
			break
		}
		changed := false
		for i, s := range g.seqs {
			if s > seq {
				break
			}
			changed = p.groups.killRef(pb, g, i) || changed
		}
		if !changed {
			continue
		}
		if err := p.rewriteGroup(pb, id, g); err != nil {
			return err
		}
	}
	return nil
}

// rewriteGroup writes g's record again with its live entries only, or
// deletes it if none is left (and takes it out of the index).
// p.groups.mu is held, or nothing else runs (close).
func (p *Pebble) rewriteGroup(pb *pebble.Batch, id string, g *entryGroup) error {
	key := appendGroupKey(nil, id, g.key)
	if g.left == 0 {
		p.groups.remove(id, g)
		return pb.Delete(key, nil)
	}
	old, closer, err := p.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		p.groups.remove(id, g) // never applied: its commit failed
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: read group %s: %w", printableKey(key), err)
	}
	defer closer.Close()
	var body []byte
	var refs []uint64
	seqs := make([]uint64, 0, g.left)
	err = decodeGroupValue(old, g.key, func(s uint64, entry []byte) bool {
		if i := g.find(s); i >= 0 && g.isLive(i) {
			if entryValueIsRef(entry) {
				refs = setBit(refs, len(seqs))
			}
			seqs = append(seqs, s)
			body = binary.AppendUvarint(body, s-g.key)
			body = binary.AppendUvarint(body, uint64(len(entry)))
			body = append(body, entry...)
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("store: rewrite group %s: %w", printableKey(key), err)
	}
	if len(seqs) == 0 {
		p.groups.remove(id, g)
		return pb.Delete(key, nil)
	}
	// Not *g = *ng: that writes key too, which a groupedReader reads
	// without p.groups.mu (it never changes).
	ng := newEntryGroup(g.key, seqs, refs)
	g.seqs, g.live, g.refs, g.left = ng.seqs, ng.live, ng.refs, ng.left
	v := binary.AppendUvarint([]byte{codecVersion}, uint64(len(seqs)))
	return pb.Set(key, append(v, body...), nil)
}

// rewritePartialGroups rewrites every group with deleted entries (Close).
func (p *Pebble) rewritePartialGroups() error {
	pb := p.db.NewBatch()
	defer pb.Close()
	for id, gs := range p.groups.clients {
		for _, g := range slices.Clone(gs) {
			if g.left < len(g.seqs) {
				if err := p.rewriteGroup(pb, id, g); err != nil {
					return err
				}
			}
		}
	}
	if pb.Empty() {
		return nil
	}
	return p.db.Apply(pb, pebble.Sync)
}

// loadGroups builds the index from the group and message records on disk
// (open), and adds to pb the deletes of what a crash left behind: groups
// whose entries all refer to deleted message records (acknowledged before
// the crash, groups.go), and message records no entry refers to. Records
// that do not decode are skipped, as reads skip them.
func (p *Pebble) loadGroups(pb *pebble.Batch) error {
	p.groups.clients, p.groups.msgs = nil, nil
	refs := make(map[uint64]int32) // message records on disk: live entries referring to each
	err := p.scan(kindMessage, func(key, _ []byte) (bool, error) {
		if len(key) != 9 {
			p.skips.skip(key, fmt.Errorf("%w: bad message key", errCorrupt))
			return true, nil
		}
		refs[binary.BigEndian.Uint64(key[1:])] = 0
		return true, nil
	})
	if err != nil {
		return err
	}
	var seqs, refBits []uint64
	err = p.scan(kindGroup, func(key, value []byte) (bool, error) {
		id, suffix, ok := parseClientKey(key, 8)
		if !ok {
			p.skips.skip(key, fmt.Errorf("%w: bad group key", errCorrupt))
			return true, nil
		}
		gk := binary.BigEndian.Uint64(suffix)
		seqs, refBits = seqs[:0], refBits[:0]
		if err := decodeGroupValue(value, gk, func(s uint64, entry []byte) bool {
			if entryValueIsRef(entry) {
				refBits = setBit(refBits, len(seqs))
			}
			seqs = append(seqs, s)
			return true
		}); err != nil {
			p.skips.skip(key, err)
			return true, nil
		}
		if len(refBits) == 0 {
			refBits = nil
		}
		g := newEntryGroup(gk, seqs, refBits)
		for i, s := range g.seqs {
			if !g.isRef(i) {
				continue
			}
			if n, ok := refs[s]; ok {
				refs[s] = n + 1
			} else {
				g.kill(i) // its message record went with the last live entry
			}
		}
		if g.left == 0 {
			_ = pb.Delete(key, nil)
			return true, nil
		}
		p.groups.add(string(id), g)
		return true, nil
	})
	if err != nil {
		return err
	}
	for s, n := range refs {
		if n == 0 {
			_ = pb.Delete(appendMessageKey(nil, s), nil)
			delete(refs, s)
		}
	}
	if len(refs) > 0 {
		p.groups.msgs = refs
	}
	return nil
}

// reloadGroups rebuilds the index from disk after a commit failed: it may
// name groups that commit wrote, and miss deletes it made (their entries
// come back, as after a crash). Runs on the committer.
func (p *Pebble) reloadGroups() {
	p.groups.mu.Lock()
	defer p.groups.mu.Unlock()
	pb := p.db.NewBatch()
	defer pb.Close()
	err := p.loadGroups(pb)
	if err == nil && !pb.Empty() {
		err = p.db.Apply(pb, pebble.Sync)
	}
	if err != nil {
		p.log.Error("store: reading entry groups after a failed commit", errAttr(err))
	}
}

// decodeGroupValue calls fn for each entry of a group record keyed by key
// Seq, in Seq order, with the entry's encoded value (aliasing v), until fn
// returns false. Seqs must ascend from key.
func decodeGroupValue(v []byte, key uint64, fn func(seq uint64, entry []byte) bool) error {
	d := decoder{b: v}
	d.version()
	n := d.count("group entry count", 3)
	last, first := uint64(0), true
	for i := 0; i < n && d.err == nil; i++ {
		delta := d.uvarint("group entry seq")
		entry := d.raw("group entry", d.uvarint("group entry length"))
		if d.err != nil {
			break
		}
		s := key + delta
		if s < key || (!first && s <= last) {
			d.fail("group entry seq: not ascending")
			break
		}
		first, last = false, s
		if !fn(s, entry) {
			return nil
		}
	}
	return d.end()
}
