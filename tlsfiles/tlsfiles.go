// Package tlsfiles owns TLS material read from PEM files for a server: a
// certificate and key that can change while the server runs, and the CA
// that client certificates are verified against.
//
// A Reloader serves the certificate through tls.Config.GetCertificate,
// so a reload changes what new handshakes see and leaves established
// connections alone. Reload on demand (SIGHUP in cmd/loopmq) or let Watch
// poll the files' modification time and size: polling every few seconds
// costs two stat calls and needs no file-notification dependency, and a
// certificate written in several steps (cert, then key) is retried until
// the pair loads.
//
// It imports nothing from loopmq: the engine takes a *tls.Config, from
// here or from an embedder.
package tlsfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Reloader holds a certificate loaded from a PEM certificate file and a
// PEM key file. Its methods are safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	mu     sync.Mutex // serialises loads
	loaded stamp      // the files as they were when last loaded
	failed stamp      // the files as they were when a load last failed (logged once)
}

// stamp identifies a version of the two files.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// NewReloader loads the certificate and key; log (nil: slog.Default())
// receives reloads and failures.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// GetCertificate returns the current certificate; use it as
// tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

// Certificate returns the current certificate.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// Reload reads both files now. On error the previous certificate stays
// in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil {
		return err
	}
	return r.load(st)
}

// load reads the pair; r.mu is held.
func (r *Reloader) load(st stamp) error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		r.failed = st
		return fmt.Errorf("load TLS certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil && len(c.Certificate) > 0 {
		c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	r.cert.Store(&c)
	r.loaded, r.failed = st, stamp{}
	return nil
}

func (r *Reloader) stat() (stamp, error) {
	cs, err := os.Stat(r.certFile)
	if err != nil {
		return stamp{}, fmt.Errorf("TLS certificate: %w", err)
	}
	ks, err := os.Stat(r.keyFile)
	if err != nil {
		return stamp{}, fmt.Errorf("TLS key: %w", err)
	}
	return stamp{certMod: cs.ModTime(), keyMod: ks.ModTime(), certSize: cs.Size(), keySize: ks.Size()}, nil
}

// Watch reloads the pair whenever either file's modification time or
// size changes, checking every interval, until ctx is done. A pair that
// does not load (half written) is retried at the next check.
func (r *Reloader) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}

// check reloads if the files changed since the last load.
func (r *Reloader) check() {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.stat()
	if err != nil || st == r.loaded {
		return
	}
	prev := r.failed
	if err := r.load(st); err != nil {
		if st != prev {
			r.log.Warn("TLS certificate changed but does not load; keeping the previous one", "error", err)
		}
		return
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", subject(r.cert.Load()))
}

func subject(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.String()
}

// ClientAuth parses a client certificate mode: "none" (not asked for),
// "optional" (verified against the CA when the client sends one) or
// "required" (the handshake fails without a verified one).
func ClientAuth(mode string) (tls.ClientAuthType, error) {
	switch mode {
	case "", "none":
		return tls.NoClientCert, nil
	case "optional":
		return tls.VerifyClientCertIfGiven, nil
	case "required":
		return tls.RequireAndVerifyClientCert, nil
	}
	return tls.NoClientCert, fmt.Errorf("client certificate mode %q: want none, optional or required", mode)
}

// LoadCA reads a PEM file of CA certificates.
func LoadCA(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", file)
	}
	return pool, nil
}

// ServerConfig returns a TLS server configuration that takes its
// certificate from r and, unless auth is tls.NoClientCert, verifies
// client certificates against the CAs in caFile, which ca (non-nil then)
// reloads: each handshake uses the CAs last loaded.
func ServerConfig(r *Reloader, caFile string, auth tls.ClientAuthType) (cfg *tls.Config, ca *CAReloader, err error) {
	cfg = &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12, ClientAuth: auth}
	if auth == tls.NoClientCert {
		return cfg, nil, nil
	}
	if caFile == "" {
		return nil, nil, errors.New("client certificates need a CA file to verify them against")
	}
	ca = &CAReloader{file: caFile, base: cfg}
	if err := ca.Reload(); err != nil {
		return nil, nil, err
	}
	cfg.ClientCAs = ca.cfg.Load().ClientCAs
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return ca.cfg.Load(), nil }
	return cfg, ca, nil
}

// CAReloader holds the CA certificates client certificates are verified
// against, read from a PEM file, and the server configuration built on
// them. Reload replaces both for new handshakes; established connections
// keep what they were verified with. Safe for concurrent use.
type CAReloader struct {
	file  string
	base  *tls.Config // the configuration to clone; never changed after ServerConfig
	cfg   atomic.Pointer[tls.Config]
	count atomic.Int32 // certificates in the file last loaded
}

// Reload reads the CA file again; on error the previous CAs stay.
func (c *CAReloader) Reload() error {
	pem, err := os.ReadFile(c.file)
	if err != nil {
		return fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("CA file %s: no PEM certificate in it", c.file)
	}
	cfg := c.base.Clone()
	cfg.GetConfigForClient = nil // this one is what the base's callback returns
	cfg.ClientCAs = pool
	c.cfg.Store(cfg)
	c.count.Store(int32(len(pool.Subjects())))
	return nil
}

// Certificates returns how many CA certificates were last loaded.
func (c *CAReloader) Certificates() int { return int(c.count.Load()) }
