package engine

// The audit: the broker's promise checked end to end while the churn runs
// (churn_test.go). Two persistent subscribers come and go (a 5.0 one at
// QoS 1, a 3.1.1 one at QoS 2), and publishers of their own send numbered
// QoS 1 and 2 messages, reconnecting now and then. Every message the
// broker acknowledged (PUBACK, or PUBREC for QoS 2) must reach both
// subscribers, and a QoS 2 message the QoS 2 subscriber exactly once
// [MQTT-4.3.3]: it keeps its session's packet identifiers awaiting PUBREL
// across its connections, as a client must.

import (
	"errors"
	"fmt"
	"math/rand"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/internal/mqttclient"
)

const auditPublishers = 3

// audit is what the audit saw: acknowledged messages and receipts.
type audit struct {
	run *churnRun
	mu  sync.Mutex
	// acked: message key ("apub-N/seq") to its QoS, for every PUBLISH the
	// broker acknowledged.
	acked map[string]byte
	// got: per subscriber, message key to the times the client took it
	// as a new message.
	got map[string]map[string]int
}

// auditPublisher publishes numbered messages to audit/N one at a time,
// reconnecting every 10 to 60 messages, until stop. Publisher 0 has a
// persistent session and, as a client must [MQTT-4.4.0-1], finishes on
// the next connection the flow a dropped one left: the PUBLISH again
// with DUP, or the PUBREL (a QoS 2 message must then still arrive once:
// the broker keeps its packet identifier across connections, loops and
// restarts). The others connect with a clean session and give such a
// message up.
func (a *audit) publisher(n int, r *rand.Rand, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	id := fmt.Sprintf("apub-%d", n)
	topic := fmt.Sprintf("audit/%d", n)
	persistent := n == 0
	seq := 0
	var left *auditFlow // persistent: the flow a dropped connection left
	had := false        // persistent: a session was made
	for {
		select {
		case <-stop:
			return
		default:
		}
		ver := []codec.Version{codec.V311, codec.V5}[r.Intn(2)]
		cp := &codec.Connect{Version: ver, ClientID: []byte(id), CleanStart: !persistent}
		if persistent && ver == codec.V5 {
			cp.Properties.SessionExpiry = 300
		}
		c, ca, err := mqttclient.Dial(a.run.addr, cp)
		if err != nil {
			a.connectFailed(id, err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if persistent && had && !ca.SessionPresent {
			a.run.violation("%s: session lost: CONNACK without Session Present", id)
		}
		had = persistent
		ok := true
		if f := left; f != nil {
			left = nil
			switch {
			case !ca.SessionPresent:
				// The flow went with the session (a violation above):
				// given up, as the other publishers do.
			case f.released:
				if ok = c.Send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 1}) == nil; ok {
					ok = a.awaitAck(c, id, f)
				}
			default:
				// Again, with DUP [MQTT-3.3.1-1].
				p := &codec.Publish{Topic: []byte(topic), QoS: f.qos, PacketID: 1, Payload: []byte(f.key), Dup: true}
				if ok = c.Send(p) == nil; ok {
					ok = a.awaitAck(c, id, f)
				}
			}
			if !ok {
				left = f
			}
		}
		for i := 10 + r.Intn(50); ok && i > 0; i-- {
			select {
			case <-stop:
				ok = false
				continue
			default:
			}
			seq++
			f := &auditFlow{key: fmt.Sprintf("%s/%d", id, seq), qos: byte(1 + r.Intn(2))}
			drop := persistent && r.Intn(12) == 0 // leave the flow to the next connection
			f.dropAtRec = drop && f.qos == 2 && r.Intn(2) == 0
			if c.Send(&codec.Publish{Topic: []byte(topic), QoS: f.qos, PacketID: 1, Payload: []byte(f.key)}) != nil ||
				drop && !f.dropAtRec || !a.awaitAck(c, id, f) {
				if persistent {
					left = f
				}
				break
			}
			time.Sleep(time.Duration(r.Intn(3)) * time.Millisecond)
		}
		if r.Intn(2) == 0 {
			_ = c.Send(&codec.Disconnect{})
		}
		_ = c.Close()
	}
}

// auditFlow is a publisher's message in flight: its key and QoS, and
// whether its PUBREC came (the PUBREL is what is left).
type auditFlow struct {
	key       string
	qos       byte
	released  bool
	dropAtRec bool // at PUBREC, leave the PUBREL to the next connection
}

