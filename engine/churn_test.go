package engine

// A randomized soak: many clients coming and going at once on a few client
// identifiers, so that the paths between connections run concurrently as
// no scripted test makes them: a client id taken over on another loop while
// its old connection is still sending, wills with and without a delay,
// shared groups losing members with messages in flight, persistent
// sessions queueing while offline, acknowledgements withheld, Receive
// Maximum and Maximum Packet Size and topic aliases of every size, and
// clients authenticating, re-authenticating and being refused, and
// publishing and subscribing where they may not (churn_auth_test.go).
//
// Every connection checks what it receives against the rules a client can
// check by itself (churnConn.check). At the end every session is ended and
// every retained message cleared, and the broker must give everything back:
// no connection, session, subscription, message in flight or queued, no
// goroutine, and no heap beyond what a short warm-up run left. A variant
// restarts the broker on its data directory while the clients run
// (churn_restart_test.go).
//
// LOOPMQ_CHURN=DURATION runs each variant for that long instead of a few
// seconds (`make soak` sets it), LOOPMQ_CHURN_SEED fixes the seed; the seed
// of a failed run is in its log.

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

const (
	churnIDs     = 24 // client identifiers shared by the workers: takeovers happen
	churnWorkers = 10
	churnTopics  = 6
)

// churnFilters are what the clients subscribe to: exact, wildcards, shared
// groups on overlapping filters with the same share name.
var churnFilters = []string{
	"churn/0/a", "churn/+/a", "churn/#", "churn/+/+", "churn/will/#",
	"$share/g/churn/+/a", "$share/g/churn/#", "$share/h/churn/+/b",
}

// churnTopic returns topic k of the set the clients publish to.
func churnTopic(k int) string {
	if k%2 == 0 {
		return "churn/" + strconv.Itoa(k/2) + "/a"
	}
	return "churn/" + strconv.Itoa(k/2) + "/b"
}

// churnRun is one soak's shared state: the broker's address and the
// violations the connections found.
type churnRun struct {
	srv  atomic.Pointer[Server] // the broker now: a restart replaces it (server)
	addr string                 // the broker's address, the same across restarts
	// restarts: the broker restarts during the run, so a client that
	// cannot connect tries again and a connection may end at any time.
	restarts bool
	// tlsConf, when set, sends some connections through the broker's TLS
	// and WebSocket listeners (the bridge, engine/bridge.go).
	tlsConf *tls.Config
	mu      sync.Mutex
	errs    []string
	// counts of what happened, for the log
	connects, refused, takenOver, publishes, received, dupsSeen, restarted atomic.Int64
	// what authentication and authorization refused as expected, and
	// re-authentications that succeeded (churn_auth_test.go)
	authRefused, reauthed, reauthRefused, pubDenied, subDenied atomic.Int64
	audited                                                    int // acknowledged messages the audit followed (under mu)
	// left: per client id, the QoS 1/2 PUBLISHes its last connection to
	// end had not acknowledged (packet id to QoS), under mu; a later
	// connection resuming the session may acknowledge them before the
	// broker sends them again (churnConn.ackLeft).
	left map[string]leftAcks
	// gen counts each client id's successful connections (under mu): only
	// what the one just before a connection left is acknowledged there.
	gen map[string]int
}

// leftAcks is what a connection of generation gen left unacknowledged.
type leftAcks struct {
	gen int
	ids map[uint16]byte
}

// leave records what c had not acknowledged when it ended, unless a
// later connection of its client id connected meanwhile (a takeover: what
// c had is that one's to resend). Runs on c's reader, as it ends.
func (c *churnConn) leave() {
	r := c.run
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.gen == 0 || r.gen[c.id] != c.gen {
		return
	}
	m := make(map[uint16]byte, len(c.unacked))
	for id, q := range c.unacked {
		m[id] = q
	}
	r.left[c.id] = leftAcks{gen: c.gen, ids: m}
}

// connected numbers c's connection among its client id's. Runs on c's
// reader, at the CONNACK that accepted it.
func (c *churnConn) connected() {
	r := c.run
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gen == nil {
		r.gen, r.left = map[string]int{}, map[string]leftAcks{}
	}
	r.gen[c.id]++
	c.gen = r.gen[c.id]
}

// ackLeft acknowledges, on a connection that resumed the session, what
// the connection of its client id just before it left unacknowledged,
// before the broker sends it again: the client had those messages, and
// nothing in MQTT forbids acknowledging one before it comes again. One
// the broker sends again before it reads the acknowledgement is answered
// again and not counted unacknowledged (churnConn.early).
func (c *churnConn) ackLeft() {
	r := c.run
	r.mu.Lock()
	l, ok := r.left[c.id]
	delete(r.left, c.id)
	r.mu.Unlock()
	if !ok || l.gen != c.gen-1 {
		return
	}
	c.idMu.Lock()
	c.early = make(map[uint16]bool, len(l.ids))
	for id := range l.ids {
		c.early[id] = true
	}
	c.idMu.Unlock()
	for id, q := range l.ids {
		t := codec.PUBACK
		if q == 2 {
			t = codec.PUBREC
		}
		if c.write(&codec.Ack{PacketType: t, PacketID: id}) != nil {
			return
		}
	}
}

