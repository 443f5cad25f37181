package codec_test

// Fuzz targets for the framing and the decoders. Seeds come from
// fuzzSeedPackets (every packet type in every version, with every property
// the type allows in 5.0) and from the files under testdata/fuzz, which also
// keep every input the fuzzer ever failed on. After changing the seeds,
// delete testdata/fuzz/*/seed-* and rewrite them with
//
//	go test -run '^Fuzz' ./codec/ -args -writecorpus

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/internal/fuzzseed"
)

var fuzzWriteCorpus = flag.Bool("writecorpus", false, "rewrite the seed files under testdata/fuzz")

// FuzzDecode feeds arbitrary bytes to Split and the Decoder. The first byte
// selects the protocol version (3, 4 or 5, modulo 3), the rest is the
// stream. Nothing may panic; every failure must be an *codec.Error with an
// error reason code; and whatever decodes must re-encode to a frame that
// decodes to an equal packet and re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	var seeds []fuzzSeed
	for _, v := range []codec.Version{codec.V31, codec.V311, codec.V5} {
		for _, p := range fuzzSeedPackets(v) {
			seeds = append(seeds, fuzzSeed{name: p.name, data: append([]byte{byte(v)}, p.AppendTo(nil, v)...)})
		}
	}
	fuzzAddSeeds(f, seeds)

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		v := codec.Version(3 + data[0]%3)
		stream := data[1:]
		h, n, err := codec.Split(stream, 0)
		if err != nil {
			fuzzRequireCodecError(t, err)
			return
		}
		if n == 0 {
			return
		}
		frame := stream[:n]
		orig := bytes.Clone(frame)

		fresh := codec.Decoder{Version: v}
		p, err := fresh.Decode(frame)
		require.Equal(t, orig, frame, "Decode wrote to the frame")

		// A Decoder reuses its packet values: one that decoded a packet of
		// the same type before must give the same result as a fresh one.
		used := fuzzUsedDecoder(v, h.Type)
		up, uerr := used.Decode(frame)
		fuzzCheckUserMemo(t, v, frame, err)
		if err != nil {
			ce := fuzzRequireCodecError(t, err)
			require.Equal(t, h.Type, ce.Packet, "error %v names the wrong packet", err)
			require.Equal(t, err, uerr, "a used Decoder fails differently")
			return
		}
		require.NoError(t, uerr, "a used Decoder fails where a fresh one does not")
		require.Equal(t, h.Type, p.Type())
		if pub, ok := p.(*codec.Publish); ok && v == codec.V5 {
			fuzzCheckForwarded(t, pub)
		}

		out := p.AppendTo(nil, v)
		require.Equal(t, append([]byte{0xA5, 0x5A}, out...), p.AppendTo([]byte{0xA5, 0x5A}, v),
			"AppendTo with a non-empty dst")
		if pub, ok := p.(*codec.Publish); ok {
			require.Equal(t, len(out), pub.Size(v))
			require.Equal(t, out, append(pub.AppendHeader(nil, v), pub.Payload...))
		}
		_, on, err := codec.Split(out, 0)
		require.NoError(t, err)
		require.Equal(t, len(out), on, "re-encoded frame %x", out)

		again := codec.Decoder{Version: v}
		p2, err := again.Decode(out)
		require.NoError(t, err, "decode the re-encoded frame %x of %x", out, frame)
		if pub, ok := p.(*codec.Publish); ok {
			// Views of each frame's property block, whose order the
			// encoder may change.
			pub.ReceivedProperties = nil
			p2.(*codec.Publish).ReceivedProperties = nil
		}
		require.Equal(t, p, p2, "re-encoded frame %x of %x", out, frame)
		require.Equal(t, out, p2.AppendTo(nil, v), "encoding is not a fixed point")

		// The used Decoder's slices may be empty where a fresh one's are
		// nil; nothing else may differ.
		require.Equal(t, xcNormalize(p), xcNormalize(up), "a used Decoder decodes differently")
	})
}