// awaitAck waits for the acknowledgement of f (packet identifier 1) and
// records it; a QoS 2 flow is completed. It reports false when the
// connection should be dropped.
func (a *audit) awaitAck(c *mqttclient.Conn, id string, f *auditFlow) bool {
	key := f.key
	for {
		p, err := c.Next(5 * time.Second)
		if err != nil {
			if a.run.restarts && !isTimeout(err) { // closed by a restart: not acknowledged
				return false
			}
			a.run.violation("%s: no acknowledgement for %s: %v", id, key, err)
			return false
		}
		if shuttingDown(p) {
			return false
		}
		ack, ok := p.(*codec.Ack)
		if !ok || ack.PacketID != 1 {
			a.run.violation("%s: unexpected %+v", id, p)
			return false
		}
		if ack.ReasonCode == codec.PacketIdentifierNotFound && ack.PacketType == codec.PUBCOMP && f.released {
			return true // its PUBREL went on the dropped connection, the PUBCOMP was lost with it
		}
		if ack.ReasonCode >= 0x80 {
			a.run.violation("%s: %v %v for %s", id, ack.PacketType, ack.ReasonCode, key)
			return false
		}
		switch {
		case ack.PacketType == codec.PUBACK && f.qos == 1, ack.PacketType == codec.PUBREC && f.qos == 2 && !f.released:
			a.mu.Lock()
			a.acked[key] = f.qos
			a.mu.Unlock()
			if ack.PacketType == codec.PUBACK {
				return true
			}
			f.released = true
			if f.dropAtRec {
				f.dropAtRec = false
				return false
			}
			if c.Send(&codec.Ack{PacketType: codec.PUBREL, PacketID: 1}) != nil {
				return false
			}
		case ack.PacketType == codec.PUBCOMP && f.released:
			return true
		default:
			a.run.violation("%s: unexpected %v for %s (QoS %d, released %v)", id, ack.PacketType, key, f.qos, f.released)
			return false
		}
	}
}

// auditSubscriber is one persistent subscriber of audit/#: it connects,
// takes what comes for a while, leaves (DISCONNECT or not), stays away a
// while, and again until stop; then it collects what it is owed.
type auditSubscriber struct {
	a        *audit
	id       string
	ver      codec.Version
	qos      byte
	awaitRel map[uint16]string // QoS 2 packet identifiers received, PUBREL not yet: the session's state
	subbed   bool
	// newest is, per publisher and delivered QoS, the highest number
	// received so far: a publisher's messages (one topic, each sent after
	// the previous one was acknowledged) arrive in order the first time,
	// among those of one QoS [MQTT-4.6.0-6] (with a store, a QoS 2 message
	// waits for its packet identifier to be durable, and a QoS 1 one
	// published after it may arrive first).
	newest map[string]int
}

func (s *auditSubscriber) connect() (*mqttclient.Conn, bool) {
	cp := &codec.Connect{Version: s.ver, ClientID: []byte(s.id), CleanStart: false}
	if s.ver == codec.V5 {
		cp.Properties.SessionExpiry = 300
		cp.Properties.ReceiveMaximum = 5
	}
	c, ca, err := mqttclient.Dial(s.a.run.addr, cp)
	if err != nil {
		s.a.connectFailed(s.id, err)
		return nil, false
	}
	if s.subbed && !ca.SessionPresent {
		s.a.run.violation("%s: session lost: CONNACK without Session Present", s.id)
	}
	if !s.subbed {
		if c.Send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("audit/#"), QoS: s.qos}}}) != nil {
			_ = c.Close()
			return nil, false
		}
		s.subbed = true // the SUBACK is read with the rest
	}
	return c, true
}

// take reads for d, acknowledging everything, and reports whether
// anything arrived.
func (s *auditSubscriber) take(c *mqttclient.Conn, d time.Duration) (any bool, ok bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		p, err := c.Next(time.Until(deadline))
		if err != nil {
			if isTimeout(err) {
				return any, true
			}
			return any, false
		}
		if shuttingDown(p) {
			return any, false
		}
		any = true
		switch p := p.(type) {
		case *codec.Publish:
			key := string(p.Payload)
			switch p.QoS {
			case 2:
				if _, dup := s.awaitRel[p.PacketID]; !dup {
					s.awaitRel[p.PacketID] = key
					s.count(key, p.QoS)
				} else if s.awaitRel[p.PacketID] != key {
					s.a.run.violation("%s: packet identifier %d awaiting PUBREL for %s reused for %s", s.id, p.PacketID, s.awaitRel[p.PacketID], key)
				}
				if c.Send(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID}) != nil {
					return any, false
				}
			case 1:
				s.count(key, p.QoS)
				if c.Send(&codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID}) != nil {
					return any, false
				}
			default:
				s.a.run.violation("%s: %s at QoS 0", s.id, key)
			}
		case *codec.Ack:
			if p.PacketType == codec.PUBREL {
				delete(s.awaitRel, p.PacketID)
				if c.Send(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID}) != nil {
					return any, false
				}
			}
		case *codec.Suback:
		default:
			s.a.run.violation("%s: unexpected %v", s.id, p.Type())
		}
	}
	return any, true
}

