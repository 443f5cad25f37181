package main

import (
	"runtime"
	"runtime/debug"
)

// version overrides the version found in the build information; set it
// at link time: go build -ldflags "-X main.version=v1.2.3" ./cmd/loopmq
var version string

// buildVersion returns loopmq's version: the -X override, else the main
// module's version (set by `go install module@version`), else the VCS
// revision the binary was built from, else "devel".
func buildVersion() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}

// versionLine is what `loopmq version` prints.
func versionLine() string {
	return "loopmq " + buildVersion() + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
