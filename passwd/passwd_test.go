package passwd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Golden lines produced by the real tools (kept so CI checks them without
// the tools installed; the Test*Tool tests below regenerate them live):
//
//	mosquitto_passwd -c -b f alice secret            (Debian mosquitto 2.0.11)
//	mosquitto_passwd -H sha512 -b f bob hunter2
//	echo -n 'correct horse' | argon2 saltsaltsaltsalt -id -t 1 -k 47104 -p 1 -l 64 -e
//	                                                 (Mosquitto 2.1's argon2id parameters)
//	htpasswd -B -b -n -C 5 carol b-pass              (apache2-utils)
const golden = `# made by the real tools
alice:$7$101$rt73tug4Lz70dGL/$sHbV/pXMWjf2HYfKNb4IsxcwvV4hzOC12sg0ok+c9rAKGCqrF0vErP0LKcSjokypieBq40uVFYgebSQ+jIM7UA==
bob:$6$TD5Set6y2mfzoHKb$5eCHZK7k2NAEwu7lUyp9jx9VUBJ/AQe316hwsD1z5WseowlTKJ6E28k6hFQUPO9pY9dicfuED1rCP+q0OQR41Q==

dave:$argon2id$v=19$m=47104,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$KRrxzgGxJ7BkE/K5HCsFpPlnV2R3HbpUm5cLo2uQ/OGnAVKRvf9T8Q5T/FITL6/BEnSmCeM8nMBUya/cpKuLlQ
carol:$2y$05$zrj5oJgtZf/ON1Rwa1CyXuC/Nh3K/TWsPVHIMbswODKYm5xo6WZ5m
`

func TestGoldenHashes(t *testing.T) {
	f, err := Parse(strings.NewReader(golden), "golden")
	require.NoError(t, err)
	require.Equal(t, 4, f.Len())
	check := func(user, pass string, want bool) {
		t.Helper()
		require.Equal(t, want, f.Check([]byte(user), []byte(pass)), "%s/%s", user, pass)
	}
	check("alice", "secret", true)
	check("alice", "secret ", false)
	check("alice", "hunter2", false)
	check("bob", "hunter2", true)
	check("bob", "hunter", false)
	check("dave", "correct horse", true)
	check("dave", "correct horse!", false)
	check("carol", "b-pass", true)
	check("carol", "b-pas", false)
	check("nobody", "secret", false)
	check("", "", false)
	check("alice", "", false)
}

func TestParseLines(t *testing.T) {
	h := HashPBKDF2([]byte("pw"), 1)
	f := func(text string, users int) {
		t.Helper()
		file, err := Parse(strings.NewReader(text), "p")
		require.NoError(t, err, "%q", text)
		require.Equal(t, users, file.Len(), "%q", text)
	}
	f("", 0)
	f("# only a comment\n\n   \n\t\n", 0)
	f("u:"+h, 1)                   // no final newline
	f("u:"+h+"\r\n", 1)            // CRLF
	f("  u  :  "+h+"  \n", 1)      // blanks trimmed
	f("u::"+h+"\n", 1)             // strtok skips empty fields
	f("u:"+h+":extra fields\n", 1) // ignored, as in Mosquitto
	f("#u:"+h+"\nv:"+h+"\n", 1)    // a commented-out entry
	f("a b:"+h+"\n", 1)            // a space inside a username

	file, err := Parse(strings.NewReader("  u  :  "+h+"  \r\n"), "p")
	require.NoError(t, err)
	require.True(t, file.Check([]byte("u"), []byte("pw")))
}

func TestParseErrors(t *testing.T) {
	h := HashPBKDF2([]byte("pw"), 1)
	f := func(text, want string) {
		t.Helper()
		_, err := Parse(strings.NewReader(text), "pw.txt")
		require.Error(t, err, "%q", text)
		require.Contains(t, err.Error(), want, "%q", text)
	}
	f("u:"+h+"\njunk\n", "pw.txt:2: no ':'")
	f(":"+h+"\n", "pw.txt:1: empty username")
	f("u:\n", "pw.txt:1: user \"u\": empty password")
	f("u:  : \n", "empty password")
	f("u:plaintext\n", "pw.txt:1: user \"u\": not a $6$")
	f("u:"+h+"\n\nu:"+h+"\n", "pw.txt:3: user \"u\" given twice")
	f("u:$7$0$AAAAAAAAAAAAAAAA$"+strings.Repeat("A", 86)+"==\n", "bad iterations")
	f("u:$7$x$a$b\n", "bad iterations")
	f("u:$7$10$!!!!$"+strings.Repeat("A", 86)+"==\n", "bad base64 salt")
	f("u:$7$10$AAAAAAAAAAAAAAAA$AAAA\n", "hash is not base64 of 64 bytes")
	f("u:$7$10$AAAA\n", "$7$: want")
	f("u:$6$AAAA\n", "$6$: want")
	f("u:$argon2id$v=16$m=8,t=1,p=1$c2FsdHNhbHQ$AAAAAA\n", "argon2id: want")
	f("u:$argon2id$v=19$m=7,t=1,p=1$c2FsdHNhbHQ$AAAAAA\n", "bad parameters")
	f("u:$argon2id$v=19$t=1,m=8,p=1$c2FsdHNhbHQ$AAAAAA\n", "bad parameters")
	f("u:$argon2id$v=19$m=8,t=1,p=1$c2Fs$AAAAAA\n", "bad salt")
	f("u:$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$AA\n", "bad hash")
	f("u:$2y$05$short\n", "bcrypt")
	f("u:"+h+"\x00\n", "NUL byte")
}

func TestUnpaddedBase64Accepted(t *testing.T) {
	h := strings.TrimRight(HashPBKDF2([]byte("pw"), 3), "=")
	f, err := Parse(strings.NewReader("u:"+h+"\n"), "p")
	require.NoError(t, err)
	require.True(t, f.Check([]byte("u"), []byte("pw")))
}

func TestHashPBKDF2(t *testing.T) {
	h := HashPBKDF2([]byte("pw"), 0)
	require.True(t, strings.HasPrefix(h, "$7$101$"), h)
	parts := strings.Split(h, "$")
	require.Len(t, parts, 5)
	require.Len(t, parts[3], 16) // 12-byte salt
	require.Len(t, parts[4], 88) // 64-byte hash, padded
	require.NotEqual(t, h, HashPBKDF2([]byte("pw"), 0), "salt must be random")
	require.True(t, IsHash(h))
	require.False(t, IsHash("pw"))
	require.True(t, strings.HasPrefix(HashPBKDF2([]byte("pw"), 1000), "$7$1000$"))
}

func TestUnknownUserCostsAHash(t *testing.T) {
	// Not a timing measurement (too noisy for CI): checks the dummy is the
	// first entry's scheme and cost, and an empty file still has one.
	f, err := Parse(strings.NewReader(golden), "golden")
	require.NoError(t, err)
	require.Equal(t, pbkdf2SHA512, f.dummy.scheme)
	require.Equal(t, 101, f.dummy.iterations)
	empty, err := Parse(strings.NewReader(""), "empty")
	require.NoError(t, err)
	require.Equal(t, pbkdf2SHA512, empty.dummy.scheme)
	require.False(t, empty.Check([]byte("x"), nil))
}

func TestLoad(t *testing.T) {
	_, err := Load("/nonexistent/pw")
	require.Error(t, err)
	path := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, os.WriteFile(path, []byte("alice:"+HashPBKDF2([]byte("a"), 2)+"\nbad\n"), 0o600))
	_, err = Load(path)
	require.ErrorContains(t, err, path+":2:")
}

