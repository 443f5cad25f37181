package engine

// FuzzConnection fuzzes the engine rather than the codec: what the broker
// does with sequences of well-framed but odd packets after CONNECT. The
// project's rules it checks: no input makes the broker panic (a panic on
// an event loop ends the process, which the fuzzer reports), the broker
// only ever sends a client packets that client may receive, and a bad
// client never harms another: after every input a fresh, well-behaved
// client must still connect, subscribe, publish at QoS 1 and get its own
// message, and no gauge of the broker's Stats is negative.
//
// The brokers are started once per fuzz process and shared by every
// input (starting one per input would cost more than the input), so
// state carries over from input to input as it does in production:
// persistent sessions of the few client identifiers the inputs use,
// retained messages, delayed wills. A failure may therefore depend on
// earlier inputs; the committed seeds under testdata/fuzz/FuzzConnection
// replay on a fresh broker with `go test -run FuzzConnection`.
//
// Input layout (fuzzInput reads past the end as zeros):
//
//	byte 0: 0x80 raw mode: the rest after the first CONNECT is written as is
//	        0x40 the restricted broker instead of the full one (fuzzServer)
//	then:   a connection config (fuzzConnect) for connection 0
//	then:   operations, one byte each plus their arguments (fuzzConns.run)
//
// Run it with
//
//	go test -run '^$' -fuzz '^FuzzConnection$' -fuzztime 10m -parallel 2 ./engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// fuzzBrokers are the brokers of this test process, started on first use
// and stopped by TestMain (main_test.go). The full one is restarted on
// its store by some inputs (fuzzRestart).
var fuzzBrokers struct {
	once       sync.Once
	full       *Server // every capability, a Store, enhanced authentication
	fullStore  store.Store
	restricted *Server // max QoS 1, no retain, wildcards, shared subscriptions or identifiers
	err        error
	health     atomic.Int64 // numbers the health-check clients
	restarted  time.Time    // the last fuzzRestart
	inputs     []string     // the last fuzzRecent inputs
	errors     syncBuffer   // what the brokers logged at error level: a recovered panic's stack
}

// fuzzPanics fails t if a fuzz broker recovered a panic (guard.go), which
// without the guard would have ended the process.
func fuzzPanics(t *testing.T) {
	t.Helper()
	for _, s := range []*Server{fuzzBrokers.full, fuzzBrokers.restricted} {
		if n := s.Stats().Panics; n != 0 {
			t.Fatalf("the broker recovered %d panics:\n%s", n, fuzzBrokers.errors.String())
		}
	}
}

// fuzzRecent is how many inputs a failure names (FuzzConnection).
const fuzzRecent = 200

// fuzzRestartEvery spaces the restarts: one takes half a second (gnet's
// shutdown poll), which inputs asking for one at every turn would spend
// instead of fuzzing. A restart asked for sooner is a PINGREQ instead; a
// single input replayed alone always gets its restart.
const fuzzRestartEvery = 5 * time.Second

// fuzzOptions are the options both brokers start from: small limits, so
// that inputs reach them.
func fuzzOptions() Options {
	return Options{
		Listen:            "127.0.0.1:0",
		Loops:             2,
		Logger:            slog.New(slog.NewTextHandler(&fuzzBrokers.errors, &slog.HandlerOptions{Level: slog.LevelError})),
		MaxInflight:       3,
		MaxQueued:         6,
		MaxQueuedInMemory: 2,
		MaxQueuedBytes:    2048,
		MaxPacketSize:     512,
		MaxOutbound:       8 << 10,
		ReceiveMaximum:    4,
		TopicAliasMaximum: 4,
		MaxTopicAliasOut:  2,
		ConnectTimeout:    2 * time.Second,
		Authenticator:     fuzzAuthenticator{},
		Authorizer:        AuthorizerFunc(fuzzAuthorize),
	}
}

// fuzzAuthorize refuses a few things, so that the refusal paths run:
// publishing to r/y, subscribing to a/+/c, and user "u" reading t/b.
func fuzzAuthorize(id Identity, topic string, acc Access) bool {
	switch {
	case acc == Write && topic == "r/y", acc == Subscribe && topic == "a/+/c":
		return false
	case acc == Read && topic == "t/b":
		return id.Username != "u"
	}
	return true
}

