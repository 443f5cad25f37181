package engine

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	pahov5 "github.com/eclipse/paho.golang/paho"

	"github.com/loopmq/loopmq/codec"
)

// SCRAM-SHA-256 (RFC 5802, RFC 7677) for the enhanced authentication
// tests: a server side that implements EnhancedAuthenticator and a client
// side for raw clients and for paho.golang's Auther.
//
// It lives in a test file on purpose: a shipped SCRAM needs SASLprep of
// names and passwords (RFC 4013), a stored-credential format (which is
// issue 8's password file) and a decision on channel binding; the tests
// need none of those. Names and passwords here are plain ASCII, and the
// GS2 header must be "n,," (no channel binding, no authzid).

const scramMethod = "SCRAM-SHA-256"

// scramCreds is what a server stores for one user (RFC 5802 section 3):
// never the password.
type scramCreds struct {
	salt       []byte
	iterations int
	storedKey  []byte
	serverKey  []byte
}

func scramHMAC(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// scramSalted is Hi(password, salt, i): PBKDF2-HMAC-SHA-256.
func scramSalted(password string, salt []byte, iterations int) ([]byte, error) {
	k, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return nil, fmt.Errorf("scram: pbkdf2: %w", err)
	}
	return k, nil
}

func newScramCreds(password string, iterations int) (scramCreds, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := scramSalted(password, salt, iterations)
	if err != nil {
		return scramCreds{}, err
	}
	clientKey := scramHMAC(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	return scramCreds{salt: salt, iterations: iterations, storedKey: stored[:],
		serverKey: scramHMAC(salted, "Server Key")}, nil
}

// scramServer is an EnhancedAuthenticator for SCRAM-SHA-256 that also
// checks plain CONNECT user names and passwords against the same users.
// Safe for concurrent use: the users are fixed before the server starts.
type scramServer struct {
	users map[string]scramCreds
	plain map[string]string

	mu     sync.Mutex
	starts []ConnectInfo // what StartAuth saw (copied), for assertions
}

func newScramServer(users map[string]string) (*scramServer, error) {
	s := &scramServer{users: make(map[string]scramCreds), plain: users}
	for name, pw := range users {
		c, err := newScramCreds(pw, 4096) // RFC 7677 section 4: at least 4096
		if err != nil {
			return nil, err
		}
		s.users[name] = c
	}
	return s, nil
}

// Authenticate implements Authenticator for CONNECTs without a method.
func (s *scramServer) Authenticate(info ConnectInfo) codec.ReasonCode {
	pw, ok := s.plain[string(info.Username)]
	if info.Username == nil || !ok || subtle.ConstantTimeCompare([]byte(pw), info.Password) != 1 {
		return codec.BadUserNameOrPassword
	}
	return codec.Success
}

// StartAuth implements EnhancedAuthenticator.
func (s *scramServer) StartAuth(method string, info ConnectInfo) AuthExchange {
	if method != scramMethod {
		return nil
	}
	s.mu.Lock()
	info.Username = bytes.Clone(info.Username)
	info.Password = bytes.Clone(info.Password)
	s.starts = append(s.starts, info)
	s.mu.Unlock()
	return &scramExchange{srv: s}
}

func (s *scramServer) started() []ConnectInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ConnectInfo(nil), s.starts...)
}

// scramExchange is the server side of one SCRAM conversation.
type scramExchange struct {
	srv         *scramServer
	step        int
	creds       scramCreds
	nonce       string // client nonce + server nonce
	firstBare   string // client-first-message-bare
	serverFirst string
}

var errScram = errors.New("scram: bad message")