func TestEditor(t *testing.T) {
	in := "# header\nalice:plain-a\n\n  bob : $6$x$y  \n# trailer\n"
	e, err := ReadEditor(strings.NewReader(in), "in")
	require.NoError(t, err)
	require.Equal(t, []string{"alice", "bob"}, e.Users())

	var out bytes.Buffer
	_, err = e.WriteTo(&out)
	require.NoError(t, err)
	require.Equal(t, in, out.String(), "untouched lines are written back as read")

	require.NoError(t, e.Set("carol", "$7$1$AAAA$BBBB"))
	require.NoError(t, e.Set("alice", "plain-a2"))
	require.True(t, e.Delete("bob"))
	require.False(t, e.Delete("bob"))
	out.Reset()
	_, err = e.WriteTo(&out)
	require.NoError(t, err)
	require.Equal(t, "# header\nalice:plain-a2\n\n# trailer\ncarol:$7$1$AAAA$BBBB\n", out.String())

	require.Error(t, e.Set("a:b", "h"))
	require.Error(t, e.Set("#a", "h"))
	require.Error(t, e.Set(" a", "h"))
	require.Error(t, e.Set("", "h"))
	require.Error(t, e.Set("a", "h:x"))
	require.Error(t, e.Set("a", ""))

	_, err = ReadEditor(strings.NewReader("a:1\na:2\n"), "dup")
	require.ErrorContains(t, err, "dup:2:")
}

