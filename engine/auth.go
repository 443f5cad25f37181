package engine

import (
	"bytes"
	"fmt"
	"net"

	"github.com/loopmq/loopmq/codec"
)

// Authentication: who may connect, decided through Options.Authenticator.
//
// A CONNECT without an Authentication Method (every 3.1/3.1.1 CONNECT) is
// decided at once by Authenticator.Authenticate. A 5.0 CONNECT with an
// Authentication Method starts an enhanced authentication exchange
// [MQTT 5.0 section 4.12] with an EnhancedAuthenticator: AUTH packets go
// back and forth until the exchange succeeds (CONNACK 0x00 carrying the
// method) or fails (CONNACK with the failure code, then close). Only then
// is the CONNECT handled as usual: the session is looked up, taken over
// or created (Server.attach) after authentication succeeded, never before.
// A client that authenticated with a method may re-authenticate later with
// AUTH 0x19 [MQTT-4.12.1-1]; meanwhile its other packets keep flowing.
//
// Every call into an Authenticator, EnhancedAuthenticator or AuthExchange
// is made on the event loop that owns the connection, inside the handling
// of the packet that triggered it. The loop serves thousands of other
// connections meanwhile, so implementations must not block: no network
// or disk I/O, no waiting for locks held for long. Look credentials up in
// memory (reload them on another goroutine). One Authenticator serves
// every loop, so its methods must be safe for concurrent use; an
// AuthExchange belongs to one connection and is only ever used by one
// loop at a time. A hook that panics has its connection closed and the
// panic logged and counted (guard.go); the process goes on.

// Authenticator decides whether a client may connect. Options.Authenticator
// nil admits every client and supports no enhanced authentication.
type Authenticator interface {
	// Authenticate decides a CONNECT that names no Authentication Method.
	// codec.Success admits the client; any other code refuses it: the
	// broker answers CONNACK with that code (3.1/3.1.1 clients get
	// codec.ConnackCodeV3 of it) and closes the connection. Useful codes
	// are codec.BadUserNameOrPassword, codec.NotAuthorized and
	// codec.Banned; a code that a refusing CONNACK cannot carry
	// [MQTT 5.0 section 3.2.2.2] is sent as codec.NotAuthorized. Called on the connection's event loop: must
	// not block (see above).
	Authenticate(info ConnectInfo) codec.ReasonCode
}

// EnhancedAuthenticator is an Authenticator that also runs MQTT 5.0
// enhanced authentication [MQTT 5.0 section 4.12]. The broker finds it by
// a type assertion on Options.Authenticator.
type EnhancedAuthenticator interface {
	Authenticator
	// StartAuth begins an exchange for method (the client's
	// Authentication Method) and returns it, or returns nil when method
	// is not supported: the client then gets CONNACK 0x8C (Bad
	// authentication method) [MQTT-4.12.0-1], or, when it was
	// re-authenticating, DISCONNECT 0x87. It is called once per
	// authentication: for a CONNECT with an Authentication Method and for
	// each re-authentication (AUTH 0x19, info.ReAuth set). The broker
	// then calls the exchange's Step with the Authentication Data of that
	// CONNECT or AUTH. Called on the connection's event loop: must not
	// block.
	StartAuth(method string, info ConnectInfo) AuthExchange
}

// AuthExchange is one enhanced authentication conversation with one
// client. It is used by one event loop only and need not be safe for
// concurrent use.
type AuthExchange interface {
	// Step consumes the client's Authentication Data (nil when the packet
	// carried none) and answers with one of:
	//   - codec.ContinueAuthentication: reply is sent to the client as the
	//     Authentication Data of AUTH 0x18, and Step is called again with
	//     the data of the client's next AUTH 0x18 [MQTT-4.12.0-2];
	//   - codec.Success: the client is authenticated; reply (optional) is
	//     sent as the Authentication Data of the CONNACK, or of AUTH 0x00
	//     when re-authenticating;
	//   - any other code: authentication failed; the client gets CONNACK
	//     with that code [MQTT-4.12.0-4] (codes a refusing CONNACK cannot
	//     carry are sent as 0x87 Not authorized), or, when
	//     re-authenticating, DISCONNECT with it (0x87 unless it is 0x80,
	//     0x83, 0x89, 0x98, 0x9C or 0x9D), and the connection is closed
	//     [MQTT-4.12.1-2]. reply is ignored.
	// data is valid only during the call. The broker copies reply before
	// it calls Step again, so the exchange may reuse its memory then.
	// Called on the connection's event loop: must not block.
	Step(data []byte) (reply []byte, code codec.ReasonCode)
}

