package main

import (
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	mine := func(st State) State {
		st.Name, st.Managed, st.User = "vscode-jack", true, "jack"
		return st
	}
	running := mine(State{Status: StatusRunning, StartedAt: now.Add(-5 * time.Second)})
	exited := func(code int) State { return mine(State{Status: StatusExited, ExitCode: code}) }
	tests := []struct {
		desc           string
		in             situation
		expectedAction action
		expectedStage  string
	}{
		// Page loads.
		{desc: "not found", in: situation{}, expectedAction: actCreate, expectedStage: stageCreating},
		{desc: "not found, no room", in: situation{Full: true}, expectedAction: actCapacity},
		{desc: "not found, create failed", in: situation{Failed: "create"}, expectedAction: actFailedPage},
		{desc: "not found, no room a moment ago", in: situation{Failed: "capacity"}, expectedAction: actCapacity},
		{desc: "operation in progress", in: situation{Operation: stageStarting, Found: true, State: exited(1)},
			expectedAction: actLoading, expectedStage: stageStarting},
		{desc: "engine down", in: situation{EngineDown: true}, expectedAction: actUnavailable},
		{desc: "not managed", in: situation{Found: true, State: State{Status: StatusExited}}, expectedAction: actNotManaged},
		{desc: "another user's", in: situation{Found: true, State: State{Status: StatusExited, Managed: true, User: "jill"}},
			expectedAction: actNotOwner},
		{desc: "created", in: situation{Found: true, State: mine(State{Status: StatusCreated})},
			expectedAction: actStart, expectedStage: stageStarting},
		{desc: "created, no room", in: situation{Found: true, Full: true, State: mine(State{Status: StatusCreated})},
			expectedAction: actCapacity},
		{desc: "created, start failed", in: situation{Found: true, Failed: "start", State: mine(State{Status: StatusCreated})},
			expectedAction: actFailedPage},
		{desc: "running within the grace", in: situation{Found: true, State: running},
			expectedAction: actLoading, expectedStage: stageWaiting},
		{desc: "running, no room does not matter", in: situation{Found: true, Full: true, State: running},
			expectedAction: actLoading, expectedStage: stageWaiting},
		{desc: "running, health starting", in: situation{Found: true, State: mine(State{Status: StatusRunning, Health: HealthStarting, StartedAt: now})},
			expectedAction: actLoading, expectedStage: stageStarting},
		{desc: "running past the grace", in: situation{Found: true, State: mine(State{Status: StatusRunning, StartedAt: now.Add(-2 * time.Minute)})},
			expectedAction: actErrorPage},
		{desc: "unhealthy", in: situation{Found: true, State: mine(State{Status: StatusRunning, Health: HealthUnhealthy, StartedAt: now})},
			expectedAction: actErrorPage},
		{desc: "exited 0", in: situation{Found: true, State: exited(0)}, expectedAction: actStart, expectedStage: stageStarting},
		{desc: "exited 143 (docker stop, idle stop)", in: situation{Found: true, State: exited(143)}, expectedAction: actStart, expectedStage: stageStarting},
		{desc: "exited 255 (engine lost it)", in: situation{Found: true, State: exited(255)}, expectedAction: actStart, expectedStage: stageStarting},
		{desc: "exited 0, no room", in: situation{Found: true, Full: true, State: exited(0)}, expectedAction: actCapacity},
		{desc: "exited 0, start failed", in: situation{Found: true, Failed: "start", State: exited(0)}, expectedAction: actFailedPage},
		{desc: "crashed", in: situation{Found: true, State: exited(1)}, expectedAction: actErrorPage},
		{desc: "killed", in: situation{Found: true, State: exited(137)}, expectedAction: actErrorPage},
		{desc: "out of memory", in: situation{Found: true, State: mine(State{Status: StatusExited, ExitCode: 0, OOMKilled: true})},
			expectedAction: actErrorPage},
		{desc: "dead", in: situation{Found: true, State: mine(State{Status: StatusDead})}, expectedAction: actRecreate, expectedStage: stageCreating},
		{desc: "dead, no room", in: situation{Found: true, Full: true, State: mine(State{Status: StatusDead})}, expectedAction: actCapacity},
		{desc: "dead, re-create failed", in: situation{Found: true, Failed: "recreate", State: mine(State{Status: StatusDead})}, expectedAction: actFailedPage},
		{desc: "removing", in: situation{Found: true, State: mine(State{Status: StatusRemoving})}, expectedAction: actLoading, expectedStage: stageCreating},
		{desc: "restarting", in: situation{Found: true, State: mine(State{Status: StatusRestarting, ExitCode: 1})}, expectedAction: actErrorPage},
		{desc: "paused", in: situation{Found: true, State: mine(State{Status: StatusPaused})}, expectedAction: actErrorPage},
		{desc: "unknown state", in: situation{Found: true, State: mine(State{Status: "weird"})}, expectedAction: actErrorPage},

		// Requests that are not page loads never change anything.
		{desc: "other: not found", in: situation{Kind: requestOther}, expectedAction: actRetryLater},
		{desc: "other: stopped cleanly", in: situation{Kind: requestOther, Found: true, State: exited(0)}, expectedAction: actRetryLater},
		{desc: "other: dead", in: situation{Kind: requestOther, Found: true, State: mine(State{Status: StatusDead})}, expectedAction: actRetryLater},
		{desc: "other: not managed", in: situation{Kind: requestOther, Found: true, State: State{Status: StatusExited}}, expectedAction: actRetryLater},
		{desc: "other: engine down", in: situation{Kind: requestOther, EngineDown: true}, expectedAction: actRetryLater},
		{desc: "other: in progress", in: situation{Kind: requestOther, Operation: stageCreating}, expectedAction: actRetryLater, expectedStage: stageCreating},

		// The restart button.
		{desc: "restart: crashed", in: situation{Kind: requestRestart, Found: true, State: exited(1)}, expectedAction: actRestart, expectedStage: stageStarting},
		{desc: "restart: crashed, no room", in: situation{Kind: requestRestart, Full: true, Found: true, State: exited(1)}, expectedAction: actCapacity},
		{desc: "restart: not answering", in: situation{Kind: requestRestart, Found: true, State: mine(State{Status: StatusRunning, StartedAt: now.Add(-time.Hour)})},
			expectedAction: actRestart, expectedStage: stageStarting},
		{desc: "restart: not answering, no room does not matter", in: situation{Kind: requestRestart, Full: true, Found: true, State: mine(State{Status: StatusRunning, StartedAt: now.Add(-time.Hour)})},
			expectedAction: actRestart, expectedStage: stageStarting},
		{desc: "restart: created", in: situation{Kind: requestRestart, Found: true, Failed: "start", State: mine(State{Status: StatusCreated})},
			expectedAction: actStart, expectedStage: stageStarting},
		{desc: "restart: gone", in: situation{Kind: requestRestart, Failed: "create"}, expectedAction: actCreate, expectedStage: stageCreating},
		{desc: "restart: dead", in: situation{Kind: requestRestart, Failed: "recreate", Found: true, State: mine(State{Status: StatusDead})},
			expectedAction: actRecreate, expectedStage: stageCreating},
		{desc: "restart: in progress", in: situation{Kind: requestRestart, Operation: stageStarting}, expectedAction: actRedirect},
		{desc: "restart: starting anyway", in: situation{Kind: requestRestart, Found: true, State: running}, expectedAction: actRedirect},
		{desc: "restart: not managed", in: situation{Kind: requestRestart, Found: true, State: State{Status: StatusExited, ExitCode: 1}}, expectedAction: actNotManaged},
		{desc: "restart: another user's", in: situation{Kind: requestRestart, Found: true, State: State{Status: StatusExited, Managed: true, User: "jill"}},
			expectedAction: actNotOwner},
		{desc: "restart: engine down", in: situation{Kind: requestRestart, EngineDown: true}, expectedAction: actUnavailable},
	}
	for _, test := range tests {
		in := test.in
		in.User, in.Now, in.StartGrace = "jack", now, time.Minute
		out := decide(in)
		if out.Action != test.expectedAction || out.Stage != test.expectedStage {
			t.Errorf("%s: expected %s at stage %q, got %s at stage %q", test.desc, test.expectedAction, test.expectedStage, out.Action, out.Stage)
		}
		if out.Action == actErrorPage && (out.Title == "" || out.Reason == "") {
			t.Errorf("%s: an error page without a title and a reason: %+v", test.desc, out)
		}
	}
}