// fuzzCheckUserMemo decodes frame with a UserMemo that holds what the
// frame itself left in it, then what the used Decoder's PUBLISH left: the
// result must be a fresh Decoder's (err, when that fails).
func fuzzCheckUserMemo(t *testing.T, v codec.Version, frame []byte, err error) {
	t.Helper()
	for _, prime := range [][]byte{frame, fuzzUsedFrames()[v][codec.PUBLISH]} {
		d := codec.Decoder{Version: v, UserMemo: &codec.UserMemo{}}
		_, _ = d.Decode(prime)
		mp, merr := d.Decode(frame)
		require.Equal(t, err, merr, "a Decoder with a UserMemo fails differently")
		if err == nil {
			fp, _ := (&codec.Decoder{Version: v}).Decode(frame)
			require.Equal(t, xcNormalize(fp), xcNormalize(mp), "a Decoder with a UserMemo decodes differently")
		}
	}
}

// fuzzRequireCodecError checks the package's error contract: every failure
// is an *codec.Error carrying a reason code that signals an error.
func fuzzRequireCodecError(t *testing.T, err error) *codec.Error {
	t.Helper()
	var ce *codec.Error
	require.True(t, errors.As(err, &ce), "error %v is a %T, not an *codec.Error", err, err)
	require.True(t, ce.Code.IsError(), "error %v has reason code %#x", err, byte(ce.Code))
	return ce
}

// fuzzUsedDecoder returns a Decoder that has already decoded a packet of
// type t full of properties, user properties and list entries.
func fuzzUsedDecoder(v codec.Version, t codec.Type) *codec.Decoder {
	d := &codec.Decoder{Version: v}
	if frame := fuzzUsedFrames()[v][t]; frame != nil {
		if _, err := d.Decode(frame); err != nil {
			panic(fmt.Sprintf("BUG: seed %v %v does not decode: %v", v, t, err))
		}
	}
	return d
}

var fuzzUsedFrames = sync.OnceValue(func() map[codec.Version]map[codec.Type][]byte {
	m := map[codec.Version]map[codec.Type][]byte{}
	for _, v := range []codec.Version{codec.V31, codec.V311, codec.V5} {
		m[v] = map[codec.Type][]byte{}
		for _, p := range fuzzSeedPackets(v) {
			if p.Type() == codec.AUTH && v != codec.V5 {
				continue
			}
			if m[v][p.Type()] == nil {
				m[v][p.Type()] = p.AppendTo(nil, v)
			}
		}
		m[v][codec.PUBREC] = m[v][codec.PUBACK] // one Ack value serves all four
		m[v][codec.PUBREL] = m[v][codec.PUBACK]
		m[v][codec.PUBCOMP] = m[v][codec.PUBACK]
	}
	return m
})