// ConnectInfo describes the client being authenticated. Its slices are
// views into memory the broker owns: valid only during the call, never to
// be modified; copy what must outlive the call.
type ConnectInfo struct {
	// Version is the client's protocol level.
	Version codec.Version
	// ClientID is the client identifier from CONNECT; empty when the
	// client asked the broker to assign one [MQTT-3.1.3-6] (on
	// re-authentication it is the assigned identifier).
	ClientID string
	// Username is nil when the CONNECT has no User Name.
	Username []byte
	// Password is nil when the CONNECT has no Password, and always on
	// re-authentication (the broker does not keep passwords).
	Password []byte
	// Remote is the peer's address; nil if the socket is already gone.
	Remote net.Addr
	// ReAuth is set when a connected client re-authenticates with AUTH
	// 0x19 [MQTT-4.12.1-1].
	ReAuth bool
}

// authState is what a connection that named an Authentication Method in
// CONNECT keeps; clients without one have none (client.auth is nil), so an
// idle connection pays one pointer. Owned by the connection's loop.
type authState struct {
	method   string       // from CONNECT; every AUTH must carry the same [MQTT-4.12.0-5]
	username []byte       // copied from CONNECT, for re-authentication's ConnectInfo
	ex       AuthExchange // the exchange in progress, nil between exchanges
	// The CONNECT frame (header and a copy of its body), kept while the
	// first exchange runs and handled once it succeeds.
	connectH codec.FixedHeader
	connect  []byte
	// final is the Authentication Data for the CONNACK, kept from the
	// exchange's last step until the CONNACK is written (the session may
	// be handed over from another loop meanwhile).
	final []byte
}

// authenticate runs when CONNECT arrives, before onConnect. It reports
// whether the CONNECT may be handled now. Otherwise it has either refused
// the client, or started an enhanced authentication exchange, at the end
// of which the CONNECT is handled (authenticated). Runs on c's loop.
func (c *client) authenticate(h codec.FixedHeader, p *codec.Connect, body []byte) bool {
	c.version = p.Version // a refusal's CONNACK speaks the client's protocol level
	c.takeProblemTerms(p)
	// A TLS client's certificate may be its user name (bridge.go).
	if !c.certIdentity(p) {
		c.refuse(codec.BadUserNameOrPassword, "no verified client certificate to take the user name from")
		return false
	}
	a := c.loop.srv.opts.Authenticator
	enhanced := p.Version == codec.V5 && p.Properties.Has(codec.PropAuthMethod)
	if !enhanced {
		code := c.authenticatePlain(a, p) // AllowAnonymous, then a; keeps the identity (authz.go)
		if code == codec.Success {
			return true
		}
		c.refuse(connackAuthCode(code), "authentication failed")
		return false
	}
	method := string(p.Properties.AuthMethod)
	var ex AuthExchange
	if ea, ok := a.(EnhancedAuthenticator); ok {
		ex = ea.StartAuth(method, c.connectInfo(p))
	}
	if ex == nil {
		c.refuse(codec.BadAuthenticationMethod, "unsupported authentication method "+method+" [MQTT-4.12.0-1]")
		return false
	}
	var username []byte
	if p.UsernameFlag {
		username = append([]byte{}, p.Username...)
	}
	c.extras().auth = &authState{method: method, username: username, ex: ex, connectH: h, connect: bytes.Clone(body)}
	c.state = stateAuth
	c.authStep(p.Properties.AuthData)
	return false
}

