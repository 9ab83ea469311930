package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScreenshots renders every stage of the loading page, and the error
// page, in headless Chromium: light and dark, phone and desktop. It writes
// the PNGs to $SPAWNER_SCREENSHOTS (docs/images: make screenshots) and is
// skipped without it.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("SPAWNER_SCREENSHOTS")
	if dir == "" {
		t.Skip("set SPAWNER_SCREENSHOTS to a directory (make screenshots)")
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is missing", chromiumPath)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", User: "jack", Status: StatusExited, ExitCode: 1, Managed: true,
		StartedAt: now.Add(-3 * time.Minute), FinishedAt: now.Add(-20 * time.Second)})
	b.logs["vscode-jack"] = []string{
		"[2026-05-01T12:00:01Z] info  code-server 4.100.3",
		"[2026-05-01T12:00:01Z] info  Using config file /home/coder/.config/code-server/config.yaml",
		"[2026-05-01T12:00:02Z] error EACCES: permission denied, mkdir '/home/coder/.local/share'",
	}
	h := newTestHandler(t, b, HandlerConfig{})
	// A run frozen at each stage, as the backends report them.
	stages := map[string]func(name string){
		"pulling": func(n string) {
			h.progress.begin(n, stageCreating)
			h.progress.report(n, Progress{Stage: stagePulling, Detail: "codercom/code-server:4.100.3"})
			h.progress.report(n, Progress{Stage: stagePulling, Current: 187e6, Total: 412e6})
		},
		"creating": func(n string) {
			h.progress.begin(n, stageCreating)
			h.progress.report(n, Progress{Stage: stageCreating, Detail: "address 127.0.1.7"})
		},
		"starting": func(n string) {
			h.progress.begin(n, stageCreating)
			h.progress.report(n, Progress{Stage: stageStarting, Detail: "process 48213"})
		},
		"waiting": func(n string) {
			h.progress.begin(n, stageCreating)
			h.progress.report(n, Progress{Stage: stageStarting})
			h.progress.end(n, nil)
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == statusPath {
			<-r.Context().Done() // the page waits on, as it was
			return
		}
		stage := strings.TrimPrefix(r.URL.Path, "/")
		if stage == "error" {
			r.Header.Set(containerNameHeader, "vscode-jack")
			r.Header.Set("X-Forwarded-Preferred-Username", "jack")
			h.ServeHTTP(w, r)
			return
		}
		seed, ok := stages[stage]
		if !ok {
			http.NotFound(w, r)
			return
		}
		name := "vscode-" + stage
		seed(name)
		h.renderLoading(w, name, "jack", stage)
	}))
	t.Cleanup(srv.Close)

	for _, stage := range []string{"pulling", "creating", "starting", "waiting", "error"} {
		for _, scheme := range []string{"light", "dark"} {
			for _, device := range []struct{ name, size string }{{"desktop", "1100,760"}, {"phone", "390,780"}} {
				png := filepath.Join(dir, fmt.Sprintf("loading-%s-%s-%s.png", stage, scheme, device.name))
				args := []string{"--screenshot=" + png, "--window-size=" + device.size}
				if scheme == "dark" {
					args = append(args, "--blink-settings=preferredColorScheme=0")
				} else {
					args = append(args, "--blink-settings=preferredColorScheme=1")
				}
				chromium(t, 0, args, srv.URL+"/"+stage)
				if fi, err := os.Stat(png); err != nil || fi.Size() < 1000 {
					t.Errorf("expected a screenshot %s: %v", png, err)
				}
			}
		}
	}
}
