package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Broker limits, the same for both brokers. In-flight 32 is loopmq's
// default (Mosquitto's is 20). The queue is 100,000 messages per client so
// that neither broker drops at the fixed rates, where queues stay short,
// and so that drops at maximum rate come from the broker's own policy
// rather than from a small setting: Mosquitto also bounds each client's
// outgoing QoS 0 packets by max_queued_messages, while loopmq drops QoS 0
// to a client whose socket has more than 4 MiB waiting (its fixed
// MaxOutbound). loopmq's byte bound is raised so the count binds first.
const (
	maxInflight    = 32
	maxQueued      = 100000
	maxQueuedBytes = 256 << 20
)

const (
	brokerReadyTimeout = 5 * time.Second
	// brokerStopGrace is how long a broker has after SIGTERM; loopmq
	// gives its own shutdown 10 s, then writes the CPU profile.
	brokerStopGrace = 15 * time.Second
)

// Broker names, as used in results.
const (
	nameLoopmq    = "loopmq"
	nameMosquitto = "mosquitto"
)

// brokerKind starts one kind of broker.
type brokerKind struct {
	name string
	// command returns the command line for a broker on 127.0.0.1:port;
	// dir is a scratch directory for its files, profile the CPU profile
	// to write ("" for none).
	command func(port int, dir, profile string) (*exec.Cmd, error)
}

func loopmqKind(bin string) brokerKind {
	return brokerKind{name: nameLoopmq, command: func(port int, _, profile string) (*exec.Cmd, error) {
		args := loopmqArgs(port)
		if profile != "" {
			args = append(args, "-cpuprofile", profile)
		}
		return exec.Command(bin, args...), nil
	}}
}

func loopmqArgs(port int) []string {
	// No persistence: Mosquitto runs without it too (mosquittoConfig).
	return []string{"-listen", fmt.Sprintf("127.0.0.1:%d", port), "-log-level", "warn", "-persistence=false",
		"-max-inflight", strconv.Itoa(maxInflight), "-max-queued", strconv.Itoa(maxQueued),
		"-max-queued-bytes", strconv.Itoa(maxQueuedBytes)}
}

// mosquittoConfig is the whole configuration Mosquitto runs with.
func mosquittoConfig(port int) string {
	return fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages %d
max_queued_messages %d
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
`, port, maxInflight, maxQueued)
}

func mosquittoKind(bin string) brokerKind {
	return brokerKind{name: nameMosquitto, command: func(port int, dir, _ string) (*exec.Cmd, error) {
		conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
		if err := os.WriteFile(conf, []byte(mosquittoConfig(port)), 0o644); err != nil {
			return nil, fmt.Errorf("write Mosquitto config: %w", err)
		}
		return exec.Command(bin, "-c", conf), nil
	}}
}

// broker is one running broker process.
type broker struct {
	kind   string
	port   int
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been waited for
	log    *os.File
}

func (b *broker) pid() int     { return b.cmd.Process.Pid }
func (b *broker) addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// procs registers every child process this program started, so that
// cleanup can kill what is left on any exit path.
type procs struct {
	mu   sync.Mutex
	pids map[int]bool // pid → its own process group
}

func newProcs() *procs { return &procs{pids: map[int]bool{}} }

func (p *procs) add(pid int)    { p.mu.Lock(); p.pids[pid] = true; p.mu.Unlock() }
func (p *procs) remove(pid int) { p.mu.Lock(); delete(p.pids, pid); p.mu.Unlock() }

// killAll kills the process group of every registered process: only
// processes this program started, by their id.
func (p *procs) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for pid := range p.pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		delete(p.pids, pid)
	}
}

// ownGroup makes cmd the leader of a new process group (so a terminal's
// Ctrl-C reaches only this program, which stops children in order) that
// dies with this program.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// startBroker starts kind on a free loopback port and waits until it
// accepts connections. Its stderr and stdout go to logPath.
func startBroker(reg *procs, kind brokerKind, dir, logPath, profile string) (*broker, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd, err := kind.command(port, dir, profile)
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("broker log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", kind.name, err)
	}
	reg.add(cmd.Process.Pid)
	b := &broker{kind: kind.name, port: port, cmd: cmd, exited: make(chan struct{}), log: logf}
	go func() {
		_ = cmd.Wait()
		close(b.exited)
	}()
	deadline := time.Now().Add(brokerReadyTimeout)
	for {
		c, err := net.DialTimeout("tcp", b.addr(), 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return b, nil
		}
		select {
		case <-b.exited:
			b.stop(reg)
			return nil, fmt.Errorf("%s exited at start (%s); see %s", kind.name, cmd.ProcessState, logPath)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			b.stop(reg)
			return nil, fmt.Errorf("%s does not accept connections on %s after %v; see %s",
				kind.name, b.addr(), brokerReadyTimeout, logPath)
		}
	}
}

// stop ends the broker with SIGTERM, or SIGKILL after brokerStopGrace, and
// reports whether it had to be killed.
func (b *broker) stop(reg *procs) (killed bool) {
	defer func() {
		reg.remove(b.pid())
		_ = b.log.Close()
	}()
	select {
	case <-b.exited:
		return false
	default:
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		return false
	case <-time.After(brokerStopGrace):
		_ = syscall.Kill(-b.pid(), syscall.SIGKILL)
		<-b.exited
		return true
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// userHZ is the unit of /proc's CPU times (USER_HZ, 100 on Linux).
const userHZ = 100

// procCPU returns a process's utime+stime from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("bad /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// machineBusy returns the CPU time all processors spent busy (user, nice,
// system, irq, softirq) since boot, from /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("bad /proc/stat")
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7} { // user nice system irq softirq
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, errors.New("bad /proc/stat")
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
