package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/loopmq/loopmq/codec"
	"github.com/loopmq/loopmq/store"
)

// A QoS 2 message the broker drops from a session's in-flight window after
// its PUBLISH may have been written (the session's new identity may not
// read it, it is too large for the new connection) becomes a release
// (session.dropInFlight): PUBREL for its packet identifier, which is free
// only once PUBCOMP comes. A receiver holds a QoS 2 identifier until a
// PUBREL releases it, acknowledging every PUBLISH under it meanwhile
// without delivering it [MQTT-4.3.3-2] (Method B in MQTT 3.1.1 and 5.0
// section 4.3.3): a broker that freed the identifier instead could send a
// new message under it that the client would drop.

// releaseSetup starts a broker with authzRules and opts (an in-flight
// window of 1 unless opts says), connects publisher pub (alice), and gives
// the persistent session "rel" of alice's, version ver, subscribed to #
// at QoS 2, one QoS 2 PUBLISH on private/t (which bob may not read) that
// its client receives and does not answer before its connection drops,
// as if its PUBREC were lost with it. It returns the PUBLISH's packet
// identifier and the CONNECT that resumes the session as user.
func releaseSetup(t *testing.T, ver codec.Version, opts Options) (s *Server, pub *rawClient, id uint16, resume func(user string) *codec.Connect) {
	t.Helper()
	if opts.MaxInflight == 0 {
		opts.MaxInflight = 1
	}
	s, _ = authzServer(t, opts)
	pub = connectRaw(t, s, userConnect("pub", "alice"))
	resume = func(user string) *codec.Connect {
		p := userConnect("rel", user)
		p.CleanStart = false
		if ver == codec.V5 {
			p.Version, p.Properties.SessionExpiry = codec.V5, 60
		}
		return p
	}
	sub := connectRaw(t, s, resume("alice"))
	require.Equal(t, byte(2), sub.subscribe(1, "#", 2))
	qos2Publish(t, pub, "private/t", "alice's", 1)
	m := sub.expectPublish()
	require.Equal(t, "alice's", string(m.Payload))
	require.Equal(t, byte(2), m.QoS)
	sub.kill() // no PUBREC
	require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)
	return s, pub, m.PacketID, resume
}

// qos2Publish sends a QoS 2 PUBLISH from pub and completes its flow.
func qos2Publish(t *testing.T, pub *rawClient, topic, payload string, id uint16) {
	t.Helper()
	pub.publish(topic, payload, 2, false, id)
	pub.expectAck(codec.PUBREC, id)
	pub.ack(codec.PUBREL, id)
	pub.expectAck(codec.PUBCOMP, id)
}

// receiveOneQoS2 requires the next packet on c to be a new QoS 2 PUBLISH
// of payload and completes its flow.
func receiveOneQoS2(t *testing.T, c *rawClient, payload string) {
	t.Helper()
	m := c.expectPublish()
	require.Equal(t, payload, string(m.Payload))
	require.Equal(t, byte(2), m.QoS)
	require.False(t, m.Dup, "a new message")
	c.ack(codec.PUBREC, m.PacketID)
	c.expectAck(codec.PUBREL, m.PacketID)
	c.ack(codec.PUBCOMP, m.PacketID)
}

// TestAuthz_MQTT_4_3_3_2_ResumeReleasesQoS2ItMayNotRead checks that a
// session resumed by an identity that may not read a QoS 2 message its
// earlier connection received (no PUBREC came) gets PUBREL for the
// message's packet identifier, never the PUBLISH again, so that the
// client, which may hold that identifier, lets it go before the broker
// uses it again [MQTT-4.3.3-1] [MQTT-4.3.3-2]. The release holds its slot
// until PUBCOMP: with a window of 1 the next message waits for it (and in
// 5.0 the send quota is restored only on PUBCOMP, section 4.9). A client
// that did not hold the identifier answers PUBCOMP 0x92 Packet Identifier
// not found (MQTT 5.0 section 3.7.2.1), which ends the flow as well. With
// a store the release is recorded before its PUBREL is written.
func TestAuthz_MQTT_4_3_3_2_ResumeReleasesQoS2ItMayNotRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		ver  codec.Version
		comp codec.ReasonCode // the client's PUBCOMP
	}{
		{"3.1.1", codec.V311, codec.Success},
		{"5.0", codec.V5, codec.Success},
		{"5.0/PUBCOMP-0x92", codec.V5, codec.PacketIdentifierNotFound},
	} {
		for _, stored := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/store=%v", tc.name, stored), func(t *testing.T) {
				opts := Options{}
				if stored {
					st := store.NewMemory()
					t.Cleanup(func() { _ = st.Close() })
					opts.Store = st
				}
				s, pub, id, resume := releaseSetup(t, tc.ver, opts)

				bob := dialRaw(t, s)
				require.True(t, bob.mustConnect(resume("bob")).SessionPresent)
				bob.expectAck(codec.PUBREL, id) // not alice's PUBLISH again
				qos2Publish(t, pub, "public/t", "bob's", 2)
				bob.expectNothing(e2eSilent) // the release still holds the window
				bob.send(&codec.Ack{PacketType: codec.PUBCOMP, PacketID: id, ReasonCode: tc.comp})
				receiveOneQoS2(t, bob, "bob's")
				bob.expectNothing(e2eSilent)
			})
		}
	}
}

