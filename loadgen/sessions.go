package loadgen

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/loopmq/loopmq/codec"
)

// Persistent sessions (Config.Persistent): the subscribers connect with
// persistent sessions, and the run ends them afterwards, so that a broker
// used for many runs does not keep a session, and its queue, for every
// subscriber of every run.

// PersistentExpiry is the Session Expiry Interval, in seconds, of the
// subscribers' sessions under Config.Persistent with MQTT 5.0: long enough
// for any run, short enough that a run killed before its end leaves
// nothing behind for long.
const PersistentExpiry = 600

// endSessions ends the persistent sessions of conns' subscribers: each
// client identifier connects again with Clean Session / Clean Start 1,
// which makes the broker discard its session [MQTT-3.1.2-6]
// [MQTT-3.1.2-4], and disconnects. Paced as setup is: at most
// ConnParallel at a time and ConnRate per second, each bounded by
// ConnectTimeout and all by SetupTimeout. It returns a warning for the
// run, "" when every one was ended.
func (r *runner) endSessions(conns []*conn) string {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.SetupTimeout)
	defer cancel()
	var (
		mu     sync.Mutex
		failed int
		first  error
		wg     sync.WaitGroup
	)
	fail := func(spec *connSpec, err error) {
		mu.Lock()
		defer mu.Unlock()
		failed++
		if first == nil {
			first = fmt.Errorf("%s: %w", spec.clientID, err)
		}
	}
	sem := make(chan struct{}, r.cfg.ConnParallel)
	begin := time.Now()
	i := 0
	for _, c := range conns {
		spec := c.spec
		if !spec.subscribes() {
			continue
		}
		if r.cfg.ConnRate > 0 {
			at := begin.Add(time.Duration(float64(i) / r.cfg.ConnRate * 1e9))
			if !sleepUntil(ctx, at) {
				fail(spec, fmt.Errorf("not attempted within -setup-timeout %v", r.cfg.SetupTimeout))
				continue
			}
		}
		i++
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			fail(spec, fmt.Errorf("not attempted within -setup-timeout %v", r.cfg.SetupTimeout))
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := r.endSession(ctx, spec); err != nil {
				fail(spec, err)
			}
		}()
	}
	wg.Wait()
	if failed == 0 {
		return ""
	}
	return fmt.Sprintf("could not end %d persistent subscriber sessions after the run (first: %v); the broker keeps them", failed, first)
}

// endSession connects spec's client identifier with a clean session and
// disconnects once the CONNACK says the broker accepted it.
func (r *runner) endSession(ctx context.Context, spec *connSpec) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	defer cancel()
	nc, err := r.dialer.dial(ctx, spec.index, r.cfg.Brokers[spec.broker])
	if err != nil {
		return err
	}
	defer func() { _ = nc.Close() }()
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	ver := codec.Version(r.cfg.protocolVersion())
	cp := r.cfg.connectPacket(ver, spec.clientID)
	if _, err := nc.Write(cp.AppendTo(nil, ver)); err != nil {
		return err
	}
	buf := make([]byte, 0, 64)
	for {
		_, n, err := codec.Split(buf, 0)
		if err != nil {
			return fmt.Errorf("reading CONNACK: %w", err)
		}
		if n > 0 {
			buf = buf[:n]
			break
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		k, err := nc.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return fmt.Errorf("reading CONNACK: %w", err)
		}
		buf = buf[:len(buf)+k]
	}
	p, err := codec.Decode(buf, ver)
	if err != nil {
		return fmt.Errorf("reading CONNACK: %w", err)
	}
	ack, ok := p.(*codec.Connack)
	if !ok {
		return fmt.Errorf("the broker answered CONNECT with %v", p.Type())
	}
	if ack.ReasonCode != codec.Success {
		return fmt.Errorf("CONNACK refused: %s", connackReason(ver, ack.ReasonCode))
	}
	d := codec.Disconnect{}
	_, _ = nc.Write(d.AppendTo(nil, ver))
	_ = nc.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, nc) // until the broker closes
	return nil
}