// server returns the broker running now.
func (r *churnRun) server() *Server { return r.srv.Load() }

// dial opens a connection to the broker: plain TCP, or, with tlsConf, one
// time in six through its TLS listener and one in six through its
// WebSocket one.
func (r *churnRun) dial(rnd *rand.Rand) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	k := -1 // plain TCP
	if r.tlsConf != nil {
		k = rnd.Intn(6)
	}
	switch k {
	case 0:
		nc, err := d.Dial("tcp", r.server().TLSAddr().String())
		if err != nil {
			return nil, err
		}
		tc := tls.Client(nc, r.tlsConf)
		_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			_ = nc.Close()
			return nil, err
		}
		_ = tc.SetDeadline(time.Time{})
		return tc, nil
	case 1:
		wd := ws.Dialer{Protocols: []string{"mqtt"}, Timeout: 5 * time.Second}
		c, br, _, err := wd.Dial(context.Background(), "ws://"+r.server().WSAddr().String()+"/mqtt")
		if err != nil {
			return nil, err
		}
		if br != nil {
			ws.PutReader(br)
		}
		return &wsStream{Conn: c, rd: wsutil.NewClientSideReader(c)}, nil
	}
	return d.Dial("tcp", r.addr)
}

func (r *churnRun) violation(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.errs) < 50 {
		r.errs = append(r.errs, fmt.Sprintf(format, args...))
	}
}

// churnConn is one client connection of a soak. Its reader goroutine owns
// the receive side and the state it checks; writes go through mu.
type churnConn struct {
	run  *churnRun
	id   string
	conn net.Conn
	ver  codec.Version
	mu   sync.Mutex // serializes writes

	// Limits this client announced in CONNECT (5.0), and its ack policy.
	recvMax   int // 0: none announced (65,535)
	aliasMax  uint16
	maxPacket int
	withhold  bool // never acknowledge what the broker sends
	ackEarly  bool // on a resumed session, acknowledge what the last connection left (ackLeft)

	// Reader-owned state.
	present  bool // CONNACK's Session Present: the broker may resume QoS 2 flows of an earlier connection
	aliases  map[uint16]string
	unacked  map[uint16]byte // packet ids of the broker's QoS 1/2 PUBLISHes not yet acknowledged (value: QoS)
	released map[uint16]bool // QoS 2 ids we sent PUBREC for, awaiting PUBREL

	trace []string // the reader's last events, for a violation's report

	connack chan *codec.Connack
	done    chan struct{}

	// Publisher side: packet identifiers of our QoS 1/2 PUBLISHes in
	// flight, added by the session's goroutine and removed by the reader
	// (idMu).
	idMu      sync.Mutex
	ours      map[uint16]byte
	nextID    uint16
	serverMax int // the broker's Receive Maximum
	// early: packet ids this connection acknowledged before the broker
	// sent them again (ackLeft), under idMu; gen: its number among its
	// client id's connections (connected).
	early map[uint16]bool
	gen   int

	// Authentication and authorization (churn_auth_test.go). user is the
	// identity the broker authorizes the connection as, reauth a
	// re-authentication in progress (both under authMu); scram is
	// CONNECT's SCRAM exchange, nil for a user name and password;
	// wantCode the CONNACK code the client expects for its credentials
	// and will. oursExp (under idMu) is what the client expects of the
	// broker's decision on each of its PUBLISHes in flight, subsExp (under
	// idMu) of each SUBSCRIBE's filters.
	authMu   sync.Mutex
	user     string
	reauth   *churnReauth
	scram    *scramClient
	wantCode codec.ReasonCode
	oursExp  map[uint16]churnExpect
	subsExp  map[uint16][]churnSubExpect
	// closing (reader) says why the broker must close the connection
	// now: it sent a DISCONNECT or a refusing CONNACK.
	closing string
}

func (c *churnConn) write(p codec.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_, err := c.conn.Write(p.AppendTo(nil, c.ver))
	return err
}

