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
	f(Options{TLSListen: ":0"}, runtime.NumCPU()+1)
}
