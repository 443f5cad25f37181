package trie

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConcurrentMatchSeesConsistentSubscriptions runs matchers against
// writers that subscribe and unsubscribe all the time, through every shape
// change (lists becoming arrays and kid tables and back), and checks each
// match against what the writers had finished before it began:
//   - a subscription removed before the match began is never delivered to;
//   - a subscription that existed throughout the match always is.
func TestConcurrentMatchSeesConsistentSubscriptions(t *testing.T) {
	const topic = "t/a/b"
	matching := []string{"t/a/b", "t/+/b", "t/#", "#", "+/a/+", "t/a/#", "+/+/+"}
	tr := New[*handle]()

	// Stable subscriptions exist throughout: every match must have them.
	stable := map[string]bool{}
	for i, f := range matching {
		n := 2
		if i == 0 {
			n = entryListMax + 4 // an array from the start
		}
		for j := range n {
			c := fmt.Sprintf("stable-%d-%d", i, j)
			tr.Subscribe(f, c, &handle{c}, Options{SubscriptionID: uint32(i + 1)})
			stable[c] = true
		}
	}
	for j := range 3 {
		c := fmt.Sprintf("member-%d", j)
		tr.Subscribe("$share/sg/t/+/b", c, &handle{c}, Options{QoS: 1})
	}

	// Churn subscriptions: one client each, numbered by incarnation.
	// seq orders writer steps against matches.
	const maxInc = 1 << 20
	var (
		seq       atomic.Uint64
		nextInc   atomic.Int64
		addedAt   = make([]atomic.Uint64, maxInc) // seq after Subscribe returned
		removing  = make([]atomic.Bool, maxInc)   // set before Unsubscribe is called
		removedAt = make([]atomic.Uint64, maxInc) // seq after Unsubscribe returned
		kind      = make([]atomic.Int32, maxInc)  // kindOther, kindShared or kindMatching
		stop      atomic.Bool
		errMu     sync.Mutex
		errs      []string
	)
	fail := func(format string, args ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	const (
		kindOther    = 1 // a filter that does not match topic
		kindShared   = 2 // a member of the shared group
		kindMatching = 3 // an ordinary filter that matches topic
	)
	churnName := func(inc int64) string { return "churn-" + strconv.FormatInt(inc, 10) }

	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			type live struct {
				inc    int64
				filter string
			}
			var lives []live
			for !stop.Load() && nextInc.Load() < maxInc-10 {
				if len(lives) < 40 && rng.IntN(2) == 0 {
					inc := nextInc.Add(1)
					var f string
					switch rng.IntN(4) {
					case 0: // filters that do not match, to make node shapes change
						if rng.IntN(2) == 0 {
							// siblings of "a" under "t" in the tree: its
							// child list becomes a table and back
							f = fmt.Sprintf("t/x%d/+", rng.IntN(30))
						} else {
							// neighbours of "t/a/b" in the exact filters'
							// index, which changes shape the same way
							f = fmt.Sprintf("t/y%d/b", rng.IntN(30))
						}
						kind[inc].Store(kindOther)
					case 1: // more members for the shared group, some leaving again
						f = "$share/sg/t/+/b"
						kind[inc].Store(kindShared)
					default:
						f = matching[rng.IntN(len(matching))]
						kind[inc].Store(kindMatching)
					}
					c := churnName(inc)
					tr.Subscribe(f, c, &handle{c}, Options{})
					addedAt[inc].Store(seq.Add(1))
					lives = append(lives, live{inc, f})
					continue
				}
				if len(lives) == 0 {
					continue
				}
				k := rng.IntN(len(lives))
				l := lives[k]
				lives[k] = lives[len(lives)-1]
				lives = lives[:len(lives)-1]
				removing[l.inc].Store(true)
				if !tr.Unsubscribe(l.filter, churnName(l.inc)) {
					fail("unsubscribe %s %q: not found", churnName(l.inc), l.filter)
				}
				removedAt[l.inc].Store(seq.Add(1))
			}
			for _, l := range lives {
				removing[l.inc].Store(true)
				tr.Unsubscribe(l.filter, churnName(l.inc))
				removedAt[l.inc].Store(seq.Add(1))
			}
		}()
	}

	var matches atomic.Int64
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res Result[*handle]
			for !stop.Load() {
				start := seq.Load()
				hi := nextInc.Load()
				tr.Match(topic, "", &res)
				got := map[string]bool{}
				shared := 0
				for _, d := range res.Deliveries {
					if d.Share != "" {
						shared++
					} else if len(d.Subs) != 1 {
						fail("%s: %d subscriptions, want 1 (one per client here)", d.ClientID, len(d.Subs))
					}
					got[d.ClientID] = true
					if inc, ok := strings.CutPrefix(d.ClientID, "churn-"); ok {
						n, _ := strconv.ParseInt(inc, 10, 64)
						if r := removedAt[n].Load(); r != 0 && r <= start {
							fail("delivered to %s, removed at %d before the match began at %d", d.ClientID, r, start)
						}
						if kind[n].Load() == kindOther {
							fail("delivered to %s, whose filter does not match", d.ClientID)
						}
					}
				}
				if shared != 1 {
					fail("%d shared deliveries, want 1", shared)
				}
				for c := range stable {
					if !got[c] {
						fail("stable subscription %s missed", c)
					}
				}
				// A churn subscription added before the match began and not
				// being removed after it ended existed throughout: it must
				// be there.
				for inc := max(1, hi-300); inc <= hi; inc++ {
					a := addedAt[inc].Load()
					if a == 0 || a > start || kind[inc].Load() != kindMatching || removing[inc].Load() {
						continue
					}
					if !got[churnName(inc)] {
						fail("%s, subscribed at %d before the match began at %d, missed", churnName(inc), a, start)
					}
				}
				matches.Add(1)
			}
		}()
	}

	d := 2 * time.Second
	if testing.Short() {
		d = 300 * time.Millisecond
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	require.Empty(t, errs)
	require.Greater(t, matches.Load(), int64(100))
	t.Logf("%d matches against %d subscribe/unsubscribe pairs", matches.Load(), nextInc.Load())
	require.Equal(t, len(stable)+3, tr.Count())
}