// TestAuthz_MQTT_4_3_3_1_ReleaseOutlivesRestart checks that the release a
// resume by bob made of alice's QoS 2 message is written to the on-disk
// store, message and all gone: after a restart, alice resuming the
// session gets PUBREL again, not the PUBLISH that the client was told to
// release (the sender MUST NOT re-send the PUBLISH once it has sent the
// corresponding PUBREL [MQTT-4.3.3-1]).
func TestAuthz_MQTT_4_3_3_1_ReleaseOutlivesRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.OpenPebble(dir, store.PebbleOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	s, _, id, resume := releaseSetup(t, codec.V5, Options{Store: st})

	bob := dialRaw(t, s)
	require.True(t, bob.mustConnect(resume("bob")).SessionPresent)
	bob.expectAck(codec.PUBREL, id) // written once the release is durable
	// The message bob may not read is not kept.
	requireStoredRelease(t, st, "rel", id)
	bob.kill() // no PUBCOMP
	require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)

	s, _ = restartOnDisk(t, s, st, dir, Options{Authorizer: &ruleTable{rules: authzRules}, MaxInflight: 1})
	alice := dialRaw(t, s)
	require.True(t, alice.mustConnect(resume("alice")).SessionPresent)
	alice.expectAck(codec.PUBREL, id)
	alice.ack(codec.PUBCOMP, id)
	alice.expectNothing(e2eSilent) // never alice's PUBLISH again
	pub := connectRaw(t, s, userConnect("pub", "alice"))
	qos2Publish(t, pub, "private/t", "alice's, later", 1)
	receiveOneQoS2(t, alice, "alice's, later")
}

// TestAuthzReauthReleasesPendingQoS2 checks that a re-authentication as
// an identity that may not read a QoS 2 message an earlier connection
// received, not sent again yet on this one (its Receive Maximum), sends
// PUBREL for it at once [MQTT-4.3.3-2]; the PUBLISH written on this
// connection stays in flight (TestAuthzReauthKeepsWrittenPublishesInFlight).
func TestAuthzReauthReleasesPendingQoS2(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(fmt.Sprintf("store=%v", stored), func(t *testing.T) {
			opts := Options{}
			if stored {
				st := store.NewMemory()
				t.Cleanup(func() { _ = st.Close() })
				opts.Store = st
			}
			churnAuthOptions(t, &opts) // SCRAM naming its user; bob may not read churnBobMayNotRead
			s := startServer(t, opts)
			pub := alicePublisher(t, s)

			login := func(receiveMax uint16) *rawClient {
				c := dialRaw(t, s)
				sc := &scramClient{user: "alice", password: churnUsers["alice"]}
				cp := scramConnect("reauth-release", sc)
				cp.CleanStart, cp.Properties.SessionExpiry, cp.Properties.ReceiveMaximum = false, 60, receiveMax
				c.scramLoginWith(cp, sc)
				return c
			}
			sub := login(0)
			require.Equal(t, byte(2), sub.subscribe(1, "churn/#", 2))
			qos2Publish(t, pub, churnBobMayNotRead, "first", 1)
			qos2Publish(t, pub, churnBobMayNotRead, "second", 2)
			first := sub.expectPublish() // neither answered
			require.Equal(t, "first", string(first.Payload))
			second := sub.expectPublish()
			require.Equal(t, "second", string(second.Payload))
			sub.kill()
			require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)

			// Resumed with Receive Maximum 1: "first" again, "second"
			// waits for room [MQTT-3.3.4-9]; it was written to the
			// earlier connection only.
			sub = login(1)
			again := sub.expectPublish()
			require.Equal(t, first.PacketID, again.PacketID)
			require.True(t, again.Dup)
			sub.expectNothing(e2eSilent)

			// Re-authenticated as bob: PUBREL for "second", whose
			// identifier the client may hold, with the AUTH in any order.
			bob := &scramClient{user: "bob", password: churnUsers["bob"]}
			sub.send(authPacket(codec.ReAuthenticate, scramMethod, bob.start()))
			cont := sub.expectAuth(codec.ContinueAuthentication)
			final, err := bob.final(cont.Properties.AuthData)
			require.NoError(t, err)
			sub.send(authPacket(codec.ContinueAuthentication, scramMethod, final))
			var got []string
			for len(got) < 2 {
				p, err := sub.next(e2eWait)
				require.NoError(t, err, "got %v", got)
				switch p := p.(type) {
				case *codec.Auth:
					require.Equal(t, codec.Success, p.ReasonCode)
					got = append(got, "AUTH")
				case *codec.Ack:
					require.Equal(t, codec.PUBREL, p.PacketType)
					require.Equal(t, second.PacketID, p.PacketID, "the PUBLISH written on this connection stays in flight")
					got = append(got, "PUBREL")
					sub.ack(codec.PUBCOMP, p.PacketID)
				default:
					t.Fatalf("unexpected %+v (got %v)", p, got)
				}
			}
			require.ElementsMatch(t, []string{"AUTH", "PUBREL"}, got)

			// "first", written here, completes as usual; "second" is gone.
			sub.ack(codec.PUBREC, first.PacketID)
			sub.expectAck(codec.PUBREL, first.PacketID)
			sub.ack(codec.PUBCOMP, first.PacketID)
			sub.expectNothing(e2eSilent)
		})
	}
}