// connectInfo describes p's client for the Authenticator.
func (c *client) connectInfo(p *codec.Connect) ConnectInfo {
	info := ConnectInfo{Version: p.Version, ClientID: string(p.ClientID), Remote: c.remoteAddr()}
	if p.UsernameFlag {
		info.Username = p.Username
	}
	if p.PasswordFlag {
		info.Password = p.Password
	}
	return info
}

func (c *client) remoteAddr() net.Addr {
	if c.gone {
		return nil
	}
	return c.conn.RemoteAddr()
}

// onAuth handles an AUTH packet: the next step of the first exchange
// (state stateAuth), or a re-authentication of a connected client.
func (c *client) onAuth(p *codec.Auth) {
	a := c.authState()
	if a == nil {
		c.authProtocolError("AUTH from a client that named no Authentication Method in CONNECT [MQTT-4.12.0-7]")
		return
	}
	if string(p.Properties.AuthMethod) != a.method {
		c.authProtocolError("AUTH with another Authentication Method than CONNECT's [MQTT-4.12.0-5]")
		return
	}
	switch {
	case c.state == stateAuth:
		if p.ReasonCode != codec.ContinueAuthentication {
			c.authProtocolError("AUTH before CONNACK must continue authentication (0x18) [MQTT-4.12.0-3]")
			return
		}
	case p.ReasonCode == codec.ReAuthenticate:
		if a.ex != nil {
			c.authProtocolError("re-authentication while an authentication exchange is in progress")
			return
		}
		ea, _ := c.loop.srv.opts.Authenticator.(EnhancedAuthenticator)
		if ea != nil {
			a.ex = ea.StartAuth(a.method, ConnectInfo{Version: c.version, ClientID: c.clientID,
				Username: a.username, Remote: c.remoteAddr(), ReAuth: true})
		}
		if a.ex == nil {
			c.reauthFailed(codec.NotAuthorized, "authentication method no longer supported")
			return
		}
	case p.ReasonCode == codec.ContinueAuthentication:
		if a.ex == nil {
			c.authProtocolError("AUTH 0x18 without an authentication exchange in progress [MQTT-4.12.1-1]")
			return
		}
	default:
		c.authProtocolError("AUTH 0x00 is sent only by the server [MQTT 5.0 section 3.15.2.1]")
		return
	}
	c.authStep(p.Properties.AuthData)
}

// authProtocolError closes the connection for a broken authentication
// exchange: before CONNACK the client gets CONNACK 0x82, after it
// DISCONNECT 0x82 (see protocolError).
func (c *client) authProtocolError(why string) {
	c.protocolError(&codec.Error{Code: codec.ProtocolError, Packet: codec.AUTH, Reason: why})
}

// authStep hands the client's data to the exchange in progress and acts on
// its answer. Runs on c's loop.
func (c *client) authStep(data []byte) {
	a := c.authState()
	reply, code := a.ex.Step(data)
	switch code {
	case codec.ContinueAuthentication:
		// [MQTT-4.12.0-2] [MQTT-4.12.0-5]
		c.writeAuth(codec.ContinueAuthentication, reply)
		return
	case codec.Success:
		c.exchangeSucceeded(a.ex) // the identity for authorization (authz.go)
		a.ex = nil
		if c.state == stateAuth {
			c.authenticated(reply)
		} else {
			// Re-authentication succeeded [MQTT 5.0 section 4.12.1].
			c.writeAuth(codec.Success, reply)
			if c.sess != nil {
				// Messages the new identity may not read may have left
				// the window (bindIdentity, recheckInflight): what
				// waits takes their room, after the AUTH that says who
				// it is for.
				c.sess.pump()
			}
		}
		return
	}
	a.ex = nil
	if c.state == stateAuth {
		// [MQTT-4.12.0-4] refuse with a code of 0x80 or above and close.
		c.refuse(connackAuthCode(code), "enhanced authentication failed")
		return
	}
	c.reauthFailed(code, "re-authentication failed")
}

