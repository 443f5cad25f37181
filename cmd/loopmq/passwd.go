package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/loopmq/loopmq/passwd"
)

const passwdUsage = `loopmq passwd manages Mosquitto password files (mosquitto_passwd's options).

Usage: loopmq passwd [-I iterations] [-c | -D] passwordfile username
       loopmq passwd [-I iterations] [-c] -b passwordfile username password
       loopmq passwd [-I iterations] -U passwordfile

 -b : batch mode: the password is the last argument instead of a prompt.
 -c : create a new password file, overwriting an existing one.
 -D : delete the username rather than adding or updating its password.
 -I : PBKDF2 iterations of new hashes (default 101, as mosquitto_passwd 2.0).
 -U : hash every plain-text password of a file (hashes are left alone).

Hashes are written as $7$ (PBKDF2-HMAC-SHA512), which Mosquitto 2.0 and
later read too. Without -b the password is read from the terminal twice,
or as one line from standard input when it is not a terminal.
`

// passwdIO is what runPasswd talks to; tests replace it.
type passwdIO struct {
	stdout, stderr io.Writer
	// readPassword returns one password typed after prompt.
	readPassword func(prompt string) ([]byte, error)
	// confirm: ask twice and compare (a terminal); a pipe is read once.
	confirm bool
}

// stdPasswdIO reads passwords from the terminal without echo when stdin is
// one, else a line at a time from stdin.
func stdPasswdIO() passwdIO {
	pio := passwdIO{stdout: os.Stdout, stderr: os.Stderr}
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		pio.confirm = true
		pio.readPassword = func(prompt string) ([]byte, error) {
			fmt.Fprint(os.Stderr, prompt)
			defer fmt.Fprintln(os.Stderr)
			return term.ReadPassword(fd)
		}
		return pio
	}
	pio.readPassword = lineReader(os.Stdin)
	return pio
}

// lineReader returns one line of r per call, without its line ending.
func lineReader(r io.Reader) func(string) ([]byte, error) {
	br := bufio.NewReader(r)
	return func(string) ([]byte, error) {
		line, err := br.ReadBytes('\n')
		if err == io.EOF && len(line) > 0 {
			err = nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading password from standard input: %w", err)
		}
		return bytes.TrimRight(line, "\r\n"), nil
	}
}

// runPasswd runs "loopmq passwd args..." and returns the exit code: 0 done,
// 1 failed, 2 bad usage.
func runPasswd(args []string, pio passwdIO) int {
	fs := flag.NewFlagSet("loopmq passwd", flag.ContinueOnError)
	fs.SetOutput(pio.stderr)
	fs.Usage = func() { fmt.Fprint(pio.stderr, passwdUsage) }
	var (
		create     = fs.Bool("c", false, "create or overwrite the file")
		batch      = fs.Bool("b", false, "password on the command line")
		del        = fs.Bool("D", false, "delete the user")
		upgrade    = fs.Bool("U", false, "hash plain-text passwords")
		iterations = fs.Int("I", passwd.DefaultIterations, "PBKDF2 iterations")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(msg string) int {
		fmt.Fprintf(pio.stderr, "loopmq passwd: %s\n\n%s", msg, passwdUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(pio.stderr, "loopmq passwd: %v\n", err)
		return 1
	}
	rest := fs.Args()
	switch {
	case *iterations < 1:
		return usage("-I must be at least 1")
	case *create && *del:
		return usage("-c and -D cannot be used together")
	case *upgrade && (*create || *del || *batch):
		return usage("-U cannot be used with -c, -D or -b")
	case *del && *batch:
		return usage("-D cannot be used with -b")
	}

	switch {
	case *upgrade:
		if len(rest) != 1 {
			return usage("-U takes the password file only")
		}
		ed, err := passwd.LoadEditor(rest[0])
		if err != nil {
			return fail(err)
		}
		ed.Upgrade(*iterations)
		if err := ed.Save(rest[0]); err != nil {
			return fail(err)
		}
		return 0

	case *del:
		if len(rest) != 2 {
			return usage("-D takes the password file and a username")
		}
		ed, err := passwd.LoadEditor(rest[0])
		if err != nil {
			return fail(err)
		}
		if !ed.Delete(rest[1]) {
			return fail(fmt.Errorf("user %q not found in %s", rest[1], rest[0]))
		}
		if err := ed.Save(rest[0]); err != nil {
			return fail(err)
		}
		return 0
	}

	want := 2
	if *batch {
		want = 3
	}
	if len(rest) != want {
		if *batch {
			return usage("-b takes the password file, a username and a password")
		}
		return usage("want the password file and a username")
	}
	file, user := rest[0], rest[1]
	if err := passwd.CheckUsername(user); err != nil {
		return fail(fmt.Errorf("username %q: %w", user, err))
	}
	ed := &passwd.Editor{}
	if !*create {
		var err error
		if ed, err = passwd.LoadEditor(file); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fail(fmt.Errorf("%s does not exist (use -c to create it)", file))
			}
			return fail(err)
		}
	}
	var pw []byte
	if *batch {
		pw = []byte(rest[2])
	} else {
		var err error
		if pw, err = pio.readPassword("Password: "); err != nil {
			return fail(err)
		}
		if pio.confirm {
			again, err := pio.readPassword("Reenter password: ")
			if err != nil {
				return fail(err)
			}
			if !bytes.Equal(pw, again) {
				return fail(errors.New("passwords do not match"))
			}
		}
	}
	if err := ed.Set(user, passwd.HashPBKDF2(pw, *iterations)); err != nil {
		return fail(err)
	}
	if err := ed.Save(file); err != nil {
		return fail(err)
	}
	return 0
}
