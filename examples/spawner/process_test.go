package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the spawner binary: the process
// backend re-executes itself as "spawner workspace …", and
// TestServeAndSIGTERM runs it as the server.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "workspace" {
		os.Exit(runWorkspace(os.Args[2:], os.Stderr))
	}
	if os.Getenv("SPAWNER_TEST_SERVE") == "1" {
		os.Exit(run(nil, os.Getenv, os.Stderr))
	}
	if url := os.Getenv("SPAWNER_TEST_HTTPGET"); url != "" {
		os.Exit(httpGetHook(url))
	}
	code := m.Run()
	stopSharedEngine()
	os.Exit(code)
}

func newTestProcessBackend(t *testing.T, cfg ProcessConfig) *processBackend {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	b, err := NewProcessBackend(cfg)
	if err != nil {
		t.Fatalf("NewProcessBackend: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseAddrRange(t *testing.T) {
	tests := []struct {
		desc          string
		in            string
		expectedFirst string
		expectedLast  string
		expectedErr   bool
	}{
		{desc: "range", in: "127.0.1.1-127.0.1.254", expectedFirst: "127.0.1.1", expectedLast: "127.0.1.254"},
		{desc: "spaces", in: " 127.0.1.1 - 127.0.1.2 ", expectedFirst: "127.0.1.1", expectedLast: "127.0.1.2"},
		{desc: "single", in: "127.0.1.9", expectedFirst: "127.0.1.9", expectedLast: "127.0.1.9"},
		{desc: "reversed", in: "127.0.1.9-127.0.1.1", expectedErr: true},
		{desc: "IPv6", in: "::1", expectedErr: true},
		{desc: "garbage", in: "localhost", expectedErr: true},
	}
	for _, test := range tests {
		first, last, err := parseAddrRange(test.in)
		if test.expectedErr {
			if err == nil {
				t.Errorf("%s: expected an error", test.desc)
			}
			continue
		}
		if err != nil || first.String() != test.expectedFirst || last.String() != test.expectedLast {
			t.Errorf("%s: got %s-%s, %v", test.desc, first, last, err)
		}
	}
}

func TestAppendHostsLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts")
	// No final newline: the appended line must still start on its own.
	if err := os.WriteFile(path, []byte("127.0.0.1\tlocalhost\n# comment vscode-jack\n::1 ip6-localhost"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := appendHostsLine(path, "127.0.1.5", "vscode-jack"); err != nil {
			t.Fatalf("appendHostsLine: %v", err)
		}
	}
	if err := appendHostsLine(path, "127.0.1.6", "vscode-jill"); err != nil {
		t.Fatalf("appendHostsLine: %v", err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	expected := "127.0.0.1\tlocalhost\n# comment vscode-jack\n::1 ip6-localhost\n127.0.1.5\tvscode-jack\n127.0.1.6\tvscode-jill\n"
	if string(content) != expected {
		t.Errorf("expected\n%q\ngot\n%q", expected, content)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("the hosts file was replaced, not appended to")
	}
	if addr, ok := lookupHostsFile(path, "vscode-jill"); !ok || addr != "127.0.1.6" {
		t.Errorf("expected vscode-jill at 127.0.1.6, got %q %v", addr, ok)
	}
	if _, ok := lookupHostsFile(path, "vscode-nobody"); ok {
		t.Errorf("found a name that is only in a comment or absent")
	}
}

func TestProcessAddressAllocation(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	// A previous run mapped vscode-jill to .3: she gets it back.
	if err := os.WriteFile(hosts, []byte("127.0.1.3 vscode-jill\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newTestProcessBackend(t, ProcessConfig{Addrs: "127.0.1.2-127.0.1.3", HostsFile: hosts})
	ctx := context.Background()
	if err := b.Create(ctx, "vscode-jill", "jill"); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, "vscode-jack", "jack"); err != nil {
		t.Fatal(err)
	}
	if b.Addr("vscode-jill") != "127.0.1.3" || b.Addr("vscode-jack") != "127.0.1.2" {
		t.Errorf("unexpected addresses jill %q jack %q", b.Addr("vscode-jill"), b.Addr("vscode-jack"))
	}
	if err := b.Create(ctx, "vscode-jack", "jack"); !errors.Is(err, ErrExists) {
		t.Errorf("expected ErrExists, got %v", err)
	}
	if err := b.Create(ctx, "vscode-eve", "eve"); err == nil || !strings.Contains(err.Error(), "no free address") {
		t.Errorf("expected the range to be exhausted, got %v", err)
	}
	content, _ := os.ReadFile(hosts)
	if string(content) != "127.0.1.3 vscode-jill\n127.0.1.2\tvscode-jack\n" {
		t.Errorf("unexpected hosts file %q", content)
	}
}

func TestProcessCustomCommand(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	b := newTestProcessBackend(t, ProcessConfig{
		Addrs:   "127.0.1.40-127.0.1.49",
		Command: []string{"/bin/sh", "-c", "echo hello {user} at {addr}:{port} as $USER_NAME; echo oops >&2; exit 3"},
	})
	ctx := context.Background()
	if err := b.Create(ctx, "vscode-jack", "jack"); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, "vscode-jack"); err != nil {
		t.Fatal(err)
	}
	var st State
	waitFor(t, 10*time.Second, "the command to exit", func() bool {
		st, _ = b.Inspect(ctx, "vscode-jack")
		return st.Status == StatusExited
	})
	if st.ExitCode != 3 || st.FinishedAt.IsZero() {
		t.Errorf("expected exit code 3 with a finish time, got %+v", st)
	}
	lines, _ := b.Logs(ctx, "vscode-jack", 30)
	if strings.Join(lines, "|") != "hello jack at 127.0.1.40:8080 as jack|oops" {
		t.Errorf("unexpected logs %q", lines)
	}
}

func TestProcessMissingCommand(t *testing.T) {
	b := newTestProcessBackend(t, ProcessConfig{Addrs: "127.0.1.50", Command: []string{"/nonexistent/binary"}})
	ctx := context.Background()
	if err := b.Create(ctx, "vscode-jack", "jack"); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, "vscode-jack"); err == nil {
		t.Fatal("expected an error starting a missing binary")
	}
	st, err := b.Inspect(ctx, "vscode-jack")
	if err != nil || st.Status != StatusExited || st.ExitCode != 127 {
		t.Errorf("expected exited with 127, got %+v, %v", st, err)
	}
	if lines, _ := b.Logs(ctx, "vscode-jack", 30); len(lines) != 1 || !strings.Contains(lines[0], "/nonexistent/binary") {
		t.Errorf("expected the start failure in the log, got %q", lines)
	}
}

// TestProcessBackendWorkspace runs the real workspace mode on 127.0.1.x:
// start, answer, kill, exited with 137, restart, close.
func TestProcessBackendWorkspace(t *testing.T) {
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newTestProcessBackend(t, ProcessConfig{
		Addrs: "127.0.1.10-127.0.1.19", Port: 18080, HostsFile: hosts, StartDelay: 300 * time.Millisecond,
	})
	ctx := context.Background()
	if _, err := b.Inspect(ctx, "vscode-jack"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expected ErrNotFound, got %v", err)
	}
	if err := b.Create(ctx, "vscode-jack", "jack <admin>"); err != nil {
		t.Fatal(err)
	}
	if st, _ := b.Inspect(ctx, "vscode-jack"); st.Status != StatusCreated || !st.Managed {
		t.Errorf("expected created and managed, got %+v", st)
	}
	if err := b.Start(ctx, "vscode-jack"); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, "vscode-jack"); err != nil {
		t.Errorf("expected starting a running process to succeed, got %v", err)
	}
	waitFor(t, 15*time.Second, "the workspace to answer", func() bool {
		st, _ := b.Inspect(ctx, "vscode-jack")
		return st.Status == StatusRunning && st.Health == HealthHealthy
	})
	addr, ok := lookupHostsFile(hosts, "vscode-jack")
	if !ok || addr != "127.0.1.10" {
		t.Fatalf("expected vscode-jack in the hosts file at 127.0.1.10, got %q", addr)
	}

	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + net.JoinHostPort(addr, "18080") + "/whoami")
	if err != nil {
		t.Fatal(err)
	}
	var who struct {
		User string `json:"user"`
		Host string `json:"host"`
	}
	err = json.NewDecoder(resp.Body).Decode(&who)
	resp.Body.Close()
	if err != nil || who.User != "jack <admin>" || who.Host != "127.0.1.10:18080" {
		t.Errorf("unexpected whoami %+v, %v", who, err)
	}
	resp, err = client.Get("http://127.0.1.10:18080/")
	if err != nil {
		t.Fatal(err)
	}
	page := make([]byte, 4096)
	n, _ := resp.Body.Read(page)
	resp.Body.Close()
	if !strings.Contains(string(page[:n]), "Workspace of jack &lt;admin&gt;") {
		t.Errorf("expected the escaped workspace title, got %q", page[:n])
	}

	pid := b.pid("vscode-jack")
	if pid == 0 {
		t.Fatal("no pid")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var st State
	waitFor(t, 10*time.Second, "the killed workspace to be seen as exited", func() bool {
		st, _ = b.Inspect(ctx, "vscode-jack")
		return st.Status == StatusExited
	})
	if st.ExitCode != 128+int(syscall.SIGKILL) || st.FinishedAt.IsZero() || st.Health != "" {
		t.Errorf("expected exit code 137 and a finish time, got %+v", st)
	}
	lines, _ := b.Logs(ctx, "vscode-jack", 30)
	if !strings.Contains(strings.Join(lines, "\n"), "listening on 127.0.1.10:18080") {
		t.Errorf("expected the workspace's output in the logs, got %q", lines)
	}

	if err := b.Restart(ctx, "vscode-jack"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the restarted workspace to answer", func() bool {
		st, _ := b.Inspect(ctx, "vscode-jack")
		return st.Status == StatusRunning && st.Health == HealthHealthy
	})
	// A restart of a running workspace stops it gracefully first.
	oldPid := b.pid("vscode-jack")
	if err := b.Restart(ctx, "vscode-jack"); err != nil {
		t.Fatal(err)
	}
	if newPid := b.pid("vscode-jack"); newPid == 0 || newPid == oldPid {
		t.Errorf("expected a new process after restart, got %d (was %d)", newPid, oldPid)
	}
	content, _ := os.ReadFile(hosts)
	if strings.Count(string(content), "vscode-jack") != 1 {
		t.Errorf("expected one hosts line for vscode-jack, got %q", content)
	}

	newPid := b.pid("vscode-jack")
	b.Close()
	if st, _ := b.Inspect(ctx, "vscode-jack"); st.Status != StatusExited {
		t.Errorf("expected the workspace stopped by Close, got %+v", st)
	}
	if err := syscall.Kill(newPid, 0); err == nil {
		t.Errorf("process %d still alive after Close", newPid)
	}
	if err := b.Create(ctx, "vscode-jill", "jill"); err == nil {
		t.Errorf("expected Create to fail after Close")
	}
}