// read runs until the connection closes, answering and checking every
// packet.
func (c *churnConn) read() {
	defer close(c.done)
	defer c.leave()
	buf := make([]byte, 0, 64<<10)
	tmp := make([]byte, 32<<10)
	gotConnack := false
	for {
		h, n, err := codec.Split(buf, 0)
		if err != nil {
			c.run.violation("%s: unframeable bytes from the broker: %v", c.id, err)
			return
		}
		if n == 0 {
			m, err := c.conn.Read(tmp)
			if m == 0 && err != nil {
				if c.closing != "" && isTimeout(err) {
					c.run.violation("%s: connection still open 5 s after %s", c.id, c.closing)
				}
				return
			}
			buf = append(buf, tmp[:m]...)
			continue
		}
		frame := append([]byte(nil), buf[:n]...)
		buf = append(buf[:0], buf[n:]...)
		if c.maxPacket > 0 && n > c.maxPacket {
			c.run.violation("%s: a %v of %d bytes over the client's Maximum Packet Size %d [MQTT-3.1.2-24]", c.id, h.Type, n, c.maxPacket)
		}
		p, err := codec.Decode(frame, c.ver)
		if err != nil {
			c.run.violation("%s: undecodable %v from the broker (v%d, present %v): %v: % x", c.id, h.Type, c.ver, c.present, err, frame[:min(len(frame), 48)])
			return
		}
		if c.closing != "" {
			c.run.violation("%s: %+v after %s %v", c.id, p, c.closing, c.trace)
			return
		}
		if ca, ok := p.(*codec.Connack); ok {
			if gotConnack {
				c.run.violation("%s: a second CONNACK", c.id)
			}
			gotConnack = true
			c.present = ca.SessionPresent || c.ver == codec.V31 // 3.1's CONNACK cannot say
			if ca.ReasonCode != 0 {
				c.mustClose("a refusing CONNACK [MQTT-3.2.2-5] [MQTT-3.2.2-7]")
			}
			if ca.ReasonCode == 0 {
				c.checkConnackAuth(ca)
				c.connected()
				if ca.SessionPresent && c.ackEarly {
					c.ackLeft() // before the broker's first PUBLISH is read
				}
			}
			c.connack <- ca
			continue
		}
		if a, ok := p.(*codec.Auth); ok && !gotConnack {
			c.onAuth(a, false) // CONNECT's exchange
			continue
		}
		if !gotConnack {
			c.run.violation("%s: %v before CONNACK", c.id, p.Type())
			return
		}
		c.check(p)
	}
}

// mustClose notes that the broker must close the connection now (after
// why): a packet after it, or no close within 5 s, is a violation. Runs on
// c's reader.
func (c *churnConn) mustClose(why string) {
	c.closing = why
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
}

