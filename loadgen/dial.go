package loadgen

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// dialer opens TCP (optionally TLS) connections from the configured source
// addresses.
type dialer struct {
	plain []net.Dialer // one per source address, or one without
	tls   *tls.Config  // nil for plain TCP
}

func newDialer(cfg *Config) (*dialer, error) {
	d := &dialer{}
	if len(cfg.SourceIPs) == 0 {
		d.plain = []net.Dialer{{}}
	}
	for _, s := range cfg.SourceIPs {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("source address %q is not an IP address", s)
		}
		d.plain = append(d.plain, net.Dialer{
			LocalAddr: &net.TCPAddr{IP: ip},
			// IP_BIND_ADDRESS_NO_PORT defers the choice of the local port
			// from bind() to connect(), where the kernel knows the remote
			// end: each source address then has the whole ephemeral range
			// for each broker address, instead of bind() reserving a port
			// for any destination.
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
				})
				if err != nil {
					return err
				}
				return serr
			},
		})
	}
	if cfg.TLS {
		tc := &tls.Config{InsecureSkipVerify: cfg.Insecure, ServerName: cfg.ServerName} //nolint:gosec // -insecure is the user's choice
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("read CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
			}
			tc.RootCAs = pool
		}
		d.tls = tc
	}
	return d, nil
}

// dial connects connection index to addr, from source address index mod
// the number of source addresses.
func (d *dialer) dial(ctx context.Context, index int, addr string) (net.Conn, error) {
	nd := &d.plain[index%len(d.plain)]
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, stageErr{"dial", err}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if d.tls == nil {
		return c, nil
	}
	cfg := d.tls
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, stageErr{"tls", err}
	}
	return tc, nil
}

// stageErr tags an error with the setup stage it happened at.
type stageErr struct {
	stage string
	err   error
}

func (e stageErr) Error() string { return e.stage + ": " + e.err.Error() }
func (e stageErr) Unwrap() error { return e.err }

// fdLimit returns the process's open file limit (soft; Go raises it to the
// hard limit at start-up).
func fdLimit() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// ephemeralPorts returns the size of the kernel's local port range.
func ephemeralPorts() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 28232 // Linux's default 32768-60999
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 28232
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 28232
	}
	return hi - lo + 1
}

// limitWarnings says, before any connection is made, which limits the
// process's share of the plan will run into.
func limitWarnings(cfg *Config, all []connSpec, mine []*connSpec, worker int) []string {
	var out []string
	who := "this process"
	if cfg.Procs > 1 {
		who = fmt.Sprintf("worker %d", worker)
	}
	// A process needs a few dozen descriptors of its own (epoll, pipes,
	// the clock's eventfd) besides one per connection.
	if lim := int(fdLimit()); lim > 0 && len(mine)+min(64, lim/4) > lim {
		reserve := min(64, lim/4)
		usable := max(lim-reserve, 1)
		need := (len(mine)*cfg.Procs + usable - 1) / usable
		out = append(out, fmt.Sprintf("%s opens %d connections but may hold only %d file descriptors: expect EMFILE; use -procs %d or more",
			who, len(mine), lim, max(need, cfg.Procs+1)))
	}
	if worker == 0 {
		out = append(out, portWarnings(cfg, all)...)
	}
	return out
}

// portWarnings says which source address and broker pairs of the whole plan
// need more local ports than the kernel's ephemeral range.
func portWarnings(cfg *Config, all []connSpec) []string {
	nsrc := max(1, len(cfg.SourceIPs))
	perPair := make(map[[2]int]int)
	for i := range all {
		perPair[[2]int{all[i].index % nsrc, all[i].broker}]++
	}
	ports := ephemeralPorts()
	var out []string
	for k, n := range perPair {
		if n <= ports {
			continue
		}
		src := "the default source address"
		if len(cfg.SourceIPs) > 0 {
			src = cfg.SourceIPs[k[0]]
		}
		out = append(out, fmt.Sprintf("%d connections from %s to %s but only %d local ports: expect EADDRNOTAVAIL; add -source-ips",
			n, src, cfg.Brokers[k[1]], ports))
	}
	slices.Sort(out)
	return out
}