// FuzzSplit checks framing the way nats-server fuzzes its parser: a stream
// of several valid frames, built from the input by the codec's encoders, is
// cut at every byte boundary and fed to a buffer-accumulating read loop,
// which must yield exactly the original frames. Every strict prefix of a
// frame must make Split ask for more bytes, and a maximum packet size one
// byte too small must be reported as soon as the fixed header is readable.
func FuzzSplit(f *testing.F) {
	var seeds []fuzzSeed
	for _, v := range []codec.Version{codec.V31, codec.V311, codec.V5} {
		for t := codec.CONNECT; t <= codec.AUTH; t++ {
			sel := byte(int(t-1)*3 + int(v-codec.V31))
			seeds = append(seeds, fuzzSeed{name: v.String() + "-" + t.String(),
				data: []byte{0, sel, 0xFF, 3, 'a', '/', 'b', 0x7F, 1, 2, 3, 4, 5, 6, 7, 8}})
		}
	}
	seeds = append(seeds,
		fuzzSeed{name: "mixed", data: []byte{0, 8, 0x81, 'x', 5, 0x7F, 23, 1, 2, 26, 3, 0x40, 0x41, 2, 7, 0x22, 3, 44, 9}},
		// Control byte 1 adds a 16 KiB PUBLISH, 3 a 2 MiB one; then come
		// its version and where its size lies around the edge.
		fuzzSeed{name: "big-16k", data: []byte{1, 2, 8, 8, 0, 4, 't', '/', 'x', 'y', 1, 'z'}},
		fuzzSeed{name: "big-2m", data: []byte{1 | 1<<1, 1, 8, 8, 0, 4, 't', '/', 'x', 'y', 1, 'z'}},
	)
	// 5.0 PUBLISH frames with remaining length 127 and 128, where it grows
	// to two bytes: no properties, QoS 0, topic "t/x", packet identifier
	// (not encoded at QoS 0), payload.
	for _, rem := range []int{127, 128} {
		payload := rem - 6
		seeds = append(seeds, fuzzSeed{name: fmt.Sprintf("remaining-%d", rem),
			data: append([]byte{0, 8, 0, 0, 3, 't', '/', 'x', 0, 1, byte(payload)}, bytes.Repeat([]byte{'p'}, payload)...)})
	}
	fuzzAddSeeds(f, seeds)

	f.Fuzz(func(t *testing.T, data []byte) {
		src := &fuzzBytes{b: data}
		ctl := src.byte()
		// A 16 KiB PUBLISH is slow to check, so only one input in eight
		// adds one; another one in eight adds a 2 MiB one (header only).
		big, huge := ctl&7 == 1, ctl&7 == 3
		var bigV, bigOff byte
		if big || huge {
			bigV, bigOff = src.byte(), src.byte()
		}
		var frames [][]byte
		var stream []byte
		// Cutting at every byte costs O(len²): keep the stream short.
		for len(frames) < 8 && len(stream) < 1024 && len(src.b) > 0 {
			frame := fuzzPacket(src).AppendTo(nil, src.version)
			frames = append(frames, frame)
			stream = append(stream, frame...)
		}
		for _, frame := range frames {
			fuzzCheckPrefixes(t, frame, len(frame))
		}

		var rd fuzzReader
		// Cut the stream in two at every byte boundary.
		for k := 0; k <= len(stream); k++ {
			if err := rd.run(frames, stream[:k], stream[k:]); err != nil {
				require.FailNow(t, "stream cut in two", "cut at %d of %d: %v", k, len(stream), err)
			}
		}
		// One byte at a time, and in chunks whose sizes the input picks.
		var ones, chunks [][]byte
		for i := range stream {
			ones = append(ones, stream[i:i+1])
		}
		require.NoError(t, rd.run(frames, ones...), "stream fed byte by byte")
		for rest, i := stream, 0; len(rest) > 0; i++ {
			n := min(len(rest), 1+int(data[i%len(data)]))
			chunks, rest = append(chunks, rest[:n]), rest[n:]
		}
		require.NoError(t, rd.run(frames, chunks...), "stream fed in chunks")

		if big || huge {
			fuzzCheckBigFrame(t, codec.Version(3+bigV%3), int(bigOff%16), huge, data)
		}
	})
}

// fuzzReader is a connection's read loop in miniature: it appends what was
// read to its buffer, cuts every complete frame off the front, and moves a
// partial frame to the start of the buffer for the next read.
type fuzzReader struct {
	buf []byte
}

// run feeds chunks through the loop and reports the first difference from
// the frames in want.
func (r *fuzzReader) run(want [][]byte, chunks ...[]byte) error {
	r.buf = r.buf[:0]
	i := 0
	for _, c := range chunks {
		r.buf = append(r.buf, c...)
		off := 0
		for {
			h, n, err := codec.Split(r.buf[off:], 0)
			if err != nil {
				return fmt.Errorf("frame %d: %w", i, err)
			}
			if n == 0 {
				break
			}
			got := r.buf[off : off+n]
			switch {
			case n != h.Size():
				return fmt.Errorf("frame %d: n=%d but header %+v", i, n, h)
			case i >= len(want):
				return fmt.Errorf("extra frame %x", got)
			case !bytes.Equal(want[i], got):
				return fmt.Errorf("frame %d is %x, want %x", i, got, want[i])
			}
			i++
			off += n
		}
		if off > 0 {
			r.buf = append(r.buf[:0], r.buf[off:]...)
		}
	}
	if len(r.buf) != 0 {
		return fmt.Errorf("%d bytes left after the last frame", len(r.buf))
	}
	if i != len(want) {
		return fmt.Errorf("got %d frames, want %d", i, len(want))
	}
	return nil
}

