package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusRequest is the loading page's status request, as fetch sends it,
// for the version the page has seen.
func statusRequest(name string, version uint64) *http.Request {
	r := httptest.NewRequest(http.MethodGet, statusPath+"?v="+strconv.FormatUint(version, 10), nil)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Sec-Fetch-Mode", "cors")
	r.Header.Set("Sec-Fetch-Dest", "empty")
	r.Header.Set(containerNameHeader, name)
	return r
}

// getStatus serves r and decodes the answer, which must be the spawner's.
func getStatus(t *testing.T, h http.Handler, r *http.Request) progressView {
	t.Helper()
	w := serve(h, r)
	if w.Code != http.StatusOK || w.Header().Get(spawnerHeader) == "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("expected 200 with %s and no-store, got %d %v: %s", spawnerHeader, w.Code, w.Header(), w.Body)
	}
	var v progressView
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("decoding the status %q: %v", w.Body, err)
	}
	return v
}

// TestStatusNeverStarts: the status path, whatever the request looks like,
// never creates or starts a container; it says what there is.
func TestStatusNeverStarts(t *testing.T) {
	b := newFakeBackend()
	b.set(State{Name: "vscode-jill", Status: StatusCreated, Managed: true})
	b.set(State{Name: "vscode-joe", Status: StatusExited, ExitCode: 1, Managed: true})
	b.set(State{Name: "vscode-jim", Status: StatusRunning, StartedAt: time.Now(), Managed: true})
	h := newTestHandler(t, b, HandlerConfig{})
	tests := []struct {
		desc          string
		request       *http.Request
		expectedState string
	}{
		{desc: "fetch, no container", request: statusRequest("vscode-jack", 0), expectedState: "reload"},
		// A navigation to the path, as a typed URL would be: still only a look.
		{desc: "navigation, no container", request: pageLoad(statusPath, "vscode-jack"), expectedState: "reload"},
		// A page load would start it: the page is told to reload.
		{desc: "created, never started", request: statusRequest("vscode-jill", 0), expectedState: "reload"},
		{desc: "running, not answering yet", request: statusRequest("vscode-jim", 0), expectedState: "progress"},
		{desc: "exited", request: statusRequest("vscode-joe", 0), expectedState: "error"},
	}
	for _, test := range tests {
		v := getStatus(t, h, test.request)
		if v.State != test.expectedState {
			t.Errorf("%s: expected state %q, got %+v", test.desc, test.expectedState, v)
		}
	}
	if creates, starts, restarts, _ := b.counts(); creates+starts+restarts != 0 {
		t.Errorf("expected no create, start or restart from status requests, got %d, %d, %d", creates, starts, restarts)
	}
	w := serve(h, func() *http.Request {
		r := httptest.NewRequest(http.MethodPost, statusPath, strings.NewReader(actionField+"=restart"))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set(containerNameHeader, "vscode-joe")
		return r
	}())
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("expected 405 for a post to the status path, got %d", w.Code)
	}
	if _, _, restarts, _ := b.counts(); restarts != 0 {
		t.Errorf("expected no restart from a post to the status path, got %d", restarts)
	}
}

// TestStatusFollowsTheStart: the page's status request is held until the
// stage changes, and reports the stages in order, then the failure of a
// start.
func TestStatusFollowsTheStart(t *testing.T) {
	b := newFakeBackend()
	b.createDelay = 600 * time.Millisecond
	h := newTestHandler(t, b, HandlerConfig{})
	page := serve(h, pageLoad("/", "vscode-jack"))
	if !strings.Contains(page.Body.String(), `"stage":"creating"`) {
		t.Fatalf("expected the loading page to open at the creating stage: %s", page.Body)
	}
	first := getStatus(t, h, statusRequest("vscode-jack", 0))
	if first.State != "progress" || first.Stage != stageCreating {
		t.Fatalf("expected the creating stage, got %+v", first)
	}
	// Held while nothing changes: it comes back when the create is done.
	began := time.Now()
	next := getStatus(t, h, statusRequest("vscode-jack", first.Version))
	if held := time.Since(began); held < 200*time.Millisecond {
		t.Errorf("expected the request to be held until the create ended, it came back after %s with %+v", held, next)
	}
	if next.Version == first.Version || next.Stage == stageCreating {
		t.Errorf("expected a later stage than creating, got %+v", next)
	}
	waitIdle(t, h)
	last := getStatus(t, h, statusRequest("vscode-jack", 0))
	if last.Stage != stageWaiting || last.State != "progress" {
		t.Errorf("expected to wait for the app once started, got %+v", last)
	}
	var states []string
	for _, s := range last.Stages {
		states = append(states, s.ID+":"+s.State)
	}
	if got := strings.Join(states, " "); got != "creating:done starting:done waiting:current" {
		t.Errorf("expected creating and starting done, got %q", got)
	}
	if creates, starts, _, _ := b.counts(); creates != 1 || starts != 1 {
		t.Errorf("expected one create and one start, got %d and %d", creates, starts)
	}

	// A create that fails: the page hears "error" at once, and the page
	// load that follows names the stage that failed.
	b2 := newFakeBackend()
	b2.createDelay = 300 * time.Millisecond
	b2.createErr = errors.New("disk full at /var/lib/engine")
	h2 := newTestHandler(t, b2, HandlerConfig{})
	serve(h2, pageLoad("/", "vscode-jack"))
	v := getStatus(t, h2, statusRequest("vscode-jack", 0))
	for v.State == "progress" {
		v = getStatus(t, h2, statusRequest("vscode-jack", v.Version))
	}
	if v.State != "error" {
		t.Fatalf("expected the error state, got %+v", v)
	}
	w := serve(h2, pageLoad("/", "vscode-jack"))
	if body := w.Body.String(); w.Code != http.StatusBadGateway || !strings.Contains(body, "Creating the container failed after") ||
		strings.Contains(body, "disk full") {
		t.Errorf("expected the error page to name the stage that failed and not the internal error, got %d: %s", w.Code, body)
	}
}

