package main

import (
	"fmt"
	"time"
)

// This file holds the spawner's lifecycle rules: what to do with a user's
// container, given its state and the kind of request. decide is pure: the
// HTTP handler gathers the inputs, calls it and carries out the result, and
// the table in decision_test.go is the specification.

// requestKind is what the browser asked for.
type requestKind int

const (
	// requestPageLoad is a browser navigation: it gets HTML and may create
	// or start the container.
	requestPageLoad requestKind = iota
	// requestOther is anything else (XHR, fetch, WebSocket, a form post of
	// the application): it gets a short 503 and never changes anything.
	requestOther
	// requestRestart is the error page's restart button (token and origin
	// already checked).
	requestRestart
)

// action is what the spawner does about one request.
type action int

const (
	// actLoading shows the loading page; nothing is started.
	actLoading action = iota
	// actCreate creates and starts the container, then shows the loading
	// page.
	actCreate
	// actStart starts the existing container, then shows the loading page.
	actStart
	// actRecreate removes the container (never its volume) and creates it
	// again, then shows the loading page.
	actRecreate
	// actRestart restarts the container (the restart button).
	actRestart
	// actErrorPage shows the error page with the container's state, exit
	// code and logs, and the restart button.
	actErrorPage
	// actFailedPage shows that a create or start failed a moment ago, with
	// a "try again" button; nothing is retried until then.
	actFailedPage
	// actCapacity shows the "no room right now" page; nothing is created or
	// started.
	actCapacity
	// actUnavailable shows that the engine does not answer (503).
	actUnavailable
	// actNotManaged shows that a container of that name exists that the
	// spawner did not create; nothing is touched or read.
	actNotManaged
	// actNotOwner shows that the container belongs to another user;
	// nothing is touched or read.
	actNotOwner
	// actRetryLater answers a request that is not a page load: 503 in
	// plain text, nothing changed.
	actRetryLater
	// actRedirect answers the restart button when nothing needs doing (an
	// operation is in progress): 303 back to the page.
	actRedirect
)

var actionNames = [...]string{
	actLoading: "loading page", actCreate: "create", actStart: "start", actRecreate: "remove and create",
	actRestart: "restart", actErrorPage: "error page", actFailedPage: "failed page", actCapacity: "capacity page",
	actUnavailable: "unavailable page", actNotManaged: "not managed page", actNotOwner: "not owner page",
	actRetryLater: "503", actRedirect: "redirect",
}

