package store

import (
	"encoding/binary"
	"fmt"
)

// Key layout of the on-disk store. Every key starts with one byte naming the
// kind of record; what follows is chosen so that pebble's bytewise order is
// the order the reads promise:
//
//	format    0x00 "format"                      the store's format version
//	session   's' clientID                       Session (ClientID not in value)
//	entry     'e' len16 clientID seq64           Entry (Seq not in value)
//	group     'g' len16 clientID seq64           entries put once (groups.go);
//	                                             seq64 is the first one's
//	inbound   'i' len16 clientID packetID16      QoS 2 id received, not released
//	retained  'r' topic                          Message (Topic not in value)
//	meta      'm' key                            engine bookkeeping value
//	message   'M' seq64                          Message held by grouped
//	                                             entries of that Seq (groups.go)
//
// Integers are big-endian so they sort numerically: a session's entries
// iterate in Seq order. Entry, group and inbound keys carry the client id's
// length before it, so that the keys of client "a" are never a prefix of the
// keys of client "ab" (or of "a" followed by any bytes): one client's records are
// exactly the keys that start with its prefix, which DeleteSession removes
// with one range delete. Session, retained and meta keys end with their
// variable part, so they need no length and iterate in client id, topic and
// key order.
const (
	kindFormat   byte = 0x00
	kindSession  byte = 's'
	kindEntry    byte = 'e'
	kindGroup    byte = 'g'
	kindInbound  byte = 'i'
	kindRetained byte = 'r'
	kindMeta     byte = 'm'
	kindMessage  byte = 'M'
)

// maxClientIDLen is the longest client id a key can hold: an MQTT UTF-8
// string is at most 65535 bytes, and that is what the 16-bit length carries.
const maxClientIDLen = 0xFFFF

// formatKey holds the format version of the store (formatVersion).
var formatKey = []byte("\x00format")

// kindName names a record kind for reports and logs.
func kindName(kind byte) string {
	switch kind {
	case kindFormat:
		return "format"
	case kindSession:
		return "session"
	case kindEntry:
		return "entry"
	case kindGroup:
		return "group"
	case kindInbound:
		return "inbound"
	case kindRetained:
		return "retained"
	case kindMeta:
		return "meta"
	case kindMessage:
		return "message"
	}
	return fmt.Sprintf("unknown(0x%02x)", kind)
}

func appendSessionKey(dst []byte, clientID string) []byte {
	return append(append(dst, kindSession), clientID...)
}

// appendClientPrefix appends the prefix shared by all of clientID's records
// of kind (kindEntry, kindGroup or kindInbound). clientID must be at most
// maxClientIDLen bytes (checkClientID).
func appendClientPrefix(dst []byte, kind byte, clientID string) []byte {
	dst = append(dst, kind)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	return append(dst, clientID...)
}

func appendEntryKey(dst []byte, clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendClientPrefix(dst, kindEntry, clientID), seq)
}

func appendGroupKey(dst []byte, clientID string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(appendClientPrefix(dst, kindGroup, clientID), seq)
}

func appendMessageKey(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append(dst, kindMessage), seq)
}

func appendInboundKey(dst []byte, clientID string, packetID uint16) []byte {
	return binary.BigEndian.AppendUint16(appendClientPrefix(dst, kindInbound, clientID), packetID)
}

func appendRetainedKey(dst, topic []byte) []byte {
	return append(append(dst, kindRetained), topic...)
}

func appendMetaKey(dst []byte, key string) []byte {
	return append(append(dst, kindMeta), key...)
}

// checkClientID reports whether clientID fits in an entry or inbound key.
func checkClientID(clientID string) error {
	if len(clientID) > maxClientIDLen {
		return fmt.Errorf("store: client id of %d bytes, longer than %d", len(clientID), maxClientIDLen)
	}
	return nil
}

// prefixEnd returns the smallest key greater than every key that starts
// with prefix, appended to dst; nil if there is none (prefix is all 0xFF).
func prefixEnd(dst, prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			dst = append(dst, prefix[:i]...)
			return append(dst, prefix[i]+1)
		}
	}
	return nil
}

// kindBounds returns the key range holding every record of kind.
func kindBounds(kind byte) (lower, upper []byte) {
	return []byte{kind}, []byte{kind + 1}
}

// parseClientKey splits an entry, group or inbound key after its kind byte
// into the client id and the fixed-size suffix of n bytes; ok is false if
// the length does not match.
func parseClientKey(key []byte, n int) (clientID, suffix []byte, ok bool) {
	if len(key) < 3 {
		return nil, nil, false
	}
	l := int(binary.BigEndian.Uint16(key[1:3]))
	if len(key) != 3+l+n {
		return nil, nil, false
	}
	return key[3 : 3+l], key[3+l:], true
}

// parseEntryKey returns the client id (aliasing key) and Seq of an entry key.
func parseEntryKey(key []byte) (clientID []byte, seq uint64, ok bool) {
	id, suffix, ok := parseClientKey(key, 8)
	if !ok {
		return nil, 0, false
	}
	return id, binary.BigEndian.Uint64(suffix), true
}

// parseInboundKey returns the client id (aliasing key) and packet id of an
// inbound key.
func parseInboundKey(key []byte) (clientID []byte, packetID uint16, ok bool) {
	id, suffix, ok := parseClientKey(key, 2)
	if !ok {
		return nil, 0, false
	}
	return id, binary.BigEndian.Uint16(suffix), true
}
