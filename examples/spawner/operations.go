package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// This file carries out decide's actions against the backend, in the
// background: one operation at a time per container (a singleflight), a
// failure remembered for a while, and a reservation that keeps the number
// of running containers within MaxRunning.

// errNoRoom is an operation that found the maximum of running containers
// reached just before it would have started one.
var errNoRoom = errors.New("maximum of running containers reached")

// operation is a create, start, re-create or restart in progress for one
// container; there is at most one per name.
type operation struct {
	stage string // guarded by handler.mu
	done  chan struct{}
}

// failure is an operation that failed recently.
type failure struct {
	at     time.Time
	action string // "create", "start", "recreate", "restart" or "capacity"
}

// currentOp returns the operation in progress for name, if any.
func (h *handler) currentOp(name string) (stage string, op *operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op := h.ops[name]; op != nil {
		return op.stage, op
	}
	return "", nil
}

// recentFailure returns the failure of name remembered within FailureMemory.
func (h *handler) recentFailure(name string) (failure, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.failures[name]
	if ok && h.cfg.Now().Sub(f.at) > h.cfg.FailureMemory {
		delete(h.failures, name)
		return failure{}, false
	}
	return f, ok
}

// full reports whether MaxRunning containers run already, counting the
// operations of this spawner that are about to start one.
func (h *handler) full(ctx context.Context) (bool, error) {
	if h.cfg.MaxRunning <= 0 {
		return false, nil
	}
	h.mu.Lock()
	before := h.released
	h.mu.Unlock()
	running, err := h.countRunning(ctx)
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return running+h.reserved+(h.released-before) >= h.cfg.MaxRunning, nil
}

// countRunning counts the spawner's containers that run or are being
// restarted by the engine.
func (h *handler) countRunning(ctx context.Context) (int, error) {
	list, err := h.backend.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, st := range list {
		if countsAsRunning(st.Status) {
			n++
		}
	}
	return n, nil
}

// reserve takes one place among MaxRunning for an operation about to start
// a container; release gives it back. It fails with errNoRoom when there is
// none.
//
// A place given back while the engine was being asked may be a container
// that started too late to be in the engine's answer: such places count as
// running (at worst, one page load in that instant is told there is no
// room when there was).
func (h *handler) reserve(ctx context.Context) (release func(), err error) {
	if h.cfg.MaxRunning <= 0 {
		return func() {}, nil
	}
	h.mu.Lock()
	before := h.released
	h.mu.Unlock()
	running, err := h.countRunning(ctx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if running+h.reserved+(h.released-before) >= h.cfg.MaxRunning {
		return nil, errNoRoom
	}
	h.reserved++
	released := false
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if !released {
			released = true
			h.reserved--
			h.released++
		}
	}, nil
}

// begin starts act for name in the background, unless an operation is in
// progress already, and returns the operation in progress (nil once the
// handler is closed). Dozens of tabs reloading at once lead to a single
// create.
func (h *handler) begin(name, user string, act action) *operation {
	stage, kind := stageStarting, "start"
	switch act {
	case actCreate:
		stage, kind = stageCreating, "create"
	case actRecreate:
		stage, kind = stageCreating, "recreate"
	case actRestart:
		kind = "restart"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if op := h.ops[name]; op != nil {
		return op
	}
	if h.ctx.Err() != nil {
		return nil
	}
	op := &operation{stage: stage, done: make(chan struct{})}
	h.ops[name] = op
	delete(h.failures, name)
	h.progress.begin(name, stage)
	h.metrics.spawns.WithLabelValues(kind).Inc()
	began := h.cfg.Now()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.OperationTimeout)
		defer cancel()
		ctx = withProgress(ctx, func(p Progress) { h.progress.report(name, p) })
		setStage := func(s string) {
			h.mu.Lock()
			op.stage = s
			h.mu.Unlock()
			h.progress.report(name, Progress{Stage: s})
		}
		var err error
		switch act {
		case actCreate:
			err = h.create(ctx, name, user, setStage)
		case actRecreate:
			err = h.recreate(ctx, name, user, setStage)
		case actRestart:
			err = h.restart(ctx, name)
		default:
			err = h.start(ctx, name)
		}
		h.progress.end(name, err)
		h.mu.Lock()
		delete(h.ops, name)
		if err != nil {
			f := failure{at: h.cfg.Now(), action: kind}
			if errors.Is(err, errNoRoom) {
				f.action = "capacity"
			}
			h.failures[name] = f
		}
		h.mu.Unlock()
		close(op.done)
		if err != nil {
			h.metrics.failure(failureReason(kind, err))
			h.log.Error("operation failed", "container", name, "user", user, "action", kind, "error", err)
			return
		}
		h.log.Info("operation done", "container", name, "user", user, "action", kind)
		h.watchReady(name, began)
	}()
	return op
}