// fuzzCheckPrefixes checks Split on every prefix of frame, which holds
// the first bytes of a frame of size bytes (all of it when len(frame) ==
// size): a strict prefix needs more bytes, the whole frame is complete, and
// with a maximum packet size one byte below the frame's size the frame is
// refused as Packet Too Large as soon as its fixed header is readable
// [MQTT-3.1.2-24].
func fuzzCheckPrefixes(t *testing.T, frame []byte, size int) {
	t.Helper()
	headerLen := 2
	for frame[headerLen-1]&0x80 != 0 {
		headerLen++
	}
	for k := range len(frame) {
		if _, n, err := codec.Split(frame[:k], 0); n != 0 || err != nil {
			require.FailNow(t, "strict prefix is not reported as incomplete",
				"prefix %d of %d: n=%d err=%v", k, size, n, err)
		}
		_, n, err := codec.Split(frame[:k], size-1)
		ce, _ := err.(*codec.Error)
		tooLarge := ce != nil && ce.Code == codec.PacketTooLarge && n == 0
		if k < headerLen && (n != 0 || err != nil) || k >= headerLen && !tooLarge {
			require.FailNow(t, "maximum packet size not enforced as soon as the header is readable",
				"prefix %d of %d (header %d) with maximum %d: n=%d err=%v", k, size, headerLen, size-1, n, err)
		}
	}
	if len(frame) < size {
		_, n, err := codec.Split(frame, 0)
		require.NoError(t, err)
		require.Zero(t, n)
		return
	}
	for _, limit := range []int{0, size} {
		h, n, err := codec.Split(frame, limit)
		require.NoError(t, err)
		require.Equal(t, size, n)
		require.Equal(t, codec.FixedHeader{Type: codec.Type(frame[0] >> 4), Flags: frame[0] & 0x0F,
			Remaining: size - headerLen, HeaderLen: headerLen}, h)
	}
}

// fuzzZeros backs the payloads of the big frames; nothing writes to it.
var fuzzZeros = sync.OnceValue(func() []byte { return make([]byte, 2_097_152+16) })

// fuzzCheckBigFrame builds a PUBLISH whose remaining length needs three
// (or, with huge, four) bytes and lies within -8 … +7 of where it grows a
// byte (off picks where), and checks its prefixes; the three-byte one is
// also fed through a read loop in chunks whose sizes come from sizes.
func fuzzCheckBigFrame(t *testing.T, v codec.Version, off int, huge bool, sizes []byte) {
	edge := 16_384
	if huge {
		edge = 2_097_152
	}
	topic := []byte("big")
	// Remaining length = 2 + len(topic) (+ 1 property length byte in 5.0)
	// + payload.
	size := edge - 8 + off - 2 - len(topic)
	if v == codec.V5 {
		size--
	}
	p := &codec.Publish{Topic: topic, Payload: fuzzZeros()[:size]}
	hdr := p.AppendHeader(nil, v)
	if huge {
		// Only the header and a byte of payload are built: copying 2 MiB
		// on every run would slow the fuzzer down too much.
		fuzzCheckPrefixes(t, append(hdr, 0), len(hdr)+size)
		return
	}
	frame := append(hdr, p.Payload...)
	fuzzCheckPrefixes(t, frame, len(frame))
	var chunks [][]byte
	for rest, i := frame, 0; len(rest) > 0; i++ {
		n := min(len(rest), 1+int(sizes[i%len(sizes)])*64)
		chunks, rest = append(chunks, rest[:n]), rest[n:]
	}
	var rd fuzzReader
	require.NoError(t, rd.run([][]byte{frame}, chunks...))
}

// fuzzBytes hands out the fuzzer's input a byte at a time; past its end
// every byte is 0.
type fuzzBytes struct {
	b       []byte
	version codec.Version // of the last packet fuzzPacket built
}

func (s *fuzzBytes) byte() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *fuzzBytes) u16() uint16 { return uint16(s.byte())<<8 | uint16(s.byte()) }

// bytes returns up to the next n bytes of input, where n is the next byte.
func (s *fuzzBytes) bytes() []byte {
	n := min(int(s.byte()), len(s.b))
	b := s.b[:n:n]
	s.b = s.b[n:]
	return b
}