// check answers p and checks it against the rules a client can see.
func (c *churnConn) check(p codec.Packet) {
	if len(c.trace) > 40 {
		c.trace = c.trace[1:]
	}
	switch p := p.(type) {
	case *codec.Publish:
		c.trace = append(c.trace, fmt.Sprintf("PUBLISH %d q%d dup %v", p.PacketID, p.QoS, p.Dup))
	case *codec.Ack:
		c.trace = append(c.trace, fmt.Sprintf("%v %d", p.PacketType, p.PacketID))
	default:
		c.trace = append(c.trace, p.Type().String())
	}
	switch p := p.(type) {
	case *codec.Publish:
		c.run.received.Add(1)
		if p.Dup {
			c.run.dupsSeen.Add(1)
		}
		if c.ver == codec.V5 {
			a := p.Properties.TopicAlias
			switch {
			case a == 0 && len(p.Topic) == 0:
				c.run.violation("%s: PUBLISH without topic or alias", c.id)
			case a > c.aliasMax:
				c.run.violation("%s: topic alias %d over the client's maximum %d [MQTT-3.3.2-9]", c.id, a, c.aliasMax)
			case a != 0 && len(p.Topic) == 0:
				if _, ok := c.aliases[a]; !ok {
					c.run.violation("%s: unknown topic alias %d [MQTT-3.3.2-12]", c.id, a)
				}
			case a != 0:
				c.aliases[a] = string(p.Topic)
			}
		}
		topic := string(p.Topic)
		if topic == "" && c.ver == codec.V5 {
			topic = c.aliases[p.Properties.TopicAlias]
		}
		c.checkRead(topic, p.Payload)
		if p.QoS == 0 {
			return
		}
		c.idMu.Lock()
		early := c.early[p.PacketID]
		delete(c.early, p.PacketID)
		c.idMu.Unlock()
		if early {
			// Acknowledged before it came (ackLeft): again now.
			if p.QoS == 1 {
				_ = c.write(&codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID})
			} else {
				c.released[p.PacketID] = true
				_ = c.write(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID})
			}
			return
		}
		if q, ok := c.unacked[p.PacketID]; ok {
			c.run.violation("%s: packet identifier %d reused while QoS %d PUBLISH unacknowledged [MQTT-2.2.1-3]", c.id, p.PacketID, q)
		}
		if _, ok := c.unacked[p.PacketID]; !ok {
			c.unacked[p.PacketID] = p.QoS
		}
		limit := c.recvMax
		if limit == 0 {
			limit = 65535
		}
		if len(c.unacked) > limit {
			if len(c.unacked) == limit+1 {
				c.run.violation("%s: broker's window: %s", c.id, sessionWindow(c.run.server(), c.id))
			}
			c.run.violation("%s: %d QoS 1/2 PUBLISHes unacknowledged, over the client's Receive Maximum %d [MQTT-3.3.4-9] (present %v, this one: id %d dup %v qos %d topic %q) %v", c.id, len(c.unacked), limit, c.present, p.PacketID, p.Dup, p.QoS, p.Topic, c.trace)
		}
		if c.withhold {
			return
		}
		if p.QoS == 1 {
			delete(c.unacked, p.PacketID)
			_ = c.write(&codec.Ack{PacketType: codec.PUBACK, PacketID: p.PacketID})
			return
		}
		c.released[p.PacketID] = true
		_ = c.write(&codec.Ack{PacketType: codec.PUBREC, PacketID: p.PacketID})
	case *codec.Ack:
		switch p.PacketType {
		case codec.PUBREL:
			if !c.released[p.PacketID] && !c.present {
				_, un := c.unacked[p.PacketID]
				c.run.violation("%s: PUBREL %d for no PUBREC (v%d present %v withhold %v unacked %v)", c.id, p.PacketID, c.ver, c.present, c.withhold, un)
			}
			delete(c.released, p.PacketID)
			delete(c.unacked, p.PacketID)
			_ = c.write(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: p.PacketID})
		case codec.PUBACK, codec.PUBCOMP:
			c.idMu.Lock()
			q, ok := c.ours[p.PacketID]
			exp := c.oursExp[p.PacketID]
			delete(c.ours, p.PacketID)
			delete(c.oursExp, p.PacketID)
			c.idMu.Unlock()
			if !ok || (p.PacketType == codec.PUBACK) != (q == 1) {
				c.run.violation("%s: %v %d for no such PUBLISH in flight", c.id, p.PacketType, p.PacketID)
			} else if p.PacketType == codec.PUBACK {
				c.checkPubAck(p.PacketType, p.PacketID, p.ReasonCode, exp)
			}
		case codec.PUBREC:
			c.idMu.Lock()
			q, ok := c.ours[p.PacketID]
			exp := c.oursExp[p.PacketID]
			c.idMu.Unlock()
			if !ok || q != 2 {
				c.run.violation("%s: PUBREC %d for no QoS 2 PUBLISH in flight", c.id, p.PacketID)
				return
			}
			c.checkPubAck(p.PacketType, p.PacketID, p.ReasonCode, exp)
			if p.ReasonCode >= 0x80 { // refused: the exchange ends here
				c.idMu.Lock()
				delete(c.ours, p.PacketID)
				delete(c.oursExp, p.PacketID)
				c.idMu.Unlock()
				return
			}
			_ = c.write(&codec.Ack{PacketType: codec.PUBREL, PacketID: p.PacketID})
		}
	case *codec.Disconnect:
		c.mustClose(fmt.Sprintf("the broker's DISCONNECT %v [MQTT-3.14.4-1] [MQTT-3.14.4-2]", p.ReasonCode))
		switch p.ReasonCode {
		case codec.SessionTakenOver:
			c.run.takenOver.Add(1)
		case codec.ServerShuttingDown:
		case codec.NotAuthorized:
			c.onReauthRefused()
		default:
			c.run.violation("%s: DISCONNECT %v from the broker", c.id, p.ReasonCode)
		}
	case *codec.Auth:
		c.onAuth(p, true) // a re-authentication
	case *codec.Suback:
		c.checkSuback(p)
	case *codec.Unsuback, *codec.Pingresp:
	default:
		c.run.violation("%s: unexpected %v", c.id, p.Type())
	}
}

