package loadgen

import (
	"fmt"
	"slices"
)

// connSpec is one connection of a scenario: whom it connects to, what it
// subscribes to and which sources it publishes. Every process builds the
// same plan from the same Config and takes its share.
type connSpec struct {
	index    int // global connection index: picks the source address
	group    int // the process that owns it is group % procs
	broker   int // index into Config.Brokers
	clientID string

	// Subscriber side: filter ("" for none) and the range of source ids
	// [expectLo, expectHi) this subscriber should receive every message of.
	filter             string
	expectLo, expectHi uint32

	// Publisher side: the sources, sent round robin at rate messages/s in
	// total (0 = as fast as the window allows), shifted by phase.
	sources []sourceSpec
	rate    float64
	phase   float64
}

// sourceSpec is one stream of messages with its own sequence numbers.
type sourceSpec struct {
	id    uint32
	topic string
}

func (s *connSpec) publishes() bool  { return len(s.sources) > 0 }
func (s *connSpec) subscribes() bool { return s.filter != "" }

// schedule is the timetable of a paced publisher (rate > 0), ending with
// the measured window.
func (s *connSpec) schedule(cfg *Config) schedule {
	return schedule{rate: s.rate, ramp: cfg.Ramp, phase: s.phase, end: cfg.Warmup + cfg.Duration}
}

// sourceClocks returns the timetable of every source of a paced publisher,
// by source id: any process can tell when any message was due.
func (p *plan) sourceClocks(cfg *Config) map[uint32]sourceClock {
	clocks := make(map[uint32]sourceClock)
	for i := range p.conns {
		s := &p.conns[i]
		if s.rate <= 0 {
			continue
		}
		sched := s.schedule(cfg)
		for j, src := range s.sources {
			clocks[src.id] = sourceClock{sched: sched, n: uint64(len(s.sources)), j: uint64(j)}
		}
	}
	return clocks
}

// plan is a whole scenario.
type plan struct {
	conns    []connSpec
	nsources int
}

// buildPlan lays out the scenario of cfg (defaults set).
func buildPlan(cfg *Config) plan {
	var p plan
	n, pre := cfg.N, cfg.TopicPrefix
	nb := len(cfg.Brokers)
	id := func(role byte, i int) string { return fmt.Sprintf("lg-%08x-%c%d", cfg.RunID, role, i) }
	add := func(s connSpec) {
		s.index = len(p.conns)
		p.conns = append(p.conns, s)
	}
	perPub := cfg.Rate / float64(n)
	switch cfg.Scenario {
	case ScenarioPairs:
		for i := range n {
			topic := fmt.Sprintf("%sloadgen/pairs/%d", pre, i)
			add(connSpec{group: i, broker: i % nb, clientID: id('s', i), filter: topic,
				expectLo: uint32(i), expectHi: uint32(i + 1)})
			add(connSpec{group: i, broker: i % nb, clientID: id('p', i),
				sources: []sourceSpec{{uint32(i), topic}}, rate: perPub, phase: phaseOf(i)})
		}
		p.nsources = n
	case ScenarioFanIn:
		for i := range n {
			add(connSpec{group: i, broker: i % nb, clientID: id('p', i),
				sources: []sourceSpec{{uint32(i), fmt.Sprintf("%sloadgen/fanin/%d", pre, i)}}, rate: perPub, phase: phaseOf(i)})
		}
		for j := range cfg.Subs {
			add(connSpec{group: j, broker: (n + j) % nb, clientID: id('s', j), filter: pre + "loadgen/fanin/+",
				expectLo: 0, expectHi: uint32(n)})
		}
		p.nsources = n
	case ScenarioFanOut:
		topic := pre + "loadgen/fanout"
		add(connSpec{group: 0, broker: 0, clientID: id('p', 0),
			sources: []sourceSpec{{0, topic}}, rate: cfg.Rate})
		for j := range n {
			add(connSpec{group: j, broker: (1 + j) % nb, clientID: id('s', j), filter: topic, expectLo: 0, expectHi: 1})
		}
		p.nsources = 1
	case ScenarioFleet:
		// Sources 0..n-1 are the devices' telemetry, n..2n-1 the backend's
		// command streams, one per device.
		backend := connSpec{group: 0, broker: 0, clientID: id('b', 0),
			filter: pre + "devices/+/telemetry", expectLo: 0, expectHi: uint32(n), rate: cfg.CmdRate}
		for i := range n {
			dev := fmt.Sprintf("%sdevices/dev%d/", pre, i)
			add(connSpec{group: i, broker: i % nb, clientID: id('d', i), filter: dev + "cmd",
				expectLo: uint32(n + i), expectHi: uint32(n + i + 1),
				sources: []sourceSpec{{uint32(i), dev + "telemetry"}}, rate: perPub, phase: phaseOf(i)})
			if cfg.CmdRate > 0 {
				backend.sources = append(backend.sources, sourceSpec{uint32(n + i), dev + "cmd"})
			} else {
				p.conns[i].expectHi = p.conns[i].expectLo // no commands to expect
			}
		}
		add(backend)
		p.nsources = 2 * n
	case ScenarioConn:
		for i := range n {
			add(connSpec{group: i, broker: i % nb, clientID: id('c', i)})
		}
	}
	return p
}

// share returns the connections process worker of procs owns, those that
// subscribe first so that subscriptions exist before anything is published.
func (p *plan) share(worker, procs int) []*connSpec {
	var mine []*connSpec
	for i := range p.conns {
		if p.conns[i].group%procs == worker {
			mine = append(mine, &p.conns[i])
		}
	}
	slices.SortStableFunc(mine, func(a, b *connSpec) int {
		switch {
		case a.subscribes() && !b.subscribes():
			return -1
		case b.subscribes() && !a.subscribes():
			return 1
		}
		return 0
	})
	return mine
}
