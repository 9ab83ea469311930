package main

import (
	"context"
	"sync"
	"time"
)

// stagePulling is the image pull inside a create, when the engine lacks the
// image; the other stages are in pages.go.
const stagePulling = "pulling"

// Progress is one report of how a container's start is going. The handler
// reports the stage it is in (it calls Create, then Start, then waits for
// the app); a backend adds what its engine tells about the stage, e.g. the
// bytes of an image pull.
type Progress struct {
	// Stage is one of the stage* constants.
	Stage string
	// Detail is a short, user-facing note on the stage, e.g. the image being
	// pulled or the process id; empty keeps the previous one of the stage.
	Detail string
	// Current and Total are the bytes done and to do in the stage, when the
	// engine reports them (an image pull); zero when unknown.
	Current, Total int64
}

type progressKey struct{}

// withProgress returns a context whose backend calls report to report. Like
// net/http/httptrace, the reporter travels with the context, so that the
// Backend interface keeps its methods and a backend that reports nothing
// needs no change.
func withProgress(ctx context.Context, report func(Progress)) context.Context {
	return context.WithValue(ctx, progressKey{}, report)
}

// reportProgress hands p to the reporter of ctx, if it has one.
func reportProgress(ctx context.Context, p Progress) {
	if report, ok := ctx.Value(progressKey{}).(func(Progress)); ok && report != nil {
		report(p)
	}
}

// stageTime is how long a finished stage took.
type stageTime struct {
	stage string
	took  time.Duration
}

// startRun is the progress of the last create, start or restart of one
// container, as the loading page shows it.
type startRun struct {
	began   time.Time
	stage   string
	stageAt time.Time
	done    []stageTime // stages passed, in order
	detail  string
	current int64
	total   int64
	ended   bool          // the operation returned; what follows is waiting for the app
	failed  string        // the stage that failed, if the operation failed
	after   time.Duration // how long after began it failed
	version uint64
	changed chan struct{} // closed and replaced on every change
}

// tracker holds the startRun of every container being started. It is safe
// for concurrent use.
type tracker struct {
	now  func() time.Time
	mu   sync.Mutex
	runs map[string]*startRun
	// version is shared by all runs, so that a new run of the same name
	// never repeats a version a page already saw.
	version uint64
	// looks are the engine's last answers about containers, shared by the
	// pages that wait on the same one.
	looks map[string]look
}

// look is one answer of Backend.Inspect.
type look struct {
	at  time.Time
	st  State
	err error
}

func newTracker(now func() time.Time) *tracker {
	return &tracker{now: now, runs: map[string]*startRun{}, looks: map[string]look{}}
}

// forgetAfter is how long the run of a container nobody asks about is kept.
const forgetAfter = time.Hour

// begin starts a new run for name at stage, replacing any earlier one.
func (t *tracker) begin(name, stage string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for n, r := range t.runs {
		if now.Sub(r.stageAt) > forgetAfter {
			delete(t.runs, n)
		}
	}
	if old := t.runs[name]; old != nil {
		close(old.changed)
	}
	delete(t.looks, name) // the engine's answer is about to change
	t.version++
	t.runs[name] = &startRun{began: now, stage: stage, stageAt: now, version: t.version, changed: make(chan struct{})}
}

// report records p for name's run. A report of a new stage ends the
// current one; bytes and detail belong to the stage they came with.
func (t *tracker) report(name string, p Progress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.runs[name]
	if r == nil || r.ended || p.Stage == "" {
		return
	}
	now := t.now()
	if p.Stage != r.stage {
		r.done = append(r.done, stageTime{r.stage, now.Sub(r.stageAt)})
		r.stage, r.stageAt = p.Stage, now
		r.detail, r.current, r.total = "", 0, 0
	}
	if p.Detail != "" {
		r.detail = p.Detail
	}
	if p.Total > 0 || p.Current > 0 {
		r.current, r.total = p.Current, p.Total
	}
	t.changedLocked(r)
}

// end records the end of name's operation: on success the run goes on to
// waiting for the app to answer, on failure it remembers the stage that
// failed.
func (t *tracker) end(name string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.looks, name)
	r := t.runs[name]
	if r == nil || r.ended {
		return
	}
	if err != nil {
		r.failed, r.after = r.stage, t.now().Sub(r.began)
	} else if r.stage != stageWaiting {
		now := t.now()
		r.done = append(r.done, stageTime{r.stage, now.Sub(r.stageAt)})
		r.stage, r.stageAt, r.detail, r.current, r.total = stageWaiting, now, "", 0, 0
	}
	r.ended = true
	t.changedLocked(r)
}

func (t *tracker) changedLocked(r *startRun) {
	t.version++
	r.version = t.version
	close(r.changed)
	r.changed = make(chan struct{})
}

