package trie

// Delivery is one copy of a message to send: to one client for all of its
// ordinary subscriptions that matched, or to the member chosen from one
// shared subscription group. A client with both gets separate deliveries: a
// shared subscription's delivery is independent of the client's others.
type Delivery[H any] struct {
	ClientID string
	// Handle is the engine's handle stored with the subscription (with
	// several matching subscriptions, the first one's).
	Handle H
	// Share is the share name for a shared subscription delivery, "" for
	// a client's ordinary subscriptions; Filter is then the group's whole
	// filter as subscribed ("$share/{Share}/{filter}"): groups of one name
	// on different filters are different groups.
	Share  string
	Filter string
	// QoS is the maximum QoS granted over Subs [MQTT-3.3.4-2].
	QoS byte
	// Unavailable is set on a shared delivery when the Result's Eligible
	// predicate rejected every member; Handle is then the strategy's
	// choice, for the engine to queue or drop.
	Unavailable bool
	// Subs holds the options of every matching subscription of this
	// delivery, one element each, in no particular order: the engine takes
	// the Subscription Identifiers from it [MQTT-3.3.4-3] [MQTT-3.3.4-4]
	// and the Retain As Published flags. Subscriptions whose No Local
	// option excluded them are not here [MQTT-3.8.3-3]. The slice belongs
	// to the Result and is valid until its next Match.
	Subs []Options

	hash  uint64   // xxhash of ClientID
	n     int32    // subscriptions matched
	first int32    // start of Subs in Result.opts
	src   *node[H] // node of the last subscription added; see Result.add
}

// Result is a reusable match result. Each event loop owns one and passes it
// to every Match: after the first few messages its buffers have grown to fit
// and matching allocates nothing. A Result must not be used by two
// goroutines at once. It keeps references to the last match's subscriptions
// (and so their handles) until its next Match.
type Result[H any] struct {
	// Deliveries is what the last Match found; valid until the next Match.
	Deliveries []Delivery[H]

	// Eligible, if set, is asked before a shared subscription member is
	// chosen; a member it rejects (say, a disconnected client) is passed
	// over for the next one, so that a message goes to a member that can
	// take it. It is called from Match, on the caller's goroutine.
	Eligible func(H) bool

	publisher string
	strategy  ShareStrategy
	raw       []rawMatch[H] // in walk order
	opts      []Options     // Subs backing, grouped by delivery

	// Client → delivery index, used past linearMax deliveries. Slots whose
	// gen is not the current one are empty, so a match starts with an empty
	// table without clearing it.
	table   []dedupSlot
	gen     uint32
	tableOn bool
}

type rawMatch[H any] struct {
	e *entry[H]
	d int32
}

type dedupSlot struct {
	gen uint32
	d   int32
}

// linearMax is how many deliveries are searched by scanning before a match
// switches to the hash table.
const linearMax = 8

func (r *Result[H]) begin(publisherID string, s ShareStrategy) {
	r.Deliveries = r.Deliveries[:0]
	r.raw = r.raw[:0]
	r.publisher = publisherID
	r.strategy = s
	r.tableOn = false
}

// add records that subscription e, found at node src, matched.
func (r *Result[H]) add(e *entry[H], src *node[H]) {
	if e.opts.NoLocal && e.key == r.publisher { // [MQTT-3.8.3-3]
		return
	}
	i := r.clientDelivery(e)
	d := &r.Deliveries[i]
	// A client has one subscription per node, so a second entry of the
	// client from the node just added is the same subscription seen twice
	// by a scan racing a removal (see entryArray).
	if d.src == src {
		return
	}
	d.src = src
	if e.opts.QoS > d.QoS {
		d.QoS = e.opts.QoS
	}
	d.n++
	r.raw = append(r.raw, rawMatch[H]{e: e, d: int32(i)})
}

// addShared records the member e chosen from group g.
func (r *Result[H]) addShared(g *group[H], e *entry[H], unavailable bool) {
	i := len(r.Deliveries)
	r.Deliveries = append(r.Deliveries, Delivery[H]{
		ClientID: e.key, Handle: e.val, Share: g.name, Filter: g.filter, QoS: e.opts.QoS,
		Unavailable: unavailable, hash: e.hash, n: 1,
	})
	r.raw = append(r.raw, rawMatch[H]{e: e, d: int32(i)})
}