func (a action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// changes reports whether a carries out an operation on the engine.
func (a action) changes() bool {
	return a == actCreate || a == actStart || a == actRecreate || a == actRestart
}

// needsRoom reports whether a makes one more container run.
func (a action) needsRoom() bool {
	return a == actCreate || a == actStart || a == actRecreate
}

// situation is everything decide looks at.
type situation struct {
	Kind requestKind
	// User is the signed-in user.
	User string
	// Operation is the stage of the create/start/restart in progress for
	// this container, or "" if none.
	Operation string
	// EngineDown is set when the engine could not be asked.
	EngineDown bool
	// Found is set when the container exists; State is then its state.
	Found bool
	State State
	// Failed is the operation ("create", "start", "recreate", "restart",
	// "capacity") that failed within the failure memory, or "".
	Failed string
	// Full is set when the maximum of running containers is reached.
	Full bool
	// Now and StartGrace judge a running container that does not answer.
	Now        time.Time
	StartGrace time.Duration
}

// outcome is what decide returns.
type outcome struct {
	Action action
	// Stage is the loading page's stage (actLoading and the actions that
	// show the loading page).
	Stage string
	// Title and Reason explain an error page.
	Title, Reason string
}

// cleanExit reports whether a container stopped without failing, so that
// the next visit may simply start it again: exit 0 (the app ended
// normally), 143 (SIGTERM: docker stop, the idle stop, an engine shutting
// down) or 255 (the engine lost the process, as after a host restart).
func cleanExit(st State) bool {
	if st.OOMKilled {
		return false
	}
	return st.ExitCode == 0 || st.ExitCode == 143 || st.ExitCode == 255
}

// decide is the spawner's lifecycle: container state + kind of request
// (+ remembered failure, + capacity) → action.
func decide(s situation) outcome {
	if s.Operation != "" {
		switch s.Kind {
		case requestRestart:
			return outcome{Action: actRedirect}
		case requestOther:
			return outcome{Action: actRetryLater, Stage: s.Operation}
		}
		return outcome{Action: actLoading, Stage: s.Operation}
	}
	if s.EngineDown {
		if s.Kind == requestOther {
			return outcome{Action: actRetryLater}
		}
		return outcome{Action: actUnavailable}
	}
	if s.Found && !s.State.Managed {
		if s.Kind == requestOther {
			return outcome{Action: actRetryLater}
		}
		return outcome{Action: actNotManaged}
	}
	if s.Found && s.State.User != s.User {
		if s.Kind == requestOther {
			return outcome{Action: actRetryLater}
		}
		return outcome{Action: actNotOwner}
	}
	o := decideForState(s)
	switch {
	case s.Kind == requestOther:
		if o.Action == actLoading {
			return outcome{Action: actRetryLater, Stage: o.Stage}
		}
		return outcome{Action: actRetryLater}
	case s.Kind == requestRestart:
		switch o.Action {
		case actErrorPage, actFailedPage:
			// The button asks to try again whatever went wrong.
			if s.Found && s.State.Status == StatusCreated {
				o = outcome{Action: actStart, Stage: stageStarting}
			} else if !s.Found {
				o = outcome{Action: actCreate, Stage: stageCreating}
			} else if s.State.Status == StatusDead {
				o = outcome{Action: actRecreate, Stage: stageCreating}
			} else {
				o = outcome{Action: actRestart, Stage: stageStarting}
			}
		case actLoading:
			return outcome{Action: actRedirect}
		}
		if o.Action.needsRoom() || (o.Action == actRestart && s.State.Status != StatusRunning) {
			if s.Full {
				return outcome{Action: actCapacity}
			}
		}
		return o
	}
	return o
}

// decideForState is the page load's answer for a container that is ours
// (or missing).
func decideForState(s situation) outcome {
	room := func(o outcome) outcome {
		if s.Full {
			return outcome{Action: actCapacity}
		}
		return o
	}
	failed := func(title string) outcome {
		if s.Failed == "capacity" {
			return outcome{Action: actCapacity}
		}
		return outcome{Action: actFailedPage, Title: title}
	}
	if !s.Found {
		if s.Failed != "" {
			return failed("Your workspace could not be created")
		}
		return room(outcome{Action: actCreate, Stage: stageCreating})
	}
	st := s.State
	switch st.Status {
	case StatusCreated:
		if s.Failed != "" {
			return failed("Your workspace could not be started")
		}
		return room(outcome{Action: actStart, Stage: stageStarting})
	case StatusRunning:
		if st.Health == HealthUnhealthy {
			return outcome{Action: actErrorPage, Title: "Your workspace is unhealthy",
				Reason: "The container is running, but its health check fails."}
		}
		if !st.StartedAt.IsZero() && s.Now.Sub(st.StartedAt) > s.StartGrace {
			return outcome{Action: actErrorPage, Title: "Your workspace does not answer",
				Reason: fmt.Sprintf("The container has been running for %s but does not accept connections (the limit is %s).",
					s.Now.Sub(st.StartedAt).Round(time.Second), s.StartGrace)}
		}
		if st.Health == HealthStarting {
			return outcome{Action: actLoading, Stage: stageStarting}
		}
		return outcome{Action: actLoading, Stage: stageWaiting}
	case StatusExited:
		if !cleanExit(st) {
			reason := fmt.Sprintf("The container exited with code %d.", st.ExitCode)
			if st.OOMKilled {
				reason = fmt.Sprintf("The container ran out of memory and was killed (exit code %d).", st.ExitCode)
			}
			return outcome{Action: actErrorPage, Title: "Your workspace has stopped", Reason: reason}
		}
		if s.Failed != "" {
			return failed("Your workspace could not be started")
		}
		return room(outcome{Action: actStart, Stage: stageStarting})
	case StatusDead:
		if s.Failed != "" {
			return failed("Your workspace could not be created again")
		}
		return room(outcome{Action: actRecreate, Stage: stageCreating})
	case StatusRemoving:
		return outcome{Action: actLoading, Stage: stageCreating}
	case StatusRestarting:
		return outcome{Action: actErrorPage, Title: "Your workspace keeps restarting",
			Reason: fmt.Sprintf("The container is being restarted by its restart policy; it last exited with code %d.", st.ExitCode)}
	case StatusPaused:
		return outcome{Action: actErrorPage, Title: "Your workspace is paused", Reason: "The container is paused."}
	}
	return outcome{Action: actErrorPage, Title: "Your workspace is not running",
		Reason: fmt.Sprintf("The container is in state %q.", st.Status)}
}
