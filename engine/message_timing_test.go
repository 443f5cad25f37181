package engine

import (
	"testing"

	"github.com/loopmq/loopmq/codec"
)

// BenchmarkNewMessage copies a routed PUBLISH into a pooled message and
// releases it: the one copy of a payload the broker makes, per published
// message. 5.0 carries three user properties, copied as received.
func BenchmarkNewMessage(b *testing.B) {
	topic, payload := []byte("devices/thermostat-17/telemetry"), make([]byte, 64)
	for _, v := range []codec.Version{codec.V311, codec.V5} {
		b.Run(v.String(), func(b *testing.B) {
			var recv *codec.Publish
			var props *codec.Properties
			if v == codec.V5 {
				p := codec.Publish{Topic: topic, Payload: payload}
				p.Properties.User = []codec.UserProperty{{Key: []byte("device-type"), Value: []byte("thermostat")},
					{Key: []byte("firmware"), Value: []byte("4.2.1")}, {Key: []byte("site"), Value: []byte("plant-7")}}
				frame := p.AppendTo(nil, codec.V5)
				var d codec.Decoder
				d.Version = codec.V5
				h, n, err := codec.Split(frame, 0)
				if err != nil || n != len(frame) {
					b.Fatal(err, n)
				}
				pkt, err := d.DecodeBody(h, frame[h.HeaderLen:n])
				if err != nil {
					b.Fatal(err)
				}
				recv = pkt.(*codec.Publish)
				props = &recv.Properties
			}
			pool := newMessagePool()
			b.ReportAllocs()
			for b.Loop() {
				pool.newMessage(topic, payload, 0, false, "client", props, recv, 0).release()
			}
		})
	}
}
