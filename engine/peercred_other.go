//go:build !linux

package engine

import "errors"

// peerPID is Linux only (SO_PEERCRED; the proxies' abstract socket names
// are Linux only too): elsewhere Start refuses TLS and WebSocket
// listeners (newBridge), so this is never called.
func peerPID(int) (int, error) {
	return 0, errors.New("bridged transports need Linux")
}