// TestConcurrentLookupWhileNodesChangeShape matches while a writer fills a
// level with children and empties it again, over and over, so that child
// lists become tables and tables are dropped, in the tree and in the exact
// filters' index. A filter whose subscription is present for the whole of a
// match must be found by it.
func TestConcurrentLookupWhileNodesChangeShape(t *testing.T) {
	const kids = 3 * kidListMax
	tr := New[*handle]()
	// gen[k] is odd while filter k is subscribed; a writer bumps it after
	// Subscribe returns and before Unsubscribe is called.
	gen := make([]atomic.Uint64, kids)
	filter := func(k int) string {
		if k%2 == 0 {
			return fmt.Sprintf("p/k%d/+", k) // literal children of p in the tree
		}
		return fmt.Sprintf("q/k%d", k) // the exact index
	}
	topic := func(k int) string {
		if k%2 == 0 {
			return fmt.Sprintf("p/k%d/z", k)
		}
		return fmt.Sprintf("q/k%d", k)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(9, 9))
		for !stop.Load() {
			for _, k := range rng.Perm(kids) {
				tr.Subscribe(filter(k), "c", nil, Options{})
				gen[k].Add(1)
			}
			for _, k := range rng.Perm(kids) {
				gen[k].Add(1)
				tr.Unsubscribe(filter(k), "c")
			}
		}
	}()
	var errs atomic.Int64
	var checked atomic.Int64
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 3))
			var res Result[*handle]
			for !stop.Load() {
				k := rng.IntN(kids)
				g1 := gen[k].Load()
				tr.Match(topic(k), "", &res)
				if g2 := gen[k].Load(); g1 == g2 && g1%2 == 1 {
					checked.Add(1)
					if len(res.Deliveries) != 1 {
						errs.Add(1)
					}
				}
			}
		}()
	}
	d := time.Second
	if testing.Short() {
		d = 200 * time.Millisecond
	}
	time.Sleep(d)
	stop.Store(true)
	wg.Wait()
	require.Zero(t, errs.Load(), "matches missed a filter subscribed throughout")
	require.Greater(t, checked.Load(), int64(100))
}
