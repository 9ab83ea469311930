package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"syscall"
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

// serveStatus answers the loading page's status request with the progress
// as JSON. It only reads: it never creates, starts or restarts anything.
// The request is held until the state or the stage changes (a long poll).
func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request, name, user string) {
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
	for {
		v, changed, watching := h.status(r.Context(), name, user)
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

// status is the progress of name now, the channel closed on its next
// change (nil if none), and whether the spawner can see the container
// answer without the page asking through the director. It asks decide
// what a page load would do, and does none of it.
func (h *handler) status(ctx context.Context, name, user string) (progressView, <-chan struct{}, bool) {
	if _, op := h.currentOp(name); op != nil {
		v, changed := h.progress.snapshot(name, stageCreating, time.Time{})
		v.State = "progress"
		return v, changed, true
	}
	endpoint := h.backend.Endpoint(name)
	canDial := false
	if endpoint != "" {
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err := h.cfg.Ready(dctx, endpoint)
		cancel()
		if err == nil {
			h.progress.forget(name)
			v := newProgressView(stageWaiting, nil, false)
			v.State = "ready"
			return v, nil, true
		}
		// Refused: the spawner reaches the container's address, so it will
		// see it answer. Anything else (a name it cannot resolve, a
		// network it is not on, as in examples/compose) and only the
		// director can tell: the page asks again through it soon.
		canDial = errors.Is(err, syscall.ECONNREFUSED)
	}
	st, err := h.progress.look(name, func() (State, error) {
		ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return h.backend.Inspect(ictx, name)
	})
	s := situation{Kind: requestPageLoad, User: user, Now: h.cfg.Now(), StartGrace: h.cfg.StartGrace}
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		s.EngineDown = true
	default:
		s.Found, s.State = true, st
	}
	if f, ok := h.recentFailure(name); ok {
		s.Failed = f.action
	}
	o := decide(s)
	switch o.Action {
	case actLoading, actUnavailable:
		// Unavailable: the engine does not answer now; the page keeps
		// asking rather than leave for an error page over a hiccup.
		stage := o.Stage
		if stage == "" {
			stage = stageWaiting
		}
		v, changed := h.progress.snapshot(name, stage, s.State.StartedAt)
		v.State = "progress"
		if s.Found && s.State.Health == HealthHealthy {
			// The engine's health check passes: the app answers.
			v.State = "ready"
		}
		return v, changed, canDial
	case actCreate, actStart, actRecreate:
		// A page load would start it: the page reloads to do so.
		v := newProgressView(o.Stage, nil, false)
		v.State = "reload"
		return v, nil, canDial
	}
	v, _ := h.progress.snapshot(name, stageWaiting, time.Time{})
	v.State = "error"
	return v, nil, canDial
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
