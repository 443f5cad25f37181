package trie

// Options are one subscription's options as granted by the engine. The trie
// stores them with the subscription and hands them back in match results; it
// reads only NoLocal (see Trie.Match) and otherwise treats them as opaque.
type Options struct {
	QoS               byte   // maximum QoS granted for this subscription
	NoLocal           bool   // MQTT 5.0 No Local option [MQTT-3.8.3-3]
	RetainAsPublished bool   // MQTT 5.0 Retain As Published option
	RetainHandling    byte   // MQTT 5.0 Retain Handling option (0, 1 or 2)
	SubscriptionID    uint32 // MQTT 5.0 Subscription Identifier; 0 means none
}

// config is what New's options set.
type config struct {
	strategy ShareStrategy
}

// Option configures a Trie in New.
type Option func(*config)

// WithShareStrategy sets how a member of a shared subscription group is
// chosen for each message. The default is RoundRobin{}.
func WithShareStrategy(s ShareStrategy) Option {
	return func(c *config) {
		if s != nil {
			c.strategy = s
		}
	}
}
