// Package acl reads a Mosquitto acl_file as it is and answers, per message,
// whether a client may read, write or subscribe to a topic.
//
// The package is pure: it imports nothing of the broker, starts no
// goroutines and does no I/O besides reading the file given to Load. A File
// is immutable once loaded, so any number of goroutines (every event loop)
// may call Allowed on it at once without locking; reloading means loading a
// new File and swapping the pointer.
//
// # File format
//
// The format and its semantics are Mosquitto 2.0's default ACL check
// (src/security_default.c: aclfile__parse, add__acl, add__acl_pattern and
// mosquitto_acl_check_default), reproduced here line for line where it
// matters:
//
//   - The file is read line by line; trailing white space (C isspace: space,
//     \t, \n, \v, \f, \r) is removed first, so CRLF files work.
//   - A line whose first byte is '#' is a comment. A '#' after leading
//     spaces is not: "  # x" is an invalid line, as in Mosquitto.
//   - Words are separated by spaces only (strtok_r(buf, " ")); a tab is part
//     of a word. Leading spaces and runs of spaces between words are fine.
//     Empty and all-blank lines are skipped.
//   - "user NAME" starts NAME's block; NAME is the rest of the line with
//     blanks trimmed, so it may contain spaces. "user" alone is an error.
//     A second block for the same NAME adds to the first.
//   - "topic [read|write|readwrite|deny] FILTER" adds a rule to the current
//     block; rules before the first "user" line are the anonymous block,
//     used by clients that connected without a username. Without an access
//     word the rule is readwrite. FILTER is the rest of the line, blanks
//     trimmed (it may contain spaces), and must be a valid MQTT filter. A
//     line with a single word after "topic" takes that word as the filter:
//     "topic read" is the filter "read" with readwrite access, as in
//     Mosquitto.
//   - "pattern [access] FILTER" adds a rule for every client wherever it
//     appears (a "user" line does not scope it), with "%c" replaced by the
//     client id and "%u" by the username. A pattern that contains "%u" never
//     applies to an anonymous client.
//   - Any other first word is an error, as is a bad access word or filter.
//     Errors name the file and line; a File is never half-loaded.
//
// # Check
//
// Allowed walks, in order: the client's own block (its username's block,
// or the anonymous block), then the patterns. Within each list every "deny"
// rule comes first (Mosquitto moves them to the front when it loads the
// file). The first rule that matches decides: a deny refuses, a rule
// granting the access asked for allows; a matching rule granting only the
// other access is passed over. Nothing matching means refused, so an empty
// file refuses everything. Consequence kept from Mosquitto: a deny
// *pattern* does not override an allow in the client's own block, because
// the block is walked first.
//
// Before the patterns, a client whose username or client id contains '+' or
// '#' is refused (only when the file has patterns): substituted into a
// pattern it would widen the filter.
//
// A topic beginning with '$' is matched only by a filter whose first level
// is the same '$' literal: "#" and "+/..." never match "$SYS/...", so
// "$SYS/#" needs its own rule ([MQTT-4.7.2-1], and the explicit check in
// mosquitto_acl_check_default).
//
// Subscribe is loopmq's addition (Mosquitto 2.0 allows every SUBSCRIBE and
// only filters delivered messages): see Allowed.
package acl