// props returns 5.0 properties whose sizes come from the input; the
// encoder writes only those the packet type allows.
func (s *fuzzBytes) props() codec.Properties {
	var p codec.Properties
	sel := s.byte()
	if sel&1 != 0 {
		p.User = append(p.User, codec.UserProperty{Key: s.bytes(), Value: s.bytes()})
	}
	if sel&2 != 0 {
		p.ReasonString = s.bytes()
	}
	if sel&4 != 0 {
		p.SubscriptionIDs = append(p.SubscriptionIDs, uint32(s.u16())<<12|uint32(s.byte()))
	}
	if sel&8 != 0 {
		p.SessionExpiry = uint32(s.u16())
		p.Present.Add(codec.PropSessionExpiry)
	}
	if sel&16 != 0 {
		p.CorrelationData = s.bytes()
		p.AuthData = p.CorrelationData
	}
	return p
}

// fuzzPacket builds a packet from the input: the first byte picks type
// and version, the following ones the fields. Only the frame's length and
// header matter to Split, so the packets need not be valid.
func fuzzPacket(s *fuzzBytes) codec.Packet {
	sel := s.byte()
	v := codec.Version(3 + sel%3)
	s.version = v
	t := codec.Type(1 + (sel/3)%15)
	var props codec.Properties
	if v == codec.V5 {
		props = s.props()
	}
	switch t {
	case codec.CONNECT:
		flags := s.byte()
		c := &codec.Connect{Version: v, CleanStart: flags&1 != 0, KeepAlive: s.u16(), ClientID: s.bytes(),
			Properties: props, WillFlag: flags&2 != 0, UsernameFlag: flags&4 != 0, PasswordFlag: flags&8 != 0}
		if c.WillFlag {
			c.Will = codec.Will{QoS: flags >> 4 & 3, Topic: s.bytes(), Payload: s.bytes(), Properties: props}
		}
		if c.UsernameFlag {
			c.Username = s.bytes()
		}
		if c.PasswordFlag {
			c.Password = s.bytes()
		}
		return c
	case codec.CONNACK:
		flags := s.byte()
		return &codec.Connack{SessionPresent: flags&1 != 0, ReasonCode: codec.ReasonCode(s.byte()), Properties: props}
	case codec.PUBLISH:
		flags := s.byte()
		return &codec.Publish{QoS: flags & 3, Dup: flags&4 != 0, Retain: flags&8 != 0, Topic: s.bytes(),
			PacketID: s.u16(), Properties: props, Payload: s.bytes()}
	case codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP:
		return &codec.Ack{PacketType: t, PacketID: s.u16(), ReasonCode: codec.ReasonCode(s.byte()), Properties: props}
	case codec.SUBSCRIBE:
		sub := &codec.Subscribe{PacketID: s.u16(), Properties: props}
		for range 1 + s.byte()%4 {
			o := s.byte()
			sub.Subscriptions = append(sub.Subscriptions, codec.Subscription{Filter: s.bytes(), QoS: o & 3,
				NoLocal: o&4 != 0, RetainAsPublished: o&8 != 0, RetainHandling: o >> 4 & 3})
		}
		return sub
	case codec.SUBACK, codec.UNSUBACK:
		id, codes := s.u16(), s.bytes()
		rc := make([]codec.ReasonCode, len(codes))
		for i, c := range codes {
			rc[i] = codec.ReasonCode(c)
		}
		if t == codec.SUBACK {
			return &codec.Suback{PacketID: id, Properties: props, ReasonCodes: rc}
		}
		return &codec.Unsuback{PacketID: id, Properties: props, ReasonCodes: rc}
	case codec.UNSUBSCRIBE:
		u := &codec.Unsubscribe{PacketID: s.u16(), Properties: props}
		for range 1 + s.byte()%4 {
			u.Filters = append(u.Filters, s.bytes())
		}
		return u
	case codec.PINGREQ:
		return &codec.Pingreq{}
	case codec.PINGRESP:
		return &codec.Pingresp{}
	case codec.DISCONNECT:
		return &codec.Disconnect{ReasonCode: codec.ReasonCode(s.byte()), Properties: props}
	}
	return &codec.Auth{ReasonCode: codec.ReasonCode(s.byte()), Properties: props}
}

// fuzzSeedPacket is one seed packet with a name for its corpus file.
type fuzzSeedPacket struct {
	codec.Packet
	name string
}