func TestEditorUpgrade(t *testing.T) {
	keep := HashPBKDF2([]byte("k"), 2)
	e, err := ReadEditor(strings.NewReader("# c\nalice:pw-a\nkeep:"+keep+"\nbob:pw b\n"), "in")
	require.NoError(t, err)
	require.Equal(t, 2, e.Upgrade(5))
	require.Equal(t, 0, e.Upgrade(5), "a second run changes nothing")
	var out bytes.Buffer
	_, err = e.WriteTo(&out)
	require.NoError(t, err)
	require.Contains(t, out.String(), "keep:"+keep+"\n")
	f, err := Parse(&out, "upgraded")
	require.NoError(t, err)
	require.True(t, f.Check([]byte("alice"), []byte("pw-a")))
	require.True(t, f.Check([]byte("bob"), []byte("pw b")))
	require.True(t, f.Check([]byte("keep"), []byte("k")))
}

func TestEditorSave(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pw")
	e := &Editor{}
	require.NoError(t, e.Set("u", HashPBKDF2([]byte("p"), 2)))
	require.NoError(t, e.Save(path))
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	require.NoError(t, os.Chmod(path, 0o640))
	require.NoError(t, e.Save(path))
	st, err = os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), st.Mode().Perm(), "an existing file keeps its mode")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, 1, "no temporary file left behind")
	f, err := Load(path)
	require.NoError(t, err)
	require.True(t, f.Check([]byte("u"), []byte("p")))
}

func need(t *testing.T, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not found: %v", bin, err)
	}
	return p
}

// TestMosquittoPasswdTool: files written by the real mosquitto_passwd
// (default $7$ and -H sha512) are read and checked.
func TestMosquittoPasswdTool(t *testing.T) {
	tool := need(t, "mosquitto_passwd")
	path := filepath.Join(t.TempDir(), "pw")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(tool, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	run("-c", "-b", path, "user", "pass")
	run("-b", path, "other", "pa:ss word")
	run("-H", "sha512", "-b", path, "old", "Ünïcode")
	f, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, 3, f.Len())
	require.True(t, f.Check([]byte("user"), []byte("pass")))
	require.False(t, f.Check([]byte("user"), []byte("pass2")))
	require.False(t, f.Check([]byte("user"), []byte("Pass")))
	require.True(t, f.Check([]byte("other"), []byte("pa:ss word")))
	require.True(t, f.Check([]byte("old"), []byte("Ünïcode")))
	require.False(t, f.Check([]byte("old"), []byte("Unicode")))

	// And -U on a plain-text file, then -D.
	plain := filepath.Join(t.TempDir(), "plain")
	require.NoError(t, os.WriteFile(plain, []byte("a:one\nb:two\n"), 0o600))
	run("-U", plain)
	run("-D", plain, "b")
	f, err = Load(plain)
	require.NoError(t, err)
	require.Equal(t, 1, f.Len())
	require.True(t, f.Check([]byte("a"), []byte("one")))
}

// TestArgon2Tool: the reference argon2 CLI's encoding with Mosquitto 2.1's
// parameters (m=47104, t=1, p=1, 64-byte salt and hash).
func TestArgon2Tool(t *testing.T) {
	tool := need(t, "argon2")
	salt := strings.Repeat("s", 64)
	cmd := exec.Command(tool, salt, "-id", "-t", "1", "-k", "47104", "-p", "1", "-l", "64", "-e")
	cmd.Stdin = strings.NewReader("argon pass")
	out, err := cmd.Output()
	require.NoError(t, err)
	f, err := Parse(strings.NewReader("u:"+string(out)), "argon2")
	require.NoError(t, err)
	require.True(t, f.Check([]byte("u"), []byte("argon pass")))
	require.False(t, f.Check([]byte("u"), []byte("argon pas")))
}

// TestHtpasswdBcrypt: bcrypt lines from htpasswd -B ($2y$).
func TestHtpasswdBcrypt(t *testing.T) {
	tool := need(t, "htpasswd")
	out, err := exec.Command(tool, "-B", "-b", "-n", "-C", "4", "u", "bc pass").Output()
	require.NoError(t, err)
	f, err := Parse(bytes.NewReader(out), "htpasswd")
	require.NoError(t, err)
	require.True(t, f.Check([]byte("u"), []byte("bc pass")))
	require.False(t, f.Check([]byte("u"), []byte("bc pas")))
}
