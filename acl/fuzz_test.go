package acl

import (
	"strings"
	"testing"
)

// FuzzParseACL: Parse never panics and returns either an error or a whole
// file; Allowed on that file never panics and agrees with a plain
// substitute-then-match reference for Read; and a filter Subscribe allows
// only leads to topics Read allows (checked on one instance of it).
func FuzzParseACL(f *testing.F) {
	f.Add("user alice\ntopic read a/#\npattern write c/%c/#\n", "alice", "c1", "a/b")
	f.Add("topic deny $SYS/#\ntopic #\n", "", "x", "$SYS/x")
	f.Add("pattern readwrite %u/%c/+\n# c\n\n  user   bob  \r\ntopic   deny  b\n", "bob", "id", "bob/id/z")
	f.Fuzz(func(t *testing.T, text, user, id, topic string) {
		file, err := Parse(strings.NewReader(text), "fuzz")
		if err != nil {
			if file != nil {
				t.Fatal("file and error")
			}
			return
		}
		for _, anon := range []bool{false, true} {
			for _, acc := range []Access{Read, Write, Subscribe, Read | Write} {
				got := file.Allowed(user, anon, id, topic, acc)
				if acc == Read && got != referenceRead(file, user, anon, id, topic) {
					t.Fatalf("Read %q anon=%v id=%q %q: got %v, reference disagrees", user, anon, id, topic, got)
				}
				if acc == Subscribe && got {
					inst := instance(topic)
					if !file.Allowed(user, anon, id, inst, Read) {
						t.Fatalf("Subscribe %q allowed but its topic %q is not readable (user %q anon=%v id %q)", topic, inst, user, anon, id)
					}
				}
			}
		}
	})
}

// referenceRead is mosquitto_acl_check_default written plainly, with
// strings.ReplaceAll-style substitution.
func referenceRead(f *File, user string, anon bool, id, topic string) bool {
	if !validTopic(topic) {
		return false
	}
	list := f.anon
	if !anon {
		list = f.users[user]
	}
	for _, r := range list {
		if matches(r.filter, topic) {
			if r.access == deny {
				return false
			}
			if r.access&Read != 0 {
				return true
			}
		}
	}
	if len(f.patterns) == 0 {
		return false
	}
	if (!anon && strings.ContainsAny(user, "+#")) || strings.ContainsAny(id, "+#") {
		return false
	}
	for _, p := range f.patterns {
		if anon && strings.Contains(p.filter, "%u") {
			continue
		}
		var b strings.Builder
		for i := 0; i < len(p.filter); i++ {
			if p.filter[i] == '%' && i+1 < len(p.filter) && p.filter[i+1] == 'c' {
				b.WriteString(id)
				i++
			} else if p.filter[i] == '%' && i+1 < len(p.filter) && p.filter[i+1] == 'u' {
				b.WriteString(user)
				i++
			} else {
				b.WriteByte(p.filter[i])
			}
		}
		filter := b.String()
		if filter != "" && matches(filter, topic) {
			if p.access == deny {
				return false
			}
			if p.access&Read != 0 {
				return true
			}
		}
	}
	return false
}

// instance returns a topic that filter f matches: '+' levels become "x",
// a trailing '#' is dropped (or "x" when it is the whole filter).
func instance(f string) string {
	if f == "#" {
		return "x"
	}
	f = strings.TrimSuffix(f, "/#")
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "+" {
			levels[i] = "x"
		}
	}
	return strings.Join(levels, "/")
}
