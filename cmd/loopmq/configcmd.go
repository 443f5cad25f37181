package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.yaml.in/yaml/v3"
)

const configUsage = `loopmq config checks and converts configurations.

Usage: loopmq config check FILE            check a YAML config file
       loopmq config check -mosquitto FILE  check a Mosquitto config file
                                            (-config FILE and -mosquitto-conf
                                            FILE, the broker's flags, work too)
       loopmq config print [flags]          print the configuration the broker
                                            would run with, as YAML (takes the
                                            broker's flags, -config and
                                            -mosquitto-conf among them)

check loads what the file names (password and ACL files, certificates) as
the broker would, and exits 1 with every error found, each naming its key
and line. Nothing listens. "print -mosquitto-conf mosquitto.conf" turns a
Mosquitto configuration into a loopmq.yaml.
`

// runConfig runs "loopmq config ..."; it returns the exit code.
func runConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, configUsage)
		return 2
	}
	switch args[0] {
	case "check":
		return configCheck(args[1:], stdout, stderr)
	case "print":
		lc, err := loadConfig("loopmq config print", args[1:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "loopmq: %v\n", err)
			return 1
		}
		for _, w := range lc.warnings {
			fmt.Fprintf(stderr, "# not supported, left out: %s\n", w)
		}
		out, err := yaml.Marshal(&lc.cfg)
		if err != nil {
			fmt.Fprintf(stderr, "loopmq: %v\n", err)
			return 1
		}
		_, _ = stdout.Write(out)
		return 0
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, configUsage)
		return 0
	}
	fmt.Fprintf(stderr, "loopmq config: unknown command %q\n\n%s", args[0], configUsage)
	return 2
}

// configCheck validates a file without starting the broker.
func configCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loopmq config check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mosq := fs.Bool("mosquitto", false, "FILE is a Mosquitto config file (mosquitto.conf)")
	// The broker's own flags name the file too, so that a command line
	// that starts the broker can be checked by putting "config check"
	// in front of it.
	yamlFile := fs.String("config", "", "YAML config file to check (as the broker's -config)")
	mosqFile := fs.String("mosquitto-conf", "", "Mosquitto config file to check (as the broker's -mosquitto-conf)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	files := fs.Args()
	if *yamlFile != "" {
		files = append(files, *yamlFile)
	}
	if *mosqFile != "" {
		files = append(files, *mosqFile)
		*mosq = true
	}
	if len(files) != 1 || (*yamlFile != "" && *mosq) {
		fmt.Fprintf(stderr, "loopmq config check: name one file\n\n%s", configUsage)
		return 2
	}
	file := files[0]
	lc := &loaded{cfg: defaultConfig(), org: origins{}, source: file}
	var err error
	if *mosq {
		lc.warnings, err = loadMosquittoConf(file, &lc.cfg, lc.org)
	} else {
		err = loadConfigFile(file, &lc.cfg, lc.org)
	}
	err = validateAfter(err, &lc.cfg, lc.org)
	if err == nil && *mosq {
		lc.defaults = mosquittoDefaults(&lc.cfg, lc.org)
	}
	if err == nil {
		// Load the files it names, as the broker would.
		_, err = buildBroker(&lc.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	for _, w := range lc.warnings {
		fmt.Fprintf(stderr, "warning: not supported, ignored: %s\n", w)
	}
	for _, d := range lc.defaults {
		fmt.Fprintf(stderr, "warning: not set, loopmq's default applies: %s\n", d)
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "error: %s\n", line)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK\n", file)
	return 0
}

// joinWarnings puts the unsupported options in one line.
func joinWarnings(ws []string) string { return strings.Join(ws, "; ") }