// scramAttrs splits "a=1,b=2" into its attributes in order.
func scramAttrs(msg string) ([][2]string, error) {
	var out [][2]string
	for _, f := range strings.Split(msg, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok || len(k) != 1 {
			return nil, fmt.Errorf("%w: attribute %q", errScram, f)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

// scramName decodes a saslname ("=2C" is ',' and "=3D" is '=').
func scramName(s string) (string, error) {
	r := strings.NewReplacer("=2C", ",", "=3D", "=").Replace(s)
	if strings.Contains(strings.NewReplacer("=2C", "", "=3D", "").Replace(s), "=") {
		return "", fmt.Errorf("%w: bad escape in name", errScram)
	}
	return r, nil
}

func (e *scramExchange) Step(data []byte) ([]byte, codec.ReasonCode) {
	e.step++
	switch e.step {
	case 1:
		reply, err := e.first(string(data))
		if err != nil {
			return nil, codec.NotAuthorized
		}
		return reply, codec.ContinueAuthentication
	case 2:
		reply, err := e.final(string(data))
		if err != nil {
			return nil, codec.NotAuthorized
		}
		return reply, codec.Success
	}
	return nil, codec.ProtocolError
}

// first answers client-first-message "n,,n=user,r=cnonce" with
// server-first-message "r=cnonce+snonce,s=salt,i=iterations".
func (e *scramExchange) first(msg string) ([]byte, error) {
	bare, ok := strings.CutPrefix(msg, "n,,")
	if !ok {
		return nil, fmt.Errorf("%w: GS2 header must be n,,", errScram)
	}
	attrs, err := scramAttrs(bare)
	if err != nil {
		return nil, err
	}
	if len(attrs) < 2 || attrs[0][0] != "n" || attrs[1][0] != "r" || attrs[1][1] == "" {
		return nil, fmt.Errorf("%w: client-first-message", errScram)
	}
	name, err := scramName(attrs[0][1])
	if err != nil {
		return nil, err
	}
	creds, ok := e.srv.users[name]
	if !ok {
		return nil, fmt.Errorf("%w: unknown user", errScram)
	}
	var sn [18]byte
	_, _ = rand.Read(sn[:])
	e.creds, e.firstBare = creds, bare
	e.nonce = attrs[1][1] + base64.RawURLEncoding.EncodeToString(sn[:])
	e.serverFirst = "r=" + e.nonce + ",s=" + base64.StdEncoding.EncodeToString(creds.salt) +
		",i=" + strconv.Itoa(creds.iterations)
	return []byte(e.serverFirst), nil
}

// final checks client-final-message "c=biws,r=nonce,p=proof" and answers
// server-final-message "v=signature".
func (e *scramExchange) final(msg string) ([]byte, error) {
	withoutProof, proofB64, ok := strings.Cut(msg, ",p=")
	if !ok {
		return nil, fmt.Errorf("%w: no proof", errScram)
	}
	attrs, err := scramAttrs(withoutProof)
	if err != nil {
		return nil, err
	}
	if len(attrs) < 2 || attrs[0] != [2]string{"c", "biws"} || attrs[1] != [2]string{"r", e.nonce} {
		return nil, fmt.Errorf("%w: channel binding or nonce", errScram)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != sha256.Size {
		return nil, fmt.Errorf("%w: proof encoding", errScram)
	}
	authMsg := e.firstBare + "," + e.serverFirst + "," + withoutProof
	sig := scramHMAC(e.creds.storedKey, authMsg)
	clientKey := make([]byte, len(proof))
	subtle.XORBytes(clientKey, proof, sig)
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], e.creds.storedKey) != 1 {
		return nil, fmt.Errorf("%w: invalid proof", errScram)
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(scramHMAC(e.creds.serverKey, authMsg))), nil
}

// scramClient is the client side. It implements paho.golang's Auther (whose
// methods run on Paho's goroutines, hence the mutex); start begins a new
// conversation (for CONNECT or re-authentication).
type scramClient struct {
	mu        sync.Mutex
	user      string
	password  string
	firstBare string
	serverSig []byte
	err       error // the last failure of Authenticate, for test messages
}

// start returns a client-first-message and forgets any earlier exchange.
func (c *scramClient) start() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	var n [18]byte
	_, _ = rand.Read(n[:])
	name := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(c.user)
	c.firstBare = "n=" + name + ",r=" + base64.RawURLEncoding.EncodeToString(n[:])
	c.serverSig, c.err = nil, nil
	return []byte("n,," + c.firstBare)
}

func (c *scramClient) setPassword(pw string) {
	c.mu.Lock()
	c.password = pw
	c.mu.Unlock()
}

// final answers server-first-message with client-final-message.
func (c *scramClient) final(serverFirst []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	attrs, err := scramAttrs(string(serverFirst))
	if err != nil {
		return nil, err
	}
	if len(attrs) < 3 || attrs[0][0] != "r" || attrs[1][0] != "s" || attrs[2][0] != "i" {
		return nil, fmt.Errorf("%w: server-first-message", errScram)
	}
	cnonce := strings.SplitN(c.firstBare, ",r=", 2)[1]
	if !strings.HasPrefix(attrs[0][1], cnonce) {
		return nil, fmt.Errorf("%w: server nonce does not extend ours", errScram)
	}
	salt, err := base64.StdEncoding.DecodeString(attrs[1][1])
	if err != nil {
		return nil, fmt.Errorf("%w: salt: %w", errScram, err)
	}
	iter, err := strconv.Atoi(attrs[2][1])
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("%w: iteration count %q", errScram, attrs[2][1])
	}
	salted, err := scramSalted(c.password, salt, iter)
	if err != nil {
		return nil, err
	}
	withoutProof := "c=biws,r=" + attrs[0][1]
	authMsg := c.firstBare + "," + string(serverFirst) + "," + withoutProof
	clientKey := scramHMAC(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	proof := make([]byte, len(clientKey))
	subtle.XORBytes(proof, clientKey, scramHMAC(stored[:], authMsg))
	c.serverSig = scramHMAC(scramHMAC(salted, "Server Key"), authMsg)
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

// verify checks server-final-message: the server knew our credentials.
func (c *scramClient) verify(serverFinal []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := strings.CutPrefix(string(serverFinal), "v=")
	if !ok {
		return fmt.Errorf("%w: server-final-message %q", errScram, serverFinal)
	}
	sig, err := base64.StdEncoding.DecodeString(v)
	if err != nil || c.serverSig == nil || !hmac.Equal(sig, c.serverSig) {
		return fmt.Errorf("%w: server signature does not verify", errScram)
	}
	return nil
}

// Authenticate implements paho.Auther: it answers the server's AUTH 0x18.
func (c *scramClient) Authenticate(a *pahov5.Auth) *pahov5.Auth {
	var data []byte
	if a.Properties != nil {
		data = a.Properties.AuthData
	}
	reply, err := c.final(data)
	if err != nil {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		reply = []byte("invalid")
	}
	return &pahov5.Auth{ReasonCode: byte(codec.ContinueAuthentication),
		Properties: &pahov5.AuthProperties{AuthMethod: scramMethod, AuthData: reply}}
}

// Authenticated implements paho.Auther.
func (c *scramClient) Authenticated() {}