// look returns what the engine said about name within inspectEvery, or
// asks it with inspect. Waiting pages ask the engine every inspectEvery per
// container at most, however many requests they send.
func (t *tracker) look(name string, inspect func() (State, error)) (State, error) {
	t.mu.Lock()
	l, ok := t.looks[name]
	t.mu.Unlock()
	if ok && time.Since(l.at) < inspectEvery {
		return l.st, l.err
	}
	st, err := inspect()
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for n, l := range t.looks {
		if now.Sub(l.at) > time.Minute {
			delete(t.looks, n)
		}
	}
	t.looks[name] = look{at: now, st: st, err: err}
	return st, err
}

// forget drops name's run: its container answered.
func (t *tracker) forget(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if r := t.runs[name]; r != nil {
		close(r.changed)
		delete(t.runs, name)
	}
}

// failedStage returns the stage in which name's last operation failed, and
// how long after its beginning.
func (t *tracker) failedStage(name string) (stage string, after time.Duration, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.runs[name]
	if r == nil || r.failed == "" {
		return "", 0, false
	}
	return r.failed, r.after, true
}

// progressView is the progress of one container as the loading page and
// the status endpoint show it.
type progressView struct {
	// State is "progress" (keep waiting), "ready" (the container answers:
	// load the page), "error" (load the page: it is the error page) or
	// "reload" (nothing is being started: load the page to start it).
	State   string      `json:"state"`
	Stage   string      `json:"stage"`
	Label   string      `json:"label"`
	Detail  string      `json:"detail,omitempty"`
	Current int64       `json:"current,omitempty"`
	Total   int64       `json:"total,omitempty"`
	Elapsed float64     `json:"elapsed"` // seconds since the start began
	Stages  []stageView `json:"stages"`
	Version uint64      `json:"version"`
}

// snapshot returns name's run as a view at the given fallback stage when
// there is no run (a container started before this process, or by another
// replica), with the channel that is closed on its next change.
func (t *tracker) snapshot(name, fallbackStage string, since time.Time) (progressView, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	r := t.runs[name]
	if r == nil {
		v := newProgressView(fallbackStage, nil, false)
		if !since.IsZero() {
			v.Elapsed = seconds(now.Sub(since))
		}
		return v, nil
	}
	v := newProgressView(r.stage, r.done, r.stage == stagePulling || hasStage(r.done, stagePulling))
	v.Detail, v.Current, v.Total = r.detail, r.current, r.total
	v.Elapsed = seconds(now.Sub(r.began))
	v.Version = r.version
	if r.failed != "" {
		v.State = "error"
	}
	return v, r.changed
}

func hasStage(done []stageTime, stage string) bool {
	for _, s := range done {
		if s.stage == stage {
			return true
		}
	}
	return false
}

func seconds(d time.Duration) float64 {
	return float64(d.Round(100*time.Millisecond)) / float64(time.Second)
}

// newProgressView lays out the stages: the ones passed (with how long each
// took), the current one, the ones to come. The pull shows only when there
// was one.
func newProgressView(stage string, done []stageTime, pulled bool) progressView {
	v := progressView{State: "progress", Stage: stage, Label: stageLabel(stage)}
	reached := false
	for _, s := range stageOrder {
		if s.id == stagePulling && !pulled {
			continue
		}
		sv := stageView{ID: s.id, Label: s.label, State: "todo"}
		switch {
		case s.id == stage:
			sv.State, reached = "current", true
		case !reached:
			sv.State = "done"
			for _, d := range done {
				if d.stage == s.id {
					sv.Took = seconds(d.took)
				}
			}
		}
		v.Stages = append(v.Stages, sv)
	}
	return v
}

// stageLabel is the words of a stage.
func stageLabel(stage string) string {
	for _, s := range stageOrder {
		if s.id == stage {
			return s.label
		}
	}
	return stage
}

// pullCounter adds up the bytes of an image pull over its layers: the
// engine reports each layer's download on its own.
type pullCounter struct {
	layers map[string][2]int64 // id: bytes done, bytes in all
}

// add takes one message of the engine's pull stream (layer id, status and
// progress detail) and returns the bytes done and in all so far; a layer
// counts once its size is known.
func (c *pullCounter) add(id, status string, cur, size int64) (current, total int64) {
	if c.layers == nil {
		c.layers = map[string][2]int64{}
	}
	l := c.layers[id]
	switch status {
	case "Downloading":
		if size > 0 {
			l = [2]int64{cur, size}
		}
	case "Download complete", "Verifying Checksum", "Extracting", "Pull complete":
		l[0] = l[1]
	}
	if id != "" && l[1] > 0 {
		c.layers[id] = l
	}
	for _, l := range c.layers {
		current += l[0]
		total += l[1]
	}
	return current, total
}
