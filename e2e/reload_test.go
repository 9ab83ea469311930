package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// traefikGoroutines reads Traefik's goroutine count from its pprof endpoint.
func traefikGoroutines(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://" + env.traefik.api + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatalf("reading goroutines: %v", err)
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	var n int
	if _, err := fmt.Sscanf(line, "goroutine profile: total %d", &n); err != nil {
		t.Fatalf("goroutine profile starts %q: %v", line, err)
	}
	return n
}

// traefikHeap runs a garbage collection in Traefik and returns the bytes of
// live heap, from its expvar memstats.
func traefikHeap(t *testing.T) uint64 {
	t.Helper()
	resp, err := http.Get("http://" + env.traefik.api + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatalf("collecting garbage: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	resp, err = http.Get("http://" + env.traefik.api + "/debug/vars")
	if err != nil {
		t.Fatalf("reading memstats: %v", err)
	}
	defer resp.Body.Close()
	var vars struct {
		Memstats struct {
			HeapAlloc uint64
		} `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		t.Fatalf("decoding /debug/vars: %v", err)
	}
	return vars.Memstats.HeapAlloc
}

// settle waits for Traefik's goroutine count to stop falling.
func settle(t *testing.T) int {
	n := traefikGoroutines(t)
	for i := 0; i < 20; i++ {
		time.Sleep(250 * time.Millisecond)
		m := traefikGoroutines(t)
		if m >= n {
			return m
		}
		n = m
	}
	return n
}

// reachedVia returns which container answered alice on reload.test.
func reachedVia(t *testing.T) string {
	resp, body := send(t, http.MethodGet, "reload.test", "/", "alice", nil, nil)
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("status %d: %.100s", resp.StatusCode, body)
	}
	var e echoed
	json.Unmarshal(body, &e)
	return e.Container
}

func TestConfigReloadLeavesTraefikFlat(t *testing.T) {
	const reloads = 50
	cfg := baseConfig()
	defer func() {
		env.traefik.writeDynamic(baseConfig())
	}()
	// Warm up: the first reloads and requests allocate lasting state.
	for _, prefix := range []string{"code", "vscode"} {
		cfg.ReloadPrefix = prefix
		if err := env.traefik.writeDynamic(cfg); err != nil {
			t.Fatal(err)
		}
		waitFor(t, expectedContainer(prefix))
	}
	goroutinesBefore, heapBefore := settle(t), traefikHeap(t)

	for i := 0; i < reloads; i++ {
		cfg.ReloadPrefix = "code"
		if i%2 == 1 {
			cfg.ReloadPrefix = "vscode"
		}
		if err := env.traefik.writeDynamic(cfg); err != nil {
			t.Fatal(err)
		}
		// The new settings take effect: the other prefix, the other container.
		waitFor(t, expectedContainer(cfg.ReloadPrefix))
	}
	goroutinesAfter, heapAfter := settle(t), traefikHeap(t)
	t.Logf("after %d reloads: goroutines %d → %d, live heap %.1f → %.1f MiB",
		reloads, goroutinesBefore, goroutinesAfter, float64(heapBefore)/(1<<20), float64(heapAfter)/(1<<20))
	// A leak of one goroutine or one connection per reload would add 50.
	if goroutinesAfter > goroutinesBefore+10 {
		t.Errorf("goroutines grew from %d to %d over %d reloads", goroutinesBefore, goroutinesAfter, reloads)
	}
	if heapAfter > heapBefore+heapBefore/2+8<<20 {
		t.Errorf("live heap grew from %d to %d bytes over %d reloads", heapBefore, heapAfter, reloads)
	}
}

func expectedContainer(prefix string) string {
	if prefix == "code" {
		return "code-alice"
	}
	return "alice"
}

// waitFor waits until reload.test sends alice to the expected container.
func waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = reachedVia(t); got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("after a reload, alice still reaches %q, want %q", got, want)
	_ = strings.TrimSpace
}
