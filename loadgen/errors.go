package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
)

// ErrorCount is how often one kind of failure happened, with the first
// occurrence's full message and, for limits of this machine, what to do.
type ErrorCount struct {
	Kind    string `json:"kind"`
	Count   int64  `json:"count"`
	Example string `json:"example"`
	Hint    string `json:"hint,omitempty"`
}

// errorLog counts failures by kind. Safe for concurrent use.
type errorLog struct {
	mu    sync.Mutex
	kinds map[string]*ErrorCount
	total int64
}

func (l *errorLog) add(kind, example, hint string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = make(map[string]*ErrorCount)
	}
	e := l.kinds[kind]
	if e == nil {
		e = &ErrorCount{Kind: kind, Example: example, Hint: hint}
		l.kinds[kind] = e
	}
	e.Count++
	l.total++
}

// addErr classifies err, which happened at stage (dial, tls, connack, …).
func (l *errorLog) addErr(stage string, err error) {
	kind, hint := classify(stage, err)
	example := err.Error()
	var se stageErr
	if !errors.As(err, &se) {
		example = stage + ": " + example
	}
	l.add(kind, example, hint)
}

func (l *errorLog) count() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *errorLog) list() []ErrorCount {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]ErrorCount, 0, len(l.kinds))
	for _, e := range l.kinds {
		out = append(out, *e)
	}
	sortErrors(out)
	return out
}

func sortErrors(es []ErrorCount) {
	slices.SortFunc(es, func(a, b ErrorCount) int {
		if a.Count != b.Count {
			if a.Count > b.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Kind, b.Kind)
	})
}

// mergeErrors adds b's counts into a by kind.
func mergeErrors(a, b []ErrorCount) []ErrorCount {
	for _, e := range b {
		i := slices.IndexFunc(a, func(x ErrorCount) bool { return x.Kind == e.Kind })
		if i < 0 {
			a = append(a, e)
			continue
		}
		a[i].Count += e.Count
	}
	sortErrors(a)
	return a
}

// Hints for the limits of one machine, printed next to their counts.
const (
	hintFD   = "the process ran out of file descriptors (one per connection): spread the connections with -procs so each process stays below its limit"
	hintPort = "no free local port for this source address and broker (about 28,000 per pair): add source addresses with -source-ips"
)

// classify names the kind of a failure at stage, so that counts group by
// cause, and adds a hint for the limits a user can work around.
func classify(stage string, err error) (kind, hint string) {
	var rc refusedError
	switch {
	case errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE):
		return "fd limit reached (EMFILE)", hintFD
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port (EADDRNOTAVAIL)", hintPort
	case errors.Is(err, syscall.EADDRINUSE):
		return "local address in use (EADDRINUSE)", hintPort
	case errors.As(err, &rc):
		return stage + " refused (" + rc.reason + ")", ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return stage + ": connection refused", "is the broker listening on that address?"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return stage + ": connection reset by broker", ""
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return stage + ": connection closed by broker", ""
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		return stage + " timeout", ""
	}
	var ce *protocolError
	if errors.As(err, &ce) {
		return stage + ": " + ce.kind, ""
	}
	var re tls.RecordHeaderError
	var ve *tls.CertificateVerificationError
	if errors.As(err, &re) || errors.As(err, &ve) || stage == "tls" {
		return "tls handshake failed", ""
	}
	return stage + " failed", ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// refusedError is a broker's explicit refusal: a CONNACK, SUBACK or
// acknowledgement with a failure code, or a DISCONNECT with a reason.
type refusedError struct{ reason string }

func (e refusedError) Error() string { return "refused: " + e.reason }

// protocolError marks a protocol violation by the broker (a frame loadgen
// cannot decode, or one that makes no sense at that point).
type protocolError struct{ kind, detail string }

func (e *protocolError) Error() string { return e.kind + ": " + e.detail }