// fuzzServer returns the full or the restricted broker.
func fuzzServer(t *testing.T, restricted bool) *Server {
	t.Helper()
	fuzzBrokers.once.Do(func() {
		fuzzBrokers.fullStore = store.NewMemory()
		full := fuzzOptions()
		full.Store = fuzzBrokers.fullStore
		fuzzBrokers.full = New(full)
		if fuzzBrokers.err = fuzzBrokers.full.Start(); fuzzBrokers.err != nil {
			return
		}
		one := byte(1)
		r := fuzzOptions()
		r.MaxQoS = &one
		r.NoRetain = true
		r.NoWildcardSubscriptions = true
		r.NoSharedSubscriptions = true
		r.NoSubscriptionIdentifiers = true
		r.QueueOverflow = DropNewest
		fuzzBrokers.restricted = New(r)
		fuzzBrokers.err = fuzzBrokers.restricted.Start()
	})
	if fuzzBrokers.err != nil {
		t.Fatalf("start fuzz brokers: %v", fuzzBrokers.err)
	}
	if restricted {
		return fuzzBrokers.restricted
	}
	return fuzzBrokers.full
}

// fuzzRestart stops the full broker and starts it again on its store, as
// a broker restarted on its data directory, with options variant v: bit 0
// max QoS 1, bit 1 no wildcard or shared subscriptions or subscription
// identifiers, bit 2 smaller windows and queues than before. Recovery
// then meets sessions, windows and subscriptions made under other limits.
func fuzzRestart(t *testing.T, v byte) *Server {
	t.Helper()
	fuzzPanics(t) // the count goes with the broker
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	if err := fuzzBrokers.full.Stop(ctx); err != nil {
		t.Fatalf("stop the fuzz broker: %v", err)
	}
	// What Stop committed is applied before the new broker reads the
	// store, as restartWith (e2e_persist_test.go) ensures.
	done := make(chan error, 1)
	fuzzBrokers.fullStore.Commit(new(store.Batch), func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatalf("store commit after stop: %v", err)
	}
	o := fuzzOptions()
	o.Store = fuzzBrokers.fullStore
	if v&1 != 0 {
		one := byte(1)
		o.MaxQoS = &one
	}
	if v&2 != 0 {
		o.NoWildcardSubscriptions, o.NoSharedSubscriptions, o.NoSubscriptionIdentifiers = true, true, true
	}
	if v&4 != 0 {
		o.MaxInflight, o.MaxQueued, o.MaxQueuedInMemory = 1, 2, 1
	}
	fuzzBrokers.full = New(o)
	fuzzBrokers.restarted = time.Now()
	if err := fuzzBrokers.full.Start(); err != nil {
		t.Fatalf("restart the fuzz broker (variant %d): %v", v, err)
	}
	return fuzzBrokers.full
}

// fuzzAuthenticator admits every plain CONNECT and runs a toy enhanced
// authentication for method "fuzz": each step's first data byte says what
// happens (0x00 success, 0x18 continue, anything else that code; no data:
// success). Stateless, so safe for concurrent use.
type fuzzAuthenticator struct{}

func (fuzzAuthenticator) Authenticate(ConnectInfo) codec.ReasonCode { return codec.Success }

func (fuzzAuthenticator) StartAuth(method string, _ ConnectInfo) AuthExchange {
	if method != "fuzz" {
		return nil
	}
	return fuzzExchange{}
}

type fuzzExchange struct{}

func (fuzzExchange) Step(data []byte) ([]byte, codec.ReasonCode) {
	if len(data) == 0 {
		return nil, codec.Success
	}
	return []byte{data[0]}, codec.ReasonCode(data[0])
}

// fuzzInput reads the fuzz input; past its end it reads zeros.
type fuzzInput struct {
	b []byte
}

func (in *fuzzInput) done() bool { return len(in.b) == 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	v := in.b[0]
	in.b = in.b[1:]
	return v
}

