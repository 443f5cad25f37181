package trie

import "strings"

// nextLevel returns the topic level of s that starts at byte start, the start
// of the level after it, and whether it is the last level. Every string has at
// least one level: "a/" is "a" then "", and "" is one empty level (topics and
// filters are at least one character long [MQTT-4.7.3-1], but that is the
// codec's check; here an empty string must only not panic).
func nextLevel(s string, start int) (level string, next int, last bool) {
	if i := strings.IndexByte(s[start:], '/'); i >= 0 {
		return s[start : start+i], start + i + 1, false
	}
	return s[start:], len(s), true
}

// isDollar reports whether a first topic level starts with '$'; wildcards at
// the start of a filter must not match such topics [MQTT-4.7.2-1].
func isDollar(level string) bool {
	return len(level) > 0 && level[0] == '$'
}

// sharePrefix starts a shared subscription filter: $share/{ShareName}/{filter}.
const sharePrefix = "$share/"

// splitShare splits a shared subscription filter into its share name and the
// filter it shares. An ordinary filter comes back as ("", filter).
//
// The codec rejects malformed shared filters [MQTT-4.8.2-1] [MQTT-4.8.2-2];
// if one reaches the trie anyway ("$share/", "$share//a", "$share/g") it is
// treated as an ordinary filter, so that nothing here can panic on it.
func splitShare(filter string) (share, f string) {
	if !strings.HasPrefix(filter, sharePrefix) {
		return "", filter
	}
	rest := filter[len(sharePrefix):]
	i := strings.IndexByte(rest, '/')
	if i <= 0 {
		return "", filter
	}
	return rest[:i], rest[i+1:]
}
