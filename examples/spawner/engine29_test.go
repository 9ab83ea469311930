package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The one engine behaviour the real engine here (20.10, API 1.41) cannot
// show: Docker Engine 29.x refuses every API version under 1.44, as the
// daemon does it: /_ping answers unversioned with the Api-Version header,
// and a versioned path under the minimum gets 400 with the daemon's
// message. Everything else is tested against the real engine.

// engine29 serves what the spawner asks of an Engine 29.2.
func engine29(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	ping := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.52")
		w.Header().Set("Docker-Experimental", "false")
		w.Header().Set("Ostype", "linux")
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("OK"))
		}
	}
	mux.HandleFunc("/_ping", ping)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		jsonError := func(status int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
		}
		version, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v"), "/")
		if !ok {
			jsonError(http.StatusNotFound, "page not found")
			return
		}
		if minor, err := strconv.Atoi(strings.TrimPrefix(version, "1.")); err != nil || minor < 44 {
			jsonError(http.StatusBadRequest, fmt.Sprintf("client version %s is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version", version))
			return
		}
		switch {
		case r.Method == http.MethodGet && strings.HasPrefix(rest, "containers/") && strings.HasSuffix(rest, "/json"):
			name := strings.TrimSuffix(strings.TrimPrefix(rest, "containers/"), "/json")
			jsonError(http.StatusNotFound, "No such container: "+name)
		case r.Method == http.MethodGet && rest == "networks/users":
			_ = json.NewEncoder(w).Encode(map[string]any{"Name": "users", "Id": "0123", "Driver": "bridge", "Scope": "local"})
		default:
			jsonError(http.StatusNotImplemented, "not served by this stand-in: "+r.Method+" "+r.URL.Path)
		}
	})
	srv := &http.Server{Handler: mux}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "unix://" + sock
}

func TestDockerEngine29(t *testing.T) {
	host := engine29(t)
	ctx := context.Background()

	b, err := NewDockerBackend(DockerConfig{Host: host, Network: "users"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.CheckNetwork(ctx); err != nil {
		t.Errorf("expected the network found through a negotiated version, got %v", err)
	}
	if _, err := b.Inspect(ctx, "vscode-jack"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected ErrNotFound, got %v", err)
	}
	if v := b.APIVersion(); v != "1.52" {
		t.Errorf("expected API 1.52 negotiated, got %q", v)
	}

	// A version fixed under 1.44 is refused, as the hand-written client's
	// 1.41 was: the page load gets the unavailable page, without the
	// engine's text.
	old, err := NewDockerBackend(DockerConfig{Host: host, Network: "users", APIVersion: "1.41"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if _, err := old.Inspect(ctx, "vscode-jack"); err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "too old") {
		t.Errorf("expected the engine's refusal of 1.41, got %v", err)
	}
	h := newTestHandler(t, old, HandlerConfig{})
	w := serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "workspace service is unavailable") ||
		strings.Contains(w.Body.String(), "too old") {
		t.Errorf("expected the unavailable page without the engine's text, got %d %s", w.Code, lastN(w.Body.String(), 300))
	}
}
