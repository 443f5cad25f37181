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
