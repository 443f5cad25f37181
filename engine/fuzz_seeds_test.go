package engine

// Seeds of FuzzConnection (fuzz_test.go), in its input layout: a mode
// byte, connection 0's config (fuzzConnect), then operations (fuzzConns.run).
// After changing them, delete testdata/fuzz/FuzzConnection/seed-* and
// rewrite them with
//
//	go test -run '^FuzzConnection$' ./engine/ -args -writecorpus
//
// Files there named otherwise are inputs the fuzzer once failed on.

import (
	"flag"
	"testing"

	"github.com/loopmq/loopmq/internal/fuzzseed"
)

var fuzzWriteCorpus = flag.Bool("writecorpus", false, "rewrite the seed files under testdata/fuzz")

type fuzzSeed struct {
	name string
	data []byte
}

func fuzzSeeds() []fuzzSeed {
	return []fuzzSeed{
		{"qos2-flow", []byte{
			0x00,                // mode: structured, full broker
			0x04,                // 5.0, clean start, "fa"
			0x15, 0, 1, 0, 0x02, // SUBSCRIBE id 1: t/# QoS 2
			0x00, 0x12, 0x00, 0, 2, 3, // PUBLISH QoS 2 t/a id 2, 3 bytes
			0x0D,       // read, acknowledge (PUBREC the delivery)
			0x03, 0, 2, // PUBREL id 2
			0x0D,       // read, acknowledge (PUBCOMP the delivery's PUBREL)
			0x03, 0, 5, // PUBREL for an unknown id
			0x01, 0, 6, // PUBACK for an id never sent
			0x02, 0, 7, // PUBREC for an id never sent
			0x00, 0x12, 0x00, 0, 2, 1, // the same id again, unreleased
		}},
		{"topic-alias", []byte{
			0x00,
			0x84, 0x08, 2, // 5.0, clean, "fa"; Topic Alias Maximum 2
			0x15, 0, 1, 0, 0x01, // SUBSCRIBE t/# QoS 1
			0x00, 0x11, 0x09, 0, 1, 2, // PUBLISH QoS 1 t/a, alias 1 defined
			0x00, 0x11, 0x19, 0, 2, 2, // PUBLISH QoS 1 by alias 1 only
			0x00, 0x21, 0x0A, 0, 3, 2, // PUBLISH QoS 1 t/b, alias 2 defined
			0x00, 0x01, 0x1B, 0, 4, 2, // alias 3 never defined
			0x0D,
			0x00, 0x10, 0x18, 2, // alias 0
			0x00, 0x10, 0x1E, 2, // alias 6, above the maximum
		}},
		{"shared-retained", []byte{
			0x00,
			0x04,
			0x25, 0, 1, 4, 0x01, 18, 0x01, // SUBSCRIBE $share/g/t/# and r/# QoS 1
			0x00, 0x35, 0x00, 0, 3, 1, // PUBLISH QoS 1 retained r/x
			0x1C, 0x0C, // connection 1: 5.0 clean "fb"
			0x15, 0, 1, 4, 0x01, // SUBSCRIBE $share/g/t/#
			0x15, 0, 2, 18, 0x21, // SUBSCRIBE r/# with Retain Handling 2
			0x00, 0x11, 0x00, 0, 1, 1, // PUBLISH QoS 1 t/a
			0x00, 0x21, 0x00, 0, 2, 1, // PUBLISH QoS 1 t/b
			0x0D,
			0x0C, 0x0D, // connection 0 reads
			0x16, 0, 3, 4, // UNSUBSCRIBE $share/g/t/#
		}},
		{"auth", []byte{
			0x00,
			0x84, 0x20, 0x18, // 5.0, clean, "fa"; method fuzz, data: continue
			0x29, 0x18, 0x00, // AUTH 0x18 fuzz, data: success
			0x09, 0x19, // AUTH 0x19 fuzz without data: re-authenticated
			0x39, 0x19, 0x18, // AUTH 0x19 "other": protocol error
		}},
		{"auth-wrong-state", []byte{
			0x00,
			0x04,
			0x09, 0x18, // AUTH from a client that named no method
		}},
		{"takeover", []byte{
			0x00,
			0x80, 0x02, // 5.0, "fa", session expiry 30 s
			0x15, 0, 1, 0, 0x02,
			0x00, 0x12, 0x00, 0, 3, 1, // QoS 2 t/a, not released
			0x1C, 0x80, 0x02, // connection 1 takes "fa" over
			0x03, 0, 3, // PUBREL the previous connection's id
			0x0D,
			0x0C,                      // back to the connection taken over
			0x00, 0x01, 0x00, 0, 1, 1, // PUBLISH on it
			0x2C, 0x00, // connection 2 takes "fa" over again
			0x0D,
		}},
		{"will-delay", []byte{
			0x00,
			0xA0, 0x81, 0xD8, // 5.0, "fa", will w/will with delay 1 s, session expiry 1 s
			0x1C, 0x0C, // connection 1: "fb"
			0x15, 0, 1, 15, 0x01, // SUBSCRIBE w/#
			0x0C, 0x08, 0x04, // connection 0: DISCONNECT 0x04 (with will)
			0x2C, 0xA0, 0x81, 0x58, // connection 2: "fa" again, will without delay
			0x0E,             // drop it
			0x1C, 0xFF, 0xFF, // connection 1 sleeps 15 ms
			0x0D,
		}},
		{"limits", []byte{
			0x00,
			0x84, 0x1F, 2, 1, 40, // 5.0, clean, "fa"; no session expiry, Receive Maximum 2, Topic Alias Maximum 1, Maximum Packet Size 80
			0x15, 0, 1, 0, 0x01,
			0x00, 0x11, 0x00, 0, 1, 0xF0, // 1600-byte PUBLISH: beyond MaxPacketSize
		}},
		{"flood", []byte{
			0x00,
			0x84, 0x05, 1, // 5.0, clean, "fa"; Receive Maximum 1
			0x15, 0, 1, 0, 0x01,
			0x00, 0x11, 0x00, 0, 1, 100,
			0x00, 0x11, 0x00, 0, 2, 100,
			0x00, 0x11, 0x00, 0, 3, 100,
			0x00, 0x11, 0x00, 0, 4, 100,
			0x00, 0x11, 0x00, 0, 5, 100, // a fifth unacknowledged: beyond the broker's Receive Maximum
			0x0D,
		}},
		{"second-connect-311", []byte{
			0x00,
			0x06, // 3.1.1, clean, "fa"
			0x15, 0, 1, 0, 0x01,
			0x0A, 0x06, // CONNECT again
		}},
		{"raw-publish-311", []byte{
			0x80,                                     // raw mode, full broker
			0x0E,                                     // 3.1.1, clean, "fb"
			0x82, 0x08, 0, 1, 0, 3, 't', '/', '#', 1, // SUBSCRIBE t/# QoS 1
			0x32, 0x07, 0, 3, 't', '/', 'a', 0, 1, // PUBLISH QoS 1 t/a, no payload
			0x60, 0x02, 0, 1, // PUBREL with flags 0: malformed
		}},
		{"restart", []byte{
			0x00,
			0x80, 0x02, // 5.0, "fa", session expiry 30 s
			0x65, 0, 1, 4, 0x02, 0, 0x02, 2, // SUBSCRIBE $share/g/t/# and t/# QoS 2, identifier 2
			0x00, 0x12, 0x00, 0, 3, 1, // QoS 2 t/a, not released
			0x00, 0x11, 0x00, 0, 4, 1, // QoS 1 t/a
			0xF7, 0x00, // restart with max QoS 1, no wildcards, smaller windows; "fa" resumes
			0x03, 0, 3, // PUBREL id 3
			0x0D,
		}},
		{"restricted", []byte{
			0x40, // the restricted broker
			0x04,
			0x25, 0, 1, 0, 0x02, 4, 0x01, // wildcard and shared filters
			0x00, 0x16, 0x00, 0, 1, 1, // QoS 2 retained
		}},
	}
}

func fuzzAddSeeds(f *testing.F) {
	seeds := fuzzSeeds()
	fs := make([]fuzzseed.Seed, len(seeds))
	for i, s := range seeds {
		fs[i] = fuzzseed.Seed{Name: s.name, Data: s.data}
	}
	fuzzseed.Add(f, fs, *fuzzWriteCorpus)
}