// publish sends a PUBLISH, waiting (bounded) for room in the broker's
// Receive Maximum for QoS 1/2. It reports false when the session should end.
func (c *churnConn) publish(r *rand.Rand, topic string, qos byte, retain bool) bool {
	p := &codec.Publish{Topic: []byte(topic), QoS: qos, Retain: retain}
	p.Payload = make([]byte, r.Intn(300))
	if r.Intn(20) == 0 {
		p.Payload = make([]byte, 1000+r.Intn(3000)) // past small Maximum Packet Sizes
	}
	exp := c.writeExpect(topic)
	switch exp {
	case expectRefused: // never to be delivered (churnConn.checkRead)
		p.Payload = append(p.Payload[:0:0], append([]byte{churnRefused}, p.Payload...)...)
	case expectEither:
		p.Payload = append(p.Payload[:0:0], append([]byte{churnEither}, p.Payload...)...)
	}
	if c.ver == codec.V5 && r.Intn(4) == 0 {
		p.Properties.MessageExpiry = uint32(1 + r.Intn(3))
	}
	if qos > 0 {
		deadline := time.Now().Add(time.Second)
		for {
			c.idMu.Lock()
			if len(c.ours) < c.serverMax {
				for {
					c.nextID++
					if c.nextID == 0 {
						c.nextID = 1
					}
					if _, used := c.ours[c.nextID]; !used {
						break
					}
				}
				p.PacketID = c.nextID
				c.ours[p.PacketID] = qos
				c.oursExp[p.PacketID] = exp
				c.idMu.Unlock()
				break
			}
			c.idMu.Unlock()
			if time.Now().After(deadline) {
				return false // the broker is not acknowledging: move on
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	c.run.publishes.Add(1)
	return c.write(p) == nil
}

// churnWorker connects as random client ids with random options until
// stop, doing random things and leaving in random ways.
func churnWorker(run *churnRun, seed int64, stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	r := rand.New(rand.NewSource(seed))
	var lingering []*churnConn // connections left open for a takeover to close
	defer func() {
		for _, c := range lingering {
			_ = c.conn.Close()
			<-c.done
		}
	}()
	for {
		select {
		case <-stop:
			return
		default:
		}
		c := churnSession(run, r)
		if c == nil {
			continue
		}
		switch r.Intn(5) {
		case 0: // crash: no DISCONNECT
			_ = c.conn.Close()
		case 1: // left open: a later connection with the same id takes it over
			lingering = append(lingering, c)
			if len(lingering) > 3 {
				_ = lingering[0].conn.Close()
				<-lingering[0].done
				lingering = lingering[1:]
			}
			continue
		default:
			d := &codec.Disconnect{}
			if c.ver == codec.V5 && r.Intn(3) == 0 {
				d.ReasonCode = codec.DisconnectWithWill
			}
			_ = c.write(d)
			_ = c.conn.Close()
		}
		select {
		case <-c.done:
		case <-time.After(5 * time.Second):
			run.violation("%s: reader still running 5 s after close", c.id)
		}
	}
}

// churnSession connects as a random client id and runs a random session;
// it returns the connection, still open, or nil if it ended already.
func churnSession(run *churnRun, r *rand.Rand) *churnConn {
	id := fmt.Sprintf("churn-%02d", r.Intn(churnIDs))
	vers := []codec.Version{codec.V31, codec.V311, codec.V5, codec.V5}
	c := &churnConn{
		run: run, id: id, ver: vers[r.Intn(len(vers))],
		aliases: map[uint16]string{}, unacked: map[uint16]byte{}, released: map[uint16]bool{},
		ours: map[uint16]byte{}, connack: make(chan *codec.Connack, 1), done: make(chan struct{}),
		withhold: r.Intn(6) == 0, ackEarly: r.Intn(3) == 0,
		oursExp: map[uint16]churnExpect{}, subsExp: map[uint16][]churnSubExpect{},
	}
	cp := &codec.Connect{Version: c.ver, ClientID: []byte(id), CleanStart: r.Intn(3) == 0, KeepAlive: uint16(r.Intn(2) * 30)}
	c.churnCredentials(r, cp)
	if c.ver == codec.V5 {
		cp.Properties.SessionExpiry = []uint32{0, 1, 2, 60}[r.Intn(4)]
		if r.Intn(2) == 0 {
			c.recvMax = 1 + r.Intn(8)
			cp.Properties.ReceiveMaximum = uint16(c.recvMax)
		}
		if r.Intn(2) == 0 {
			c.aliasMax = uint16(1 + r.Intn(4))
			cp.Properties.TopicAliasMaximum = c.aliasMax
		}
		if r.Intn(3) == 0 {
			c.maxPacket = 200 + r.Intn(1000)
			cp.Properties.MaximumPacketSize = uint32(c.maxPacket)
		}
	}
	if r.Intn(3) == 0 {
		cp.WillFlag = true
		cp.Will.Topic = []byte("churn/will/" + id)
		if r.Intn(4) == 0 { // alice's only; nobody reads it
			cp.Will.Topic = []byte("churn/deny/will/" + id)
		}
		c.willExpect(string(cp.Will.Topic))
		cp.Will.Payload = []byte("gone")
		cp.Will.QoS = byte(r.Intn(3))
		cp.Will.Retain = r.Intn(4) == 0
		if c.ver == codec.V5 {
			cp.Will.Properties.WillDelay = uint32(r.Intn(3))
		}
	}
	conn, err := run.dial(r)
	if err != nil {
		if run.restarts { // down for a restart: try again
			time.Sleep(20 * time.Millisecond)
			return nil
		}
		run.violation("%s: dial: %v", id, err)
		return nil
	}
	c.conn = conn
	go c.read()
	if err := c.write(cp); err != nil {
		_ = conn.Close()
		<-c.done
		return nil
	}
	var ca *codec.Connack
	select {
	case ca = <-c.connack:
	case <-c.done:
		select { // the CONNACK may have come before the close
		case ca = <-c.connack:
		default:
		}
	case <-time.After(5 * time.Second):
		run.violation("%s: no CONNACK in 5 s", id)
	}
	if ca != nil && ca.ReasonCode != c.wantCode && (c.wantCode != 0 || isAuthRefusal(ca.ReasonCode, c.ver)) {
		run.violation("%s: CONNACK %v, want %v (user %s, SCRAM %v, v%d)", id, ca.ReasonCode, c.wantCode, c.user, c.scram != nil, c.ver)
	}
	if ca == nil || ca.ReasonCode != 0 {
		if ca != nil {
			run.refused.Add(1)
			if ca.ReasonCode == c.wantCode {
				run.authRefused.Add(1)
			}
			<-c.done // the broker closes it (churnConn.mustClose)
		}
		_ = conn.Close()
		<-c.done
		return nil
	}
	run.connects.Add(1)
	c.serverMax = 20
	if rm := ca.Properties.ReceiveMaximum; rm != 0 && int(rm) < c.serverMax {
		c.serverMax = int(rm)
	}
	var subID uint32
	for range r.Intn(40) {
		select {
		case <-c.done:
			return c
		default:
		}
		var err error
		switch k := r.Intn(13); {
		case k < 2:
			sp := &codec.Subscribe{Subscriptions: make([]codec.Subscription, 1+r.Intn(4)/3)}
			exp := make([]churnSubExpect, len(sp.Subscriptions))
			for i := range sp.Subscriptions {
				f := churnFilters[r.Intn(len(churnFilters))]
				if r.Intn(6) == 0 {
					f = churnDenyFilters[r.Intn(len(churnDenyFilters))]
				}
				s := &sp.Subscriptions[i]
				s.Filter, s.QoS = []byte(f), byte(r.Intn(3))
				exp[i] = churnSubExpect{qos: s.QoS, denied: !churnMaySubscribe(f), filter: f}
				if c.ver == codec.V5 {
					_, _, shared := codec.SplitShared(s.Filter)
					s.NoLocal = r.Intn(4) == 0 && !shared
					s.RetainAsPublished = r.Intn(2) == 0
					s.RetainHandling = byte(r.Intn(3))
				}
			}
			if c.ver == codec.V5 && r.Intn(3) == 0 {
				subID++
				sp.Properties.SubscriptionIDs = []uint32{subID}
			}
			c.idMu.Lock()
			for sp.PacketID == 0 || c.subsExp[sp.PacketID] != nil {
				sp.PacketID = uint16(1 + r.Intn(100))
			}
			c.subsExp[sp.PacketID] = exp
			c.idMu.Unlock()
			err = c.write(sp)
		case k < 3:
			f := churnFilters[r.Intn(len(churnFilters))]
			if r.Intn(6) == 0 {
				f = churnDenyFilters[r.Intn(len(churnDenyFilters))]
			}
			err = c.write(&codec.Unsubscribe{PacketID: uint16(1 + r.Intn(100)), Filters: [][]byte{[]byte(f)}})
		case k < 11:
			topic := churnTopic(r.Intn(churnTopics))
			if r.Intn(8) == 0 {
				topic = churnDenyTopics[r.Intn(len(churnDenyTopics))]
			}
			if !c.publish(r, topic, byte(r.Intn(3)), r.Intn(8) == 0) {
				return c
			}
		case k == 11 && c.scram != nil:
			err = c.reauthenticate(r)
		default:
			if r.Intn(2) == 0 {
				err = c.write(&codec.Pingreq{})
			} else {
				time.Sleep(time.Duration(r.Intn(20)) * time.Millisecond)
			}
		}
		if err != nil {
			return c
		}
	}
	return c
}

// churnOpts are a soak's variations: some connections through the TLS
// and WebSocket bridge (tls), and restarts of the broker while the clients
// run (restart stops the broker running now and returns a new one
// listening on the same address).
type churnOpts struct {
	tls     *tls.Config
	restart func() (*Server, error)
}

// churn runs workers against s for d, then ends every session and clears
// every retained message the clients could have left. With o.restart, the
// broker is restarted while they run, 0.3 s after the start and then every
// 0.7 to 1.5 s (from the start of one restart to the next's: 3 to 6 times
// in 4 s).
func churn(t *testing.T, s *Server, d time.Duration, seed int64, o churnOpts) *churnRun {
	run := &churnRun{addr: s.Addr().String(), restarts: o.restart != nil, tlsConf: o.tls}
	run.srv.Store(s)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range churnWorkers {
		wg.Add(1)
		go churnWorker(run, seed+int64(w), stop, &wg)
	}
	check := newAudit(run, seed, stop)
	restarted := make(chan error, 1)
	if o.restart != nil {
		go func() {
			r := rand.New(rand.NewSource(seed + 300))
			next := time.Now().Add(300 * time.Millisecond)
			for {
				select {
				case <-stop:
					restarted <- nil
					return
				case <-time.After(time.Until(next)):
				}
				next = time.Now().Add(700*time.Millisecond + time.Duration(r.Int63n(int64(800*time.Millisecond))))
				s, err := o.restart()
				if err != nil {
					restarted <- err
					return
				}
				run.srv.Store(s)
				run.restarted.Add(1)
			}
		}()
	}
	select {
	case <-time.After(d):
	case err := <-restarted: // failed: the broker is down
		close(stop)
		t.Fatalf("seed %d: restart: %v", seed, err)
	}
	close(stop)
	if o.restart != nil {
		if err := <-restarted; err != nil {
			t.Fatalf("seed %d: restart: %v", seed, err)
		}
		s = run.server()
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("seed %d: workers still running 30 s after stop", seed)
	}
	for _, v := range check() {
		run.violation("%s", v)
	}
	// End every session: a Clean Start connection replaces it (publishing
	// a will left in it), and its own session ends when it disconnects.
	ids := auditIDs()
	for i := range churnIDs {
		ids = append(ids, fmt.Sprintf("churn-%02d", i))
	}
	for _, id := range ids {
		c := dialRaw(t, s)
		c.mustConnect(connectPacket(id, true, 0))
		c.disconnect()
	}
	require.Eventually(t, func() bool { return s.Stats().Sessions == 0 },
		e2eWait, 20*time.Millisecond, "seed %d: sessions left after every client id ended its session: %d", seed, s.Stats().Sessions)
	// Clear retained messages, wills' included, as alice: she may
	// publish to the denied subtree too (churn_auth_test.go).
	c := dialRaw(t, s)
	cp := connectPacket("churn-clear", true, 0)
	cp.UsernameFlag, cp.Username, cp.PasswordFlag, cp.Password = true, []byte("alice"), true, []byte(churnUsers["alice"])
	c.mustConnect(cp)
	for k := range churnTopics {
		c.publish(churnTopic(k), "", 0, true, 0)
	}
	for _, topic := range churnDenyTopics {
		c.publish(topic, "", 0, true, 0)
	}
	for i := range churnIDs {
		c.publish(fmt.Sprintf("churn/will/churn-%02d", i), "", 0, true, 0)
		c.publish(fmt.Sprintf("churn/deny/will/churn-%02d", i), "", 0, true, 0)
	}
	c.disconnect()
	return run
}

// checkChurnClean requires s to hold nothing of the run's clients.
func checkChurnClean(t *testing.T, s *Server, seed int64, goroutines int) {
	t.Helper()
	require.Zero(t, s.Stats().Panics, "seed %d: panics recovered on the event loops", seed)
	var st Stats
	ok := assertEventually(func() bool {
		st = s.Stats()
		return st.Connections == 0 && st.Connected == 0 && st.Sessions == 0 && st.Subscriptions == 0 &&
			st.Inflight == 0 && st.Queued == 0 && st.Retained == 0
	}, e2eWait)
	require.True(t, ok, "seed %d: broker state left after every client left: connections %d, connected %d, sessions %d, subscriptions %d, in flight %d, queued %d, retained %d",
		seed, st.Connections, st.Connected, st.Sessions, st.Subscriptions, st.Inflight, st.Queued, st.Retained)
	n := 0
	ok = assertEventually(func() bool { n = brokerGoroutines(); return n <= goroutines }, e2eWait)
	if !ok {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("seed %d: %d goroutines, %d before the run:\n%s", seed, n, goroutines, buf)
	}
}

// settledGoroutines returns brokerGoroutines once s's event loops run:
// Start returns before all of them are up.
func settledGoroutines(t *testing.T, s *Server) int {
	c := dialRaw(t, s)
	c.mustConnect(connectPacket("churn-probe", true, 0))
	c.disconnect()
	require.Eventually(t, func() bool { return s.Stats().Connections == 0 }, e2eWait, 10*time.Millisecond)
	return brokerGoroutines()
}

// brokerGoroutines counts the goroutines but pebble's own, which come and
// go with its flushes and compactions.
func brokerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "cockroachdb/pebble") {
			count++
		}
	}
	return count
}

