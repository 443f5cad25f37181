package loadgen

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Threads that sleep switch out voluntarily; the sum over /proc/PID/task
// sees them whichever thread the runtime parked.
func TestReadProcCountsContextSwitches(t *testing.T) {
	before := readProc(os.Getpid())
	require.NoError(t, before.err)
	require.Positive(t, before.vcs)
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	after := readProc(os.Getpid())
	require.NoError(t, after.err)
	require.Greater(t, after.vcs, before.vcs)
	require.GreaterOrEqual(t, after.nvcs, before.nvcs)
}

func TestBrokerStatsContextSwitchesPerMessage(t *testing.T) {
	b := &brokerSampler{pid: 1,
		start: procSample{cpuUs: 1_000_000, sysUs: 400_000, rssKB: 1, vcs: 100, nvcs: 10},
		end:   procSample{cpuUs: 1_500_000, sysUs: 700_000, rssKB: 1, vcs: 2100, nvcs: 510}}
	res := &Result{}
	res.Messages.WindowReceived = 1000
	s := b.stats(res)
	require.Empty(t, s.Err)
	require.Equal(t, int64(2000), s.VoluntaryCtxSwitches)
	require.Equal(t, int64(500), s.InvoluntaryCtxSwitches)
	require.InDelta(t, 2.0, s.VoluntaryPerMsg, 1e-9)
	require.InDelta(t, 0.5, s.InvoluntaryPerMsg, 1e-9)
	require.InDelta(t, 500.0, s.CPUPerMsgUs, 1e-9)
	require.InDelta(t, 300.0, s.SysPerMsgUs, 1e-9)
	require.InDelta(t, 200.0, s.UserPerMsgUs, 1e-9)
}
