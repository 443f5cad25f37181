// Package fileauth is the broker's default authentication and
// authorization: Mosquitto's password_file and acl_file, read as they are
// (packages passwd and acl), behind the engine's Authenticator and
// Authorizer hooks. It owns the glue only: which file answers what, the
// reason codes, logging of failed logins, and reloading both files (on
// SIGHUP in cmd/loopmq) without a restart.
//
// Concurrency: an Auth is used by every event loop at once. The loaded
// files are immutable and swapped whole by Reload (atomic pointers), so
// the hooks take no lock and never block.
package fileauth

import (
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/loopmq/loopmq/acl"
	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/passwd"
)

// Auth answers the engine's hooks from a password file and an ACL file;
// either may be absent (no path): then everyone with any password, or
// every topic, is allowed, as in Mosquitto without that file.
type Auth struct {
	pwPath, aclPath string
	pw              atomic.Pointer[passwd.File]
	acl             atomic.Pointer[acl.File]
	log             *slog.Logger
}

// Load reads the files at pwPath and aclPath ("" for none). A file that
// does not load is an error naming its line: nothing is half loaded.
func Load(pwPath, aclPath string, log *slog.Logger) (*Auth, error) {
	if log == nil {
		log = slog.Default()
	}
	a := &Auth{pwPath: pwPath, aclPath: aclPath, log: log}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload reads both files again. On an error the files in use stay in
// use. Installing the Auth again with engine.Server.SetAuthorizer makes
// the new ACL apply to topics sessions have already seen.
func (a *Auth) Reload() error {
	var pw *passwd.File
	var ac *acl.File
	var err error
	if a.pwPath != "" {
		if pw, err = passwd.Load(a.pwPath); err != nil {
			return fmt.Errorf("password file: %w", err)
		}
	}
	if a.aclPath != "" {
		if ac, err = acl.Load(a.aclPath); err != nil {
			return fmt.Errorf("acl file: %w", err)
		}
	}
	a.pw.Store(pw)
	a.acl.Store(ac)
	return nil
}

// Counts returns the number of users in the password file and of rules
// in the ACL file in use (0 for an absent file), for logs.
func (a *Auth) Counts() (users, rules int) {
	if pw := a.pw.Load(); pw != nil {
		users = pw.Len()
	}
	if ac := a.acl.Load(); ac != nil {
		rules = ac.Len()
	}
	return users, rules
}

// HasPasswords reports whether a password file is configured: then
// anonymous clients are refused unless allowed explicitly.
func (a *Auth) HasPasswords() bool { return a.pwPath != "" }

// Authenticate implements engine.Authenticator. Clients without a User
// Name reach it only when anonymous clients are allowed
// (engine.Options.AllowAnonymous); with a password file, a User Name needs
// the matching password. A refusal is Bad User Name or Password: CONNACK
// 0x86 for 5.0, return code 4 for 3.1 and 3.1.1, counted as
// engine.RefusedBadCredentials. Mosquitto 2.0 answers Not Authorized
// instead (0x87, return code 5), as it does a client refused for having no
// User Name, which loopmq's engine answers so too.
func (a *Auth) Authenticate(info engine.ConnectInfo) codec.ReasonCode {
	pw := a.pw.Load()
	if pw == nil || info.Username == nil {
		return codec.Success
	}
	// A User Name without a Password never matches (the file cannot tell
	// an empty password from none; Mosquitto refuses it too).
	if info.Password != nil && pw.Check(info.Username, info.Password) {
		return codec.Success
	}
	// Never log the password.
	a.log.Warn("authentication failed", "client", info.ClientID, "username", string(info.Username),
		"remote", addr(info), "password_given", info.Password != nil)
	return codec.BadUserNameOrPassword // 3.1/3.1.1: return code 4 (MQTT 3.1.1 section 3.2.2.3)
}

func addr(info engine.ConnectInfo) string {
	if info.Remote == nil {
		return ""
	}
	return info.Remote.String()
}

// Authorize implements engine.Authorizer with Mosquitto's ACL semantics
// (package acl). Subscriptions: a filter with wildcards is allowed, and
// each message it matches is then checked for Read, as Mosquitto does
// (so `#` works for a client that may read only part of the tree); a
// filter without wildcards is refused when its topic may not be read.
// A shared subscription is checked by its inner filter.
func (a *Auth) Authorize(id engine.Identity, topic string, acc engine.Access) bool {
	f := a.acl.Load()
	if f == nil {
		return true
	}
	switch acc {
	case engine.Read:
		return f.Allowed(id.Username, id.Anonymous, id.ClientID, topic, acl.Read)
	case engine.Write:
		return f.Allowed(id.Username, id.Anonymous, id.ClientID, topic, acl.Write)
	case engine.Subscribe:
		filter := []byte(topic)
		if _, inner, ok := codec.SplitShared(filter); ok {
			filter = inner
		}
		if hasWildcard(filter) {
			return true
		}
		return f.Allowed(id.Username, id.Anonymous, id.ClientID, string(filter), acl.Read)
	}
	return false
}

func hasWildcard(filter []byte) bool {
	for _, c := range filter {
		if c == '+' || c == '#' {
			return true
		}
	}
	return false
}
