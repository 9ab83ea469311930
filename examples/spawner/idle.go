package main

import (
	"context"
	"log/slog"
	"time"
)

// The idle stop: a container of the spawner's that has had no network
// traffic for the idle timeout is stopped (never removed: its files and
// volume stay) and the next page load starts it again.
//
// Activity is measured at the engine, from the container's own network
// counters (bytes received and sent on all its interfaces), so the
// director's hot path pays nothing for it. Every byte counts: a page load,
// any HTTP request, and an open WebSocket's traffic, such as the keep-alive
// messages an open VS Code tab exchanges with its server every few seconds;
// so does traffic the container starts itself (an extension downloading).
// A browser tab left open therefore keeps its workspace running; a closed
// laptop does not.

// idleStopper stops idle containers.
type idleStopper struct {
	backend Backend
	meter   ActivityMeter
	timeout time.Duration
	every   time.Duration
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	seen map[string]activity // only the loop's goroutine touches it
}

// activity is what the idle stop remembers of one container.
type activity struct {
	counter   uint64
	changedAt time.Time // when counter last changed, or the container (re)started
	startedAt time.Time
}

// idleVerdict is the idle stop's decision for one running container.
type idleVerdict int

const (
	idleKeep idleVerdict = iota
	idleStop
)

// judgeIdle is the idle stop's rule, pure: the remembered activity (ok
// false when first seen), the container's start time and counter now →
// keep or stop, and what to remember.
func judgeIdle(prev activity, ok bool, startedAt time.Time, counter uint64, now time.Time, timeout time.Duration) (idleVerdict, activity) {
	next := activity{counter: counter, changedAt: prev.changedAt, startedAt: startedAt}
	switch {
	case !ok, !startedAt.Equal(prev.startedAt):
		// First sight (or a new run): the timeout starts now.
		next.changedAt = now
		if startedAt.After(now) {
			next.changedAt = startedAt
		}
		return idleKeep, next
	case counter != prev.counter:
		next.changedAt = now
		return idleKeep, next
	case now.Sub(prev.changedAt) >= timeout:
		return idleStop, next
	}
	return idleKeep, next
}

// idleCheckEvery is how often the idle stop looks: a quarter of the
// timeout, between 1 s and 1 min.
func idleCheckEvery(timeout time.Duration) time.Duration {
	every := timeout / 4
	if every < time.Second {
		every = time.Second
	}
	if every > time.Minute {
		every = time.Minute
	}
	return every
}

// run checks every e.every until ctx ends.
func (e *idleStopper) run(ctx context.Context) {
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		e.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check looks at every running container once.
func (e *idleStopper) check(ctx context.Context) {
	if e.seen == nil {
		e.seen = map[string]activity{}
	}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	list, err := e.backend.List(lctx)
	cancel()
	if err != nil {
		e.log.Warn("idle stop: listing containers failed", "error", err)
		return
	}
	running := map[string]bool{}
	for _, st := range list {
		if st.Status != StatusRunning {
			continue
		}
		running[st.Name] = true
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		full, err := e.backend.Inspect(actx, st.Name) // for StartedAt
		var counter uint64
		if err == nil {
			counter, err = e.meter.Activity(actx, st.Name)
		}
		cancel()
		if err != nil {
			e.log.Warn("idle stop: reading activity failed", "container", st.Name, "error", err)
			continue
		}
		if full.Status != StatusRunning || !full.Managed {
			continue // stopped meanwhile
		}
		st = full
		prev, ok := e.seen[st.Name]
		now := e.now()
		verdict, next := judgeIdle(prev, ok, st.StartedAt, counter, now, e.timeout)
		e.seen[st.Name] = next
		if verdict != idleStop {
			continue
		}
		e.log.Info("decision", "container", st.Name, "user", st.User, "state", "running, idle since "+next.changedAt.UTC().Format(time.RFC3339),
			"action", "idle stop")
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = e.backend.Stop(sctx, st.Name)
		cancel()
		if err != nil {
			e.metrics.failure("idle_stop")
			e.log.Error("idle stop failed", "container", st.Name, "error", err)
			continue
		}
		e.metrics.idleStops.Inc()
		delete(e.seen, st.Name)
	}
	for name := range e.seen {
		if !running[name] {
			delete(e.seen, name)
		}
	}
}
