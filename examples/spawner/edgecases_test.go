package main

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// Edge cases of the lifecycle against the private real engine (see
// engine_test.go).

// TestRestartRestartingAtCapacityOnEngine: a container that its restart
// policy keeps restarting already takes one of the MaxRunning places, so
// the restart button restarts it even when every place is taken.
func TestRestartRestartingAtCapacityOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{})
	name := "vscode-rex"
	e.cleanup(t, []string{name}, nil)
	_, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: exiterImage, Cmd: []string{"-code", "1"},
			Labels: map[string]string{LabelSpawned: "true", LabelUser: "rex"}},
		HostConfig: &container.HostConfig{NetworkMode: testNetwork, RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyAlways}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	// The engine waits twice as long before each new restart: after five,
	// the container spends seconds restarting for every tenth of a second
	// it runs.
	waitFor(t, 30*time.Second, name+" restarting after 5 restarts", func() bool {
		res, err := e.client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		return err == nil && res.Container.RestartCount >= 5 && res.Container.State != nil &&
			res.Container.State.Status == container.StateRestarting
	})
	// Every place taken, this container's included.
	probe := newTestHandler(t, b, HandlerConfig{})
	running, err := probe.countRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := newMetrics(nil)
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: running, Metrics: m, Ready: func(context.Context, string) error { return nil }})
	r := restartPost("/", name, h.token(name))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("X-Forwarded-Preferred-Username", "rex")
	if w := serve(h, r); w.Code != 303 {
		t.Fatalf("expected 303 from the restart button, got %d %s", w.Code, w.Body.String())
	}
	waitIdle(t, h)
	if got := counterValue(t, m, "spawner_spawns_total"); got != 1 {
		t.Errorf("expected the restart button to restart the restarting container at capacity, got %v operations", got)
	}
	if f, ok := h.recentFailure(name); ok {
		t.Errorf("expected no failure, got %+v", f)
	}
}

// TestStartFailureTextStaysInLogOnEngine: a start the engine refuses (here
// an entrypoint missing from the image) leaves the engine's own message in
// the container's state, with host paths and the runtime's internals: it
// goes to the spawner's log, never to the page.
func TestStartFailureTextStaysInLogOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{})
	name := "vscode-sal"
	e.cleanup(t, []string{name}, nil)
	_, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: exiterImage, Entrypoint: []string{"/no-such-entrypoint"},
			Labels: map[string]string{LabelSpawned: "true", LabelUser: "sal"}},
		HostConfig: &container.HostConfig{NetworkMode: testNetwork},
	})
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	var logMu sync.Mutex
	h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil },
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &log}, nil))})
	if code, body := pageLoadOf(h, name, "sal"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Starting it") {
		t.Fatalf("expected the loading page, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	st, err := b.Inspect(ctx, name)
	if err != nil || st.Error == "" {
		t.Fatalf("expected the engine to refuse the start with a message, got %+v, %v", st, err)
	}
	code, body := pageLoadOf(h, name, "sal")
	if code != http.StatusBadGateway || !strings.Contains(body, "could not be started") {
		t.Fatalf("expected the failed page, got %d %s", code, lastN(body, 300))
	}
	for _, internal := range []string{"no-such-entrypoint", "OCI", "runc", st.Error} {
		if strings.Contains(body, internal) || strings.Contains(body, template.HTMLEscapeString(internal)) {
			t.Errorf("expected no engine text on the page, found %q in %s", internal, body)
		}
	}
	logMu.Lock()
	defer logMu.Unlock()
	if !strings.Contains(log.String(), "no-such-entrypoint") {
		t.Errorf("expected the engine's message in the log, got %s", log.String())
	}
}

// lockedWriter serialises writes to a strings.Builder.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// gatedList is a Backend whose second List answers what the engine said
// at the call, but only once the gate is closed: a count that was true
// when asked and is stale when it arrives.
type gatedList struct {
	*fakeBackend
	mu      sync.Mutex
	calls   int
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedList) List(ctx context.Context) ([]State, error) {
	g.mu.Lock()
	g.calls++
	n := g.calls
	g.mu.Unlock()
	list, err := g.fakeBackend.List(ctx)
	if n == 2 {
		close(g.entered)
		<-g.gate
	}
	return list, err
}

// TestCapacityStaleCount: an operation counts the running containers, and
// another one starts a container and gives its place back before that
// count arrives. The count does not show the new container, and the place
// was given back: without care, both start and MaxRunning is passed.
func TestCapacityStaleCount(t *testing.T) {
	b := &gatedList{fakeBackend: newFakeBackend(), entered: make(chan struct{}), gate: make(chan struct{})}
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: 1})
	// B's page load counts once (List 1), its operation counts again
	// (List 2) and waits at the gate.
	serve(h, pageLoad("/", "vscode-b"))
	<-b.entered
	// A's page load and operation count (Lists 3 and 4), create, start
	// and give their place back.
	serve(h, pageLoad("/", "vscode-a"))
	waitFor(t, 10*time.Second, "vscode-a's operation", func() bool {
		_, op := h.currentOp("vscode-a")
		return op == nil
	})
	close(b.gate)
	waitIdle(t, h)
	list, _ := b.fakeBackend.List(context.Background())
	running := 0
	for _, st := range list {
		if st.Status == StatusRunning {
			running++
		}
	}
	if running != 1 {
		t.Errorf("expected 1 running container with MaxRunning 1, got %d: %+v", running, list)
	}
}