// TestStatusSeesTheWorkspaceAnswer: with the process backend the spawner
// dials the workspace itself; a held status request answers "ready" as
// soon as it listens.
func TestStatusSeesTheWorkspaceAnswer(t *testing.T) {
	const port = 18083
	backend := newTestProcessBackend(t, ProcessConfig{Addrs: "127.0.1.30-127.0.1.39", Port: port, StartDelay: 1500 * time.Millisecond})
	h := newTestHandler(t, backend, HandlerConfig{})
	serve(h, pageLoad("/", "vscode-jack"))
	v := getStatus(t, h, statusRequest("vscode-jack", 0))
	for v.State == "progress" {
		v = getStatus(t, h, statusRequest("vscode-jack", v.Version))
	}
	if v.State != "ready" {
		t.Fatalf("expected ready, got %+v", v)
	}
	if dialReady(context.Background(), backend.Endpoint("vscode-jack")) != nil {
		t.Errorf("the status said ready, but the workspace does not answer")
	}
}

func TestTrackerStages(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tr := newTracker(func() time.Time { return now })
	tr.begin("vscode-jack", stageCreating)
	now = now.Add(time.Second)
	tr.report("vscode-jack", Progress{Stage: stagePulling, Detail: "img:1"})
	tr.report("vscode-jack", Progress{Stage: stagePulling, Current: 5e6, Total: 20e6})
	v, changed := tr.snapshot("vscode-jack", stageCreating, time.Time{})
	if v.Stage != stagePulling || v.Detail != "img:1" || v.Current != 5e6 || v.Total != 20e6 || v.Elapsed != 1 {
		t.Errorf("expected the pull with its bytes, got %+v", v)
	}
	if len(v.Stages) != 4 || v.Stages[0].ID != stagePulling || v.Stages[0].State != "current" || v.Stages[1].State != "todo" {
		t.Errorf("expected the pull first and current, got %+v", v.Stages)
	}
	now = now.Add(3 * time.Second)
	tr.report("vscode-jack", Progress{Stage: stageCreating})
	select {
	case <-changed:
	default:
		t.Errorf("expected a change to be signalled")
	}
	tr.report("vscode-jack", Progress{Stage: stageStarting})
	tr.end("vscode-jack", nil)
	v, _ = tr.snapshot("vscode-jack", stageCreating, time.Time{})
	if v.Stage != stageWaiting || v.Stages[0].State != "done" || v.Stages[0].Took != 3 || v.Detail != "" || v.Total != 0 {
		t.Errorf("expected waiting, the pull done in 3 s, got %+v", v)
	}
	if _, _, failed := tr.failedStage("vscode-jack"); failed {
		t.Errorf("expected no failure")
	}
	tr.begin("vscode-jack", stageStarting)
	tr.end("vscode-jack", errors.New("boom"))
	if stage, _, failed := tr.failedStage("vscode-jack"); !failed || stage != stageStarting {
		t.Errorf("expected the start to have failed, got %q %v", stage, failed)
	}
	// Reports for a container nobody started are dropped.
	tr.report("vscode-jill", Progress{Stage: stagePulling})
	if v, _ := tr.snapshot("vscode-jill", stageWaiting, time.Time{}); v.Stage != stageWaiting || v.Version != 0 {
		t.Errorf("expected no run for vscode-jill, got %+v", v)
	}
}

