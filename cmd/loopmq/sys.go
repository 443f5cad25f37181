package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/loopmq/loopmq/engine"
	"github.com/loopmq/loopmq/systopics"
)

// startSys publishes the $SYS topics (package systopics) every interval
// until ctx ends; interval 0 turns them off. It returns a channel closed
// when the publisher has stopped.
func startSys(ctx context.Context, srv *engine.Server, interval time.Duration, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if interval <= 0 {
		close(done)
		return done
	}
	p := systopics.New(systopics.Options{Server: srv, Interval: interval, Version: buildVersion(), Logger: log})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	return done
}
