// Package trie holds loopmq's two topic indexes: Trie, the subscriptions
// every PUBLISH is routed through, and Retained, the retained messages a new
// subscription is sent.
//
// # What it owns
//
// The trie owns the subscription structure: which client is subscribed to
// which filter with which options, shared subscription groups and the choice
// of a member, and the retained index's topic tree. It does not own sessions,
// messages or delivery: subscriptions carry an opaque engine handle (Trie[H])
// and retained entries an opaque engine value (Retained[V]), both stored and
// handed back untouched. It validates nothing: filters and topics come from
// the codec already checked, and here any string is only guaranteed not to
// panic. It imports no other loopmq package and nothing but the standard
// library and github.com/cespare/xxhash/v2.
//
// # Matching rules
//
// Per MQTT 3.1.1 and 5.0 section 4.7: "+" matches one level, "#" the level
// it stands on and every level below, including none ("a/#" matches "a");
// empty levels are levels ("a//b", "/a", "a/"); a filter starting with a
// wildcard does not match a topic starting with '$' [MQTT-4.7.2-1].
// $share/{ShareName}/{filter} subscribes to a shared group (MQTT 5.0 section
// 4.8.2): each matching message goes to one member, chosen by a
// ShareStrategy, skipping members the engine reports unable to take it.
// A client whose filters overlap gets one Delivery, with the highest granted
// QoS [MQTT-3.3.4-2] and the options of every matching subscription, for
// their Subscription Identifiers [MQTT-3.3.4-3]; its shared deliveries are
// separate. Subscriptions with No Local are not matched for their own
// client's messages [MQTT-3.8.3-3].
//
// # Layout
//
// Filters without wildcards, the bulk of a device fleet (devices/{id}/cmd),
// are kept apart from the tree: one node per filter, in a hash table keyed
// by the whole filter. Matching a topic looks it up there once, then walks
// the tree, which holds only the filters with a wildcard and so stays small
// and cache-resident however many devices there are.
//
// A node is 48 bytes. Its children are a list threaded through the children
// (no allocation) up to 8, then an open-addressing table keyed by xxhash of
// the label. Its subscribers are a list threaded through the entries up to 8,
// then a dense array with a writer-only xxhash index of the client
// identifiers, so that subscribe and unsubscribe stay O(1) with 100,000
// clients on one filter and a fan-out reads them in order. Wildcard children,
// large sets and shared groups hang off an extension only the nodes that need
// it allocate. A new filter's node is allocated together with its first
// subscription. Unsubscribe prunes every node it leaves empty: a trie whose
// subscriptions are all gone is back to a bare root.
//
// # Concurrency: readers take no lock
//
// Match, Get, Retained.Match, PickShared and Count run on any goroutine, any
// number at once, and take no lock and write no shared memory (bar a shared
// group's round-robin counter). Subscribe, Unsubscribe, Set and Delete
// serialize on one mutex per index, which readers never touch.
//
// Everything a reader follows is an atomic pointer to data that is either
// immutable once published (labels, entries: a changed subscription is a new
// entry swapped in) or changed only in ways a reader tolerates mid-walk:
//   - lists: new items are linked in at the head; a removed item keeps its
//     next pointer, so a reader standing on it walks on;
//   - a list that outgrows itself is copied into a table or array, which is
//     published before the list is cleared, and the old list is never
//     touched again: a reader on it sees a complete, frozen snapshot;
//   - hash tables write a slot's tag before its pointer, delete with a
//     tombstone, and are rebuilt into a new table rather than in place;
//   - arrays remove by moving the last entry into the hole, stored before
//     the last slot is cleared, and readers scan top-down, so an entry that
//     stays is never missed (it can be seen twice; Result drops the copy).
//
// The guarantee, checked by TestConcurrentMatchSeesConsistentSubscriptions
// under -race: a subscription removed before a Match began is never in its
// result, one present throughout always is, one added or removed meanwhile
// may or may not be.
//
// Why not locks. The broker routes every PUBLISH through Match from several
// event loops at once, and subscribers come and go all the time. A
// sync.RWMutex around the trie makes every Match write the mutex's reader
// count, a cache line that then moves between cores twice per match, and a
// writer stops all matching while it waits and works. Sharding by first level
// does not help the common case, where one level ("devices") carries the
// whole fleet. A result cache with a generation counter, as nats-server's
// sublist.go keeps, is still read under a lock and is emptied by every
// subscribe; with a million distinct device topics it would rarely hit.
// Copy-on-write of the whole path would make subscribing to a
// 500,000-child level copy 500,000 pointers. Lock-free readers with one
// writer at a time cost nothing on the read path but atomic loads, which on
// amd64 and arm64 are plain loads.
//
// BenchmarkMatchParallel and BenchmarkMatchParallelWithWriter measure this
// design against the RWMutex one (run them with -cpu 1,2). On the 2-core
// development machine, best of 8 runs: without writers both scale (lock-free
// 1.9x from one goroutine to two; RWMutex 1.7x on a cache-hot match, where
// it costs 13% more per match); with a writer subscribing and unsubscribing
// without pause, matches under the RWMutex took 2.7 times as long.
//
// The costs: writers serialize (a subscribe holds the mutex for about a
// microsecond, and growing a large table is done by one subscribe in one
// go); memory a writer unlinks is reclaimed by the garbage collector once no
// reader holds it, which needs no extra machinery in Go.
//
// # Results
//
// A Result belongs to one goroutine (an event loop) and is reused for every
// Match: once its buffers have grown to the largest fan-out seen, matching
// allocates nothing. Deliveries and their Subs are valid until the Result's
// next Match.
package trie
