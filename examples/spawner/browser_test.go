package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const chromiumPath = "/usr/bin/chromium"

// directorStandIn plays the director for one signed-in user: it proxies to
// the user's "container" when that answers a dial, else to the spawner with
// X-Container-Name and the identity header.
type directorStandIn struct {
	user, name string
	hostsFile  string
	port       int
	spawner    *url.URL

	mu   sync.Mutex
	sent []string // where each request for "/" went: "spawner" or "container"
}

func (d *directorStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r.Header.Del(containerNameHeader)
	r.Header.Set("X-Forwarded-Preferred-Username", d.user)
	if addr, ok := lookupHostsFile(d.hostsFile, d.name); ok {
		target := net.JoinHostPort(addr, strconv.Itoa(d.port))
		if c, err := net.DialTimeout("tcp", target, 500*time.Millisecond); err == nil {
			c.Close()
			d.record(r, "container")
			d.proxy(&url.URL{Scheme: "http", Host: target}).ServeHTTP(w, r)
			return
		}
	}
	d.record(r, "spawner")
	r.Header.Set(containerNameHeader, d.name)
	d.proxy(d.spawner).ServeHTTP(w, r)
}

func (d *directorStandIn) record(r *http.Request, where string) {
	if r.URL.Path != "/" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sent = append(d.sent, where)
}

// history returns where the page requests went so far.
func (d *directorStandIn) history() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.sent...)
}

func (d *directorStandIn) proxy(target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
	}
}

// chromium runs headless Chromium with args plus url and returns stdout.
func chromium(t *testing.T, budget time.Duration, extra []string, target string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir(), "--window-size=1200,800",
	}
	if budget > 0 {
		args = append(args, "--virtual-time-budget="+strconv.Itoa(int(budget/time.Millisecond)))
	}
	args = append(append(args, extra...), target)
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Chromium's helper processes stay in its group: end them all.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("chromium %q: %v\nstderr:\n%s", target, err, lastN(stderr.String(), 2000))
	}
	return stdout.String()
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func artifactsDir(t *testing.T) string {
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowser loads a user's workspace in headless Chromium through a
// director stand-in: the loading page first, which asks the status endpoint
// until the workspace answers and then loads the workspace itself, once;
// and the error page of a workspace that died.
func TestBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; CI must install Debian's chromium package", chromiumPath)
		}
		t.Skipf("%s is missing (apt-get install -y chromium); skipping the browser test", chromiumPath)
	}
	artifacts := artifactsDir(t)
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const port = 18082
	backend := newTestProcessBackend(t, ProcessConfig{
		Addrs: "127.0.1.20-127.0.1.29", Port: port, HostsFile: hosts, StartDelay: 4500 * time.Millisecond,
	})
	h := newTestHandler(t, backend, HandlerConfig{})
	spawner := httptest.NewServer(h)
	t.Cleanup(spawner.Close)
	spawnerURL, _ := url.Parse(spawner.URL)
	newDirector := func(user string) (*directorStandIn, string) {
		d := &directorStandIn{user: user, name: "vscode-" + user, hostsFile: hosts, port: port, spawner: spawnerURL}
		srv := httptest.NewServer(d)
		t.Cleanup(srv.Close)
		return d, srv.URL
	}

	// alice: her first load gets the loading page and creates her
	// workspace; the meta refresh takes the same tab to the workspace once
	// it answers.
	aliceDirector, alice := newDirector("alice")
	alice += "/?folder=/home/alice"
	dom := chromium(t, 300*time.Second, []string{"--dump-dom"}, alice)
	if !strings.Contains(dom, "Workspace of alice") {
		t.Fatalf("expected the DOM to end as alice's workspace, got:\n%s", lastN(dom, 3000))
	}
	// The page learns from the status endpoint when the workspace answers
	// and loads once: the meta refresh (every 2 s) would have reloaded the
	// spawner's page twice more in the 4.5 s the workspace takes.
	history := aliceDirector.history()
	if strings.Join(history, " ") != "spawner container" {
		t.Errorf("expected the spawner's page, then the workspace, and no reload between, got %q", history)
	}
	t.Logf("alice's tab loaded the page %d times: %q", len(history), history)
	workspacePNG := filepath.Join(artifacts, "workspace.png")
	chromium(t, 5*time.Second, []string{"--screenshot=" + workspacePNG}, alice)

	// carol: a screenshot of the loading page right after her first load.
	_, carol := newDirector("carol")
	loadingPNG := filepath.Join(artifacts, "loading.png")
	chromium(t, 0, []string{"--screenshot=" + loadingPNG}, carol)
	for _, png := range []string{workspacePNG, loadingPNG} {
		if fi, err := os.Stat(png); err != nil || fi.Size() == 0 {
			t.Errorf("expected a screenshot %s: %v", png, err)
		}
	}

	// bob: his workspace runs, then dies; the error page shows why.
	_, bob := newDirector("bob")
	chromium(t, 0, []string{"--dump-dom"}, bob)
	waitFor(t, 15*time.Second, "bob's workspace to answer", func() bool {
		st, err := backend.Inspect(context.Background(), "vscode-bob")
		return err == nil && st.Health == HealthHealthy
	})
	if err := syscall.Kill(backend.pid("vscode-bob"), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "bob's workspace to exit", func() bool {
		st, _ := backend.Inspect(context.Background(), "vscode-bob")
		return st.Status == StatusExited
	})
	dom = chromium(t, 0, []string{"--dump-dom"}, bob)
	for _, expected := range []string{"Your workspace has stopped", "137", "Restart my workspace", "listening on 127.0.1."} {
		if !strings.Contains(dom, expected) {
			t.Errorf("expected bob's error page to contain %q, got:\n%s", expected, lastN(dom, 3000))
		}
	}
	chromium(t, 0, []string{"--screenshot=" + filepath.Join(artifacts, "error.png")}, bob)
	t.Logf("screenshots in %s", artifacts)
}