func TestPullCounter(t *testing.T) {
	type message struct {
		id, status string
		cur, total int64
	}
	msg := func(id, status string, cur, total int64) message { return message{id, status, cur, total} }
	tests := []struct {
		desc            string
		msg             message
		expectedCurrent int64
		expectedTotal   int64
	}{
		{"a layer is announced", msg("a", "Pulling fs layer", 0, 0), 0, 0},
		{"it downloads", msg("a", "Downloading", 100, 1000), 100, 1000},
		{"another one", msg("b", "Downloading", 50, 500), 150, 1500},
		{"the first goes on", msg("a", "Downloading", 600, 1000), 650, 1500},
		{"a layer already there counts nothing", msg("c", "Already exists", 0, 0), 650, 1500},
		{"the first is complete", msg("a", "Download complete", 0, 0), 1050, 1500},
		{"extraction reports other bytes", msg("a", "Extracting", 10, 7000), 1050, 1500},
		{"the second is complete", msg("b", "Pull complete", 0, 0), 1500, 1500},
		{"the image's own status line", msg("", "Digest: sha256:abc", 0, 0), 1500, 1500},
	}
	var c pullCounter
	for _, test := range tests {
		cur, total := c.add(test.msg.id, test.msg.status, test.msg.cur, test.msg.total)
		if cur != test.expectedCurrent || total != test.expectedTotal {
			t.Errorf("%s: expected %d of %d, got %d of %d", test.desc, test.expectedCurrent, test.expectedTotal, cur, total)
		}
	}
}

// TestDockerPullReportsBytes: the Docker backend reports the pull's bytes
// from the engine's stream, then the create.
func TestDockerPullReportsBytes(t *testing.T) {
	pulled := false
	engine := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/containers/create") && !pulled:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"No such image: team/ide:1"}`))
		case strings.HasSuffix(r.URL.Path, "/containers/create"):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"Id":"abc"}`))
		case strings.HasSuffix(r.URL.Path, "/images/create"):
			pulled = true
			for _, line := range []string{
				`{"status":"Pulling from team/ide","id":"1"}`,
				`{"status":"Downloading","progressDetail":{"current":1000000,"total":4000000},"id":"l1"}`,
				`{"status":"Downloading","progressDetail":{"current":4000000,"total":4000000},"id":"l1"}`,
				`{"status":"Pull complete","id":"l1"}`,
			} {
				_, _ = w.Write([]byte(line + "\n"))
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(engine.Close)
	d, err := NewDockerBackend(DockerConfig{Host: "tcp://" + strings.TrimPrefix(engine.URL, "http://"), APIVersion: "1.41",
		Image: "team/ide:1", Network: "workspaces", Pull: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	var reports []Progress
	ctx := withProgress(context.Background(), func(p Progress) { reports = append(reports, p) })
	if err := d.Create(ctx, "vscode-jack", "jack"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range reports {
		got = append(got, p.Stage+" "+p.Detail+" "+strconv.FormatInt(p.Current, 10)+"/"+strconv.FormatInt(p.Total, 10))
	}
	expected := []string{
		"pulling team/ide:1 0/0", "pulling  0/0", "pulling  1000000/4000000",
		"pulling  4000000/4000000", "pulling  4000000/4000000", "creating  0/0",
	}
	if strings.Join(got, "|") != strings.Join(expected, "|") {
		t.Errorf("expected the reports\n%q\ngot\n%q", expected, got)
	}
}

// TestStatusWhereTheSpawnerCannotDial: a spawner that cannot reach the
// containers (examples/compose keeps it off their network) does not hold
// the page's request while the container starts: the page asks again soon,
// through the director, which can tell when it answers. One that reaches the
// address and is refused holds it.
func TestStatusWhereTheSpawnerCannotDial(t *testing.T) {
	for _, test := range []struct {
		desc         string
		ready        error
		expectedHeld bool
	}{
		{desc: "name not resolved", ready: &net.DNSError{Err: "no such host", Name: "vscode-jim", IsNotFound: true}},
		{desc: "refused", ready: syscall.ECONNREFUSED, expectedHeld: true},
	} {
		b := newFakeBackend()
		b.endpoint = "vscode-jim:8080"
		b.set(State{Name: "vscode-jim", User: "jim", Status: StatusRunning, StartedAt: time.Now(), Managed: true})
		readyErr := test.ready
		h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return &net.OpError{Op: "dial", Err: readyErr} }})
		ctx, cancel := context.WithCancel(context.Background())
		answered := make(chan progressView, 1)
		go func() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, statusRequest("vscode-jim", 0).WithContext(ctx))
			var v progressView
			_ = json.Unmarshal(w.Body.Bytes(), &v)
			answered <- v
		}()
		select {
		case v := <-answered:
			if test.expectedHeld {
				t.Errorf("%s: expected the request held, it was answered: %+v", test.desc, v)
			} else if v.State != "progress" || v.Stage != stageWaiting {
				t.Errorf("%s: expected waiting for the app, got %+v", test.desc, v)
			}
		case <-time.After(5 * time.Second):
			if !test.expectedHeld {
				t.Errorf("%s: expected an answer soon, the request is still held after 5 s", test.desc)
			}
		}
		cancel()
	}
}