// assertEventually polls cond every 20 ms until it holds or d passes.
func assertEventually(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// churnLoops is the broker's number of event loops for a run: 2 to 4 by
// the seed, so that runs move sessions and deliveries between more loops
// than the machine has cores too.
func churnLoops(t *testing.T, seed int64) int {
	n := 2 + int(uint64(seed)%3)
	t.Logf("%d loops", n)
	return n
}

// churnParams returns the run's length and seed.
func churnParams(t *testing.T) (time.Duration, int64) {
	d := 4 * time.Second
	if testing.Short() {
		d = time.Second
	}
	if v := os.Getenv("LOOPMQ_CHURN"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err, "LOOPMQ_CHURN")
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("LOOPMQ_CHURN_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "LOOPMQ_CHURN_SEED")
	}
	t.Logf("seed %d (LOOPMQ_CHURN_SEED), %v (LOOPMQ_CHURN)", seed, d)
	return d, seed
}

func logChurn(t *testing.T, run *churnRun, seed int64) {
	t.Helper()
	run.mu.Lock()
	defer run.mu.Unlock()
	t.Logf("%d sessions, %d refused, %d taken over, %d PUBLISHes sent, %d received (%d with DUP); audit: %d acknowledged messages followed; %d restarts",
		run.connects.Load(), run.refused.Load(), run.takenOver.Load(), run.publishes.Load(), run.received.Load(), run.dupsSeen.Load(), run.audited, run.restarted.Load())
	t.Logf("auth: %d CONNECTs refused as expected, %d re-authentications, %d refused as expected; %d PUBLISHes and %d filters refused (5.0 0x87, 3.x 0x80)",
		run.authRefused.Load(), run.reauthed.Load(), run.reauthRefused.Load(), run.pubDenied.Load(), run.subDenied.Load())
	if len(run.errs) > 0 {
		t.Errorf("seed %d: %d violations, the first ones:\n%s", seed, len(run.errs), joinLines(run.errs))
	}
}

func joinLines(s []string) string {
	out := ""
	for _, l := range s {
		out += "  " + l + "\n"
	}
	return out
}

// heapAfterGC is the live heap after two collections.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestChurnGivesEverythingBack runs the soak in memory: no violation, and
// when every client has left, nothing stays: no state, no goroutine, and
// no more heap than a short warm-up run left (pools and maps keep what
// they grew to).
func TestChurnGivesEverythingBack(t *testing.T) {
	d, seed := churnParams(t)
	pki := newTestPKI(t)
	opts := Options{Loops: churnLoops(t, seed), MaxQueued: 2000, MaxSessionExpiry: time.Minute,
		TLSListen: "127.0.0.1:0", WSListen: "127.0.0.1:0", TLSConfig: pki.serverConfig(t, tls.NoClientCert)}
	churnAuthOptions(t, &opts)
	s := startServer(t, opts)
	tlsConf := pki.clientConfig()
	tlsConf.ServerName = "127.0.0.1"
	goroutines := settledGoroutines(t, s) // the broker's own included
	warm := churn(t, s, d/4, seed+1000, churnOpts{tls: tlsConf})
	logChurn(t, warm, seed+1000)
	checkChurnClean(t, s, seed+1000, goroutines)
	base := heapAfterGC()
	run := churn(t, s, d, seed, churnOpts{tls: tlsConf})
	logChurn(t, run, seed)
	checkChurnClean(t, s, seed, goroutines)
	grown := int64(heapAfterGC()) - int64(base)
	t.Logf("live heap %d KiB after the warm-up, %+d KiB after the run", base>>10, grown>>10)
	require.Less(t, grown, int64(4<<20), "seed %d: live heap grew by %d KiB over the run", seed, grown>>10)
}

// TestChurnPersistentGivesEverythingBack is the soak with the on-disk store:
// the same, and a broker restarted on the data directory finds nothing.
func TestChurnPersistentGivesEverythingBack(t *testing.T) {
	d, seed := churnParams(t)
	dir := t.TempDir()
	st, err := store.OpenPebble(dir, store.PebbleOptions{Sync: store.SyncNone})
	require.NoError(t, err)
	opts := Options{Loops: churnLoops(t, seed), MaxQueued: 2000, MaxQueuedInMemory: 4, MaxSessionExpiry: time.Minute, Store: st}
	churnAuthOptions(t, &opts)
	s := startServer(t, opts)
	goroutines := settledGoroutines(t, s)
	run := churn(t, s, d, seed, churnOpts{})
	logChurn(t, run, seed)
	checkChurnClean(t, s, seed, goroutines)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, s.Stop(ctx))
	require.NoError(t, st.Close())

	st, err = store.OpenPebble(dir, store.PebbleOptions{Sync: store.SyncNone})
	require.NoError(t, err)
	s = startServer(t, Options{Store: st})
	t.Cleanup(func() { _ = st.Close() })
	got := s.Stats()
	require.Zero(t, got.Sessions, "seed %d: sessions restored", seed)
	require.Zero(t, got.Retained, "seed %d: retained messages restored", seed)
	require.Zero(t, got.Queued, "seed %d: queued messages restored", seed)
}

// sessionWindow describes the in-flight window of client id's session, as
// its owner loop sees it.
func sessionWindow(s *Server, id string) string {
	sh := s.reg.shard(id)
	sh.mu.Lock()
	sess := sh.m[id]
	sh.mu.Unlock()
	if sess == nil {
		return "no session"
	}
	o := sess.owner.Load()
	if o == nil {
		return "no owner"
	}
	ch := make(chan string, 1)
	o.post(task{kind: taskFunc, fn: func(l *loop) {
		if sess.owner.Load() != l || sess.q == nil {
			ch <- "moved, or no queues"
			return
		}
		w := &sess.q.inflight
		quota := -1
		if sess.client != nil {
			quota = int(sess.client.sendQuota)
		}
		out := fmt.Sprintf("used %d pending %d quota %d ring %d next %d:", w.used, w.pending, quota, len(w.slots), w.next)
		w.each(func(sl *slot) { out += fmt.Sprintf(" %d/s%d/h%d/p%v", sl.id, sl.state, sl.hold, sl.pending) })
		ch <- out
	}})
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Second):
		return "timeout"
	}
}
