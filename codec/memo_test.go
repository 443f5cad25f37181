package codec

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
)

// publishV5 is a 5.0 QoS 0 PUBLISH to topic t with the given property
// block contents and payload "x".
func publishV5(t string, props ...byte) []byte {
	return frame(0x30, str(t), appendVarint(nil, len(props)), props, raw('x'))
}

// user encodes one user property, identifier included.
func user(k, v string) []byte {
	return append(append([]byte{byte(PropUser)}, str(k)...), str(v)...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// TestUserMemo decodes a sequence of PUBLISH frames through one Decoder
// with a UserMemo and each also through a fresh Decoder without: results
// and errors must be the same whatever the memo holds, and a frame whose
// trailing user properties equal the memo's must take them from it.
func TestUserMemo(t *testing.T) {
	users := cat(user("device-type", "thermostat"), user("firmware", "4.2.1"), user("site", "plant-7"))
	alias := []byte{byte(PropTopicAlias), 0, 1}
	badUTF8 := cat(user("device-type", "thermostat"), user("firmware", "4.2.\xff"), user("site", "plant-7"))
	nul := cat(user("device-type", "thermostat"), user("firmware", "4.2\x001"), user("site", "plant-7"))
	long := cat(user("k", string(bytes.Repeat([]byte{'v'}, maxUserMemo))))
	ct := cat([]byte{byte(PropContentType)}, str("text/plain"))
	steps := []struct {
		name    string
		frame   []byte
		hit     bool // taken from the memo
		wantErr bool
	}{
		{"first: read and remembered", publishV5("a/b", cat(alias, users)...), false, false},
		{"same again", publishV5("a/b", cat(alias, users)...), true, false},
		{"same users, no alias, other topic", publishV5("c", users...), true, false},
		{"a non-ASCII byte where the memo has ASCII", publishV5("a/b", cat(alias, badUTF8)...), false, true},
		{"U+0000 where the memo has a digit", publishV5("a/b", cat(alias, nul)...), false, true},
		{"after errors the memo still holds", publishV5("a/b", cat(alias, users)...), true, false},
		{"users then another property: not a trailing run", publishV5("a/b", cat(users, ct)...), false, false},
		{"so the memo is unchanged", publishV5("a/b", users...), true, false},
		{"users around another property", publishV5("a/b", cat(user("a", "b"), ct, users)...), false, false},
		{"a prefix of the run", publishV5("a/b", users[:len(users)-len(user("site", "plant-7"))]...), false, false},
		{"which replaced it", publishV5("a/b", users[:len(users)-len(user("site", "plant-7"))]...), true, false},
		{"the run is longer than the memo keeps", publishV5("a/b", long...), false, false},
		{"and is not remembered", publishV5("a/b", long...), false, false},
		{"duplicate topic alias before the run", publishV5("a/b", cat(alias, alias, users)...), false, true},
		{"truncated run", publishV5("a/b", cat(alias, users[:len(users)-1])...), false, true},
		{"no user properties", publishV5("a/b", alias...), false, false},
		{"back to the first", publishV5("a/b", cat(alias, users)...), false, false},
		{"and from the memo", publishV5("a/b", cat(alias, users)...), true, false},
	}
	memo := &UserMemo{}
	d := Decoder{Version: V5, UserMemo: memo}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			before, hits := bytes.Clone(memo.run), memo.hits
			got, err := d.Decode(s.frame)
			want, werr := (&Decoder{Version: V5}).Decode(s.frame)
			require.Equal(t, werr, err)
			if s.wantErr {
				require.Error(t, err)
				require.Equal(t, before, memo.run, "a refused frame changed the memo")
				return
			}
			require.NoError(t, err)
			gp, wp := got.(*Publish), want.(*Publish)
			require.Equal(t, wp.Properties.Present, gp.Properties.Present)
			require.Equal(t, len(wp.Properties.User), len(gp.Properties.User))
			for i, u := range wp.Properties.User {
				require.Equal(t, u, gp.Properties.User[i])
			}
			require.Equal(t, wp.Properties.TopicAlias, gp.Properties.TopicAlias)
			require.Equal(t, wp.ReceivedProperties, gp.ReceivedProperties)
			require.Equal(t, wp.Payload, gp.Payload)
			require.Equal(t, s.hit, memo.hits == hits+1, "taken from the memo")
		})
	}
}

// TestUserMemoRelearn checks when a memo takes new user properties: at
// once after it served a block, otherwise after memoRelearn blocks with
// other ones, so that a client whose properties change with every message
// does not pay for a copy per message.
func TestUserMemoRelearn(t *testing.T) {
	memo := &UserMemo{}
	d := Decoder{Version: V5, UserMemo: memo}
	seq := func(i int) []byte { return publishV5("t", user("seq", string(rune('a'+i)))...) }
	decode := func(f []byte) bool {
		hits := memo.hits
		_, err := d.Decode(f)
		require.NoError(t, err)
		return memo.hits > hits
	}
	require.False(t, decode(seq(0)), "empty memo")
	require.True(t, decode(seq(0)))
	require.False(t, decode(seq(1)), "taken at once: the memo served")
	require.True(t, decode(seq(1)))
	require.False(t, decode(seq(2)), "taken at once: seq(1) served")
	// Changing with every message: seq(2), which served none, stays for
	// memoRelearn-1 misses; the next miss replaces it.
	for i := 3; i < 2+memoRelearn; i++ {
		require.False(t, decode(seq(i)))
		require.True(t, bytes.HasSuffix(memo.run, []byte("c")), "after %d misses", i-2)
	}
	require.False(t, decode(seq(2+memoRelearn)))
	require.True(t, decode(seq(2+memoRelearn)), "taken after memoRelearn misses")
}