func (in *fuzzInput) u16() uint16 { return uint16(in.byte())<<8 | uint16(in.byte()) }

func (in *fuzzInput) bytes(n int) []byte {
	n = min(n, len(in.b))
	v := in.b[:n]
	in.b = in.b[n:]
	return v
}

// What inputs choose from: a few client identifiers (so that sessions are
// taken over and resumed), topic names and filters, valid and not.
var (
	fuzzClientIDs = []string{"fa", "fb", "fc", ""}
	fuzzTopics    = []string{"t", "t/a", "t/b", "r/x", "a/b/c", "", "t/+", "#", "$SYS/x", "$share/g/t", "t/\x00", "w/will", "t/a/b/c/d/e/f/g", "\xff", "r/y", "t/ä"}
	fuzzFilters   = []string{"t/#", "#", "+", "t/+", "$share/g/t/#", "$share/g/#", "$share/h/t/a", "$share/g", "$share//t",
		"r/x", "a/+/c", "t/a", "", "t/#/x", "$SYS/#", "w/#", "$share/g/+/a", "t/a+", "r/#", "+/+", "$share/+/t", "t/\x00", "\xff", "$share/g/r/x"}
	fuzzAuthMethods = []string{"fuzz", "other"}
	fuzzExpiries    = []uint32{0, 1, 30, 0xFFFFFFFF}
)

// fuzzTrace logs every packet of every input (LOOPMQ_FUZZ_TRACE=1), for
// reading what a failing input does.
var fuzzTrace = os.Getenv("LOOPMQ_FUZZ_TRACE") != ""

func pick[T any](list []T, b byte) T { return list[int(b)%len(list)] }

// fuzzConnect builds a CONNECT from the input. Config byte c:
//
//	bits 0-1: 0,1 5.0; 2 3.1.1; 3 3.1
//	bit 2:    clean start    bits 3-4: client identifier
//	bit 5:    a will         bit 6: a user name and password
//	bit 7:    5.0 properties follow (a byte e, see below)
func fuzzConnect(in *fuzzInput) *codec.Connect {
	c := in.byte()
	p := &codec.Connect{Version: codec.V5, CleanStart: c&0x04 != 0, ClientID: []byte(pick(fuzzClientIDs, c>>3&3))}
	switch c & 3 {
	case 2:
		p.Version = codec.V311
	case 3:
		p.Version = codec.V31
	}
	if c&0x40 != 0 {
		p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, []byte("u"), true, []byte("p")
	}
	var e byte
	if c&0x80 != 0 {
		e = in.byte()
	}
	if c&0x20 != 0 {
		w := in.byte()
		p.WillFlag = true
		p.Will.QoS, p.Will.Retain = w&3, w&4 != 0
		p.Will.Topic, p.Will.Payload = []byte(pick(fuzzTopics, w>>3)), []byte("will")
		if e&0x80 != 0 {
			p.Will.Properties.Present.Add(codec.PropWillDelay)
			p.Will.Properties.WillDelay = uint32(w >> 7) // 0 or 1 s
			p.Will.Properties.MessageExpiry = uint32(w>>6) & 1
		}
	}
	// e: bits 0-1 session expiry; 2 receive maximum; 3 topic alias
	// maximum; 4 maximum packet size; 5 authentication method (6 picks
	// it); 7 will properties.
	props := &p.Properties
	if e&3 != 0 {
		props.Present.Add(codec.PropSessionExpiry)
		props.SessionExpiry = fuzzExpiries[e&3]
	}
	if e&0x04 != 0 {
		props.Present.Add(codec.PropReceiveMaximum)
		props.ReceiveMaximum = uint16(in.byte() % 4) // 0 is a protocol error
	}
	if e&0x08 != 0 {
		props.Present.Add(codec.PropTopicAliasMaximum)
		props.TopicAliasMaximum = uint16(in.byte() % 4)
	}
	if e&0x10 != 0 {
		props.Present.Add(codec.PropMaximumPacketSize)
		props.MaximumPacketSize = uint32(in.byte()) * 2 // 0 is a protocol error
	}
	if e&0x20 != 0 {
		props.AuthMethod = []byte(pick(fuzzAuthMethods, e>>6))
		if d := in.byte(); d != 0xFF {
			props.AuthData = []byte{d}
		}
	}
	return p
}

