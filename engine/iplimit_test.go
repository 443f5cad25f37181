package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestConnRatePerIPLimit: past MaxConnRatePerIP new connections in a
// second from one address, further ones are closed at accept, before any
// CONNECT is read, and counted.
func TestConnRatePerIPLimit(t *testing.T) {
	s := startServer(t, Options{MaxConnRatePerIP: 3})
	var refused int
	deadline := time.Now().Add(500 * time.Millisecond) // well inside one or two seconds
	for i := 0; i < 8 && time.Now().Before(deadline); i++ {
		c := dialRaw(t, s)
		c.send(connectPacket("rate", true, 30))
		if _, err := c.next(e2eWait); err != nil {
			require.True(t, isClosedErr(err), "%v", err)
			refused++
		}
	}
	require.GreaterOrEqual(t, refused, 2, "at most 3 per second (6 over a second boundary) of 8")
	require.EqualValues(t, refused, s.Stats().RefusedByAddressLimit)
}

// denyPassword refuses the password "bad".
type denyPassword struct{}

func (denyPassword) Authenticate(info ConnectInfo) codec.ReasonCode {
	if string(info.Password) == "bad" {
		return codec.BadUserNameOrPassword
	}
	return codec.Success
}

// TestAuthFailuresPerIPLimit: after MaxAuthFailuresPerIP failed logins in
// a minute, an address's connections are refused at accept — even with
// the right password — so guessing passwords costs a connection each and
// soon nothing.
func TestAuthFailuresPerIPLimit(t *testing.T) {
	s := startServer(t, Options{MaxAuthFailuresPerIP: 2, Authenticator: denyPassword{}})
	login := func(pw string) (codec.ReasonCode, error) {
		c := dialRaw(t, s)
		p := connectPacket("guesser", true, 30)
		p.UsernameFlag, p.Username, p.PasswordFlag, p.Password = true, []byte("u"), true, []byte(pw)
		c.send(p)
		pkt, err := c.next(e2eWait)
		if err != nil {
			return 0, err
		}
		return pkt.(*codec.Connack).ReasonCode, nil
	}
	minute := time.Now().Unix() / 60
	for i := 0; i < 2; i++ {
		code, err := login("bad")
		require.NoError(t, err)
		require.Equal(t, codec.ReasonCode(4), code, "3.1.1: bad user name or password")
	}
	_, err := login("good")
	if err == nil && time.Now().Unix()/60 != minute {
		t.Skip("the minute turned over during the test: its failures were forgotten")
	}
	require.Error(t, err, "refused at accept after two failures")
	require.True(t, isClosedErr(err), "%v", err)
}
