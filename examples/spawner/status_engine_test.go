package main

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// followStatus asks the status endpoint as the loading page does, until it
// says something other than "progress", and returns every answer.
func followStatus(t *testing.T, h http.Handler, name string, timeout time.Duration) []progressView {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []progressView
	var version uint64
	for time.Now().Before(deadline) {
		v := getStatus(t, h, statusRequest(name, version))
		seen = append(seen, v)
		if v.State != "progress" {
			return seen
		}
		version = v.Version
	}
	t.Fatalf("the status of %s still says progress after %s: %+v", name, timeout, seen)
	return nil
}

// TestStatusOnEngine follows starts on a real Docker Engine: a pull that
// fails (no registry is reachable) turns the page to the error page naming
// the pull, and a workspace that exits while the page waits for it to answer
// does so at once, with its exit code.
func TestStatusOnEngine(t *testing.T) {
	e := realEngine(t)
	notAnswering := func(context.Context, string) error { return errors.New("does not answer") }

	t.Run("pull fails", func(t *testing.T) {
		b := e.backend(t, DockerConfig{Image: "registry.invalid/nobody/nothing:1", Pull: true})
		e.cleanup(t, []string{"vscode-pia"}, nil)
		h := newTestHandler(t, b, HandlerConfig{Ready: notAnswering})
		if code, _ := pageLoadOf(h, "vscode-pia", "pia"); code != http.StatusServiceUnavailable {
			t.Fatalf("expected the loading page, got %d", code)
		}
		seen := followStatus(t, h, "vscode-pia", time.Minute)
		last := seen[len(seen)-1]
		if last.State != "error" {
			t.Fatalf("expected the error state, got %+v", seen)
		}
		code, body := pageLoadOf(h, "vscode-pia", "pia")
		if code != http.StatusBadGateway || !strings.Contains(body, "Downloading the image failed after") {
			t.Errorf("expected the error page to name the pull, got %d: %s", code, lastN(body, 600))
		}
	})

	t.Run("exits while starting", func(t *testing.T) {
		b := e.backend(t, DockerConfig{Image: exiterImage, Command: []string{"-sleep", "1500ms", "-code", "3", "-lines", "1"}})
		e.cleanup(t, []string{"vscode-ines"}, nil)
		h := newTestHandler(t, b, HandlerConfig{Ready: notAnswering})
		if code, _ := pageLoadOf(h, "vscode-ines", "ines"); code != http.StatusServiceUnavailable {
			t.Fatalf("expected the loading page, got %d", code)
		}
		seen := followStatus(t, h, "vscode-ines", time.Minute)
		var stages []string
		for _, v := range seen {
			if len(stages) == 0 || stages[len(stages)-1] != v.Stage {
				stages = append(stages, v.Stage)
			}
		}
		if last := seen[len(seen)-1]; last.State != "error" || !strings.Contains(strings.Join(stages, " "), stageWaiting) {
			t.Fatalf("expected the wait for the app, then the error state, got stages %q and %+v", stages, last)
		}
		st, err := b.Inspect(context.Background(), "vscode-ines")
		if err != nil || st.Status != StatusExited {
			t.Fatalf("expected vscode-ines exited, got %+v, %v", st, err)
		}
		// At once: within the engine look of a held request (500 ms) and
		// the time to answer, of the exit the engine recorded.
		if late := time.Since(st.FinishedAt); late > 5*time.Second {
			t.Errorf("the status said error %s after the exit", late)
		}
		code, body := pageLoadOf(h, "vscode-ines", "ines")
		if code != http.StatusBadGateway || !strings.Contains(body, "exited with code 3") {
			t.Errorf("expected the error page with exit code 3, got %d: %s", code, lastN(body, 600))
		}
	})
}