// fuzzSeedPackets returns one valid packet of every type for version v
// (AUTH, which exists only in 5.0, encoded anyway), plus a few variants;
// in 5.0 every packet carries every property its type allows.
func fuzzSeedPackets(v codec.Version) []fuzzSeedPacket {
	five := v == codec.V5
	b := func(s string) []byte { return []byte(s) }
	users := []codec.UserProperty{{Key: b("k"), Value: b("v")}, {Key: b("ключ"), Value: b("值")}, {Key: b("k"), Value: b("")}}
	props := func(p codec.Properties) codec.Properties {
		if five {
			p.User = users
			return p
		}
		return codec.Properties{}
	}
	ackProps := props(codec.Properties{ReasonString: b("because ✓")})
	code := func(c5 codec.ReasonCode) codec.ReasonCode {
		if five {
			return c5
		}
		return 0
	}
	connect := &codec.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: b("client-Ω"),
		Properties: props(codec.Properties{SessionExpiry: 3600, ReceiveMaximum: 20, MaximumPacketSize: 1 << 20,
			TopicAliasMaximum: 10, RequestResponseInfo: 1, RequestProblemInfo: 0,
			Present: 1 << codec.PropRequestProblemInfo, AuthMethod: b("SCRAM-SHA-1"), AuthData: b("\x00\x01")}),
		WillFlag: true, Will: codec.Will{QoS: 1, Retain: true, Topic: b("will/тема"), Payload: b("bye"),
			Properties: props(codec.Properties{WillDelay: 5, PayloadFormat: 1, MessageExpiry: 60,
				ContentType: b("text/plain"), ResponseTopic: b("resp/1"), CorrelationData: b("\x01\x02")})},
		UsernameFlag: true, Username: b("üser"), PasswordFlag: true, Password: b("\x00secret")}
	var connack codec.Connack
	connack.SessionPresent = v != codec.V31
	if five {
		connack.Properties = props(codec.Properties{SessionExpiry: 10, ReceiveMaximum: 100, MaximumQoS: 1,
			RetainAvailable: 1, MaximumPacketSize: 65536, AssignedClientID: b("auto-1"), TopicAliasMaximum: 5,
			ReasonString: b("ok"), WildcardSubAvailable: 1, SubIDAvailable: 1, SharedSubAvailable: 1,
			ServerKeepAlive: 30, ResponseInfo: b("resp/"), ServerReference: b("other:1883"),
			AuthMethod: b("SCRAM-SHA-1"), AuthData: b("\x03")})
	} else {
		connack.ReasonCode = codec.ReasonCode(codec.ConnRefusedNotAuthorized)
	}
	publish := &codec.Publish{Dup: true, QoS: 1, Retain: true, Topic: b("a/b/ü"), PacketID: 7,
		Properties: props(codec.Properties{PayloadFormat: 1, MessageExpiry: 30, TopicAlias: 3,
			ResponseTopic: b("r/t"), CorrelationData: b("c"), SubscriptionIDs: []uint32{1, 300, 268_435_455},
			ContentType: b("application/json")}), Payload: b(`{"x":1}`)}
	ps := []fuzzSeedPacket{
		{connect, "CONNECT"},
		{&codec.Connect{Version: v, ClientID: b("")}, "CONNECT-minimal"},
		{&connack, "CONNACK"},
		{publish, "PUBLISH"},
		{&codec.Publish{QoS: 2, Topic: b("q2"), PacketID: 65535, Payload: bytes.Repeat(b("x"), 200)}, "PUBLISH-qos2"},
		{&codec.Publish{Topic: b("t")}, "PUBLISH-qos0-empty"},
		{&codec.Ack{PacketType: codec.PUBACK, PacketID: 1, ReasonCode: code(codec.NoMatchingSubscribers), Properties: ackProps}, "PUBACK"},
		{&codec.Ack{PacketType: codec.PUBREC, PacketID: 2, ReasonCode: code(codec.QuotaExceeded), Properties: ackProps}, "PUBREC"},
		{&codec.Ack{PacketType: codec.PUBREL, PacketID: 3, ReasonCode: code(codec.PacketIdentifierNotFound), Properties: ackProps}, "PUBREL"},
		{&codec.Ack{PacketType: codec.PUBCOMP, PacketID: 4, Properties: ackProps}, "PUBCOMP"},
		{&codec.Subscribe{PacketID: 9, Properties: props(codec.Properties{SubscriptionIDs: []uint32{42}}),
			Subscriptions: []codec.Subscription{
				{Filter: b("$share/g/x/#"), QoS: 2, RetainAsPublished: true, RetainHandling: 2},
				{Filter: b("+/y"), QoS: 1, NoLocal: true, RetainHandling: 1},
				{Filter: b("z")},
			}}, "SUBSCRIBE"},
		{&codec.Suback{PacketID: 9, Properties: ackProps, ReasonCodes: []codec.ReasonCode{0, 1, 2, 0x80}}, "SUBACK"},
		{&codec.Unsubscribe{PacketID: 10, Properties: props(codec.Properties{}), Filters: [][]byte{b("a/+"), b("#")}}, "UNSUBSCRIBE"},
		{&codec.Unsuback{PacketID: 10, Properties: ackProps, ReasonCodes: []codec.ReasonCode{0, 0x11}}, "UNSUBACK"},
		{&codec.Pingreq{}, "PINGREQ"},
		{&codec.Pingresp{}, "PINGRESP"},
		{&codec.Disconnect{ReasonCode: code(codec.DisconnectWithWill), Properties: props(codec.Properties{
			SessionExpiry: 0, Present: 1 << codec.PropSessionExpiry, ReasonString: b("bye"),
			ServerReference: b("elsewhere")})}, "DISCONNECT"},
		{&codec.Auth{ReasonCode: codec.ContinueAuthentication, Properties: props(codec.Properties{
			AuthMethod: b("SCRAM-SHA-1"), AuthData: b("\x04\x05"), ReasonString: b("more")})}, "AUTH"},
	}
	for i := range ps {
		ps[i].name = v.String() + "-" + ps[i].name
	}
	return ps
}

