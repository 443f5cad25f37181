package engine

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
)

// TestAuthFailureCodesFitTheirPacket checks that whatever code an
// Authenticator returns, the refusing CONNACK [MQTT 5.0 section 3.2.2.2]
// or the DISCONNECT ending a re-authentication [MQTT 5.0 section 3.14.2.1]
// carries a failure code its packet allows: the codec's decoder, which
// checks the tables, accepts it.
func TestAuthFailureCodesFitTheirPacket(t *testing.T) {
	for i := 0; i < 256; i++ {
		code := codec.ReasonCode(i)
		ca := connackAuthCode(code)
		require.True(t, ca.IsError(), "CONNACK code for 0x%02x", i)
		_, err := codec.Decode((&codec.Connack{ReasonCode: ca}).AppendTo(nil, codec.V5), codec.V5)
		require.NoError(t, err, "CONNACK code 0x%02x for 0x%02x", byte(ca), i)
		if code.IsError() && code != ca {
			require.Equal(t, codec.NotAuthorized, ca)
		}

		dc := disconnectAuthCode(code)
		require.True(t, dc.IsError(), "DISCONNECT code for 0x%02x", i)
		_, err = codec.Decode((&codec.Disconnect{ReasonCode: dc}).AppendTo(nil, codec.V5), codec.V5)
		require.NoError(t, err, "DISCONNECT code 0x%02x for 0x%02x", byte(dc), i)
	}
	require.Equal(t, codec.BadUserNameOrPassword, connackAuthCode(codec.BadUserNameOrPassword))
	require.Equal(t, codec.Banned, connackAuthCode(codec.Banned))
	require.Equal(t, codec.NotAuthorized, connackAuthCode(codec.ContinueAuthentication))
	require.Equal(t, codec.NotAuthorized, disconnectAuthCode(codec.BadUserNameOrPassword))
}