func TestJudgeIdle(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	started := t0.Add(-time.Hour)
	const timeout = 10 * time.Minute
	tests := []struct {
		desc             string
		prev             activity
		seen             bool
		startedAt        time.Time
		counter          uint64
		now              time.Time
		expected         idleVerdict
		expectedChangeAt time.Time
	}{
		{desc: "first sight starts the clock", startedAt: started, counter: 5, now: t0, expected: idleKeep, expectedChangeAt: t0},
		{desc: "traffic resets the clock", seen: true, prev: activity{counter: 5, changedAt: t0, startedAt: started},
			startedAt: started, counter: 6, now: t0.Add(time.Hour), expected: idleKeep, expectedChangeAt: t0.Add(time.Hour)},
		{desc: "quiet within the timeout", seen: true, prev: activity{counter: 5, changedAt: t0, startedAt: started},
			startedAt: started, counter: 5, now: t0.Add(timeout - time.Second), expected: idleKeep, expectedChangeAt: t0},
		{desc: "quiet for the timeout", seen: true, prev: activity{counter: 5, changedAt: t0, startedAt: started},
			startedAt: started, counter: 5, now: t0.Add(timeout), expected: idleStop, expectedChangeAt: t0},
		{desc: "a new run starts the clock again", seen: true, prev: activity{counter: 5, changedAt: t0, startedAt: started},
			startedAt: t0.Add(time.Hour), counter: 5, now: t0.Add(time.Hour), expected: idleKeep, expectedChangeAt: t0.Add(time.Hour)},
	}
	for _, test := range tests {
		verdict, next := judgeIdle(test.prev, test.seen, test.startedAt, test.counter, test.now, timeout)
		if verdict != test.expected || !next.changedAt.Equal(test.expectedChangeAt) || next.counter != test.counter {
			t.Errorf("%s: expected %v since %s, got %v and %+v", test.desc, test.expected, test.expectedChangeAt, verdict, next)
		}
	}
}

func TestIdleCheckEvery(t *testing.T) {
	for _, c := range []struct{ timeout, expected time.Duration }{
		{time.Second, time.Second}, {20 * time.Second, 5 * time.Second}, {time.Hour, time.Minute},
	} {
		if got := idleCheckEvery(c.timeout); got != c.expected {
			t.Errorf("idleCheckEvery(%s): expected %s, got %s", c.timeout, c.expected, got)
		}
	}
}
