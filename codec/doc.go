// Package codec encodes and decodes MQTT control packets for protocol
// levels 3 (MQIsdp, MQTT 3.1), 4 (MQTT 3.1.1) and 5 (MQTT 5.0).
//
// The package is pure: no I/O, no goroutines, no global mutable state. It
// imports nothing from the rest of loopmq.
//
// # Framing
//
// [Split] looks at the bytes received so far on a stream and reports
// whether they start with a complete frame, without copying. It rejects an
// over-long remaining-length field and a frame larger than the caller's
// maximum packet size as soon as the fixed header is readable, before the
// body arrives.
//
// # Decoding in place
//
// Decoded packets hold views: every []byte field (topics, client
// identifiers, payloads, property strings) is a sub-slice of the frame that
// was decoded. A view is valid only while the frame's memory is: when the
// frame lives in a network read buffer it must not be used after that buffer
// is discarded or reused. Anything that must outlive the buffer (a retained
// message, a queued QoS 1 payload) must be copied by the caller.
//
// Decode methods take a caller-owned packet value and reuse the capacity of
// its slices (subscriptions, user properties, subscription identifiers), so
// a value reused across frames decodes without allocating in steady state.
// [Decoder] bundles one value of each packet type for exactly that use.
//
// # Encoding
//
// Every packet has AppendTo(dst, version) which appends the complete frame
// to dst and returns the extended slice. Sizes are computed first so one
// append grows dst at most once; with a large enough dst (a pooled buffer)
// encoding allocates nothing. Encoders trust their input: they write what
// the value holds, omitting only properties that the packet type does not
// allow, and do not re-validate strings.
//
// # Errors
//
// Every validation failure is an [*Error] carrying the MQTT 5.0 reason code
// the broker sends for it (0x81 Malformed Packet, 0x82 Protocol Error, 0x95
// Packet Too Large, …). Each check cites the specification's normative
// statement it implements, e.g. [MQTT-1.5.4-1].
package codec
