package acl

import (
	"fmt"
	"strings"
	"testing"
)

// benchACL is a typical file: a few dozen users with their own trees, some
// denies, and per-client and per-user patterns.
var benchACL = func() string {
	var b strings.Builder
	b.WriteString("topic read public/#\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "user user%d\ntopic readwrite home/user%d/#\ntopic deny home/user%d/secret\ntopic read $SYS/broker/load/#\n", i, i, i)
	}
	b.WriteString("pattern deny devices/%c/blocked\npattern readwrite devices/%c/#\npattern read users/%u/#\n")
	return b.String()
}()

func BenchmarkAllowed(b *testing.B) {
	f, err := Parse(strings.NewReader(benchACL), "bench")
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name, user, id, topic string
		acc                   Access
	}{
		{"user-topic", "user7", "client-7", "home/user7/kitchen/temp", Read},
		{"pattern-c", "user7", "client-7", "devices/client-7/telemetry/temp", Write},
		{"pattern-u", "user7", "client-7", "users/user7/inbox", Read},
		{"subscribe", "user7", "client-7", "users/user7/#", Subscribe},
		{"refused", "nobody", "client-x", "nowhere/at/all", Read},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.topic)))
			for b.Loop() {
				if f.Allowed(c.user, false, c.id, c.topic, c.acc) != (c.name != "refused") {
					b.Fatal("wrong answer")
				}
			}
		})
	}
}