// writeAuth batches an AUTH packet carrying the connection's method.
func (c *client) writeAuth(code codec.ReasonCode, data []byte) {
	p := codec.Auth{ReasonCode: code}
	p.Properties.AuthMethod = []byte(c.authState().method)
	p.Properties.AuthData = data
	c.writePacket(&p)
}

// reauthFailed ends a connection whose re-authentication failed with a
// DISCONNECT [MQTT-4.12.1-2]. The will is published, as for any
// connection the server closes.
func (c *client) reauthFailed(code codec.ReasonCode, why string) {
	code = disconnectAuthCode(code)
	c.loop.srv.log.Info("closing connection", "client", c.id(), "remote", c.remote(), "reason", why, "code", code)
	d := codec.Disconnect{ReasonCode: code}
	d.Properties.ReasonString = []byte(why) // allowed in DISCONNECT [MQTT-3.1.2-29]
	c.writeReasoned(&d, &d.Properties.ReasonString)
	c.close(why)
}

// authenticated handles the CONNECT kept while the first exchange ran,
// now that it succeeded; final is the Authentication Data for the CONNACK.
func (c *client) authenticated(final []byte) {
	a := c.authState()
	a.final = bytes.Clone(final)
	body := a.connect
	a.connect = nil
	pkt, err := c.loop.dec.DecodeBody(a.connectH, body)
	if err != nil {
		// It decoded before the exchange; only a bug gets here.
		c.protocolError(fmt.Errorf("decode CONNECT again after authentication: %w", err))
		return
	}
	p, ok := pkt.(*codec.Connect)
	if !ok {
		c.protocolError(fmt.Errorf("decode CONNECT again after authentication: got %v", pkt.Type()))
		return
	}
	c.certIdentity(p) // as authenticate did to the first decoding
	c.state = stateNew
	c.onConnect(p)
}

// connackAuthProps adds the Authentication Method (and the final
// Authentication Data) to a successful CONNACK [MQTT-4.12.0-5]
// [MQTT 5.0 sections 3.2.2.3.17, 3.2.2.3.18]. Clients that named no method
// get none [MQTT-4.12.0-6].
func (c *client) connackAuthProps(props *codec.Properties) *codec.Properties {
	a := c.authState()
	if a == nil {
		return props
	}
	if props == nil {
		props = &codec.Properties{}
	}
	props.AuthMethod = []byte(a.method)
	props.AuthData = a.final
	a.final = nil
	return props
}

// connackAuthCode returns code if a refusing CONNACK can carry it
// [MQTT 5.0 section 3.2.2.2], otherwise 0x87 Not authorized.
func connackAuthCode(code codec.ReasonCode) codec.ReasonCode {
	switch {
	case code >= codec.UnspecifiedError && code <= codec.Banned,
		code == codec.BadAuthenticationMethod, code == codec.TopicNameInvalid,
		code == codec.PacketTooLarge, code == codec.QuotaExceeded,
		code >= codec.PayloadFormatInvalid && code <= codec.ServerMoved,
		code == codec.ConnectionRateExceeded:
		return code
	}
	return codec.NotAuthorized
}

// disconnectAuthCode returns code if it is one of the DISCONNECT codes
// [MQTT 5.0 section 3.14.2.1] that can end a failed re-authentication
// (0x80, 0x83, 0x87, 0x89, 0x98, 0x9C, 0x9D), otherwise 0x87 Not
// authorized.
func disconnectAuthCode(code codec.ReasonCode) codec.ReasonCode {
	switch code {
	case codec.UnspecifiedError, codec.ImplementationSpecificError, codec.NotAuthorized,
		codec.ServerBusy, codec.AdministrativeAction, codec.UseAnotherServer, codec.ServerMoved:
		return code
	}
	return codec.NotAuthorized
}
