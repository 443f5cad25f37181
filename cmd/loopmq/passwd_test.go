package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/passwd"
)

// TestMain lets a test run the real main() in a child process: the
// binary-level dispatch of "loopmq passwd".
func TestMain(m *testing.M) {
	if os.Getenv("LOOPMQ_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	removeTestBinary() // serve_test.go
	os.Exit(code)
}

type passwdRun struct {
	code           int
	stdout, stderr string
}

// runP runs the subcommand with the given typed passwords (nil: batch).
func runP(t *testing.T, typed []string, confirm bool, args ...string) passwdRun {
	t.Helper()
	var out, errb bytes.Buffer
	pio := passwdIO{stdout: &out, stderr: &errb, confirm: confirm}
	pio.readPassword = func(string) ([]byte, error) {
		if len(typed) == 0 {
			return nil, fmt.Errorf("no more input")
		}
		p := typed[0]
		typed = typed[1:]
		return []byte(p), nil
	}
	code := runPasswd(args, pio)
	return passwdRun{code, out.String(), errb.String()}
}

func load(t *testing.T, path string) *passwd.File {
	t.Helper()
	f, err := passwd.Load(path)
	require.NoError(t, err)
	return f
}

func TestPasswdBatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	r := runP(t, nil, false, "-b", path, "alice", "a")
	require.Equal(t, 1, r.code, "no -c on a missing file")
	require.Contains(t, r.stderr, "use -c")

	require.Zero(t, runP(t, nil, false, "-c", "-b", path, "alice", "a").code)
	require.Zero(t, runP(t, nil, false, "-b", path, "bob", "b").code)
	require.Zero(t, runP(t, nil, false, "-b", "-I", "1000", path, "alice", "a2").code)
	f := load(t, path)
	require.Equal(t, 2, f.Len())
	require.True(t, f.Check([]byte("alice"), []byte("a2")))
	require.False(t, f.Check([]byte("alice"), []byte("a")))
	require.True(t, f.Check([]byte("bob"), []byte("b")))
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Regexp(t, `^alice:\$7\$1000\$[^$]{16}\$[^$]{88}\nbob:\$7\$101\$`, string(text))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	require.Zero(t, runP(t, nil, false, "-D", path, "alice").code)
	require.Equal(t, 1, runP(t, nil, false, "-D", path, "alice").code, "already gone")
	f = load(t, path)
	require.Equal(t, 1, f.Len())

	require.Zero(t, runP(t, nil, false, "-c", "-b", path, "carol", "c").code, "-c overwrites")
	require.Equal(t, 1, load(t, path).Len())
}

func TestPasswdInteractive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	r := runP(t, []string{"one", "two"}, true, "-c", path, "alice")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "do not match")
	_, err := os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "nothing written on mismatch")

	require.Zero(t, runP(t, []string{"same", "same"}, true, "-c", path, "alice").code)
	require.Zero(t, runP(t, []string{"piped"}, false, path, "bob").code, "from a pipe: one line, no confirmation")
	f := load(t, path)
	require.True(t, f.Check([]byte("alice"), []byte("same")))
	require.True(t, f.Check([]byte("bob"), []byte("piped")))
}

func TestPasswdLineReader(t *testing.T) {
	read := lineReader(strings.NewReader("first\r\nsecond"))
	p, err := read("")
	require.NoError(t, err)
	require.Equal(t, "first", string(p))
	p, err = read("")
	require.NoError(t, err)
	require.Equal(t, "second", string(p))
	_, err = read("")
	require.Error(t, err)
}

func TestPasswdUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(path, []byte("# users\nalice:plain-a\nbob:plain-b\n"), 0o640))
	require.Zero(t, runP(t, nil, false, "-U", path).code)
	f := load(t, path)
	require.True(t, f.Check([]byte("alice"), []byte("plain-a")))
	require.True(t, f.Check([]byte("bob"), []byte("plain-b")))
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(text), "# users\nalice:$7$101$"), string(text))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "mode kept")
}

func TestPasswdUsageErrors(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		r := runP(t, nil, false, args...)
		require.Equal(t, 2, r.code, "%v", args)
		require.Contains(t, r.stderr, want, "%v", args)
	}
	f("-c and -D", "-c", "-D", "f", "u")
	f("-U cannot", "-U", "-b", "f")
	f("-U takes", "-U", "f", "u")
	f("-D takes", "-D", "f")
	f("-D cannot be used with -b", "-D", "-b", "f", "u", "p")
	f("-b takes", "-b", "f", "u")
	f("want the password file", "f")
	f("-I must", "-I", "0", "-b", "f", "u", "p")
	f("flag provided but not defined", "-x")

	r := runP(t, nil, false, "-c", "-b", filepath.Join(t.TempDir(), "pw"), "a:b", "p")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "username")
}

// TestPasswdDispatch runs the real binary entry point: "loopmq passwd"
// reaches the subcommand, anything else stays the broker.
func TestPasswdDispatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	cmd := exec.Command(os.Args[0], "passwd", "-c", "-b", path, "alice", "pw")
	cmd.Env = append(os.Environ(), "LOOPMQ_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.True(t, load(t, path).Check([]byte("alice"), []byte("pw")))

	cmd = exec.Command(os.Args[0], "-h")
	cmd.Env = append(os.Environ(), "LOOPMQ_RUN_MAIN=1")
	out, _ = cmd.CombinedOutput()
	require.Contains(t, string(out), "-listen", "broker flags still parsed")
}

// TestPasswdFileAcceptedByMosquitto: a file written by "loopmq passwd"
// lets mosquitto_pub in with the right password and not with a wrong one.
func TestPasswdFileAcceptedByMosquitto(t *testing.T) {
	const broker = "/usr/sbin/mosquitto"
	if _, err := os.Stat(broker); err != nil {
		t.Skipf("%s not found (apt-get install mosquitto): %v", broker, err)
	}
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skipf("mosquitto_pub not found (apt-get install mosquitto-clients): %v", err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	require.Zero(t, runP(t, nil, false, "-c", "-b", pw, "alice", "s3cret pass").code)
	require.Zero(t, runP(t, nil, false, "-b", "-I", "1000", pw, "bob", "other").code)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	require.NoError(t, ln.Close())
	conf := fmt.Sprintf("listener %d 127.0.0.1\npassword_file %s\nallow_anonymous false\n", port, pw)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else Mosquitto drops to user "mosquitto", who cannot read t.TempDir()
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o600))
	var logs bytes.Buffer
	m := exec.Command(broker, "-c", confPath)
	m.Stdout, m.Stderr = &logs, &logs
	require.NoError(t, m.Start())
	t.Cleanup(func() {
		_ = m.Process.Kill()
		_ = m.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "mosquitto did not start: %s", &logs)

	publish := func(user, pass string) error {
		cmd := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-u", user, "-P", pass, "-t", "t", "-m", "m")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	require.NoError(t, publish("alice", "s3cret pass"), "mosquitto log: %s", &logs)
	require.NoError(t, publish("bob", "other"), "mosquitto log: %s", &logs)
	require.Error(t, publish("alice", "wrong"))
	require.Error(t, publish("carol", "s3cret pass"))
}
