package acl

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"
)

// diffACL exercises every rule kind; sync/# lets each client mark the end
// of its messages.
const diffACL = `# anonymous block
topic read public/#
topic write anon/out

user alice
topic readwrite home/alice/#
topic deny home/alice/secret
topic read home/shared
topic write  home/drop box
# An allow in the own block wins over "pattern deny users/%u/private".
topic read users/alice/private

user spy
topic readwrite #

# Refused by every pattern (a '+' in the username); its own block still applies.
user evil+
topic readwrite sync/#

pattern readwrite sync/#
pattern readwrite devices/%c/#
pattern read users/%u/#
pattern deny users/%u/private
pattern write deny/%c
`

var diffTopics = []string{
	"public/news", "anon/out", "home/alice/x", "home/alice/secret", "home/shared",
	"home/drop box", "home/bob/x", "devices/anon-1/t", "devices/alice-1/t", "devices/bob-1/t",
	"devices/a/b/t", "devices/evil-1/t", "users/alice/x", "users/alice/private", "users/bob/x",
	"other/x", "deny/alice-1",
}

// TestAgainstMosquitto runs Debian's Mosquitto with diffACL and checks that
// what it delivers (Read) and forwards (Write) is exactly what Allowed says.
func TestAgainstMosquitto(t *testing.T) {
	const broker = "/usr/sbin/mosquitto"
	if _, err := os.Stat(broker); err != nil {
		t.Skipf("%s not found (apt-get install mosquitto): %v", broker, err)
	}
	f := mustParse(t, diffACL)
	addr := startMosquitto(t, broker, diffACL)

	clients := []client{
		{anon: true, id: "anon-1"},
		{user: "alice", id: "alice-1"},
		{user: "bob", id: "bob-1"},
		{user: "carol", id: "a/b"},
		{user: "evil+", id: "evil-1"},
	}
	spy := connect(t, addr, "spy", "spy-1")
	spyGot := collect(t, spy, "#")

	for _, c := range clients {
		c := c
		name := c.id
		t.Run(name, func(t *testing.T) {
			cl := connect(t, addr, c.user, c.id)
			got := collect(t, cl, "#")

			// Read: the spy publishes every topic, then the marker.
			marker := "sync/read/" + c.id
			for _, tp := range append(diffTopics, marker) {
				require.True(t, spy.Publish(tp, 1, false, tp).WaitTimeout(5*time.Second))
			}
			read := got.until(t, marker)
			var want []string
			for _, tp := range diffTopics {
				if f.Allowed(c.user, c.anon, c.id, tp, Read) {
					want = append(want, tp)
				}
			}
			require.Equal(t, sorted(want), sorted(read), "Read for %+v", c)

			// Write: the client publishes every topic, the spy sees what passed.
			marker = "sync/write/" + c.id
			for _, tp := range append(diffTopics, marker) {
				require.True(t, cl.Publish(tp, 1, false, c.id+"|"+tp).WaitTimeout(5*time.Second))
			}
			written := spyGot.untilFrom(t, marker, c.id+"|")
			want = nil
			for _, tp := range diffTopics {
				if f.Allowed(c.user, c.anon, c.id, tp, Write) {
					want = append(want, tp)
				}
			}
			require.Equal(t, sorted(want), sorted(written), "Write for %+v", c)
		})
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

// inbox gathers a client's messages in arrival order.
type inbox struct {
	mu   sync.Mutex
	msgs []paho.Message
	cond *sync.Cond
}

func collect(t *testing.T, c paho.Client, filter string) *inbox {
	in := &inbox{}
	in.cond = sync.NewCond(&in.mu)
	tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		in.mu.Lock()
		in.msgs = append(in.msgs, m)
		in.mu.Unlock()
		in.cond.Broadcast()
	})
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	return in
}

// until returns the topics received before marker and forgets them.
func (in *inbox) until(t *testing.T, marker string) []string {
	return in.untilFrom(t, marker, "")
}

// untilFrom returns the topics of messages whose payload starts with
// prefix, received before marker, and forgets everything up to marker.
func (in *inbox) untilFrom(t *testing.T, marker, prefix string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	go func() { // wake the wait below at the deadline
		time.Sleep(time.Until(deadline))
		in.cond.Broadcast()
	}()
	in.mu.Lock()
	defer in.mu.Unlock()
	for {
		for i, m := range in.msgs {
			if m.Topic() == marker {
				var out []string
				for _, m := range in.msgs[:i] {
					if strings.HasPrefix(string(m.Payload()), prefix) {
						out = append(out, m.Topic())
					}
				}
				in.msgs = in.msgs[i+1:]
				return out
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, m := range in.msgs {
				seen = append(seen, m.Topic())
			}
			t.Fatalf("marker %q never arrived; got %q", marker, seen)
		}
		in.cond.Wait()
	}
}

func connect(t *testing.T, addr, user, id string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetProtocolVersion(4).SetAutoReconnect(false).SetCleanSession(true).SetOrderMatters(true)
	if user != "" {
		o.SetUsername(user)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(5*time.Second))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// startMosquitto runs broker on a free loopback port with aclText as its
// acl_file, anonymous clients allowed, and returns its address.
func startMosquitto(t *testing.T, broker, aclText string) string {
	t.Helper()
	dir := t.TempDir()
	aclPath := filepath.Join(dir, "acl")
	require.NoError(t, os.WriteFile(aclPath, []byte(aclText), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nacl_file %s\nlog_type all\n", port, aclPath)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else Mosquitto drops to user "mosquitto", who cannot read t.TempDir()
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o600))
	var logs bytes.Buffer
	m := exec.Command(broker, "-c", confPath)
	m.Stdout, m.Stderr = &logs, &logs
	require.NoError(t, m.Start())
	t.Cleanup(func() {
		_ = m.Process.Kill()
		_ = m.Wait()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", &logs)
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "mosquitto did not start")
	return addr
}