type fuzzSeed struct {
	name string
	data []byte
}

// fuzzAddSeeds adds the seeds to f and, with -writecorpus, also writes
// them to testdata/fuzz/<target>/seed-<name> in the corpus file format.
func fuzzAddSeeds(f *testing.F, seeds []fuzzSeed) {
	fs := make([]fuzzseed.Seed, len(seeds))
	for i, s := range seeds {
		fs[i] = fuzzseed.Seed{Name: s.name, Data: s.data}
	}
	fuzzseed.Add(f, fs, *fuzzWriteCorpus)
}

// TestFuzzSeedsAreValid keeps the seeds useful: each must decode in its
// version (AUTH only in 5.0) and survive a round trip.
func TestFuzzSeedsAreValid(t *testing.T) {
	for _, v := range []codec.Version{codec.V31, codec.V311, codec.V5} {
		for _, p := range fuzzSeedPackets(v) {
			t.Run(p.name, func(t *testing.T) {
				frame := p.AppendTo(nil, v)
				got, err := codec.Decode(frame, v)
				if p.Type() == codec.AUTH && v != codec.V5 {
					require.Error(t, err)
					return
				}
				require.NoError(t, err)
				require.Equal(t, frame, got.AppendTo(nil, v))
			})
		}
	}
}

// fuzzCheckForwarded checks AppendForwarded on a decoded 5.0 PUBLISH: the
// forwarded block decodes to the packet's properties without the
// per-recipient ones.
func fuzzCheckForwarded(t *testing.T, pub *codec.Publish) {
	t.Helper()
	fwd := codec.AppendForwarded(nil, pub.ReceivedProperties)
	require.Equal(t, fwd, pub.AppendForwarded(nil), "Publish.AppendForwarded")
	frame := (&codec.Publish{Topic: []byte("t"), RawProperties: fwd, Payload: pub.Payload}).AppendTo(nil, codec.V5)
	got, err := codec.Decode(frame, codec.V5)
	require.NoError(t, err, "forwarded properties %x of %x", fwd, pub.ReceivedProperties)
	want := pub.Properties
	want.User = append([]codec.UserProperty(nil), want.User...) // normalized below: not pub's
	want.Present.Remove(codec.PropMessageExpiry)
	want.Present.Remove(codec.PropTopicAlias)
	want.Present.Remove(codec.PropSubscriptionID)
	want.MessageExpiry, want.TopicAlias, want.SubscriptionIDs = 0, 0, nil
	gp := got.(*codec.Publish).Properties
	require.Equal(t, xcNormalize(&want), xcNormalize(&gp))
}
