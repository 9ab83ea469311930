package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demo is scripts/demo.sh (make demo), running.
type demo struct {
	url    string // what the browser opens, "http://127.0.0.1:<port>/"
	addr   string // where Traefik listens
	logs   string // DEMO_LOG_DIR
	cmd    *exec.Cmd
	output *syncBuffer
	exited chan struct{}
	err    error // of cmd.Wait, once exited is closed
}

// demoWorkspaceAddrs are the loopback addresses the demo's spawner hands
// out: the load test's containers hold 127.0.1.1-50:8080 in this network
// namespace, the demo's default range. The spawner reads
// SPAWNER_PROCESS_ADDRS when demo.sh passes no -process-addrs.
const demoWorkspaceAddrs = "127.0.1.200-127.0.1.254"

// startDemo starts scripts/demo.sh from the repository root, as make demo
// does, on a free port of this namespace's loopback, and waits for its ready
// file. The test's cleanup stops it if the test has not. Its workspaces are
// the spawner's echo page unless extraEnv (NAME=value, after the defaults)
// says otherwise.
func startDemo(t *testing.T, extraEnv ...string) *demo {
	t.Helper()
	began := time.Now()
	tmp := t.TempDir()
	ready := filepath.Join(tmp, "ready")
	d := &demo{
		addr:   freeAddr(),
		logs:   filepath.Join(tmp, "logs"),
		output: &syncBuffer{},
		exited: make(chan struct{}),
	}
	d.cmd = exec.Command(filepath.Join(repoRoot(), "scripts", "demo.sh"))
	d.cmd.Dir = repoRoot()
	d.cmd.Env = append(os.Environ(),
		"DEMO_ADDR="+d.addr,
		"DEMO_READY_FILE="+ready,
		"DEMO_LOG_DIR="+d.logs,
		"DEMO_USERS=otto",
		"DEMO_WORKSPACE_START_DELAY=4s",
		"SPAWNER_PROCESS_ADDRS="+demoWorkspaceAddrs,
		// The demo builds the spawner and the OIDC provider with go build.
		// TestMain built the provider outside the namespaces, so the
		// module cache holds what it needs; the spawner needs no modules.
		// Without the network here, fail at once rather than wait on the
		// module proxy.
		"GOPROXY=off",
		"DEMO_WORKSPACE=echo",
	)
	d.cmd.Env = append(d.cmd.Env, extraEnv...)
	d.cmd.Stdout, d.cmd.Stderr = d.output, d.output
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting scripts/demo.sh: %v", err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.stop(t)
		}
	})

	const timeout = 3 * time.Minute
	deadline := time.After(timeout)
	for {
		if data, err := os.ReadFile(ready); err == nil && strings.HasSuffix(string(data), "\n") {
			d.url = strings.TrimSpace(string(data))
			if want := "http://" + d.addr + "/"; d.url != want {
				t.Fatalf("the ready file says %q, want %q", d.url, want)
			}
			t.Logf("the demo is up at %s after %s; logs in %s", d.url, time.Since(began).Round(time.Millisecond), d.logs)
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("scripts/demo.sh exited (%v) before it was ready:\n%s", d.err, d.output.tail(40))
		case <-deadline:
			t.Fatalf("scripts/demo.sh not ready within %s:\n%s", timeout, d.output.tail(40))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to the demo's process group, as Ctrl-C in a terminal
// would, and waits for it to exit.
func (d *demo) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
		t.Errorf("scripts/demo.sh did not exit within 30 s of SIGTERM:\n%s", d.output.tail(20))
	}
}

// processesUnder lists the running processes whose command line mentions
// dir: everything the demo started runs from its log directory's bin/.
func processesUnder(dir string) []string {
	var found []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(data, []byte(dir)) {
			continue
		}
		found = append(found, filepath.Base(filepath.Dir(p))+": "+string(bytes.ReplaceAll(bytes.TrimRight(data, "\x00"), []byte{0}, []byte{' '})))
	}
	return found
}

