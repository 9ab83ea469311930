package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/container-director/director"
	"github.com/traefik/yaegi/interp"
	"github.com/traefik/yaegi/stdlib"
)

// loadInterpreted loads the plugin from this checkout in Yaegi, the way
// Traefik's local plugin mode does, and returns New's handler for cfg.
func loadInterpreted(tb testing.TB, next http.Handler, set func(cfg reflect.Value)) http.Handler {
	tb.Helper()
	return loadPlugin(tb, repoRoot(), "github.com/container-director/director", "director", next, set)
}

// floorDir is the floor plugin: an interpreted plugin that only proxies to
// a fixed backend, the least any interpreted director can cost.
func floorDir() string { return filepath.Join(repoRoot(), "e2e", "testdata", "floor") }

// loadPlugin loads the plugin in dir, whose import path is module and
// package name pkg, in Yaegi, and returns New's handler for the
// configuration that set fills in.
func loadPlugin(tb testing.TB, dir, module, pkg string, next http.Handler, set func(cfg reflect.Value)) http.Handler {
	tb.Helper()
	gopath := tb.TempDir()
	src := filepath.Join(gopath, "src", filepath.Dir(module))
	if err := os.MkdirAll(src, 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(gopath, "src", module)); err != nil {
		tb.Fatal(err)
	}
	i := interp.New(interp.Options{GoPath: gopath, Env: os.Environ()})
	if err := i.Use(stdlib.Symbols); err != nil {
		tb.Fatal(err)
	}
	if _, err := i.Eval(`import "` + module + `"`); err != nil {
		tb.Fatalf("loading the plugin %s: %v", module, err)
	}
	create, err := i.Eval(pkg + ".CreateConfig")
	if err != nil {
		tb.Fatal(err)
	}
	cfg := create.Call(nil)[0]
	set(cfg.Elem())
	newFn, err := i.Eval(pkg + ".New")
	if err != nil {
		tb.Fatal(err)
	}
	out := newFn.Call([]reflect.Value{reflect.ValueOf(context.Background()), reflect.ValueOf(next), cfg, reflect.ValueOf("interpreted")})
	if !out[1].IsNil() {
		tb.Fatalf("New: %v", out[1].Interface())
	}
	h, ok := out[0].Interface().(http.Handler)
	if !ok {
		tb.Fatalf("New returned %T", out[0].Interface())
	}
	return h
}

// BenchmarkHotPath measures one proxied request (probe cached) through the
// interpreted plugin, the compiled plugin, the interpreted floor plugin and
// a plain compiled reverse proxy to the same container, in process: where
// the time goes, without Traefik. Run it with `make bench-hotpath`; the
// interpreted director's allocations per request go beside the floor's.
func BenchmarkHotPath(b *testing.B) {
	alice := "http://vscode-alice:8080"
	target, _ := url.Parse(alice)
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	cfg := director.CreateConfig()
	cfg.ContainerHostPrefix = "vscode"
	cfg.ProbeCacheTTL = "1h"
	compiled, err := director.New(context.Background(), next, cfg, "compiled")
	if err != nil {
		b.Fatal(err)
	}
	interpreted := loadInterpreted(b, next, func(c reflect.Value) {
		c.FieldByName("ContainerHostPrefix").SetString("vscode")
		c.FieldByName("ProbeCacheTTL").SetString("1h")
	})
	floor := loadPlugin(b, floorDir(), "github.com/container-director/floor", "floor", next, func(c reflect.Value) {
		c.FieldByName("Backend").SetString(alice)
	})
	plain := httputil.NewSingleHostReverseProxy(target)
	plain.Transport = &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}

	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"plain proxy", plain},
		{"compiled director", compiled},
		{"interpreted floor", floor},
		{"interpreted director", interpreted},
	}
	for _, hd := range handlers {
		h := hd.h
		b.Run(hd.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, "http://code.example.com/x", nil)
				req.Header.Set(identity, "alice")
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// TestInterpretedPluginLoads is a quick check that the plugin loads and
// routes under Yaegi as Traefik runs it, outside Traefik.
func TestInterpretedPluginLoads(t *testing.T) {
	h := loadInterpreted(t, http.NotFoundHandler(), func(c reflect.Value) {
		c.FieldByName("ContainerHostPrefix").SetString("vscode")
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(identity, "bob")
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"container":"bob"`) {
		t.Fatalf("status %d body %.200s, want bob's container", rec.Code, rec.Body)
	}
}
