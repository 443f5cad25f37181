package engine

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// TestClientFitsSizeClass: every open connection has a client, so its
// size is per-connection memory. It fits Go's 112-byte size class; a field
// added past it costs every connection 16 bytes more (issue 6: under 1 KiB
// of RSS per idle connection).
func TestClientFitsSizeClass(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(client{}), uintptr(112))
}

// TestSessionFitsSizeClass: every connection has a session too, and it
// fits the 112-byte size class (issue 6). The rare state lives behind
// pointers (sessionQueues, sessionMove, sessionAuthz).
func TestSessionFitsSizeClass(t *testing.T) {
	require.LessOrEqual(t, unsafe.Sizeof(session{}), uintptr(112))
}

// TestOutMsgSize: a delivery fills in-flight windows (MaxInflight slots
// per session that gets QoS 1/2), queue rings (up to MaxQueued per
// session) and hand-off tasks, so it stays at 32 bytes: its shared group
// and its extra Subscription Identifiers share a word (outMsg.ext).
func TestOutMsgSize(t *testing.T) {
	require.Equal(t, uintptr(32), unsafe.Sizeof(outMsg{}))
	require.Equal(t, uintptr(56), unsafe.Sizeof(slot{}))
}

// TestOutMsgGroupAndSubIDs: the two uses of outMsg.ext keep apart.
func TestOutMsgGroupAndSubIDs(t *testing.T) {
	var plain outMsg
	for _, id := range []uint32{0, 7, 7, 9, 11} {
		plain.addSubID(id)
	}
	require.Empty(t, plain.group())
	require.Equal(t, uint32(7), plain.subID)
	require.Equal(t, []uint32{9, 11}, plain.moreSubIDs())

	var shared outMsg
	shared.setGroup("$share/g/a/+")
	shared.addSubID(5)
	require.Equal(t, "$share/g/a/+", shared.group())
	require.Equal(t, uint32(5), shared.subID)
	require.Nil(t, shared.moreSubIDs())
	require.Equal(t, []uint32{5}, shared.appendSubIDs(nil))
	require.Panics(t, func() { new(outMsg).setGroup("") })
}