// demoArtifacts is where the screenshots go: $ARTIFACTS_DIR/demo, or
// e2e/artifacts/demo (ignored by git).
func demoArtifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ARTIFACTS_DIR")
	if dir == "" {
		dir = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// workspaceStatus is the workspace page's WebSocket status and the echoes
// it received.
type workspaceStatus struct {
	Title  string   `json:"title"`
	Status string   `json:"status"`
	Echoes []string `json:"echoes"`
}

func (p *page) workspaceStatus() (workspaceStatus, error) {
	var s workspaceStatus
	err := p.eval(`(() => {
		const st = document.getElementById("status-text");
		return {title: document.title, status: st ? st.textContent : "",
			echoes: Array.from(document.querySelectorAll("#log li"), li => li.textContent)};
	})()`, &s)
	return s, err
}

// TestDemoInChromium runs make demo's stack (scripts/demo.sh) and signs in
// to it in headless Chromium as a person would: the demo URL shows OAuth2
// Proxy's sign-in page, its button leads to the provider's form, where dora
// types her name; back at the URL, the spawner's loading page names her
// workspace and refreshes itself into it, and the workspace's WebSocket
// connects through Traefik and the director. otto, in a second browser,
// lands in his own workspace, and dora still in hers. Screenshots of each
// step are kept: see demoArtifacts.
func TestDemoInChromium(t *testing.T) {
	needChromium(t)
	began := time.Now()
	artifacts := demoArtifacts(t)
	shot := func(p *page, name string) {
		t.Helper()
		path := filepath.Join(artifacts, name)
		if err := p.screenshot(path); err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		t.Logf("screenshot: %s", path)
	}

	d := startDemo(t)

	// signIn takes a fresh browser from the demo URL through OAuth2 Proxy's
	// sign-in page to the provider's form and signs in as user, typing the
	// name or clicking its button, and returns the tab on the page that
	// follows. With screenshots, it keeps one of each page.
	signIn := func(user string, typed, screenshots bool) *page {
		t.Helper()
		p := startChromium(t).newPage(t)
		if err := p.navigate(d.url); err != nil {
			t.Fatal(err)
		}
		s := p.waitState(t, 20*time.Second, "OAuth2 Proxy's sign-in page", func(s pageState) bool {
			return strings.Contains(s.Text, "Sign in with the local test provider")
		})
		if s.URL != d.url {
			t.Errorf("the sign-in page is at %s, want the demo URL %s (the errors middleware serves it in place)", s.URL, d.url)
		}
		if screenshots {
			shot(p, "signin.png")
		}
		if err := p.clickButton("Sign in with the local test provider"); err != nil {
			t.Fatalf("%v; page: %s", err, s)
		}

		s = p.waitState(t, 20*time.Second, "the provider's sign-in form", func(s pageState) bool {
			return strings.HasPrefix(s.URL, d.url+"oidc/") && strings.Contains(s.Text, "User name (preferred_username)")
		})
		if !strings.Contains(s.Text, "otto") {
			t.Errorf("the provider's form offers no button for otto (DEMO_USERS): %s", s)
		}
		if typed {
			if err := p.typeInto("#username", user); err != nil {
				t.Fatal(err)
			}
			var value string
			if err := p.eval(`document.getElementById("username").value`, &value); err != nil || value != user {
				t.Fatalf("the user name field holds %q (%v), want %q", value, err, user)
			}
			if screenshots {
				shot(p, "provider.png")
			}
			if err := p.clickButton("Sign in"); err != nil {
				t.Fatal(err)
			}
		} else if err := p.clickButton(user); err != nil {
			t.Fatal(err)
		}
		return p
	}

	// waitWorkspace waits for user's workspace in the tab, its WebSocket
	// connected and its first message echoed.
	waitWorkspace := func(p *page, user string) pageState {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		var last workspaceStatus
		for {
			ws, err := p.workspaceStatus()
			if err == nil {
				last = ws
				if ws.Title == "Workspace of "+user && ws.Status == "connected" && len(ws.Echoes) > 0 {
					break
				}
				if ws.Title == "Your workspace has stopped" {
					s, _ := p.state()
					t.Fatalf("%s's workspace stopped: %s", user, s)
				}
			}
			if time.Now().After(deadline) {
				s, _ := p.state()
				t.Fatalf("%s's workspace did not connect within 60 s: %+v; page: %s", user, last, s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if want := "echo: hello from the browser"; last.Echoes[0] != want {
			t.Errorf("%s's workspace: first echo %q, want %q", user, last.Echoes[0], want)
		}
		s, err := p.state()
		if err != nil {
			t.Fatal(err)
		}
		if s.URL != d.url {
			t.Errorf("%s's workspace is at %s, want the demo URL %s", user, s.URL, d.url)
		}
		for _, want := range []string{"Workspace of " + user + "\n", "Served by vscode-" + user + "\n"} {
			if !strings.Contains(s.Text, want) {
				t.Errorf("%s's workspace does not say %q: %s", user, strings.TrimSpace(want), s)
			}
		}
		return s
	}

	// dora types her name, sees her workspace start, then uses it.
	dora := signIn("dora", true, true)
	s := dora.waitState(t, 20*time.Second, "the loading page", func(s pageState) bool {
		// The title is there before the body is parsed: wait for both.
		return strings.HasPrefix(s.Title, "Starting your workspace") && strings.Contains(s.Text, "vscode-")
	})
	for _, want := range []string{"Starting your workspace", "Hello dora", "vscode-dora"} {
		if !strings.Contains(s.Text, want) {
			t.Errorf("the loading page does not say %q: %s", want, s)
		}
	}
	if s.URL != d.url {
		t.Errorf("the loading page is at %s, want the demo URL %s", s.URL, d.url)
	}
	shot(dora, "loading.png")
	if after, err := dora.state(); err != nil || !strings.HasPrefix(after.Title, "Starting your workspace") {
		t.Errorf("the page changed while loading.png was taken, to %q (%v): it may not show the loading page", after.Title, err)
	}
	waitWorkspace(dora, "dora")
	shot(dora, "workspace.png")

	// otto, in a browser of his own, clicks his name: his own workspace.
	otto := signIn("otto", false, false)
	s = otto.waitState(t, 20*time.Second, "otto's loading page", func(s pageState) bool {
		return strings.HasPrefix(s.Title, "Starting your workspace") || strings.HasPrefix(s.Title, "Workspace of")
	})
	if strings.Contains(s.Text, "dora") {
		t.Errorf("otto's first page after sign-in mentions dora: %s", s)
	}
	if strings.HasPrefix(s.Title, "Starting your workspace") && !strings.Contains(s.Text, "vscode-otto") {
		t.Errorf("otto's loading page does not name vscode-otto: %s", s)
	}
	s = waitWorkspace(otto, "otto")
	if strings.Contains(s.Text, "dora") {
		t.Errorf("otto's workspace mentions dora: %s", s)
	}
	shot(otto, "workspace-otto.png")

	// dora's session is untouched: a reload is still her workspace.
	if err := dora.navigate(d.url); err != nil {
		t.Fatal(err)
	}
	waitWorkspace(dora, "dora")

	// Two workspaces, on two addresses of the range given to the spawner.
	hosts, err := os.ReadFile(filepath.Join(d.logs, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	addrOf := func(name string) string {
		m := regexp.MustCompile(`(?m)^(127\.0\.1\.\d+)\s+` + regexp.QuoteMeta(name) + `$`).FindStringSubmatch(string(hosts))
		if m == nil {
			t.Errorf("the demo's hosts file has no line for %s:\n%s", name, hosts)
			return ""
		}
		return m[1]
	}
	doraAddr, ottoAddr := addrOf("vscode-dora"), addrOf("vscode-otto")
	if doraAddr == ottoAddr {
		t.Errorf("dora and otto share the workspace address %q", doraAddr)
	}

	// Stopping: SIGTERM, as Ctrl-C; the script stops everything it started,
	// the workspaces included.
	d.stop(t)
	var exit *exec.ExitError
	if !errors.As(d.err, &exit) || exit.ExitCode() != 143 {
		t.Errorf("scripts/demo.sh ended with %v, want exit status 143 (SIGTERM handled)", d.err)
	}
	if !strings.Contains(d.output.String(), "demo: stopped; logs are in "+d.logs) {
		t.Errorf("scripts/demo.sh did not report stopping:\n%s", d.output.tail(20))
	}
	if left := processesUnder(d.logs); len(left) > 0 {
		t.Errorf("processes left running after the demo stopped:\n%s", strings.Join(left, "\n"))
	}
	for _, addr := range []string{d.addr, "127.0.3.1:4180", "127.0.3.2:8090", "127.0.3.3:9000", doraAddr + ":8080", ottoAddr + ":8080"} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after the demo stopped", addr)
		}
	}
	t.Logf("screenshots in %s; the test took %s", artifacts, time.Since(began).Round(time.Millisecond))
}
