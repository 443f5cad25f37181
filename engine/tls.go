package engine

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"
)

// TLS listener: MQTT over TLS (usually port 8883), and the identity a
// client certificate lends to CONNECT. The bytes go through the bridge
// (bridge.go).

// errNoTLSConfig is returned by Start when a TLS or WSS listener is asked
// for without Options.TLSConfig.
var errNoTLSConfig = errors.New("TLS listener without Options.TLSConfig")

// serverTLSConfig returns the configuration the TLS and WSS listeners
// use: a clone of o.TLSConfig, at least TLS 1.2.
func (o *Options) serverTLSConfig() (*tls.Config, error) {
	if o.TLSConfig == nil {
		return nil, errNoTLSConfig
	}
	cfg := o.TLSConfig.Clone()
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New("Options.TLSConfig has no certificate")
	}
	return cfg, nil
}

// tlsOuter is a TLS client connection after its handshake.
type tlsOuter struct{ *tls.Conn }

// writeChunk writes buf[off:] (one TLS write; the headroom is for
// WebSocket headers and unused here).
func (t tlsOuter) writeChunk(buf []byte, off int) error {
	_, err := t.Write(buf[off:])
	return err
}

// tlsHandshake runs the server side of a TLS handshake on nc.
func (b *bridge) tlsHandshake(nc net.Conn, cfg *tls.Config) (*tls.Conn, *peerInfo, error) {
	tc := tls.Server(nc, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	st := tc.ConnectionState()
	return tc, b.peerOf(nc.RemoteAddr(), &st), nil
}

// peerOf describes the client at remote; st is its TLS state, nil for a
// plain WebSocket connection.
func (b *bridge) peerOf(remote net.Addr, st *tls.ConnectionState) *peerInfo {
	p := &peerInfo{remote: remote}
	mode := b.srv.opts.TLSIdentity
	if mode == IdentityNone {
		return p
	}
	// Only a certificate that verified against the client CAs names the
	// client (VerifiedChains is empty for RequestClientCert and
	// RequireAnyClientCert, which do not verify).
	if st == nil || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		p.noCert = true
		return p
	}
	leaf := st.PeerCertificates[0]
	switch mode {
	case IdentitySubject:
		p.identity = []byte(leaf.Subject.String())
	default:
		p.identity = []byte(leaf.Subject.CommonName)
	}
	return p
}

// listenTLS starts the MQTT-over-TLS listener on addr.
func (b *bridge) listenTLS(addr string, cfg *tls.Config) (net.Addr, error) {
	return b.listen("tls", addr, func(nc net.Conn) (outerConn, *peerInfo, error) {
		tc, peer, err := b.tlsHandshake(nc, cfg)
		if err != nil {
			return nil, nil, err
		}
		return tlsOuter{tc}, peer, nil
	})
}

// listen opens a TCP listener on addr and serves it with handshake.
func (b *bridge) listen(kind, addr string, handshake func(net.Conn) (outerConn, *peerInfo, error)) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener %s: %w", kind, addr, err)
	}
	b.mu.Lock()
	b.listeners = append(b.listeners, ln)
	b.mu.Unlock()
	b.wg.Add(1)
	go b.serve(ln, kind, handshake)
	b.srv.log.Info("loopmq listening", "transport", kind, "addr", ln.Addr().String())
	return ln.Addr(), nil
}

// startListeners opens the TLS, WS and WSS listeners the options ask for.
// Runs once, from Start, after the engine (and its bridge socket) is up.
func (b *bridge) startListeners() error {
	o := &b.srv.opts
	var cfg *tls.Config
	if o.TLSListen != "" || o.WSSListen != "" {
		var err error
		if cfg, err = o.serverTLSConfig(); err != nil {
			return err
		}
	}
	var err error
	if o.TLSListen != "" {
		if b.tlsAddr, err = b.listenTLS(o.TLSListen, cfg); err != nil {
			return err
		}
	}
	if o.WSListen != "" {
		if b.wsAddr, err = b.listenWS("ws", o.WSListen, nil); err != nil {
			return err
		}
	}
	if o.WSSListen != "" {
		if b.wssAddr, err = b.listenWS("wss", o.WSSListen, cfg); err != nil {
			return err
		}
	}
	return nil
}

// TLSAddr returns the TLS listener's address, nil without one.
func (s *Server) TLSAddr() net.Addr {
	return s.bridgeAddr(func(b *bridge) net.Addr { return b.tlsAddr })
}

// WSAddr returns the WebSocket listener's address, nil without one.
func (s *Server) WSAddr() net.Addr { return s.bridgeAddr(func(b *bridge) net.Addr { return b.wsAddr }) }

// WSSAddr returns the WebSocket-over-TLS listener's address, nil without one.
func (s *Server) WSSAddr() net.Addr {
	return s.bridgeAddr(func(b *bridge) net.Addr { return b.wssAddr })
}

func (s *Server) bridgeAddr(f func(*bridge) net.Addr) net.Addr {
	if s.bridge == nil {
		return nil
	}
	return f(s.bridge)
}

// handshakeDeadline is when a handshake that started now must be done.
func (b *bridge) handshakeDeadline() time.Time {
	return time.Now().Add(b.srv.opts.HandshakeTimeout)
}