// failureReason is the metrics label of a failed operation.
func failureReason(kind string, err error) string {
	switch {
	case errors.Is(err, errNoRoom):
		return "capacity"
	case errors.Is(err, errPull):
		return "pull"
	case errors.Is(err, ErrUnmanaged):
		return "unmanaged"
	}
	return kind
}

// create creates and starts name. It looks again before it creates: a page
// load that saw "not found" just before another operation (or replica)
// finished must not create a second time. A name conflict means someone else
// created it meanwhile; either way a container of the user's own that was
// never started is started.
func (h *handler) create(ctx context.Context, name, user string, setStage func(string)) error {
	release, err := h.reserve(ctx)
	if err != nil {
		return err
	}
	defer release()
	st, err := h.backend.Inspect(ctx, name)
	if errors.Is(err, ErrNotFound) {
		err = h.backend.Create(ctx, name, user)
		if err == nil {
			setStage(stageStarting)
			return h.backend.Start(ctx, name)
		}
		if !errors.Is(err, ErrExists) {
			return err
		}
		h.decision(name, user, "exists", "create conflict: treated as exists")
		st, err = h.inspectAfterConflict(ctx, name)
	}
	if err != nil {
		return err
	}
	if !st.Managed || st.User != user || st.Status != StatusCreated {
		return nil // running already, or not this user's: the next load shows which
	}
	setStage(stageStarting)
	return h.backend.Start(ctx, name)
}

// inspectAfterConflict inspects a container whose create just met a name
// conflict. The engine reserves the name before the other create has
// registered the container, so for a moment inspect still says "not
// found": ask again for up to 10 s.
func (h *handler) inspectAfterConflict(ctx context.Context, name string) (State, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := h.backend.Inspect(ctx, name)
		if !errors.Is(err, ErrNotFound) || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// start starts an existing container.
func (h *handler) start(ctx context.Context, name string) error {
	release, err := h.reserve(ctx)
	if err != nil {
		return err
	}
	defer release()
	return h.backend.Start(ctx, name)
}

// recreate removes a container the engine cannot recover (dead) and
// creates it again; its volume stays.
func (h *handler) recreate(ctx context.Context, name, user string, setStage func(string)) error {
	if err := h.backend.Remove(ctx, name); err != nil {
		return fmt.Errorf("removing %q before creating it again: %w", name, err)
	}
	return h.create(ctx, name, user, setStage)
}

// restart restarts a container (the restart button); one that never ran is
// started.
func (h *handler) restart(ctx context.Context, name string) error {
	st, err := h.backend.Inspect(ctx, name)
	if err != nil {
		return err
	}
	if !countsAsRunning(st.Status) {
		release, err := h.reserve(ctx)
		if err != nil {
			return err
		}
		defer release()
	}
	if st.Status == StatusCreated {
		return h.backend.Start(ctx, name)
	}
	return h.backend.Restart(ctx, name)
}

// watchReady waits, in the background, until name answers, and records the
// time from the page load that began its start: the spawn duration.
func (h *handler) watchReady(name string, began time.Time) {
	endpoint := h.backend.Endpoint(name)
	if endpoint == "" {
		return
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.StartGrace)
		defer cancel()
		for {
			attempt, cancelAttempt := context.WithTimeout(ctx, time.Second)
			err := h.cfg.Ready(attempt, endpoint)
			cancelAttempt()
			if err == nil {
				h.metrics.spawnSeconds.Observe(h.cfg.Now().Sub(began).Seconds())
				return
			}
			select {
			case <-ctx.Done():
				// A name the spawner cannot resolve means it is not on the
				// containers' network (as in the compose examples): no
				// figure then, and no failure either.
				var dnsErr *net.DNSError
				if h.ctx.Err() == nil && !errors.As(err, &dnsErr) {
					h.metrics.failure("not_answering")
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// dialReady reports whether endpoint accepts a TCP connection.
func dialReady(ctx context.Context, endpoint string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return err
	}
	return c.Close()
}
