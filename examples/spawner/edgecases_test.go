package main

import (
	"context"
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
