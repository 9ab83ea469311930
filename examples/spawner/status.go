package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"
)

// statusPath is where the loading page asks how the start goes. It is a
// path of the user's own site: while the container does not answer, the
// director hands it to the spawner like any other request; once the
// container answers, the director sends it there. The page tells the two
// apart by spawnerHeader, which only the spawner's answers carry.
const statusPath = "/.container-director/status"

// spawnerHeader marks the status endpoint's answers as the spawner's.
const spawnerHeader = "X-Container-Spawner"

const (
	// statusHold is how long a status request is held while nothing
	// changes, when the spawner can see the change coming (the engine is
	// working, or it can dial the container itself).
	statusHold = 20 * time.Second
	// statusInterval is the shortest time between two answers to one page:
	// it bounds a page to a few requests a second, however fast an image
	// pull reports its bytes. It is also how long a request is held when
	// the spawner cannot see the container answer: the page's next request
	// goes through the director, which finds out.
	statusInterval = 250 * time.Millisecond
	// dialEvery is how often a held request dials a container the spawner
	// can reach itself.
	dialEvery = 50 * time.Millisecond
	// inspectEvery is how often a held request asks the engine about a
	// container no operation is working on, to notice one that exits.
	inspectEvery = 500 * time.Millisecond
)

// addresser is a Backend whose containers the spawner can dial itself: the
// process backend. Addr returns the container's address, or "".
type addresser interface {
	Addr(name string) string
}

// serveStatus answers the loading page's status request with the progress
// as JSON. It only reads: it never creates, starts or restarts anything.
// The request is held until the state or the stage changes (a long poll).
func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request, name string) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		w.Header().Set(spawnerHeader, "status")
		plain(w, http.StatusMethodNotAllowed, "the status of a workspace is read with GET\n")
		return
	}
	since := r.URL.Query().Get("v")
	received := time.Now()
	hold := time.NewTimer(statusHold)
	defer hold.Stop()
	tick := time.NewTicker(dialEvery)
	defer tick.Stop()
	var w8 statusWatch
	for {
		v, changed, watching := h.status(r.Context(), name, &w8)
		held := time.Since(received)
		moved := strconv.FormatUint(v.Version, 10) != since
		if v.State != "progress" || ((moved || !watching) && held >= statusInterval) {
			writeStatus(w, v)
			return
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-hold.C:
			writeStatus(w, v)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// statusWatch is what one held status request remembers between looks.
type statusWatch struct {
	inspected time.Time
	st        State
	err       error
}

// status is the progress of name now, the channel closed on its next
// change (nil if none), and whether the spawner can see the container
// answer without the page asking through the director.
func (h *handler) status(ctx context.Context, name string, w8 *statusWatch) (progressView, <-chan struct{}, bool) {
	if _, op := h.currentOp(name); op != nil {
		v, changed := h.progress.snapshot(name, stageCreating, time.Time{})
		v.State = "progress"
		return v, changed, true
	}
	if _, failed := h.recentFailure(name); failed {
		v, _ := h.progress.snapshot(name, stageCreating, time.Time{})
		v.State = "error"
		return v, nil, true
	}
	addr, canDial := h.dialTarget(name)
	if canDial && dialable(ctx, addr) {
		h.progress.forget(name)
		v := newProgressView(stageWaiting, nil, false)
		v.State = "ready"
		return v, nil, true
	}
	if time.Since(w8.inspected) >= inspectEvery {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		w8.st, w8.err = h.backend.Inspect(ictx, name)
		cancel()
		w8.inspected = time.Now()
	}
	st, err := w8.st, w8.err
	switch {
	case errors.Is(err, ErrNotFound):
		v := newProgressView(stageCreating, nil, false)
		v.State = "gone"
		return v, nil, canDial
	case err != nil:
		// The engine does not answer now; the page keeps asking.
		v, changed := h.progress.snapshot(name, stageWaiting, time.Time{})
		v.State = "progress"
		return v, changed, canDial
	case !st.Managed:
		v := newProgressView(stageCreating, nil, false)
		v.State = "error"
		return v, nil, canDial
	}
	verdict := h.judge(st)
	if !verdict.loading {
		v, _ := h.progress.snapshot(name, stageWaiting, st.StartedAt)
		v.State = "error"
		return v, nil, canDial
	}
	v, changed := h.progress.snapshot(name, verdict.stage, st.StartedAt)
	v.State = "progress"
	if st.Health == HealthHealthy {
		// The engine's health check passes: the app answers.
		v.State = "ready"
	}
	return v, changed, canDial
}

// dialTarget is the address the spawner can dial name at, if any.
func (h *handler) dialTarget(name string) (string, bool) {
	a, ok := h.backend.(addresser)
	if !ok {
		return "", false
	}
	addr := a.Addr(name)
	if addr == "" {
		return "", false
	}
	return net.JoinHostPort(addr, strconv.Itoa(h.cfg.ContainerPort)), true
}

// dialable reports whether addr accepts a TCP connection, as the director's
// probe would find.
func dialable(ctx context.Context, addr string) bool {
	d := net.Dialer{Timeout: 200 * time.Millisecond}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// writeStatus writes v with the spawner's header.
func writeStatus(w http.ResponseWriter, v progressView) {
	body, err := json.Marshal(v)
	if err != nil {
		plain(w, http.StatusInternalServerError, "internal error\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set(spawnerHeader, "status")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// loadingProgress is the progress the loading page opens with: the run
// of the operation, or the stage the container's state shows.
func (h *handler) loadingProgress(name, stage string) progressView {
	v, _ := h.progress.snapshot(name, stage, time.Time{})
	v.State = "progress"
	return v
}

// failureReason says which stage of the last operation on name failed.
func (h *handler) failureReason(name, fallback string) string {
	stage, after, ok := h.progress.failedStage(name)
	if !ok {
		return fallback
	}
	return stageLabel(stage) + " failed after " + after.Round(100*time.Millisecond).String() + "."
}
