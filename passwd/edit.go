package passwd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Editor holds a password file's lines for changing entries one at a time:
// comments, blank lines, order and entries it does not touch are written
// back exactly as read. Unlike Parse it accepts plain-text passwords (for
// Upgrade) and any hash text. Not safe for concurrent use.
type Editor struct {
	lines []editLine
}

type editLine struct {
	text  string // the line as read, without '\n'
	user  string // "" for comments and blank lines
	field string // the password or hash
}

// ReadEditor reads a password file for editing. Lines Parse would skip are
// kept; lines it cannot split into user and password are an error, so that
// a rewrite never silently changes what they meant.
func ReadEditor(r io.Reader, name string) (*Editor, error) {
	e := &Editor{}
	seen := map[string]bool{}
	err := eachLine(r, func(_ int, line string) error {
		user, field, ok, err := splitEntry(line)
		if err != nil {
			return err
		}
		if ok && seen[user] {
			return fmt.Errorf("user %q given twice", user)
		}
		seen[user] = ok
		e.lines = append(e.lines, editLine{text: line, user: user, field: field})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("passwd: %s:%w", name, err)
	}
	return e, nil
}

// LoadEditor reads the password file at path for editing.
func LoadEditor(path string) (*Editor, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("passwd: %w", err)
	}
	defer fh.Close()
	return ReadEditor(fh, path)
}

// CheckUsername returns an error if user cannot be written to a password
// file and read back as the same name.
func CheckUsername(user string) error {
	switch {
	case user == "":
		return errors.New("empty username")
	case strings.ContainsAny(user, ":\n\r\x00"):
		return errors.New("username contains ':', a newline or NUL")
	case user[0] == '#':
		return errors.New("username starts with '#' (the line would be a comment)")
	case trimSpace(user) != user:
		return errors.New("username starts or ends with white space")
	}
	return nil
}

// Set replaces user's entry, keeping its place in the file, or appends one.
func (e *Editor) Set(user, hashText string) error {
	if err := CheckUsername(user); err != nil {
		return err
	}
	if hashText == "" || strings.ContainsAny(hashText, ":\n\r\x00") || trimSpace(hashText) != hashText {
		return errors.New("hash is empty or contains ':', a newline, NUL or white space at an end")
	}
	l := editLine{text: user + ":" + hashText, user: user, field: hashText}
	for i := range e.lines {
		if e.lines[i].user == user {
			e.lines[i] = l
			return nil
		}
	}
	e.lines = append(e.lines, l)
	return nil
}

// Delete removes user's entry; it reports whether there was one.
func (e *Editor) Delete(user string) bool {
	for i := range e.lines {
		if e.lines[i].user == user {
			e.lines = append(e.lines[:i], e.lines[i+1:]...)
			return true
		}
	}
	return false
}

// Users lists the usernames in file order.
func (e *Editor) Users() []string {
	var us []string
	for _, l := range e.lines {
		if l.user != "" {
			us = append(us, l.user)
		}
	}
	return us
}

// Upgrade replaces every plain-text password by HashPBKDF2 of it and
// returns how many it hashed. Entries that already hold a hash Check
// accepts are left alone, so running it twice does no harm (Mosquitto's
// -U would hash the hashes).
func (e *Editor) Upgrade(iterations int) int {
	n := 0
	for i, l := range e.lines {
		if l.user == "" || IsHash(l.field) {
			continue
		}
		h := HashPBKDF2([]byte(l.field), iterations)
		e.lines[i] = editLine{text: l.user + ":" + h, user: l.user, field: h}
		n++
	}
	return n
}

// WriteTo writes the file, one '\n'-terminated line each.
func (e *Editor) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, l := range e.lines {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.WriteTo(w)
}

// Save writes the file to path atomically: a temporary file in the same
// directory, synced, then renamed over path. A new file gets mode 0600; an
// existing one keeps its mode.
func (e *Editor) Save(path string) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if _, err := e.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("passwd: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("passwd: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("passwd: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("passwd: %w", err)
	}
	return nil
}
