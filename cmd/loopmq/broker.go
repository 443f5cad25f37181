package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/fileauth"
	"github.com/loopmq/loopmq/store"
	"github.com/loopmq/loopmq/tlsfiles"
)

// broker is what a checked Config becomes: the engine's options and the
// parts that SIGHUP reloads.
type broker struct {
	opts engine.Options
	tls  *tlsfiles.Reloader   // nil without a certificate
	ca   *tlsfiles.CAReloader // nil without client certificates
	auth *fileauth.Auth       // nil without password and ACL files
}

// newLogger returns the logger cfg asks for, writing to w.
func newLogger(cfg LoggingConfig, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("logging.level: %w", err)
	}
	ho := &slog.HandlerOptions{Level: level, ReplaceAttr: errorText}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return slog.New(slog.NewTextHandler(w, ho)), nil
}

// errorText logs an error as its text. slog's handlers format an error
// value with %+v (the JSON handler with Error() already), under which
// errors from pebble (cockroachdb/errors) print a stack trace of many
// lines.
func errorText(_ []string, a slog.Attr) slog.Attr {
	if err, ok := a.Value.Any().(error); ok && a.Value.Kind() == slog.KindAny {
		return slog.String(a.Key, err.Error())
	}
	return a
}

// buildBroker turns cfg (validated) into engine options, loading the TLS
// certificate and the password and ACL files, so that a bad file stops
// the broker (and `loopmq config check`) before it listens.
func buildBroker(cfg *Config, log *slog.Logger) (*broker, error) {
	l := &cfg.Limits
	b := &broker{opts: engine.Options{
		Listen:               cfg.Listeners.TCP,
		TLSListen:            cfg.Listeners.TLS,
		WSListen:             cfg.Listeners.WS,
		WSSListen:            cfg.Listeners.WSS,
		Loops:                l.Loops,
		MaxInflight:          l.MaxInflight,
		MaxQueued:            l.MaxQueued,
		MaxQueuedInMemory:    cfg.Persistence.MemoryQueue,
		MaxStoreBytes:        uint64(cfg.Persistence.MaxDiskBytes),
		MaxQueuedBytes:       int(l.MaxQueuedBytes),
		QueueOverflow:        l.QueueOverflow,
		MaxPacketSize:        int(l.MaxPacketSize),
		MaxOutbound:          int(l.MaxOutbound),
		ReceiveMaximum:       l.ReceiveMaximum,
		TopicAliasMaximum:    l.TopicAliasMaximum,
		MaxTopicAliasOut:     l.MaxTopicAliasOut,
		MaxClientIDLen:       l.MaxClientIDLen,
		ConnectTimeout:       l.ConnectTimeout.D(),
		HandshakeTimeout:     l.HandshakeTimeout.D(),
		MaxSessionExpiry:     l.MaxSessionExpiry.D(),
		MaxKeepAlive:         l.MaxKeepAlive.D(),
		ResponseInformation:  cfg.ResponseInformation,
		MaxConnRatePerIP:     l.MaxConnRatePerIP,
		MaxAuthFailuresPerIP: l.MaxAuthFailuresPerIP,
		Logger:               log,

		NoRetain:                  !l.RetainAvailable,
		NoWildcardSubscriptions:   !l.WildcardSubscriptions,
		NoSharedSubscriptions:     !l.SharedSubscriptions,
		NoSubscriptionIdentifiers: !l.SubscriptionIdentifiers,
	}}
	if l.MaxQoS < 2 {
		q := byte(l.MaxQoS)
		b.opts.MaxQoS = &q
	}
	if err := b.applyTLS(&cfg.TLS); err != nil {
		return nil, err
	}
	if err := b.applyAuth(&cfg.Auth); err != nil {
		return nil, err
	}
	return b, nil
}

// applyTLS sets the TLS configuration of the tls and wss listeners.
func (b *broker) applyTLS(t *TLSConfig) error {
	if t.Cert == "" {
		return nil
	}
	auth, err := tlsfiles.ClientAuth(t.ClientCert)
	if err != nil {
		return fmt.Errorf("tls.client_cert: %w", err)
	}
	r, err := tlsfiles.NewReloader(t.Cert, t.Key, b.opts.Logger)
	if err != nil {
		return err
	}
	if b.opts.TLSConfig, b.ca, err = tlsfiles.ServerConfig(r, t.CA, auth); err != nil {
		return err
	}
	switch {
	case t.IdentityAsUsername:
		b.opts.TLSIdentity = engine.IdentityCommonName
	case t.SubjectAsUsername:
		b.opts.TLSIdentity = engine.IdentitySubject
	}
	b.tls = r
	return nil
}

