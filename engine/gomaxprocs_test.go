package engine

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSuggestedGOMAXPROCS(t *testing.T) {
	f := func(o Options, want int) {
		t.Helper()
		require.Equal(t, want, SuggestedGOMAXPROCS(o))
	}
	f(Options{Loops: 2}, 0) // plain TCP: the runtime's default
	f(Options{Loops: 2, TLSListen: ":0"}, 3)
	f(Options{Loops: 4, WSListen: ":0"}, 5)
	f(Options{Loops: 1, WSSListen: ":0"}, 2)
	f(Options{TLSListen: ":0"}, runtime.GOMAXPROCS(0)+1)
}

// TestDefaultLoopsFollowsGOMAXPROCS: Loops 0 is one loop per P, not per
// CPU of the machine, so that a container's CPU limit (GOMAXPROCS's
// default since Go 1.25) or the GOMAXPROCS variable bounds the loops.
func TestDefaultLoopsFollowsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	o := Options{}
	o.setDefaults()
	require.Equal(t, 1, o.Loops)
	require.Equal(t, 1, DefaultLoops())
	require.Equal(t, 2, SuggestedGOMAXPROCS(Options{WSListen: ":0"}))
}
