package store

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger routes pebble's logging to a slog.Logger, so pebble never
// writes to stderr on its own: Infof at Debug, Errorf at Warn (pebble's
// errors are background problems it retries or survives), Fatalf at Error
// followed by a panic, since pebble calls it for states it cannot continue
// from and expects it not to return.
type pebbleLogger struct{ log *slog.Logger }

var _ pebble.Logger = pebbleLogger{}

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Warn(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg)
	panic("store: pebble: " + msg)
}

// pebbleLogging returns pebble options fields that send pebble's log lines
// and events to log.
func pebbleLogging(log *slog.Logger) (pebble.Logger, *pebble.EventListener) {
	pl := pebbleLogger{log: log.With("component", "pebble")}
	// The logging listener reports flushes, compactions and file changes
	// through Infof (Debug), background errors and data corruption through
	// Errorf (Warn); corruption then surfaces as an error from the read that
	// found it instead of the default listener's Fatalf.
	el := pebble.MakeLoggingEventListener(pl)
	misuse := el.PossibleAPIMisuse
	el.PossibleAPIMisuse = func(info pebble.PossibleAPIMisuseInfo) {
		if info.Kind == pebble.IneffectualSingleDelete {
			// Expected: the engine deletes an entry whose put it took back
			// from a batch before the commit (DeleteEntryPutOnce on an entry
			// never written), and a compaction then finds the SingleDelete
			// alone. In persisted pairs that is about one delivery in ten:
			// the logging listener boxed each event for a Debug line, two
			// allocations on the compaction's path for nothing.
			return
		}
		misuse(info)
	}
	return pl, &el
}

// errAttr is err for a log line, as its text: slog formats an error value
// with %+v, under which pebble's errors (cockroachdb/errors) print a stack
// trace of many lines.
func errAttr(err error) slog.Attr { return slog.String("err", err.Error()) }