// tooLargeSetup starts a broker with opts and an in-flight window of 1,
// and gives the persistent 5.0 session "big", subscribed to t/# at QoS 2,
// a 1,000-byte QoS 2 PUBLISH that its client receives and does not answer
// before its connection drops. It returns the publisher, the CONNECT that
// resumes the session and the PUBLISH.
func tooLargeSetup(t *testing.T, opts Options) (*Server, *rawClient, *codec.Connect, *codec.Publish) {
	t.Helper()
	opts.MaxInflight = 1
	s := startServer(t, opts)
	pub := connectRaw(t, s, connectPacket("pub", true, 0))
	cp := connect5("big", false, 0, 60)
	sub := connectRaw(t, s, cp)
	require.Equal(t, byte(2), sub.subscribe(1, "t/#", 2))
	qos2Publish(t, pub, "t/big", strings.Repeat("x", 1000), 1)
	m := sub.expectPublish() // not answered
	sub.kill()
	require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)
	return s, pub, cp, m
}

// TestE2E_MQTT_3_1_2_25_TooLargeOnResumeReleasesQoS2 checks that a QoS 2
// PUBLISH written to an earlier connection and too large for the
// connection that resumes the session (its Maximum Packet Size) is
// discarded [MQTT-3.1.2-25] as a release: PUBREL for its packet
// identifier, which the client may hold [MQTT-4.3.3-2], and the next
// message after the PUBCOMP.
func TestE2E_MQTT_3_1_2_25_TooLargeOnResumeReleasesQoS2(t *testing.T) {
	s, pub, cp, m := tooLargeSetup(t, Options{})
	cp.Properties.MaximumPacketSize = 200
	sub := dialRaw(t, s)
	require.True(t, sub.mustConnect(cp).SessionPresent)
	sub.expectAck(codec.PUBREL, m.PacketID)
	qos2Publish(t, pub, "t/small", "small", 2)
	sub.expectNothing(e2eSilent) // the release still holds the window
	sub.ack(codec.PUBCOMP, m.PacketID)
	receiveOneQoS2(t, sub, "small")
}

// TestAuthzResumeFreesQoS2NeverWritten checks the other side of the
// release: a QoS 2 message whose PUBLISH was never written (held until its
// packet identifier is durable, the store stalled) is freed when a resume
// by bob drops it, with no PUBREL: no client holds its identifier, and a
// PUBREL for a PUBLISH the client never saw is no part of the QoS 2
// exchange [MQTT-4.3.3-1]. Its room in the window (of 1) goes to the
// next message.
func TestAuthzResumeFreesQoS2NeverWritten(t *testing.T) {
	st := openGate(t)
	s, _ := authzServer(t, Options{Store: st, Loops: 1, MaxInflight: 1})
	pub := connectRaw(t, s, userConnect("pub", "alice"))
	resume := func(user string) *codec.Connect {
		p := userConnect("rel", user)
		p.CleanStart = false
		return p
	}
	sub := connectRaw(t, s, resume("alice"))
	require.Equal(t, byte(2), sub.subscribe(1, "#", 2))
	st.settle(t)

	st.setOpen(false) // every write from here on waits
	pub.publish("private/t", "alice's", 2, false, 1)
	st.waitFor(t, 1)
	sub.expectNothing(e2eSilent) // held until its identifier is durable
	sub.kill()
	require.Eventually(t, func() bool { return s.Stats().Connected == 1 }, e2eWait, 10*time.Millisecond)

	bob := dialRaw(t, s)
	require.True(t, bob.mustConnect(resume("bob")).SessionPresent)
	st.setOpen(true)
	bob.expectNothing(e2eSilent) // neither alice's PUBLISH nor a PUBREL
	pub.expectAck(codec.PUBREC, 1)
	pub.ack(codec.PUBREL, 1)
	pub.expectAck(codec.PUBCOMP, 1)
	qos2Publish(t, pub, "public/t", "bob's", 2)
	receiveOneQoS2(t, bob, "bob's")
}