// fuzzPublish builds a PUBLISH from the input (op 0).
func fuzzPublish(in *fuzzInput) *codec.Publish {
	f := in.byte()
	p := &codec.Publish{QoS: f & 3, Retain: f&4 != 0, Dup: f&8 != 0, Topic: []byte(pick(fuzzTopics, f>>4))}
	a := in.byte()
	if a&0x08 != 0 {
		p.Properties.Present.Add(codec.PropTopicAlias)
		p.Properties.TopicAlias = uint16(a & 7) // 0 and above 4 are protocol errors
		if a&0x10 != 0 {
			p.Topic = nil
		}
	}
	if a&0x20 != 0 {
		p.Properties.MessageExpiry = 1
	}
	if a&0x40 != 0 {
		p.Properties.PayloadFormat = 1
		p.Properties.ResponseTopic = []byte(pick(fuzzTopics, a))
	}
	if a&0x80 != 0 {
		p.Properties.User = []codec.UserProperty{{Key: []byte("k"), Value: []byte("v")}}
	}
	if a&0x07 == 7 && a&0x08 == 0 {
		p.Properties.SubscriptionIDs = []uint32{1} // not allowed from a client
	}
	if p.QoS > 0 {
		p.PacketID = in.u16() % 8
	}
	n := int(in.byte())
	if n > 200 {
		n = (n - 200) * 40 // up to 2200 bytes: beyond MaxPacketSize
	}
	p.Payload = make([]byte, n)
	if n > 0 && f&0x08 != 0 && p.Properties.PayloadFormat == 1 {
		p.Payload[0] = 0xFF // not UTF-8
	}
	return p
}

// fuzzSubscribe builds a SUBSCRIBE from the input (op 5, its high bits).
func fuzzSubscribe(in *fuzzInput, op byte) *codec.Subscribe {
	s := &codec.Subscribe{PacketID: in.u16() % 8}
	for range op >> 4 & 3 {
		f, o := in.byte(), in.byte()
		s.Subscriptions = append(s.Subscriptions, codec.Subscription{Filter: []byte(pick(fuzzFilters, f)),
			QoS: o & 3, NoLocal: o&4 != 0, RetainAsPublished: o&8 != 0, RetainHandling: o >> 4 & 3})
	}
	if op&0x40 != 0 {
		s.Properties.Present.Add(codec.PropSubscriptionID)
		s.Properties.SubscriptionIDs = []uint32{uint32(in.byte() % 3)} // 0 is a protocol error
	}
	return s
}

// fuzzMaxSleep bounds the time an input spends in sleep operations.
const fuzzMaxSleep = 30 * time.Millisecond

// fuzzConns are an input's connections; the current one gets the packets.
type fuzzConns struct {
	t   *testing.T
	srv *Server
	all [3]*fuzzConn
	cur int
}

// open dials connection i and sends a CONNECT read from the input, then
// waits for the broker's answer (bounded), so that takeovers between the
// input's connections happen in input order.
func (fc *fuzzConns) open(i int, in *fuzzInput) {
	c, err := dialFuzz(fc.srv.Addr())
	if err != nil {
		fc.t.Fatalf("%v", err)
	}
	fc.all[i] = c
	if fuzzTrace {
		c.trace = func(format string, args ...any) { fc.t.Logf("conn %d "+format, append([]any{i}, args...)...) }
	}
	p := fuzzConnect(in)
	c.connectSent(p)
	c.send(p)
	if err := c.readUntil(time.Now().Add(fuzzConnackWait), false, codec.CONNACK, codec.AUTH); err != nil && err != errBarrierTimeout {
		fc.t.Fatalf("connection %d: %v", i, err)
	}
}