// applyAuth installs the password and ACL files' hooks. Without a
// password file anonymous clients are admitted unless allow_anonymous is
// false; with one they are refused unless it is true [issue 8].
func (b *broker) applyAuth(a *AuthConfig) error {
	if a.PasswordFile == "" && a.ACLFile == "" {
		if a.AllowAnonymous != nil && !*a.AllowAnonymous {
			// No file to check a user name against: refuse anonymous
			// clients, admit the others.
			b.opts.AllowAnonymous = a.AllowAnonymous
		}
		return nil
	}
	fa, err := fileauth.Load(a.PasswordFile, a.ACLFile, b.opts.Logger)
	if err != nil {
		return err
	}
	allow := !fa.HasPasswords()
	if a.AllowAnonymous != nil {
		allow = *a.AllowAnonymous
	}
	b.opts.AllowAnonymous = &allow
	b.opts.Authenticator = fa
	b.opts.Authorizer = fa
	b.auth = fa
	return nil
}

// reload re-reads what SIGHUP reloads: the password and ACL files and
// the TLS certificate. A file that does not load leaves the previous one
// in force. Connections stay as they are. It logs what changed.
func (b *broker) reload(srv *engine.Server, log *slog.Logger) {
	if b.auth == nil && b.tls == nil {
		log.Info("SIGHUP: no password file, ACL file or TLS certificate to reload")
	}
	if b.auth != nil {
		users, rules := b.auth.Counts()
		if err := b.auth.Reload(); err != nil {
			log.Warn("SIGHUP: keeping the previous password and ACL files", "error", err)
		} else {
			srv.SetAuthorizer(b.auth) // the new ACL applies to known topics too
			u2, r2 := b.auth.Counts()
			log.Info("SIGHUP: password and ACL files reloaded", "users", u2, "users_before", users,
				"acl_rules", r2, "acl_rules_before", rules)
		}
	}
	if b.tls != nil {
		old := certSummary(b.tls)
		if err := b.tls.Reload(); err != nil {
			log.Warn("SIGHUP: keeping the previous TLS certificate", "error", err)
		} else {
			now := certSummary(b.tls)
			log.Info("SIGHUP: TLS certificate reloaded", "certificate", now, "changed", now != old)
		}
	}
	if b.ca != nil {
		before := b.ca.Certificates()
		if err := b.ca.Reload(); err != nil {
			log.Warn("SIGHUP: keeping the previous CA file", "error", err)
		} else {
			log.Info("SIGHUP: CA file reloaded", "certificates", b.ca.Certificates(), "certificates_before", before)
		}
	}
}

// certSummary describes the reloader's certificate for the log.
func certSummary(r *tlsfiles.Reloader) string {
	c := r.Certificate()
	if c == nil || c.Leaf == nil {
		return ""
	}
	return fmt.Sprintf("subject=%q serial=%s expires=%s", c.Leaf.Subject.String(), c.Leaf.SerialNumber,
		c.Leaf.NotAfter.UTC().Format("2006-01-02"))
}

// openStore opens the on-disk store the persistence section asks for
// (nil when persistence is off). A store that cannot be read is moved
// aside and a fresh one started, with an error in the log saying what
// and why: a damaged data directory must not stop the broker from
// starting (store.OpenPebbleRecovering). The configuration is already
// checked (Config.validate).
func openStore(p *PersistenceConfig, log *slog.Logger) (store.Store, error) {
	if !p.Enabled {
		return nil, nil
	}
	sync, err := store.ParseSyncPolicy(p.Sync)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(p.Dir)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", p.Dir, err)
	}
	st, rep, err := store.OpenPebbleRecovering(dir, store.PebbleOptions{Sync: sync,
		SyncInterval: p.SyncInterval.D(), Logger: log.With("component", "store")})
	if err != nil {
		return nil, err
	}
	// A store moved aside (rep.MovedTo) is logged by the store, with why.
	if rep != nil && rep.Undecodable > 0 {
		log.Error("the store holds records that cannot be read; they are skipped", "dir", dir, "count", rep.Undecodable)
	}
	return st, nil
}

// listenerSummary lists the configured listeners for the banner.
func listenerSummary(l *ListenersConfig) string {
	var parts []string
	for _, x := range []struct{ kind, addr string }{{"tcp", l.TCP}, {"tls", l.TLS}, {"ws", l.WS}, {"wss", l.WSS}} {
		if x.addr != "" {
			parts = append(parts, x.kind+"="+x.addr)
		}
	}
	return strings.Join(parts, " ")
}
