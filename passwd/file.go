package passwd

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// File is a loaded password file. It is immutable: safe for concurrent use.
type File struct {
	name  string
	users map[string]*hash
	// dummy is verified against for an unknown user so that the answer
	// takes as long as for a known one: no timing oracle for which
	// usernames exist. It is the first entry's hash (same scheme and cost as
	// the rest of a file mosquitto_passwd wrote), or a $7$ hash of nothing.
	dummy *hash
}

// Load reads and parses the password file at path.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	defer fh.Close()
	return Parse(fh, path)
}

// Parse parses a password file read from r; name is used in error
// messages. It returns the whole file or an error naming the line.
func Parse(r io.Reader, name string) (*File, error) {
	f := &File{name: name, users: make(map[string]*hash)}
	err := eachLine(r, func(lineNo int, line string) error {
		user, field, ok, err := splitEntry(line)
		if err != nil || !ok {
			return err
		}
		if _, dup := f.users[user]; dup {
			return fmt.Errorf("user %q given twice", user)
		}
		h, err := parseHash(field)
		if err != nil {
			return fmt.Errorf("user %q: %w", user, err)
		}
		f.users[user] = h
		if f.dummy == nil {
			f.dummy = h
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("passwd: %s:%w", name, err)
	}
	if f.dummy == nil {
		h, _ := parseHash(HashPBKDF2(nil, DefaultIterations))
		f.dummy = h
	}
	return f, nil
}

// eachLine calls fn for every line (without its '\n'); an error from fn is
// returned as "<line>: <error>", ready to follow the file name.
func eachLine(r io.Reader, fn func(lineNo int, line string) error) error {
	br := bufio.NewReader(r)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf(" %w", err)
		}
		if line == "" && err == io.EOF {
			return nil
		}
		if ferr := fn(lineNo, strings.TrimSuffix(line, "\n")); ferr != nil {
			return fmt.Errorf("%d: %w", lineNo, ferr)
		}
		if err == io.EOF {
			return nil
		}
	}
}

// splitEntry splits a line as pwfile__parse does. ok is false for a comment
// or blank line.
func splitEntry(line string) (user, field string, ok bool, err error) {
	if strings.IndexByte(line, 0) >= 0 {
		return "", "", false, errors.New("NUL byte in line")
	}
	if len(line) > 0 && line[0] == '#' {
		return "", "", false, nil
	}
	user, rest, found := strings.Cut(line, ":")
	if !found {
		if trimSpace(line) == "" {
			return "", "", false, nil
		}
		return "", "", false, errors.New("no ':' between username and password")
	}
	user = trimSpace(user)
	if user == "" {
		return "", "", false, errors.New("empty username")
	}
	for _, fld := range strings.Split(rest, ":") {
		if field = trimSpace(fld); field != "" {
			break
		}
	}
	if field == "" {
		return "", "", false, fmt.Errorf("user %q: empty password", user)
	}
	return user, field, true, nil
}

// Check reports whether password is user's. It compares in constant time
// and an unknown user costs one hash too. It does not tell an absent
// password from an empty one: the caller refuses a CONNECT without a
// password before asking, as Mosquitto does.
func (f *File) Check(user, password []byte) bool {
	h, ok := f.users[string(user)]
	if !ok {
		f.dummy.verify(password)
		return false
	}
	return h.verify(password)
}

// Len is the number of users.
func (f *File) Len() int { return len(f.users) }

// Name is the name the file was loaded under.
func (f *File) Name() string { return f.name }

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool { return c == ' ' || (c >= '\t' && c <= '\r') }

// trimSpace is Mosquitto's misc__trimblanks.
func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