// run performs the operations of the input on the connections.
//
// Operation byte o, its low nibble:
//
//	0     PUBLISH (fuzzPublish)
//	1-4   PUBACK, PUBREC, PUBREL, PUBCOMP
//	5, 6  SUBSCRIBE (fuzzSubscribe), UNSUBSCRIBE
//	7     PINGREQ; with bit 7, on the full broker: restart it (fuzzRestart,
//	      at most every fuzzRestartEvery) and open connection 0 again
//	8, 9  DISCONNECT, AUTH
//	10    a second CONNECT
//	11    raw bytes
//	12    switch connection (open it if it is not open)
//	13    read and acknowledge everything (a barrier)
//	14    drop the socket without DISCONNECT
//	15    sleep up to 15 ms (fuzzMaxSleep in all)
func (fc *fuzzConns) run(in *fuzzInput) {
	var slept time.Duration
	for ops := 0; !in.done() && ops < 64; ops++ {
		o := in.byte()
		c := fc.all[fc.cur]
		switch o & 0x0F {
		case 0:
			c.send(fuzzPublish(in))
		case 1, 2, 3, 4:
			a := &codec.Ack{PacketType: codec.PUBACK + codec.Type(o&0x0F-1), PacketID: in.u16() % 8}
			if o&0x10 != 0 {
				a.ReasonCode = codec.ReasonCode(in.byte())
			}
			c.send(a)
		case 5:
			c.send(fuzzSubscribe(in, o))
		case 6:
			u := &codec.Unsubscribe{PacketID: in.u16() % 8}
			for range o >> 4 & 3 {
				u.Filters = append(u.Filters, []byte(pick(fuzzFilters, in.byte())))
			}
			c.send(u)
		case 7:
			if o&0x80 == 0 || fc.srv != fuzzBrokers.full || time.Since(fuzzBrokers.restarted) < fuzzRestartEvery {
				c.send(&codec.Pingreq{})
				break
			}
			for i, k := range fc.all {
				if k != nil {
					k.kill()
					fc.all[i] = nil
				}
			}
			fc.srv = fuzzRestart(fc.t, o>>4&7)
			fc.cur = 0
			fc.open(0, in)
		case 8:
			d := &codec.Disconnect{ReasonCode: codec.ReasonCode(in.byte())}
			if o&0x10 != 0 {
				d.Properties.Present.Add(codec.PropSessionExpiry)
				d.Properties.SessionExpiry = pick(fuzzExpiries, o>>5)
			}
			c.send(d)
		case 9:
			a := &codec.Auth{ReasonCode: codec.ReasonCode(in.byte())}
			a.Properties.AuthMethod = []byte(pick(fuzzAuthMethods, o>>4))
			if o&0x20 != 0 {
				a.Properties.AuthData = []byte{in.byte()}
			}
			c.send(a)
		case 10:
			p := fuzzConnect(in)
			c.send(p)
		case 11:
			c.writeRaw(in.bytes(int(in.byte())))
		case 12:
			fc.cur = int(o>>4) % len(fc.all)
			if k := fc.all[fc.cur]; k == nil || k.closed {
				fc.open(fc.cur, in)
			}
		case 13:
			if err := c.barrier(true); err != nil && err != errBarrierTimeout {
				fc.t.Fatalf("connection %d: %v", fc.cur, err)
			}
		case 14:
			c.kill()
		case 15:
			d := min(time.Duration(o>>4)*time.Millisecond, fuzzMaxSleep-slept)
			time.Sleep(d)
			slept += d
		}
	}
}

// finish waits until the broker handled everything sent (or closed the
// connection, or a bound passed), checking what it sent, and closes the
// connections.
func (fc *fuzzConns) finish() {
	for i, c := range fc.all {
		if c == nil {
			continue
		}
		err := c.barrier(false)
		c.kill()
		if err != nil && err != errBarrierTimeout {
			fc.t.Fatalf("connection %d: %v", i, err)
		}
	}
}

