package acl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unsafe"
)

// Access is what a client wants to do with a topic or filter.
type Access uint8

const (
	// Read: receive a message published to a topic (checked per delivered
	// message, as Mosquitto does).
	Read Access = 1
	// Write: publish to a topic.
	Write Access = 2
	// Subscribe: subscribe with a filter; see Allowed for the rule.
	Subscribe Access = 4

	// deny is a rule's access for "deny" (Mosquitto's MOSQ_ACL_NONE).
	deny Access = 0
)

func (a Access) String() string {
	switch a {
	case Read:
		return "read"
	case Write:
		return "write"
	case Subscribe:
		return "subscribe"
	case Read | Write:
		return "readwrite"
	case deny:
		return "deny"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// rule is one "topic" or "pattern" line.
type rule struct {
	filter string
	access Access // Read, Write, Read|Write, or deny
	subst  bool   // pattern containing %c or %u: expand per call
	hasU   bool   // pattern containing %u: never applies to anonymous clients
}

// rules is one list walked in order: denies first, then the rest in file
// order (add__acl / add__acl_pattern put MOSQ_ACL_NONE rules at the front).
type rules []rule

func (rs *rules) add(r rule) {
	if r.access == deny {
		*rs = append(*rs, rule{})
		copy((*rs)[1:], *rs)
		(*rs)[0] = r
		return
	}
	*rs = append(*rs, r)
}

// File is a loaded ACL file. It is immutable: safe for concurrent use.
type File struct {
	name     string
	anon     rules            // rules before the first "user" line
	users    map[string]rules // "user NAME" blocks
	patterns rules
	nrules   int
}

// Load reads and parses the ACL file at path.
func Load(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("acl: %w", err)
	}
	defer fh.Close()
	return Parse(fh, path)
}

// Parse parses an ACL file read from r; name is used in error messages.
// It returns the whole file or an error naming the line: never part of it.
func Parse(r io.Reader, name string) (*File, error) {
	f := &File{name: name, users: make(map[string]rules)}
	br := bufio.NewReader(r)
	var (
		user    string
		hasUser bool // a "user" line was seen: rules go to users[user]
	)
	for lineNo := 1; ; lineNo++ {
		line, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return nil, fmt.Errorf("acl: %s: %w", name, rerr)
		}
		if line == "" && rerr == io.EOF {
			break
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("acl: %s:%d: %s", name, lineNo, fmt.Sprintf(format, args...))
		}
		if strings.IndexByte(line, 0) >= 0 {
			// Mosquitto would silently cut the line at the NUL.
			return nil, bad("NUL byte in line")
		}
		line = trimRightSpace(line)
		if len(line) > 0 && line[0] == '#' {
			continue
		}
		word, rest, ok := nextWord(line)
		if ok {
			switch word {
			case "topic", "pattern":
				accWord, rest2, ok := nextWord(rest)
				if !ok {
					return nil, bad("%s: empty topic", word)
				}
				filter := trimSpace(rest2)
				acc := Read | Write
				if filter == "" {
					filter, accWord = accWord, ""
				}
				switch accWord {
				case "":
				case "read":
					acc = Read
				case "write":
					acc = Write
				case "readwrite":
					acc = Read | Write
				case "deny":
					acc = deny
				default:
					return nil, bad("invalid access %q (want read, write, readwrite or deny)", accWord)
				}
				if err := checkFilter(filter); err != nil {
					return nil, bad("invalid filter %q: %v", filter, err)
				}
				ru := rule{filter: filter, access: acc}
				if word == "pattern" {
					ru.hasU = strings.Contains(filter, "%u")
					ru.subst = ru.hasU || strings.Contains(filter, "%c")
					f.patterns.add(ru)
				} else if hasUser {
					rs := f.users[user]
					rs.add(ru)
					f.users[user] = rs
				} else {
					f.anon.add(ru)
				}
				f.nrules++
			case "user":
				u := trimSpace(rest)
				if u == "" {
					return nil, bad("user: missing username")
				}
				user, hasUser = u, true
			default:
				return nil, bad("invalid line (want topic, pattern, user or a # comment): %q", line)
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	return f, nil
}

// Len is the number of topic and pattern rules.
func (f *File) Len() int { return f.nrules }

// Name is the name the file was loaded under.
func (f *File) Name() string { return f.name }

// Allowed reports whether a client may do acc with topicOrFilter.
//
// username is ignored when anonymous is true (the client sent no username);
// an empty username with anonymous false is a client that sent an empty one.
// For Read and Write, topicOrFilter is a topic name; one containing '+' or
// '#', or empty, is refused. For Subscribe it is a subscription filter,
// refused if invalid (shared-subscription prefixes must be stripped by the
// caller).
//
// Subscribe is allowed when every topic the filter can match is readable
// under Read's rules, established conservatively: walking the same lists in
// the same order as Read, a deny rule whose filter overlaps the subscribed
// one (some topic matches both) refuses, and a read or readwrite rule whose
// filter covers it (every topic it matches, the rule matches) allows. So
// "topic read sensors/#" permits subscribing to "sensors/+/temp" and
// "sensors/#" but not "#"; with an added "topic deny sensors/secret",
// "sensors/#" is refused and "sensors/+/temp" still allowed. This never
// allows a filter through which an unreadable message could arrive; it may
// refuse a few that could not (a filter covered only by the union of several
// rules, or "#" against "+/#"). Clients that subscribe broadly and rely on
// per-message filtering (Mosquitto's behaviour) are refused by it: the
// caller decides whether to use Subscribe or to check Read per message only.
//
// If acc has several bits set, each is checked and all must be allowed.
// Allowed does not allocate unless a substituted pattern is longer than
// 256 bytes.
func (f *File) Allowed(username string, anonymous bool, clientID string, topicOrFilter string, acc Access) bool {
	if acc == 0 || acc&^(Read|Write|Subscribe) != 0 {
		return false
	}
	if acc&(Read|Write) != 0 && !validTopic(topicOrFilter) {
		return false
	}
	if acc&Subscribe != 0 && checkFilter(topicOrFilter) != nil {
		return false
	}
	for _, a := range [...]Access{Read, Write, Subscribe} {
		if acc&a != 0 && !f.allowed(username, anonymous, clientID, topicOrFilter, a) {
			return false
		}
	}
	return true
}

// allowed is mosquitto_acl_check_default for one access bit.
func (f *File) allowed(username string, anonymous bool, clientID, t string, a Access) bool {
	sub := a == Subscribe
	if sub {
		a = Read
	}
	list := f.anon
	if !anonymous {
		list = f.users[username]
	}
	for i := range list {
		if d, ok := decide(&list[i], list[i].filter, t, a, sub); ok {
			return d
		}
	}
	if len(f.patterns) == 0 {
		return false
	}
	// Mosquitto 2.0 refuses clients whose username or id contains + or #
	// once patterns are in play: substituted, they would widen the filter.
	if (!anonymous && strings.ContainsAny(username, "+#")) || strings.ContainsAny(clientID, "+#") {
		return false
	}
	var stack [256]byte
	for i := range f.patterns {
		p := &f.patterns[i]
		if p.hasU && anonymous {
			continue
		}
		filter := p.filter
		if p.subst {
			b := expand(stack[:0], p.filter, clientID, username)
			filter = unsafe.String(unsafe.SliceData(b), len(b))
		}
		if d, ok := decide(p, filter, t, a, sub); ok {
			return d
		}
	}
	return false
}

// decide applies one rule (with its filter already expanded): ok is false
// when the rule does not decide.
func decide(r *rule, filter, t string, a Access, sub bool) (allowed, ok bool) {
	if filter == "" { // a pattern "%c" with an empty client id matches nothing
		return false, false
	}
	if r.access == deny {
		if sub {
			return false, overlaps(filter, t)
		}
		return false, matches(filter, t)
	}
	if r.access&a == 0 {
		return false, false
	}
	if sub {
		return true, covers(filter, t)
	}
	return true, matches(filter, t)
}

// expand appends pattern with %c and %u replaced, scanning left to right
// as mosquitto_acl_check_default does ("%%c" is '%' then the client id).
func expand(dst []byte, pattern, clientID, username string) []byte {
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '%' && i+1 < len(pattern) {
			switch pattern[i+1] {
			case 'c':
				dst = append(dst, clientID...)
				i++
				continue
			case 'u':
				dst = append(dst, username...)
				i++
				continue
			}
		}
		dst = append(dst, pattern[i])
	}
	return dst
}

var (
	errEmptyFilter = errors.New("empty")
	errWildcard    = errors.New("'+' and '#' must fill a whole level, '#' only the last")
	errTooLong     = errors.New("longer than 65535 bytes")
)

// checkFilter is mosquitto_sub_topic_check: wildcards fill whole levels,
// '#' only last, at most 65535 bytes.
func checkFilter(s string) error {
	if s == "" {
		return errEmptyFilter
	}
	if len(s) > 65535 {
		return errTooLong
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '+':
			if (i > 0 && s[i-1] != '/') || (i+1 < len(s) && s[i+1] != '/') {
				return errWildcard
			}
		case '#':
			if (i > 0 && s[i-1] != '/') || i+1 != len(s) {
				return errWildcard
			}
		}
	}
	return nil
}

func validTopic(s string) bool {
	return s != "" && len(s) <= 65535 && strings.IndexAny(s, "+#") < 0
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || (c >= '\t' && c <= '\r')
}

func trimRightSpace(s string) string {
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// trimSpace is Mosquitto's misc__trimblanks.
func trimSpace(s string) string {
	for len(s) > 0 && isSpace(s[0]) {
		s = s[1:]
	}
	return trimRightSpace(s)
}

// nextWord is strtok_r(s, " "): skip spaces, take the word up to the next
// space; rest starts after that single space (strtok_r(NULL, "") then
// returns it).
func nextWord(s string) (word, rest string, ok bool) {
	for len(s) > 0 && s[0] == ' ' {
		s = s[1:]
	}
	if s == "" {
		return "", "", false
	}
	word, rest, _ = strings.Cut(s, " ")
	return word, rest, true
}