// connectFailed reports a failed connect of client id, unless the broker
// was down for a restart.
func (a *audit) connectFailed(id string, err error) {
	if a.run.restarts && !errors.Is(err, mqttclient.ErrRefused) {
		return
	}
	a.run.violation("%s: connect: %v", id, err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// shuttingDown reports whether p is a 5.0 DISCONNECT Server shutting down,
// which a broker stopping sends.
func shuttingDown(p codec.Packet) bool {
	d, ok := p.(*codec.Disconnect)
	return ok && d.ReasonCode == codec.ServerShuttingDown
}

func (s *auditSubscriber) count(key string, qos byte) {
	s.a.mu.Lock()
	s.a.got[s.id][key]++
	first := s.a.got[s.id][key] == 1
	s.a.mu.Unlock()
	pub, num, ok := strings.Cut(key, "/")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		s.a.run.violation("%s: a message that is not the audit's: %q", s.id, key)
		return
	}
	k := pub + "/" + strconv.Itoa(int(qos))
	if first && n < s.newest[k] {
		s.a.run.violation("%s: %s arrived at QoS %d after %s/%d [MQTT-4.6.0-6]", s.id, key, qos, pub, s.newest[k])
	}
	s.newest[k] = max(s.newest[k], n)
}

func (s *auditSubscriber) churn(r *rand.Rand, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, ok := s.connect()
		if !ok {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		s.take(c, time.Duration(50+r.Intn(350))*time.Millisecond)
		if r.Intn(2) == 0 {
			_ = c.Send(&codec.Disconnect{})
		}
		_ = c.Close()
		time.Sleep(time.Duration(r.Intn(200)) * time.Millisecond)
	}
}

// collect connects once more and takes what is owed, until a second
// passes with nothing (at most 20 s).
func (s *auditSubscriber) collect() {
	c, ok := s.connect()
	if !ok {
		return
	}
	defer func() {
		_ = c.Send(&codec.Disconnect{})
		_ = c.Close()
	}()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); {
		any, ok := s.take(c, time.Second)
		if !ok || !any {
			return
		}
	}
}

// newAudit starts the audit's subscribers, and its publishers once both
// subscribers have subscribed; stop ends them, and the returned function
// waits for them, collects, and checks.
func newAudit(run *churnRun, seed int64, stop <-chan struct{}) (check func() []string) {
	a := &audit{run: run, acked: map[string]byte{}, got: map[string]map[string]int{}}
	subs := []*auditSubscriber{
		{a: a, id: "audit-sub-5", ver: codec.V5, qos: 1, awaitRel: map[uint16]string{}, newest: map[string]int{}},
		{a: a, id: "audit-sub-3", ver: codec.V311, qos: 2, awaitRel: map[uint16]string{}, newest: map[string]int{}},
	}
	var wg sync.WaitGroup
	for i, s := range subs {
		a.got[s.id] = map[string]int{}
		// Subscribed before anything is published: every message is owed.
		c, ok := s.connect()
		if ok {
			s.take(c, 100*time.Millisecond)
			_ = c.Close()
		}
		wg.Add(1)
		go s.churn(rand.New(rand.NewSource(seed+100+int64(i))), stop, &wg)
	}
	for n := range auditPublishers {
		wg.Add(1)
		go a.publisher(n, rand.New(rand.NewSource(seed+200+int64(n))), stop, &wg)
	}
	return func() []string {
		wg.Wait()
		for _, s := range subs {
			s.collect()
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		var bad []string
		keys := make([]string, 0, len(a.acked))
		for k := range a.acked {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, s := range subs {
			lost, twice := 0, 0
			var first []string
			for _, k := range keys {
				n := a.got[s.id][k]
				switch {
				case n == 0:
					lost++
					if len(first) < 5 {
						first = append(first, k)
					}
				case n > 1 && s.qos == 2 && a.acked[k] == 2:
					twice++
					if len(first) < 5 {
						first = append(first, k+" twice")
					}
				}
			}
			if lost+twice > 0 {
				bad = append(bad, fmt.Sprintf("%s: of %d acknowledged messages %d never arrived, %d QoS 2 ones arrived more than once: %s",
					s.id, len(keys), lost, twice, strings.Join(first, ", ")))
			}
		}
		run.mu.Lock()
		run.audited = len(keys)
		run.mu.Unlock()
		return bad
	}
}

// auditIDs are the client identifiers of the audit's persistent sessions:
// its subscribers' and publisher 0's.
func auditIDs() []string { return []string{"audit-sub-5", "audit-sub-3", "apub-0"} }
