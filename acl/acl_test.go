package acl

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func mustParse(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse(strings.NewReader(text), "test.acl")
	require.NoError(t, err)
	return f
}

type client struct {
	user string
	anon bool
	id   string
}

var (
	anon  = client{anon: true, id: "anon-1"}
	alice = client{user: "alice", id: "alice-1"}
	bob   = client{user: "bob", id: "bob-1"}
)

// check runs one table of (client, topic, access, want) against text.
func check(t *testing.T, text string, cases []struct {
	c    client
	t    string
	acc  Access
	want bool
}) {
	t.Helper()
	f := mustParse(t, text)
	for _, tc := range cases {
		got := f.Allowed(tc.c.user, tc.c.anon, tc.c.id, tc.t, tc.acc)
		require.Equal(t, tc.want, got, "user=%q anon=%v id=%q %v %q", tc.c.user, tc.c.anon, tc.c.id, tc.acc, tc.t)
	}
}

type acase = struct {
	c    client
	t    string
	acc  Access
	want bool
}

func TestTopicAccessWords(t *testing.T) {
	check(t, `
user alice
topic read r/#
topic write w/#
topic readwrite rw/#
topic both/#
topic deny rw/secret
`, []acase{
		{alice, "r/x", Read, true},
		{alice, "r/x", Write, false},
		{alice, "w/x", Write, true},
		{alice, "w/x", Read, false},
		{alice, "rw/x", Read, true},
		{alice, "rw/x", Write, true},
		{alice, "both/x", Read, true},
		{alice, "both/x", Write, true},
		{alice, "rw/secret", Read, false},
		{alice, "rw/secret", Write, false},
		{alice, "other", Read, false},
		{alice, "rw/x", Read | Write, true},
		{alice, "r/x", Read | Write, false},
		{bob, "r/x", Read, false}, // no block, no patterns
		{anon, "r/x", Read, false},
	})
}

func TestAnonymousBlock(t *testing.T) {
	check(t, `# rules before the first user line are the anonymous block
topic read public/#

user alice
topic alice/#
`, []acase{
		{anon, "public/news", Read, true},
		{anon, "public/news", Write, false},
		{anon, "alice/x", Read, false},
		{alice, "public/news", Read, false}, // a named user does not get the anonymous block
		{alice, "alice/x", Write, true},
		// An empty username is a username, not anonymous.
		{client{user: "", id: "x"}, "public/news", Read, false},
	})
}

func TestUserBlocksMerge(t *testing.T) {
	check(t, `user alice
topic a/#
user bob
topic b/#
user alice
topic c/#
user  john  doe
topic j/#
`, []acase{
		{alice, "a/1", Read, true},
		{alice, "c/1", Read, true},
		{alice, "b/1", Read, false},
		{bob, "b/1", Read, true},
		{client{user: "john  doe", id: "j"}, "j/1", Read, true},
	})
}

func TestDenyFirstWithinList(t *testing.T) {
	// The deny comes after the allow in the file but is checked first.
	check(t, `user alice
topic readwrite home/#
topic deny home/secret/#
pattern read devices/%c/#
pattern deny devices/%c/private
`, []acase{
		{alice, "home/a", Read, true},
		{alice, "home/secret", Read, false},
		{alice, "home/secret/x", Write, false},
		{alice, "devices/alice-1/x", Read, true},
		{alice, "devices/alice-1/private", Read, false},
	})
}

func TestDenyPatternDoesNotOverrideOwnBlock(t *testing.T) {
	// mosquitto_acl_check_default walks the client's block to the end
	// before the patterns: an allow there wins over a deny pattern.
	check(t, `user alice
topic read x/#
pattern deny x/%u
`, []acase{
		{alice, "x/alice", Read, true},
		{bob, "x/bob", Read, false},
	})
}

func TestPatterns(t *testing.T) {
	check(t, `pattern readwrite clients/%c/#
pattern read users/%u/#
pattern write both/%u/%c
pattern read pct/%%c/%x/%
`, []acase{
		{alice, "clients/alice-1/a", Write, true},
		{alice, "clients/bob-1/a", Write, false},
		{anon, "clients/anon-1/a", Write, true}, // %c applies to anonymous clients
		{alice, "users/alice/a", Read, true},
		{alice, "users/alice/a", Write, false},
		{alice, "users/bob/a", Read, false},
		{anon, "users//a", Read, false}, // %u never applies to anonymous
		{alice, "both/alice/alice-1", Write, true},
		{alice, "pct/%alice-1/%x/%", Read, true},
		// Client id with '/' is substituted as is (Mosquitto 2.0 allows it).
		{client{user: "u", id: "a/b"}, "clients/a/b/c", Read, true},
		// An empty client id gives an empty level.
		{client{user: "u", id: ""}, "clients//c", Read, true},
		// Long ids spill the stack buffer and still work.
		{client{user: "u", id: strings.Repeat("x", 300)}, "clients/" + strings.Repeat("x", 300) + "/c", Read, true},
	})
}

func TestDangerousNamesWithPatterns(t *testing.T) {
	check(t, `user a+b
topic own/#
pattern read clients/%c/#
pattern read users/%u/#
`, []acase{
		{client{user: "a+b", id: "x"}, "own/1", Read, true},             // own block is checked before
		{client{user: "a+b", id: "x"}, "clients/x/1", Read, false},      // then refused outright
		{client{user: "u", id: "#"}, "clients/whatever/1", Read, false}, // id with '#'
		{client{user: "u", id: "+"}, "clients/+/1", Read, false},
		{client{anon: true, user: "ignored+", id: "x"}, "clients/x/1", Read, true}, // anonymous: username ignored
	})
}

