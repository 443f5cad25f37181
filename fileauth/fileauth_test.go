package fileauth_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pahov5 "github.com/eclipse/paho.golang/paho"
	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/fileauth"
	"github.com/loopmq/loopmq/passwd"
)

const aclText = `# anonymous clients: read the public tree only
topic read public/#

user alice
topic readwrite sensors/alice/#
topic read sensors/#
topic write devices/+/cmd

user bob
topic readwrite sensors/bob/#
pattern read devices/%u/cmd
`

// files writes a password file for alice and bob — with Debian's
// mosquitto_passwd when it is installed, so that a file Mosquitto made is
// what loopmq reads — and the ACL file above.
func files(t *testing.T) (pwPath, aclPath string) {
	t.Helper()
	dir := t.TempDir()
	pwPath = filepath.Join(dir, "passwd")
	aclPath = filepath.Join(dir, "acl")
	require.NoError(t, os.WriteFile(aclPath, []byte(aclText), 0o600))
	if tool, err := exec.LookPath("mosquitto_passwd"); err == nil {
		out, err := exec.Command(tool, "-c", "-b", pwPath, "alice", "alice-pw").CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(tool, "-b", pwPath, "bob", "bob-pw").CombinedOutput()
		require.NoError(t, err, "%s", out)
		return pwPath, aclPath
	}
	t.Log("mosquitto_passwd not installed: hashing with package passwd")
	lines := "alice:" + passwd.HashPBKDF2([]byte("alice-pw"), passwd.DefaultIterations) + "\n" +
		"bob:" + passwd.HashPBKDF2([]byte("bob-pw"), passwd.DefaultIterations) + "\n"
	require.NoError(t, os.WriteFile(pwPath, []byte(lines), 0o600))
	return pwPath, aclPath
}

func start(t *testing.T, allowAnonymous bool) *engine.Server {
	t.Helper()
	pw, ac := files(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := fileauth.Load(pw, ac, log)
	require.NoError(t, err)
	s := engine.New(engine.Options{Listen: "127.0.0.1:0", Loops: 2, Logger: log,
		Authenticator: a, Authorizer: a, AllowAnonymous: &allowAnonymous})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop(t.Context()) })
	return s
}

// conn is a minimal raw MQTT client.
type conn struct {
	t   *testing.T
	nc  net.Conn
	ver codec.Version
	buf []byte
}

func dial(t *testing.T, s *engine.Server, ver codec.Version) *conn {
	nc, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &conn{t: t, nc: nc, ver: ver}
}

func (c *conn) send(p codec.Packet) {
	_, err := c.nc.Write(p.AppendTo(nil, c.ver))
	require.NoError(c.t, err)
}

// next returns the next packet, or nil after d of silence.
func (c *conn) next(d time.Duration) codec.Packet {
	deadline := time.Now().Add(d)
	tmp := make([]byte, 4096)
	for {
		if _, n, err := codec.Split(c.buf, 0); err == nil && n > 0 {
			p, err := codec.Decode(append([]byte(nil), c.buf[:n]...), c.ver)
			require.NoError(c.t, err)
			c.buf = c.buf[n:]
			return p
		}
		_ = c.nc.SetReadDeadline(deadline)
		n, err := c.nc.Read(tmp)
		c.buf = append(c.buf, tmp[:n]...)
		if err != nil && n == 0 {
			return nil
		}
	}
}

func (c *conn) connect(id, user, pw string) *codec.Connack {
	p := &codec.Connect{Version: c.ver, ClientID: []byte(id), CleanStart: true, KeepAlive: 30}
	if user != "" {
		p.UsernameFlag, p.Username = true, []byte(user)
	}
	if pw != "" {
		p.PasswordFlag, p.Password = true, []byte(pw)
	}
	c.send(p)
	ca, ok := c.next(5 * time.Second).(*codec.Connack)
	require.True(c.t, ok, "CONNACK")
	return ca
}

// TestPasswordFileFromMosquittoPasswd: a password file written by
// mosquitto_passwd authenticates; a wrong password, an unknown user and a
// user name without password are refused with 0x04 (3.1.1) / 0x86 (5.0),
// a client without user name with 0x05 / 0x87.
func TestPasswordFileFromMosquittoPasswd(t *testing.T) {
	s := start(t, false)
	for _, tc := range []struct {
		ver      codec.Version
		user, pw string
		want     codec.ReasonCode
	}{
		{codec.V311, "alice", "alice-pw", 0},
		{codec.V311, "alice", "wrong", 4},
		{codec.V311, "mallory", "alice-pw", 4},
		{codec.V311, "alice", "", 4},
		{codec.V311, "", "", 5},
		{codec.V5, "bob", "bob-pw", codec.Success},
		{codec.V5, "bob", "wrong", codec.BadUserNameOrPassword},
		{codec.V5, "mallory", "x", codec.BadUserNameOrPassword},
		{codec.V5, "", "", codec.NotAuthorized},
	} {
		c := dial(t, s, tc.ver)
		ca := c.connect("pw-"+tc.user, tc.user, tc.pw)
		require.Equal(t, tc.want, ca.ReasonCode, "%v user %q password %q", tc.ver, tc.user, tc.pw)
	}
}

