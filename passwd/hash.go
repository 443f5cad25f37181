package passwd

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// DefaultIterations is what mosquitto_passwd 2.0 writes for $7$ hashes.
const DefaultIterations = 101

// saltLen is mosquitto_passwd 2.0's salt length; 2.0 brokers accept no other
// (unpwd__decode_passwords: salt_len == 12), 2.1 accepts 12 or 64.
const saltLen = 12

// hashLen is SHA-512's output, the only hash length Mosquitto accepts for
// $6$ and $7$.
const hashLen = sha512.Size

type scheme uint8

const (
	sha512Salted scheme = 6
	pbkdf2SHA512 scheme = 7
	argon2id     scheme = 8
	bcryptHash   scheme = 9
)

// hash is one parsed password hash.
type hash struct {
	scheme     scheme
	iterations int    // $7$
	salt, sum  []byte // $6$, $7$, argon2id
	m, t       uint32 // argon2id
	p          uint8  // argon2id
	encoded    []byte // bcrypt: the whole string
}

var errUnsupported = errors.New("not a $6$, $7$, $argon2id$ or bcrypt hash (a plain-text password? run loopmq passwd -U)")

// parseHash parses one hash field.
func parseHash(s string) (*hash, error) {
	switch {
	case strings.HasPrefix(s, "$6$"):
		parts := strings.Split(s[3:], "$")
		if len(parts) != 2 {
			return nil, errors.New("$6$: want $6$<salt>$<hash>")
		}
		return saltedHash(sha512Salted, 0, parts[0], parts[1])
	case strings.HasPrefix(s, "$7$"):
		parts := strings.Split(s[3:], "$")
		if len(parts) != 3 {
			return nil, errors.New("$7$: want $7$<iterations>$<salt>$<hash>")
		}
		it, err := strconv.Atoi(parts[0])
		if err != nil || it < 1 || it > 1<<31-1 {
			return nil, fmt.Errorf("$7$: bad iterations %q", parts[0])
		}
		return saltedHash(pbkdf2SHA512, it, parts[1], parts[2])
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("bcrypt: %w", err)
		}
		return &hash{scheme: bcryptHash, encoded: []byte(s)}, nil
	}
	return nil, errUnsupported
}

func saltedHash(sc scheme, iterations int, salt64, sum64 string) (*hash, error) {
	salt, err := decode64(salt64)
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("$%d$: bad base64 salt", sc)
	}
	sum, err := decode64(sum64)
	if err != nil || len(sum) != hashLen {
		return nil, fmt.Errorf("$%d$: hash is not base64 of %d bytes", sc, hashLen)
	}
	return &hash{scheme: sc, iterations: iterations, salt: salt, sum: sum}, nil
}

// decode64 takes OpenSSL's padded standard base64 (what mosquitto_passwd
// writes) and, leniently, the unpadded form.
func decode64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.Strict().DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.Strict().DecodeString(s)
}

// parseArgon2id parses libargon2's encoding,
// $argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<hash> (Mosquitto 2.1 stores the
// string as written by argon2id_hash_encoded and verifies it with
// argon2id_verify). Only version 19 (0x13) is supported, as by
// golang.org/x/crypto/argon2.
func parseArgon2id(s string) (*hash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[2] != "v=19" {
		return nil, errors.New("argon2id: want $argon2id$v=19$m=<m>,t=<t>,p=<p>$<salt>$<hash>")
	}
	var h hash
	h.scheme = argon2id
	ps := strings.Split(parts[3], ",")
	if len(ps) != 3 || !strings.HasPrefix(ps[0], "m=") || !strings.HasPrefix(ps[1], "t=") || !strings.HasPrefix(ps[2], "p=") {
		return nil, fmt.Errorf("argon2id: bad parameters %q", parts[3])
	}
	m, err1 := strconv.ParseUint(ps[0][2:], 10, 32)
	t, err2 := strconv.ParseUint(ps[1][2:], 10, 32)
	p, err3 := strconv.ParseUint(ps[2][2:], 10, 8)
	// Limits from libargon2 (ARGON2_MIN_MEMORY 8*p, ARGON2_MIN_TIME 1) and a
	// 4 GiB cap so that a typo cannot make every CONNECT allocate terabytes.
	if err1 != nil || err2 != nil || err3 != nil || p < 1 || t < 1 || m < 8*p || m > 4<<20 {
		return nil, fmt.Errorf("argon2id: bad parameters %q", parts[3])
	}
	h.m, h.t, h.p = uint32(m), uint32(t), uint8(p)
	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return nil, errors.New("argon2id: bad salt (unpadded base64, at least 8 bytes)")
	}
	sum, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil || len(sum) < 4 {
		return nil, errors.New("argon2id: bad hash (unpadded base64, at least 4 bytes)")
	}
	h.salt, h.sum = salt, sum
	return &h, nil
}

// verify reports whether password hashes to h, comparing in constant time.
func (h *hash) verify(password []byte) bool {
	switch h.scheme {
	case sha512Salted:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return subtle.ConstantTimeCompare(d.Sum(nil), h.sum) == 1
	case pbkdf2SHA512:
		sum, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iterations, hashLen)
		return err == nil && subtle.ConstantTimeCompare(sum, h.sum) == 1
	case argon2id:
		sum := argon2.IDKey(password, h.salt, h.t, h.m, h.p, uint32(len(h.sum)))
		return subtle.ConstantTimeCompare(sum, h.sum) == 1
	case bcryptHash:
		return bcrypt.CompareHashAndPassword(h.encoded, password) == nil
	}
	return false
}

// HashPBKDF2 hashes password the way mosquitto_passwd 2.0 does by default:
// $7$<iterations>$<base64 12-byte salt>$<base64 PBKDF2-HMAC-SHA512>, which
// Mosquitto 2.0 and later and loopmq all accept. iterations < 1 means
// DefaultIterations.
func HashPBKDF2(password []byte, iterations int) string {
	if iterations < 1 {
		iterations = DefaultIterations
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error()) // never returns an error on Linux
	}
	sum, err := pbkdf2.Key(sha512.New, string(password), salt, iterations, hashLen)
	if err != nil {
		panic("BUG: pbkdf2: " + err.Error()) // only in FIPS mode with a short key
	}
	return "$7$" + strconv.Itoa(iterations) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum)
}

// IsHash reports whether s is a password hash Check can verify, as opposed
// to a plain-text password (what "loopmq passwd -U" hashes).
func IsHash(s string) bool {
	_, err := parseHash(s)
	return err == nil
}