func FuzzConnection(f *testing.F) {
	fuzzAddSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		// A failure may depend on what earlier inputs left behind: it
		// names the last ones, to replay in order.
		if len(fuzzBrokers.inputs) == fuzzRecent {
			fuzzBrokers.inputs = fuzzBrokers.inputs[1:]
		}
		fuzzBrokers.inputs = append(fuzzBrokers.inputs, fmt.Sprintf("%q", data))
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("this and the inputs before it in this process, oldest first:\n%s", strings.Join(fuzzBrokers.inputs, "\n"))
			}
		})
		in := &fuzzInput{b: data}
		mode := in.byte()
		fc := &fuzzConns{t: t, srv: fuzzServer(t, mode&0x40 != 0)}
		fc.open(0, in)
		if mode&0x80 != 0 {
			fc.all[0].writeRaw(in.b)
		} else {
			fc.run(in)
		}
		fc.finish()
		fuzzPanics(t)
		if err := fuzzHealthy(fc.srv); err != nil {
			t.Fatalf("a well-behaved client after this input: %v", err)
		}
		if err := fuzzGauges(fc.srv); err != nil {
			t.Fatalf("after this input: %v", err)
		}
	})
}

// fuzzHealthy connects a fresh 3.1.1 client to srv that subscribes to its
// own topic at QoS 1, publishes to it at QoS 1 and must get both the
// PUBACK and its message.
func fuzzHealthy(srv *Server) error {
	n := fuzzBrokers.health.Add(1)
	c, err := dialFuzz(srv.Addr())
	if err != nil {
		return err
	}
	defer c.kill()
	deadline := time.Now().Add(e2eWait)
	topic := fmt.Sprintf("health/%d", n)
	p := &codec.Connect{Version: codec.V311, CleanStart: true, ClientID: []byte(fmt.Sprintf("health-%d", n))}
	c.connectSent(p)
	c.send(p)
	want := func(what string, ok func(codec.Packet) bool) error {
		for {
			p, err := c.next(deadline)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
			if ok(p) {
				return nil
			}
		}
	}
	if err := want("CONNACK", func(p codec.Packet) bool {
		ca, ok := p.(*codec.Connack)
		return ok && ca.ReasonCode == codec.Success
	}); err != nil {
		return err
	}
	c.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte(topic), QoS: 1}}})
	if err := want("SUBACK", func(p codec.Packet) bool {
		sa, ok := p.(*codec.Suback)
		return ok && len(sa.ReasonCodes) == 1 && sa.ReasonCodes[0] == 1
	}); err != nil {
		return err
	}
	c.send(&codec.Publish{Topic: []byte(topic), Payload: []byte("ok"), QoS: 1, PacketID: 2})
	var acked, got bool
	if err := want("PUBACK and PUBLISH", func(p codec.Packet) bool {
		switch p := p.(type) {
		case *codec.Ack:
			acked = acked || p.PacketType == codec.PUBACK && p.PacketID == 2
		case *codec.Publish:
			got = got || string(p.Topic) == topic && string(p.Payload) == "ok"
		}
		return acked && got
	}); err != nil {
		return err
	}
	c.send(&codec.Disconnect{})
	return nil
}

// fuzzGauges returns an error when one of srv's gauges stays negative,
// which only an accounting bug can make it. A loop publishes its Inflight
// and Queued changes at most a millisecond late while busy but up to a
// second late while idle (stats.go), so after a session moved between
// loops the sum may be negative for that long: it is read again until
// fuzzGaugeSettle has passed.
func fuzzGauges(srv *Server) error {
	var err error
	for deadline := time.Now().Add(fuzzGaugeSettle); time.Now().Before(deadline); {
		st := srv.Stats()
		err = nil
		for _, g := range []struct {
			name string
			v    int64
		}{{"Connected", st.Connected}, {"Connections", st.Connections}, {"Sessions", int64(st.Sessions)},
			{"Subscriptions", st.Subscriptions}, {"Retained", int64(st.Retained)}, {"Inflight", st.Inflight}, {"Queued", st.Queued}} {
			if g.v < 0 {
				err = fmt.Errorf("gauge %s is %d", g.name, g.v)
			}
		}
		if err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// fuzzGaugeSettle is how long a negative gauge may last (see fuzzGauges).
const fuzzGaugeSettle = 1500 * time.Millisecond

// fuzzStop stops the fuzz brokers, if this process started them.
func fuzzStop() {
	for _, s := range []*Server{fuzzBrokers.full, fuzzBrokers.restricted} {
		if s == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.Stop(ctx)
		cancel()
	}
}