// TestACLFileEndToEnd: the ACL file decides publishing (5.0: PUBACK 0x87;
// 3.1.1: acknowledged and dropped), subscribing to a topic that may not
// be read (SUBACK 0x87 / 0x80) and which messages a wildcard subscriber
// receives; %u patterns and the anonymous block apply.
func TestACLFileEndToEnd(t *testing.T) {
	s := start(t, true)
	bob := dial(t, s, codec.V5)
	require.Equal(t, codec.Success, bob.connect("bob-1", "bob", "bob-pw").ReasonCode)
	bob.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{
		{Filter: []byte("#"), QoS: 1}, {Filter: []byte("sensors/alice/t"), QoS: 1}}})
	sa := bob.next(5 * time.Second).(*codec.Suback)
	require.Equal(t, []codec.ReasonCode{1, codec.NotAuthorized}, sa.ReasonCodes)

	alice := dial(t, s, codec.V5)
	require.Equal(t, codec.Success, alice.connect("alice-1", "alice", "alice-pw").ReasonCode)
	var got []string // what bob receives
	take := func(p codec.Packet) bool {
		if m, ok := p.(*codec.Publish); ok {
			got = append(got, string(m.Topic))
			bob.send(&codec.Ack{PacketType: codec.PUBACK, PacketID: m.PacketID})
			return true
		}
		return false
	}
	pub := func(c *conn, id uint16, topic string) codec.ReasonCode {
		c.send(&codec.Publish{QoS: 1, PacketID: id, Topic: []byte(topic), Payload: []byte(topic)})
		for {
			p := c.next(5 * time.Second)
			require.NotNil(t, p, "no PUBACK for %s", topic)
			if c == bob && take(p) {
				continue
			}
			return p.(*codec.Ack).ReasonCode
		}
	}
	require.Equal(t, codec.NotAuthorized, pub(alice, 1, "sensors/bob/t"), "alice may not write bob's tree")
	require.Less(t, pub(alice, 2, "sensors/alice/t"), codec.ReasonCode(0x80))
	require.Less(t, pub(alice, 3, "devices/bob/cmd"), codec.ReasonCode(0x80))
	require.Equal(t, codec.NotAuthorized, pub(alice, 4, "public/news"), "no rule of alice's allows it")
	require.Less(t, pub(bob, 2, "sensors/bob/t"), codec.ReasonCode(0x80))

	// bob's '#' delivers only what bob may read: his tree and his %u pattern.
	for {
		p := bob.next(500 * time.Millisecond)
		if p == nil || !take(p) {
			break
		}
	}
	require.ElementsMatch(t, []string{"devices/bob/cmd", "sensors/bob/t"}, got)

	anon := dial(t, s, codec.V311)
	require.Equal(t, codec.ReasonCode(0), anon.connect("anon-1", "", "").ReasonCode)
	anon.send(&codec.Subscribe{PacketID: 1, Subscriptions: []codec.Subscription{{Filter: []byte("sensors/bob/t"), QoS: 0}}})
	require.Equal(t, []codec.ReasonCode{0x80}, anon.next(5*time.Second).(*codec.Suback).ReasonCodes)
}

// syncBuffer is a log destination safe for the loops' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWrongPasswordRefusedAsBadCredentials: a wrong password is refused
// as Bad User Name or Password at every protocol level — return code 4
// for 3.1 and 3.1.1 (MQTT 3.1.1 section 3.2.2.3, paho.mqtt.golang), 0x86
// for 5.0 (paho.golang) — and counted and logged under that reason
// (loopmq_connections_refused_total{reason="bad_credentials"}); an
// anonymous client refused gets Not Authorized and is counted so. (QA: a
// 3.1.1 client with a wrong password got return code 5 and was counted
// as not_authorized, as if the ACL had refused it.)
func TestWrongPasswordRefusedAsBadCredentials(t *testing.T) {
	pw, ac := files(t)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := fileauth.Load(pw, ac, log)
	require.NoError(t, err)
	no := false
	s := engine.New(engine.Options{Listen: "127.0.0.1:0", Loops: 2, Logger: log,
		Authenticator: a, Authorizer: a, AllowAnonymous: &no})
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Stop(t.Context()) })

	c31 := dial(t, s, codec.V31)
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedBadCredentials), c31.connect("pw31", "alice", "wrong").ReasonCode)

	o := paho.NewClientOptions().AddBroker("tcp://" + s.Addr().String()).SetClientID("pw311").
		SetUsername("alice").SetPassword("wrong").SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second)
	tok := paho.NewClient(o).Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.Error(t, tok.Error())
	require.Equal(t, codec.ConnRefusedBadCredentials, tok.(*paho.ConnectToken).ReturnCode())

	nc, err := net.Dial("tcp", s.Addr().String())
	require.NoError(t, err)
	cl := pahov5.NewClient(pahov5.ClientConfig{Conn: nc, OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ca, err := cl.Connect(ctx, &pahov5.Connect{ClientID: "pw5", CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: "alice", PasswordFlag: true, Password: []byte("wrong")})
	require.Error(t, err)
	require.NotNil(t, ca)
	require.Equal(t, byte(codec.BadUserNameOrPassword), ca.ReasonCode)
	_ = nc.Close()

	anon := dial(t, s, codec.V311)
	require.Equal(t, codec.ReasonCode(codec.ConnRefusedNotAuthorized), anon.connect("anon", "", "").ReasonCode)

	require.Eventually(t, func() bool {
		st := s.Stats()
		return st.Refused[engine.RefusedBadCredentials]+st.Refused[engine.RefusedNotAuthorized] == 4
	}, 5*time.Second, 10*time.Millisecond)
	st := s.Stats()
	require.Equal(t, uint64(3), st.Refused[engine.RefusedBadCredentials], "3.1, 3.1.1 and 5.0 wrong passwords")
	require.Equal(t, uint64(1), st.Refused[engine.RefusedNotAuthorized], "the anonymous client")
	require.Equal(t, 3, strings.Count(logs.String(), `code="bad user name or password"`), "%s", logs.String())
}
