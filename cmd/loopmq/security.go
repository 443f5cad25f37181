package main

import (
	"flag"
	"fmt"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/fileauth"
)

// securityFlags are Mosquitto's password_file, acl_file and
// allow_anonymous as flags.
type securityFlags struct {
	passwordFile, aclFile string
	allowAnonymous        bool
	anonymousSet          bool // -allow-anonymous given explicitly
}

func (sf *securityFlags) register() {
	flag.StringVar(&sf.passwordFile, "password-file", "", "Mosquitto password file (mosquitto_passwd or loopmq passwd); reloaded on SIGHUP")
	flag.StringVar(&sf.aclFile, "acl-file", "", "Mosquitto ACL file; reloaded on SIGHUP")
	flag.BoolVar(&sf.allowAnonymous, "allow-anonymous", false,
		"admit clients without a user name (default: true without -password-file, false with it)")
}

// apply installs the files' hooks in opts; it returns the Auth to reload
// on SIGHUP, nil when neither file is given.
func (sf *securityFlags) apply(opts *engine.Options) (*fileauth.Auth, error) {
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "allow-anonymous" {
			sf.anonymousSet = true
		}
	})
	if sf.passwordFile == "" && sf.aclFile == "" {
		if sf.anonymousSet && !sf.allowAnonymous {
			// No file to check a user name against: refuse anonymous
			// clients, admit the others.
			opts.AllowAnonymous = &sf.allowAnonymous
		}
		return nil, nil
	}
	a, err := fileauth.Load(sf.passwordFile, sf.aclFile, opts.Logger)
	if err != nil {
		return nil, err
	}
	allow := sf.allowAnonymous
	if !sf.anonymousSet {
		allow = !a.HasPasswords() // [issue 8] anonymous refused once passwords are configured
	}
	opts.AllowAnonymous = &allow
	opts.Authenticator = a
	opts.Authorizer = a
	return a, nil
}

// reload re-reads the files and installs them, so the new ACL applies to
// topics sessions have already seen too.
func (sf *securityFlags) reload(a *fileauth.Auth, srv *engine.Server) error {
	if a == nil {
		return nil
	}
	if err := a.Reload(); err != nil {
		return fmt.Errorf("keeping the previous password and ACL files: %w", err)
	}
	srv.SetAuthorizer(a)
	return nil
}
