package loadgen

import (
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// shortConn accepts room bytes, then fails every write, as a socket does
// once the broker has reset the connection.
type shortConn struct {
	net.Conn // one end of a pipe, for the methods not overridden
	mu       sync.Mutex
	room     int
	failed   chan struct{}
	once     sync.Once
}

func (s *shortConn) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(b) <= s.room {
		s.room -= len(b)
		return len(b), nil
	}
	n := s.room
	s.room = 0
	s.once.Do(func() { close(s.failed) })
	return n, syscall.ECONNRESET
}

// A message counts as sent once the write carrying it has succeeded. It was
// counted when it was put in the write buffer, so the messages of a failed
// write were counted sent (and so lost), though they never left: the
// connection here takes two and a half frames, then fails.
func TestFailedWriteIsNotSent(t *testing.T) {
	cfg := Config{Scenario: ScenarioPairs, N: 1, QoS: 1, Rate: 1000, Duration: 200 * time.Millisecond}
	cfg.SetDefaults()
	r, err := newRunner(cfg, 0, 1)
	require.NoError(t, err)
	var spec *connSpec
	for _, s := range r.mine {
		if s.publishes() {
			spec = s
		}
	}
	end, _ := net.Pipe()
	nc := &shortConn{Conn: end, failed: make(chan struct{})}
	c := newConn(r, spec, nc)
	frame := len(c.pub.srcs[0].tmpl.frame)
	nc.room = 2*frame + frame/2
	c.state.Store(stateUp)
	r.conns = []*conn{c}
	r.start(time.Now().UnixNano())
	select {
	case <-nc.failed:
	case <-time.After(5 * time.Second):
		t.Fatal("the publisher never wrote past the connection's room")
	}
	r.stop()
	res, _ := r.result()
	m := res.Messages
	require.Equal(t, int64(2), m.Sent, "the frames wholly written")
	require.Equal(t, int64(2), r.sent.Load(), "the progress line's count")
	require.Equal(t, int64(2), r.inflight.Load(), "the unwritten frame is not awaiting an acknowledgement")
	require.Equal(t, int64(200-2), m.Unsent, "what was not written is unsent")
}
