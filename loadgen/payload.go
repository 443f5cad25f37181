package loadgen

import (
	"encoding/binary"

	"github.com/loopmq/loopmq/codec"
)

// PayloadHeaderSize is the size of the stamp at the start of every payload:
//
//	offset 0  run id            uint32, big endian
//	offset 4  source id         uint32 (the publisher stream)
//	offset 8  sequence number   uint64, from 0, per source
//	offset 16 intended send time int64, nanoseconds since the run's T0
//	offset 24 write time        int64, ns since T0, when the publisher
//	          built the write that carries it; only in payloads of
//	          writeStampEnd bytes or more
//
// The rest of the payload is filler.
const PayloadHeaderSize = 24

// writeStampEnd is the payload size from which the write time is stamped.
// End-to-end latency counts from the intended send time, so that a late
// generator shows in it (coordinated omission); the latency from the write
// time leaves the generator's own lateness out and tells the two apart.
const writeStampEnd = PayloadHeaderSize + 8

// stamp is the decoded payload header.
type stamp struct {
	run    uint32
	source uint32
	seq    uint64
	at     int64 // intended send time, ns since T0
	wrote  int64 // write time, ns since T0; 0 when the payload has no room
}

func putStamp(b []byte, s stamp) {
	_ = b[PayloadHeaderSize-1]
	binary.BigEndian.PutUint32(b[0:], s.run)
	binary.BigEndian.PutUint32(b[4:], s.source)
	binary.BigEndian.PutUint64(b[8:], s.seq)
	binary.BigEndian.PutUint64(b[16:], uint64(s.at))
	if len(b) >= writeStampEnd {
		binary.BigEndian.PutUint64(b[24:], uint64(s.wrote))
	}
}

// readStamp decodes the stamp; ok is false when the payload is too short to
// carry one.
func readStamp(b []byte) (s stamp, ok bool) {
	if len(b) < PayloadHeaderSize {
		return s, false
	}
	s.run = binary.BigEndian.Uint32(b[0:])
	s.source = binary.BigEndian.Uint32(b[4:])
	s.seq = binary.BigEndian.Uint64(b[8:])
	s.at = int64(binary.BigEndian.Uint64(b[16:]))
	if len(b) >= writeStampEnd {
		s.wrote = int64(binary.BigEndian.Uint64(b[24:]))
	}
	return s, true
}

// frameTemplate is a PUBLISH frame encoded once, patched in place for each
// send: the packet identifier (QoS 1/2) and the payload stamp.
type frameTemplate struct {
	frame  []byte
	pidOff int // offset of the packet identifier, -1 at QoS 0
	payOff int // offset of the payload
}

func newFrameTemplate(topic string, qos byte, size int, v codec.Version) frameTemplate {
	payload := make([]byte, size)
	for i := min(writeStampEnd, size); i < size; i++ {
		payload[i] = 'a' + byte(i%26)
	}
	p := codec.Publish{QoS: qos, Topic: []byte(topic), Payload: payload}
	if qos > 0 {
		p.PacketID = 1
	}
	t := frameTemplate{frame: p.AppendTo(nil, v), pidOff: -1}
	t.payOff = len(t.frame) - size
	if qos > 0 {
		h, _, err := codec.Split(t.frame, 0)
		if err != nil {
			panic("BUG: loadgen cannot split its own PUBLISH frame: " + err.Error())
		}
		// Fixed header, then the topic as a two-byte length and its bytes,
		// then the packet identifier [MQTT 5.0 section 3.3.2].
		t.pidOff = h.HeaderLen + 2 + len(topic)
	}
	return t
}

// appendTo appends one frame with pid and s patched in and returns the
// extended slice. It allocates only when dst lacks capacity.
func (t *frameTemplate) appendTo(dst []byte, pid uint16, s stamp) []byte {
	n := len(dst)
	dst = append(dst, t.frame...)
	f := dst[n:]
	if t.pidOff >= 0 {
		binary.BigEndian.PutUint16(f[t.pidOff:], pid)
	}
	putStamp(f[t.payOff:], s)
	return dst
}
