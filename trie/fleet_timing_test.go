package trie

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
)

// The device-fleet mix the benchmarks run on: 1,000,000 subscriptions.
//
//	497,500 devices × devices/{id}/cmd             exact, one client each
//	497,500 devices × fleet/{region}/#             64 regions, ~7,800 each
//	  4,916 devices × devices/{id}/ota             exact, more of the same
//	     16 backends × devices/+/telemetry
//	     64 members of $share/ingest/devices/+/telemetry
//	      4 monitors × #
const (
	fleetDevices = 497_500
	fleetRegions = 64
	fleetOTA     = 4_916
	fleetTelem   = 16
	fleetShared  = 64
	fleetMonitor = 4
	fleetTotal   = 2*fleetDevices + fleetOTA + fleetTelem + fleetShared + fleetMonitor
)

func deviceID(i int) string { return fmt.Sprintf("dev-%07d", i) }

// buildFleet subscribes the whole mix into tr.
func buildFleet(tr *Trie[*handle]) {
	for i := range fleetDevices {
		id := deviceID(i)
		h := &handle{id}
		tr.Subscribe("devices/"+id+"/cmd", id, h, Options{QoS: 1, SubscriptionID: 1})
		tr.Subscribe(fmt.Sprintf("fleet/r%02d/#", i%fleetRegions), id, h, Options{QoS: 0})
		if i < fleetOTA {
			tr.Subscribe("devices/"+id+"/ota", id, h, Options{QoS: 1})
		}
	}
	for i := range fleetTelem {
		c := fmt.Sprintf("backend-%d", i)
		tr.Subscribe("devices/+/telemetry", c, &handle{c}, Options{QoS: 1})
	}
	for i := range fleetShared {
		c := fmt.Sprintf("ingest-%d", i)
		tr.Subscribe("$share/ingest/devices/+/telemetry", c, &handle{c}, Options{QoS: 1})
	}
	for i := range fleetMonitor {
		c := fmt.Sprintf("monitor-%d", i)
		tr.Subscribe("#", c, &handle{c}, Options{})
	}
}

// fleet is built once per test binary run, by the first benchmark that needs
// it: building a million subscriptions takes seconds.
var fleet = sync.OnceValue(func() *Trie[*handle] {
	tr := New[*handle]()
	buildFleet(tr)
	if tr.Count() != fleetTotal {
		panic(fmt.Sprintf("BUG: fleet has %d subscriptions, want %d", tr.Count(), fleetTotal))
	}
	runtime.GC() // so that marking a million new objects does not run inside the timings
	return tr
})

// randomCmdTopics returns n command topics of random devices.
func randomCmdTopics(n int, seed uint64) []string {
	rng := rand.New(rand.NewPCG(seed, 0))
	out := make([]string, n)
	for i := range out {
		out[i] = "devices/" + deviceID(rng.IntN(fleetDevices)) + "/cmd"
	}
	return out
}
