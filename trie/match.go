package trie

// Match finds the subscriptions matching topic, a topic name (no wildcards),
// and leaves one Delivery per client and per shared group in res.Deliveries.
//
// publisherID is the publishing client's identifier: subscriptions of that
// client with No Local set are left out [MQTT-3.8.3-3], and the Sticky
// strategy hashes it. Pass "" for messages no client published.
//
// Match keeps neither topic nor publisherID once it returns, so they may be
// views of a connection's read buffer.
//
// Match takes no lock and, once res has grown to fit, allocates nothing. It
// may run concurrently with Subscribe and Unsubscribe: a subscription removed
// before Match began is never in the result, one present throughout always
// is, and one added or removed meanwhile may or may not be.
func (t *Trie[H]) Match(topic, publisherID string, res *Result[H]) {
	res.begin(publisherID, t.strategy)
	// Filters without wildcards: one lookup of the whole topic.
	if n := t.exact.child(topic); n != nil {
		res.collect(n)
	}
	// Filters starting with a wildcard must not match topics starting with
	// '$' [MQTT-4.7.2-1]: the root's wildcard children are skipped for them.
	res.walk(t.tree.root, topic, 0, isDollar(topic))
	res.finish()
}

// walk matches the levels of topic from byte start under n. noWild skips n's
// wildcard children (the $ rule at the root).
func (r *Result[H]) walk(n *node[H], topic string, start int, noWild bool) {
	for {
		level, next, last := nextLevel(topic, start)
		if !noWild {
			if x := n.ext.Load(); x != nil {
				// "#" matches this level and any after it.
				if h := x.hash.Load(); h != nil {
					r.collect(h)
				}
				// "+" matches exactly this level.
				if p := x.plus.Load(); p != nil {
					if last {
						r.collectEnd(p)
					} else {
						r.walk(p, topic, next, false)
					}
				}
			}
		}
		noWild = false
		c := n.child(level)
		if c == nil {
			return
		}
		if last {
			r.collectEnd(c)
			return
		}
		n, start = c, next
	}
}

// collectEnd collects a node the whole topic led to, and its "#" child:
// "a/#" matches "a" too, the "#" standing for the parent level
// (MQTT 3.1.1 section 4.7.1.2, MQTT 5.0 section 4.7.1.2).
func (r *Result[H]) collectEnd(n *node[H]) {
	r.collect(n)
	if x := n.ext.Load(); x != nil {
		if h := x.hash.Load(); h != nil {
			r.collect(h)
		}
	}
}

// collect adds n's subscriptions and one member of each of its shared groups.
func (r *Result[H]) collect(n *node[H]) {
	head := n.subs.Load()
	for e := head; e != nil; e = e.next.Load() {
		r.add(e, n)
	}
	x := n.ext.Load() // loaded after n.subs: see entryListMax
	if x == nil {
		return
	}
	if a := x.subs.Load(); head == nil && a != nil {
		// Top down: see entryArray for why.
		for i := int(a.n.Load()) - 1; i >= 0; i-- {
			if e := a.slots[i].Load(); e != nil {
				r.add(e, n)
			}
		}
	}
	if p := x.shared.Load(); p != nil {
		for _, g := range *p {
			if e, unavailable := g.pick(r.strategy, r.publisher, r.Eligible); e != nil {
				r.addShared(g, e, unavailable)
			}
		}
	}
}