// TestMetricsWhileEngineDown: when the engine does not answer, /metrics
// still serves the spawner's own figures (the failures that say so among
// them), without the engine's error text; only the containers by state,
// which the engine alone knows, are missing.
func TestMetricsWhileEngineDown(t *testing.T) {
	b := newFakeBackend()
	m := newMetrics(b)
	h := newTestHandler(t, b, HandlerConfig{Metrics: m})
	b.inspectErr = errors.New("dial unix /run/secret-engine.sock: connect: connection refused")
	serve(h, pageLoad("/", "vscode-jack"))
	text := scrape(t, m)
	if !strings.Contains(text, `spawner_failures_total{reason="engine"} 1`) {
		t.Errorf("expected the engine failure counted in /metrics, got %s", text)
	}
	if strings.Contains(text, "secret-engine") {
		t.Errorf("expected no engine error text in /metrics, got %s", text)
	}
}

// TestRestartAtCapacitySaysSo: the restart button of a crashed workspace
// when every place is taken restarts nothing, and says why, rather than
// sending the browser back to the same error page as if it had worked.
func TestRestartAtCapacitySaysSo(t *testing.T) {
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", Status: StatusExited, ExitCode: 2, Managed: true})
	b.set(State{Name: "vscode-jill", Status: StatusRunning, Managed: true, StartedAt: time.Now()})
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: 1})
	r := restartPost("/", "vscode-jack", h.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	w := serve(h, r)
	waitIdle(t, h)
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "No room for your workspace right now") {
		t.Errorf("expected the no-room page, got %d %s", w.Code, lastN(w.Body.String(), 300))
	}
	if _, _, restarts, _ := b.counts(); restarts != 0 {
		t.Errorf("expected nothing restarted, got %d restarts", restarts)
	}
}

// failingList is a Backend whose List fails: the engine stopped answering
// between the container's inspect and the running count.
type failingList struct{ *fakeBackend }

func (failingList) List(context.Context) ([]State, error) {
	return nil, errors.New("connection refused")
}

// TestFailedCountIsAnEngineFailure: a page load that cannot count the
// running containers gets the unavailable page, and the failure is counted
// as the engine's, like a failed inspect.
func TestFailedCountIsAnEngineFailure(t *testing.T) {
	b := failingList{newFakeBackend()}
	m := newMetrics(nil)
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: 1, Metrics: m})
	w := serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "unavailable") {
		t.Errorf("expected the unavailable page, got %d %s", w.Code, lastN(w.Body.String(), 300))
	}
	if got := counterValue(t, m, "spawner_failures_total"); got != 1 {
		t.Errorf("expected 1 engine failure counted, got %v", got)
	}
}