// TestAuthzResumeReleaseWaitsForStore checks that the release a resume by
// bob makes of a written QoS 2 message is recorded before its PUBREL goes
// out [MQTT-4.3.3-1]: no PUBREL while the store holds the record back, one
// once it is durable (the release is held twice, by dropInFlight and again
// by client.bind's rehold: still one PUBREL), and nothing is left in the
// store or the in-flight gauges after PUBCOMP.
func TestAuthzResumeReleaseWaitsForStore(t *testing.T) {
	st := openGate(t)
	s, _, id, resume := releaseSetup(t, codec.V5, Options{Store: st})
	st.settle(t)

	st.setOpen(false)
	bob := dialRaw(t, s)
	require.True(t, bob.mustConnect(resume("bob")).SessionPresent)
	bob.expectNothing(e2eSilent) // the release is not durable yet
	st.setOpen(true)
	bob.expectAck(codec.PUBREL, id)
	bob.expectNothing(e2eSilent) // once
	bob.ack(codec.PUBCOMP, id)
	require.Eventually(t, func() bool { return s.Stats().Inflight == 0 }, e2eWait, 10*time.Millisecond)
	require.Eventually(t, func() bool { return len(entryStates(st, "rel")) == 0 }, e2eWait, 10*time.Millisecond)
}

// TestAuthzResumeReleasesRecoveredQoS2 checks that a QoS 2 message in
// flight when the broker stopped counts as written (slot.written): bob
// resuming the session after the restart gets PUBREL for it, not a free
// identifier [MQTT-4.3.3-2], and the next message after PUBCOMP.
func TestAuthzResumeReleasesRecoveredQoS2(t *testing.T) {
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	s, _, id, resume := releaseSetup(t, codec.V5, Options{Store: st})
	s = restartWith(t, s, st, Options{Authorizer: &ruleTable{rules: authzRules}, MaxInflight: 1})

	bob := dialRaw(t, s)
	require.True(t, bob.mustConnect(resume("bob")).SessionPresent)
	bob.expectAck(codec.PUBREL, id) // not alice's PUBLISH again
	bob.expectNothing(e2eSilent)
	bob.ack(codec.PUBCOMP, id)
	pub := connectRaw(t, s, userConnect("pub", "alice"))
	qos2Publish(t, pub, "public/t", "bob's", 2)
	receiveOneQoS2(t, bob, "bob's")
}

// TestE2E_MQTT_3_1_2_25_TooLargeReleaseIsStored is
// TestE2E_MQTT_3_1_2_25_TooLargeOnResumeReleasesQoS2 with a store: the
// release is recorded, message gone, before its PUBREL is written
// [MQTT-4.3.3-1], and PUBCOMP deletes the entry.
func TestE2E_MQTT_3_1_2_25_TooLargeReleaseIsStored(t *testing.T) {
	st := openGate(t)
	s, pub, cp, m := tooLargeSetup(t, Options{Store: st})
	st.settle(t)

	st.setOpen(false)
	cp.Properties.MaximumPacketSize = 200
	sub := dialRaw(t, s)
	require.True(t, sub.mustConnect(cp).SessionPresent)
	sub.expectNothing(e2eSilent) // the release is not durable yet
	st.setOpen(true)
	sub.expectAck(codec.PUBREL, m.PacketID)
	st.settle(t)
	requireStoredRelease(t, st, "big", m.PacketID)
	sub.ack(codec.PUBCOMP, m.PacketID)
	qos2Publish(t, pub, "t/small", "small", 2)
	receiveOneQoS2(t, sub, "small")
	require.Eventually(t, func() bool { return len(entryStates(st, "big")) == 0 }, e2eWait, 10*time.Millisecond)
}

// requireStoredRelease requires client's only store entry to be a release
// of packet identifier id, without its message.
func requireStoredRelease(t *testing.T, st store.Store, client string, id uint16) {
	t.Helper()
	var entries []store.Entry
	require.NoError(t, st.Entries(client, 0, 0, func(e *store.Entry) bool {
		entries = append(entries, *e)
		return true
	}))
	require.Len(t, entries, 1)
	require.Equal(t, store.EntryAwaitComp, entries[0].State)
	require.Equal(t, id, entries[0].PacketID)
	require.Empty(t, entries[0].Msg.Payload, "a release keeps no message")
}
