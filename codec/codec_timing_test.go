package codec

import (
	"fmt"
	"strings"
	"testing"
)

// benchPublish returns a PUBLISH with the given payload size; with props it
// carries three 5.0 properties (message expiry, content type, one user
// property), a typical device message.
func benchPublish(size int, props bool) *Publish {
	p := &Publish{QoS: 1, PacketID: 42, Topic: []byte("devices/device-000123/telemetry"), Payload: make([]byte, size)}
	if props {
		p.Properties = Properties{MessageExpiry: 3600, ContentType: []byte("application/json"),
			User: []UserProperty{{Key: []byte("fw"), Value: []byte("1.2.3")}}}
	}
	return p
}

func BenchmarkPublishDecode(b *testing.B) {
	for _, size := range []int{64, 4096} {
		for _, v := range []Version{V311, V5} {
			b.Run(fmt.Sprintf("%dB/v%s", size, v), func(b *testing.B) {
				raw := benchPublish(size, v == V5).AppendTo(nil, v)
				h, _, _ := Split(raw, 0)
				body := raw[h.HeaderLen:]
				var p Publish
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := p.Decode(h, body, v); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkPublishSplitDecode is the broker's per-frame path: split the
// stream, then decode through a reused Decoder.
func BenchmarkPublishSplitDecode(b *testing.B) {
	raw := benchPublish(64, false).AppendTo(nil, V311)
	d := Decoder{Version: V311}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for i := 0; i < b.N; i++ {
		h, n, err := Split(raw, 0)
		if err != nil || n == 0 {
			b.Fatal(err)
		}
		if _, err := d.DecodeBody(h, raw[h.HeaderLen:n]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPublishEncode(b *testing.B) {
	for _, size := range []int{64, 4096} {
		for _, v := range []Version{V311, V5} {
			b.Run(fmt.Sprintf("%dB/v%s", size, v), func(b *testing.B) {
				p := benchPublish(size, v == V5)
				buf := make([]byte, 0, p.Size(v))
				b.ReportAllocs()
				b.SetBytes(int64(p.Size(v)))
				for i := 0; i < b.N; i++ {
					buf = p.AppendTo(buf[:0], v)
				}
			})
		}
	}
}

func benchConnect() *Connect {
	return &Connect{Version: V5, CleanStart: true, KeepAlive: 60, ClientID: []byte("device-000123"),
		Properties:   Properties{SessionExpiry: 3600, ReceiveMaximum: 32},
		UsernameFlag: true, Username: []byte("device-000123"), PasswordFlag: true, Password: []byte("secret-token"),
		WillFlag: true, Will: Will{QoS: 1, Topic: []byte("devices/device-000123/status"), Payload: []byte("offline")}}
}

func BenchmarkConnect(b *testing.B) {
	c := benchConnect()
	raw := c.AppendTo(nil, V5)
	b.Run("decode", func(b *testing.B) {
		h, _, _ := Split(raw, 0)
		var got Connect
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			if err := got.Decode(h, raw[h.HeaderLen:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		buf := make([]byte, 0, len(raw))
		b.ReportAllocs()
		b.SetBytes(int64(len(raw)))
		for i := 0; i < b.N; i++ {
			buf = c.AppendTo(buf[:0], V5)
		}
	})
}

func BenchmarkSubscribe10(b *testing.B) {
	s := &Subscribe{PacketID: 7}
	for i := 0; i < 10; i++ {
		s.Subscriptions = append(s.Subscriptions, Subscription{
			Filter: []byte(fmt.Sprintf("devices/device-%06d/+/cmd/#", i)), QoS: byte(i % 3)})
	}
	for _, v := range []Version{V311, V5} {
		raw := s.AppendTo(nil, v)
		b.Run("decode/v"+v.String(), func(b *testing.B) {
			h, _, _ := Split(raw, 0)
			var got Subscribe
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				if err := got.Decode(h, raw[h.HeaderLen:], v); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("encode/v"+v.String(), func(b *testing.B) {
			buf := make([]byte, 0, len(raw))
			b.ReportAllocs()
			b.SetBytes(int64(len(raw)))
			for i := 0; i < b.N; i++ {
				buf = s.AppendTo(buf[:0], v)
			}
		})
	}
}

// benchForwardedV5 is the 5.0 PUBLISH bench/'s publishers send (issue 7):
// QoS 0, topic alias 1 with an empty topic, three user properties and a
// 64-byte payload.
func benchForwardedV5() *Publish {
	return &Publish{Payload: make([]byte, 64), Properties: Properties{TopicAlias: 1, User: []UserProperty{
		{Key: []byte("device-type"), Value: []byte("thermostat")},
		{Key: []byte("firmware"), Value: []byte("4.2.1")},
		{Key: []byte("site"), Value: []byte("plant-7")},
	}}}
}

// BenchmarkPublishDecodeUser3 decodes benchForwardedV5: the per-message
// decoding a 5.0 PUBLISH with user properties costs the broker.
func BenchmarkPublishDecodeUser3(b *testing.B) {
	raw := benchForwardedV5().AppendTo(nil, V5)
	h, _, _ := Split(raw, 0)
	body := raw[h.HeaderLen:]
	var p Publish
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if err := p.Decode(h, body, V5); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishDecodeUser3Memo is BenchmarkPublishDecodeUser3 through a
// Decoder with a UserMemo and without, Split included: "same" sends the same user
// properties every time, as the broker's benchmark clients do; "changing"
// cycles through 16 frames whose last user property differs, so that
// every decode misses the memo (which takes the properties of every
// memoRelearn-th one and never sees them again in time).
func BenchmarkPublishDecodeUser3Memo(b *testing.B) {
	same := benchForwardedV5().AppendTo(nil, V5)
	var changing [][]byte
	for i := range 16 {
		p := benchForwardedV5()
		p.Properties.User[2].Value = []byte(fmt.Sprintf("plant-%02d", i))
		changing = append(changing, p.AppendTo(nil, V5))
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		memo   bool
	}{
		{"same/memo", [][]byte{same}, true}, {"same/none", [][]byte{same}, false},
		{"changing/memo", changing, true}, {"changing/none", changing, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			d := Decoder{Version: V5}
			if tc.memo {
				d.UserMemo = &UserMemo{}
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(same)))
			i := 0
			for b.Loop() {
				f := tc.frames[i%len(tc.frames)]
				i++
				h, _, _ := Split(f, 0)
				if _, err := d.DecodeBody(h, f[h.HeaderLen:]); err != nil {
					b.Fatal(err)
				}
			}
			if tc.name == "changing/memo" && d.UserMemo.hits != 0 {
				b.Fatalf("%d hits", d.UserMemo.hits)
			}
		})
	}
}

// BenchmarkAppendForwarded copies benchForwardedV5's forwarded properties
// (all but the topic alias), as the broker does once per message: walking
// the block (AppendForwarded) and through Publish.AppendForwarded.
func BenchmarkAppendForwarded(b *testing.B) {
	raw := benchForwardedV5().AppendTo(nil, V5)
	p, err := Decode(raw, V5)
	if err != nil {
		b.Fatal(err)
	}
	pub := p.(*Publish)
	buf := make([]byte, 0, len(pub.ReceivedProperties))
	b.Run("walk", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = AppendForwarded(buf[:0], pub.ReceivedProperties)
		}
	})
	b.Run("publish", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = pub.AppendForwarded(buf[:0])
		}
	})
}

// BenchmarkValidUTF8 checks strings of the lengths user properties and
// topics have, all ASCII, and one non-ASCII.
func BenchmarkValidUTF8(b *testing.B) {
	for _, s := range []string{"site", "4.2.1", "plant-7", "firmware", "device-type",
		"devices/device-000123/telemetry", strings.Repeat("abcdefgh", 32), "température/salle-1"} {
		b.Run(fmt.Sprintf("%dB", len(s)), func(b *testing.B) {
			in := []byte(s)
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				if !validUTF8(in) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