func TestDollarTopics(t *testing.T) {
	check(t, `user alice
topic read #
topic read +/status
user bob
topic read $SYS/#
topic read #
`, []acase{
		{alice, "a/b", Read, true},
		{alice, "$SYS/broker/uptime", Read, false},
		{alice, "$x/status", Read, false},
		{bob, "$SYS/broker/uptime", Read, true},
		{bob, "$SYS/broker/uptime", Subscribe, true},
		{bob, "$SYS/#", Subscribe, true},
		{bob, "#", Subscribe, true}, // "#" delivers no '$' topics
		{alice, "$SYS/#", Subscribe, false},
		{alice, "#", Subscribe, true},
	})
}

func TestSubscribe(t *testing.T) {
	check(t, `user alice
topic read sensors/#
topic deny sensors/secret
topic write cmd/#
topic read one/+/temp
topic read a/b
`, []acase{
		{alice, "sensors/+/temp", Subscribe, true},
		{alice, "sensors/kitchen", Subscribe, true},
		{alice, "sensors/#", Subscribe, false}, // would deliver sensors/secret
		{alice, "sensors/+", Subscribe, false}, // idem
		{alice, "sensors/secret", Subscribe, false},
		{alice, "sensors/secret/x", Subscribe, true}, // deny is exact: sensors/secret/x is readable
		{alice, "#", Subscribe, false},
		{alice, "cmd/#", Subscribe, false}, // write only
		{alice, "one/x/temp", Subscribe, true},
		{alice, "one/+/temp", Subscribe, true},
		{alice, "one/#", Subscribe, false},
		{alice, "a/b", Subscribe, true},
		{alice, "a/+", Subscribe, false},
		{alice, "sensors/a/#", Subscribe, true},
		{alice, "bad/#/x", Subscribe, false}, // invalid filter
		{alice, "", Subscribe, false},
		{alice, "sensors/#", Read, false}, // Read wants a topic name
		{alice, "sensors/a", Subscribe | Read, true},
	})
}

func TestEmptyFileRefusesAll(t *testing.T) {
	check(t, "# nothing\n\n", []acase{
		{alice, "a", Read, false},
		{anon, "a", Write, false},
	})
}

func TestBadAccessArgument(t *testing.T) {
	f := mustParse(t, "topic #\n")
	require.True(t, f.Allowed("", true, "c", "a", Read))
	require.False(t, f.Allowed("", true, "c", "a", 0))
	require.False(t, f.Allowed("", true, "c", "a", 8))
	require.False(t, f.Allowed("", true, "c", "", Read))
	require.False(t, f.Allowed("", true, "c", "a/+", Write))
}

func TestParseWhitespaceAndComments(t *testing.T) {
	f := func(text string, wantRules int, c client, topic string, acc Access, want bool) {
		t.Helper()
		file := mustParse(t, text)
		require.Equal(t, wantRules, file.Len(), "%q", text)
		require.Equal(t, want, file.Allowed(c.user, c.anon, c.id, topic, acc), "%q", text)
	}
	f("topic read a/b\r\n", 1, anon, "a/b", Read, true)              // CRLF
	f("   topic    read    a/b   \t \n", 1, anon, "a/b", Read, true) // runs of spaces, trailing blanks
	f("#topic read a/b\n", 0, anon, "a/b", Read, false)              // comment
	f("topic read a b/c d\n", 1, anon, "a b/c d", Read, true)        // filter with spaces
	f("topic read\n", 1, anon, "read", Write, true)                  // single word: the filter
	f("topic read\tx\n", 1, anon, "read\tx", Write, true)            // tabs are not separators
	f("topic read \t x\n", 1, anon, "x", Read, true)                 // ...but are trimmed off the filter
	f("\n   \n\t\n", 0, anon, "x", Read, false)                      // blank lines
	f("topic a", 1, anon, "a", Read, true)                           // no final newline
}

func TestParseErrors(t *testing.T) {
	f := func(text, want string) {
		t.Helper()
		_, err := Parse(strings.NewReader(text), "my.acl")
		require.Error(t, err, "%q", text)
		require.Contains(t, err.Error(), want, "%q", text)
	}
	f("topic read a\nbogus line\n", "my.acl:2: invalid line")
	f("topic\n", "my.acl:1: topic: empty topic")
	f("pattern    \n", "my.acl:1: pattern: empty topic")
	f("topic rw a/b\n", "my.acl:1: invalid access \"rw\"")
	f("topic read a/#/b\n", "my.acl:1: invalid filter")
	f("topic read a+\n", "my.acl:1: invalid filter")
	f("\n\nuser\n", "my.acl:3: user: missing username")
	f("  # indented comment\n", "my.acl:1: invalid line")
	f("topic\tread a\n", "my.acl:1: invalid line")
	f("topic a\x00b\n", "my.acl:1: NUL byte")
}

func TestLoad(t *testing.T) {
	_, err := Load("/nonexistent/acl")
	require.Error(t, err)
	path := t.TempDir() + "/acl"
	require.NoError(t, writeFile(path, "user alice\ntopic a/#\n"))
	f, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, 1, f.Len())
	require.True(t, f.Allowed("alice", false, "c", "a/b", Read))
}

func TestAllowedDoesNotAllocate(t *testing.T) {
	f := mustParse(t, benchACL)
	allocs := testing.AllocsPerRun(100, func() {
		f.Allowed("user7", false, "client-7", "devices/client-7/telemetry/temp", Write)
		f.Allowed("user7", false, "client-7", "users/user7/inbox", Read)
		f.Allowed("user7", false, "client-7", "users/user7/#", Subscribe)
		f.Allowed("nobody", false, "client-x", "nowhere/at/all", Read)
	})
	require.Zero(t, allocs)
}