// Again reports whether Deliveries[i] goes to a client that another
// delivery of the last match goes to as well, before it: the client's
// ordinary delivery (always counted first), or an earlier shared group's.
// Of a client's deliveries it is false for exactly one. (The engine keys
// what it stores per client and message, so the others need a key of their
// own.) For a shared delivery it costs a lookup and a scan of the
// deliveries before it; ask only when it matters.
func (r *Result[H]) Again(i int) bool {
	d := &r.Deliveries[i]
	if d.Share == "" {
		return false
	}
	if r.ordinary(d.hash, d.ClientID) >= 0 {
		return true
	}
	for j := range r.Deliveries[:i] {
		if e := &r.Deliveries[j]; e.Share != "" && e.hash == d.hash && e.ClientID == d.ClientID {
			return true
		}
	}
	return false
}

// ordinary returns the index of the ordinary delivery of the client with
// the given key and hash, or -1 if it has none.
func (r *Result[H]) ordinary(hash uint64, key string) int {
	if !r.tableOn {
		for i := range r.Deliveries {
			if d := &r.Deliveries[i]; d.hash == hash && d.Share == "" && d.ClientID == key {
				return i
			}
		}
		return -1
	}
	mask := uint64(len(r.table) - 1)
	for j := hash & mask; ; j = (j + 1) & mask {
		s := &r.table[j]
		if s.gen != r.gen {
			return -1
		}
		if d := &r.Deliveries[s.d]; d.hash == hash && d.ClientID == key {
			return int(s.d)
		}
	}
}

// clientDelivery returns the index of the ordinary delivery for e's client,
// creating it.
func (r *Result[H]) clientDelivery(e *entry[H]) int {
	if !r.tableOn {
		for i := range r.Deliveries {
			d := &r.Deliveries[i]
			if d.hash == e.hash && d.Share == "" && d.ClientID == e.key {
				return i
			}
		}
		i := r.newDelivery(e)
		if len(r.Deliveries) >= linearMax {
			r.buildTable()
		}
		return i
	}
	mask := uint64(len(r.table) - 1)
	for j := e.hash & mask; ; j = (j + 1) & mask {
		s := &r.table[j]
		if s.gen != r.gen {
			i := r.newDelivery(e)
			if len(r.Deliveries)*2 > len(r.table) {
				r.buildTable()
			} else {
				*s = dedupSlot{gen: r.gen, d: int32(i)}
			}
			return i
		}
		if d := &r.Deliveries[s.d]; d.hash == e.hash && d.ClientID == e.key {
			return int(s.d)
		}
	}
}

func (r *Result[H]) newDelivery(e *entry[H]) int {
	r.Deliveries = append(r.Deliveries, Delivery[H]{ClientID: e.key, Handle: e.val, hash: e.hash})
	return len(r.Deliveries) - 1
}

// buildTable (re)indexes the ordinary deliveries, growing the table to at
// least four slots per delivery.
func (r *Result[H]) buildTable() {
	need := 64
	for need < 4*len(r.Deliveries) {
		need *= 2
	}
	if len(r.table) < need {
		r.table = make([]dedupSlot, need)
		r.gen = 0
	}
	r.gen++
	if r.gen == 0 {
		clear(r.table)
		r.gen = 1
	}
	r.tableOn = true
	mask := uint64(len(r.table) - 1)
	for i := range r.Deliveries {
		d := &r.Deliveries[i]
		if d.Share != "" {
			continue
		}
		j := d.hash & mask
		for r.table[j].gen == r.gen {
			j = (j + 1) & mask
		}
		r.table[j] = dedupSlot{gen: r.gen, d: int32(i)}
	}
}

// finish groups the matched subscriptions' options by delivery into Subs.
func (r *Result[H]) finish() {
	r.publisher = "" // may be a view of a reused buffer: see Match
	if cap(r.opts) < len(r.raw) {
		r.opts = make([]Options, len(r.raw), 2*len(r.raw))
	}
	opts := r.opts[:len(r.raw)]
	if len(r.raw) == len(r.Deliveries) {
		// One subscription per delivery: raw is already in delivery order.
		for i, m := range r.raw {
			opts[i] = m.e.opts
			r.Deliveries[i].Subs = opts[i : i+1 : i+1]
		}
		return
	}
	// Counting sort by delivery.
	off := int32(0)
	for i := range r.Deliveries {
		d := &r.Deliveries[i]
		d.first = off
		off += d.n
		d.n = 0
	}
	for _, m := range r.raw {
		d := &r.Deliveries[m.d]
		opts[d.first+d.n] = m.e.opts
		d.n++
	}
	for i := range r.Deliveries {
		d := &r.Deliveries[i]
		d.Subs = opts[d.first : d.first+d.n : d.first+d.n]
	}
}
