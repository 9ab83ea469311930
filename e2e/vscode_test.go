package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envCodeServer holds the path of code-server, installed by TestMain outside
// the namespaces (the install needs the npm registry); envCodeServerError
// why it could not be installed.
const (
	envCodeServer      = "E2E_CODE_SERVER"
	envCodeServerError = "E2E_CODE_SERVER_ERROR"
)

// installCodeServer runs scripts/code-server.sh (cached after the first run)
// and records the outcome for the tests inside the namespaces.
func installCodeServer() {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "code-server.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		os.Setenv(envCodeServerError, "scripts/code-server.sh: "+err.Error())
		return
	}
	os.Setenv(envCodeServer, strings.TrimSpace(string(out)))
}

// needCodeServer skips the test without code-server, and fails it under
// CI=true.
func needCodeServer(t *testing.T) {
	t.Helper()
	if os.Getenv(envCodeServer) != "" {
		return
	}
	reason := os.Getenv(envCodeServerError)
	if os.Getenv("CI") == "true" {
		t.Fatalf("code-server is not installed (%s); CI must be able to run scripts/code-server.sh", reason)
	}
	t.Skipf("code-server is not installed (%s); skipping the VS Code test", reason)
}

// wsWatch follows the WebSockets of a tab from Chromium's Network events:
// which were opened, which switched protocols, which were refused.
type wsWatch struct {
	urls     map[string]string // by request id
	status   map[string]int    // handshake status, by request id
	failures []string
	upgraded int
}

func newWSWatch() *wsWatch {
	w := &wsWatch{}
	w.reset()
	return w
}

// reset forgets everything seen so far: a navigation away closes the old
// page's sockets, which is not a refusal.
func (w *wsWatch) reset() {
	w.urls, w.status, w.failures, w.upgraded = map[string]string{}, map[string]int{}, nil, 0
}

func (w *wsWatch) event(method string, params json.RawMessage) {
	var ev struct {
		RequestID    string `json:"requestId"`
		URL          string `json:"url"`
		ErrorMessage string `json:"errorMessage"`
		ErrorText    string `json:"errorText"`
		Type         string `json:"type"`
		Response     struct {
			Status int `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(params, &ev); err != nil {
		w.failures = append(w.failures, fmt.Sprintf("%s: undecodable event: %v", method, err))
		return
	}
	switch method {
	case "Network.webSocketCreated":
		w.urls[ev.RequestID] = ev.URL
	case "Network.webSocketHandshakeResponseReceived":
		if _, ours := w.urls[ev.RequestID]; !ours {
			return
		}
		w.status[ev.RequestID] = ev.Response.Status
		if ev.Response.Status == 101 {
			w.upgraded++
		} else {
			w.failures = append(w.failures, fmt.Sprintf("%s: handshake answered %d", w.urls[ev.RequestID], ev.Response.Status))
		}
	case "Network.webSocketFrameError":
		if u, ours := w.urls[ev.RequestID]; ours && w.status[ev.RequestID] != 101 {
			w.failures = append(w.failures, fmt.Sprintf("%s: %s", u, ev.ErrorMessage))
		}
	case "Network.webSocketClosed":
		if u, ours := w.urls[ev.RequestID]; ours && w.status[ev.RequestID] == 0 {
			w.failures = append(w.failures, u+": closed before its handshake was answered")
		}
	case "Network.loadingFailed":
		if u, ours := w.urls[ev.RequestID]; ours || ev.Type == "WebSocket" {
			w.failures = append(w.failures, fmt.Sprintf("%s: %s", u, ev.ErrorText))
		}
	}
}

// check fails the test if any WebSocket was refused, or if none upgraded.
func (w *wsWatch) check(t *testing.T, when string) {
	t.Helper()
	if len(w.failures) > 0 {
		t.Errorf("%s: VS Code's WebSockets refused:\n%s", when, strings.Join(w.failures, "\n"))
	}
	if w.upgraded == 0 {
		t.Errorf("%s: no WebSocket was upgraded (%d opened)", when, len(w.urls))
	}
}

// key presses and releases one key, with modifiers (2 = Ctrl), as a
// keyboard does: VS Code reads the key's code and key code.
func (p *page) key(key, code string, keyCode, modifiers int) error {
	for _, typ := range []string{"rawKeyDown", "keyUp"} {
		if err := p.call("Input.dispatchKeyEvent", map[string]any{
			"type": typ, "key": key, "code": code, "modifiers": modifiers,
			"windowsVirtualKeyCode": keyCode, "nativeVirtualKeyCode": keyCode,
		}, nil); err != nil {
			return err
		}
	}
	return nil
}

// click presses and releases the left mouse button at x, y, count times in a
// row (2: a double click).
func (p *page) click(x, y float64, count int) error {
	if err := p.call("Input.dispatchMouseEvent", map[string]any{"type": "mouseMoved", "x": x, "y": y}, nil); err != nil {
		return err
	}
	for i := 1; i <= count; i++ {
		for _, typ := range []string{"mousePressed", "mouseReleased"} {
			ev := map[string]any{"type": typ, "x": x, "y": y, "button": "left", "clickCount": i}
			if err := p.call("Input.dispatchMouseEvent", ev, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// vscodeState is what the test reads of the workbench.
type vscodeState struct {
	Workbench bool     `json:"workbench"` // .monaco-workbench is there
	Explorer  []string `json:"explorer"`  // the explorer's rows
	StatusBar bool     `json:"statusBar"`
	Terminal  string   `json:"terminal"` // the text of the terminal's rows
	Editor    string   `json:"editor"`   // the text of the active editor
	Banner    string   `json:"banner"`   // a line of the page that speaks of reconnecting
	Title     string   `json:"title"`
}

func (s vscodeState) String() string {
	return fmt.Sprintf("workbench %v, status bar %v, title %q, explorer %q, editor %q, banner %q, terminal:\n%s",
		s.Workbench, s.StatusBar, s.Title, s.Explorer, s.Editor, s.Banner, s.Terminal)
}

func (p *page) vscodeState() (vscodeState, error) {
	var s vscodeState
	err := p.eval(`(() => {
		const q = (sel) => document.querySelector(sel);
		const rows = Array.from(document.querySelectorAll(".explorer-folders-view .monaco-list-row"), r => r.innerText.trim());
		const term = q(".terminal-wrapper.active .xterm-rows") || q(".xterm-rows");
		const editor = q(".editor-group-container.active .monaco-editor .view-lines");
		const text = document.body ? document.body.innerText : "";
		const banner = text.split("\n").find(l => /reconnect/i.test(l)) || "";
		return {workbench: !!q(".monaco-workbench"), explorer: rows, statusBar: !!q(".part.statusbar"),
			terminal: term ? term.innerText : "", editor: editor ? editor.innerText.replace(/\u00a0/g, " ") : "",
			banner: banner, title: document.title};
	})()`, &s)
	return s, err
}

// waitVSCode polls the workbench until ok accepts it, and fails the test
// after timeout with the last state seen.
func (p *page) waitVSCode(t *testing.T, timeout time.Duration, what string, ok func(vscodeState) bool) vscodeState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last vscodeState
	var lastErr error
	for {
		s, err := p.vscodeState()
		if err == nil && ok(s) {
			return s
		}
		if err == nil {
			last = s
		}
		lastErr = err
		if time.Now().After(deadline) {
			page, _ := p.state()
			t.Fatalf("waiting %s for %s; last workbench: %s\nlast error: %v\npage: %s", timeout, what, last, lastErr, page)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// locate returns the middle of the first element matching selector whose
// text is text, scrolled into view.
func (p *page) locate(selector, text string) (x, y float64, err error) {
	qs, _ := json.Marshal(selector)
	qt, _ := json.Marshal(text)
	var at struct {
		Found bool    `json:"found"`
		X     float64 `json:"x"`
		Y     float64 `json:"y"`
	}
	err = p.eval(`(() => {
		for (const e of document.querySelectorAll(`+string(qs)+`)) {
			if (e.innerText.trim() !== `+string(qt)+`) continue;
			const r = e.getBoundingClientRect();
			if (r.width === 0 || r.height === 0) continue;
			return {found: true, x: r.left + r.width / 2, y: r.top + r.height / 2};
		}
		return {found: false};
	})()`, &at)
	if err == nil && !at.Found {
		err = fmt.Errorf("no visible %s saying %q", selector, text)
	}
	return at.X, at.Y, err
}

// vscodeSession is one user's browser on the demo, with VS Code open.
type vscodeSession struct {
	t    *testing.T
	d    *demo
	user string
	p    *page
	ws   *wsWatch
}

// newVSCodeSession opens a tab in a fresh browser that follows its
// WebSockets.
func newVSCodeSession(t *testing.T, d *demo, user string) *vscodeSession {
	t.Helper()
	s := &vscodeSession{t: t, d: d, user: user, p: startChromium(t).newPage(t), ws: newWSWatch()}
	s.p.onEvent = s.ws.event
	if err := s.p.call("Network.enable", map[string]any{}, nil); err != nil {
		t.Fatal(err)
	}
	return s
}

// signInVSCode opens a fresh browser on the demo, signs in as user by
// clicking the name on the provider's form, and returns on the spawner's
// loading page (or on VS Code, if the workspace is up already).
func signInVSCode(t *testing.T, d *demo, user string) *vscodeSession {
	t.Helper()
	s := newVSCodeSession(t, d, user)
	if err := s.p.navigate(d.url); err != nil {
		t.Fatal(err)
	}
	s.p.waitState(t, 30*time.Second, "OAuth2 Proxy's sign-in page", func(st pageState) bool {
		return strings.Contains(st.Text, "Sign in with the local test provider")
	})
	// A click that lands while the page is still settling can be lost (the
	// demo test's sign-in sees the same): click again while the page stays.
	deadline := time.Now().Add(time.Minute)
	for {
		if err := s.p.clickButton("Sign in with the local test provider"); err != nil {
			t.Fatal(err)
		}
		if s.waitFor(5*time.Second, func(st pageState) bool {
			return strings.Contains(st.Text, "User name (preferred_username)")
		}) {
			break
		}
		if time.Now().After(deadline) {
			st, _ := s.p.state()
			t.Fatalf("the sign-in button led nowhere within a minute; page: %s", st)
		}
		t.Logf("the sign-in button did not lead to the provider's form within 5 s: clicking again")
	}
	if err := s.p.clickButton(user); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls the page for up to timeout and reports whether ok accepted
// its state, or, if it left the page meanwhile, its new one.
func (s *vscodeSession) waitFor(timeout time.Duration, ok func(pageState) bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if st, err := s.p.state(); err == nil && ok(st) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// workbenchTimeout bounds a start of VS Code (the process, the 5 s the
// director may keep seeing "no such host", the workbench's 11 MB script) on
// a loaded two-core machine.
const workbenchTimeout = 3 * time.Minute

// waitWorkbench waits for VS Code's workbench with its status bar, connected
// to its server (a WebSocket upgraded), and no word of reconnecting left on
// the page. A refused WebSocket fails the test at once.
func (s *vscodeSession) waitWorkbench(what string) vscodeState {
	s.t.Helper()
	return s.p.waitVSCode(s.t, workbenchTimeout, what, func(v vscodeState) bool {
		if len(s.ws.failures) > 0 {
			s.t.Fatalf("%s: VS Code's WebSockets refused:\n%s", what, strings.Join(s.ws.failures, "\n"))
		}
		return v.Workbench && v.StatusBar && v.Banner == "" && s.ws.upgraded > 0
	})
}

// runInTerminal runs line in the terminal, opening one from the command
// palette if there is none, and waits for want in its output.
func (s *vscodeSession) runInTerminal(line, want string) vscodeState {
	s.t.Helper()
	// A terminal on screen (one VS Code restored after a reload, say)?
	var at struct {
		Found bool
		X, Y  float64
	}
	if err := s.p.eval(`(() => {
		for (const e of document.querySelectorAll(".xterm-screen")) {
			const r = e.getBoundingClientRect();
			if (r.width > 0 && r.height > 0) return {Found: true, X: r.left + r.width / 2, Y: r.top + r.height / 2};
		}
		return {Found: false};
	})()`, &at); err != nil {
		s.t.Fatal(err)
	}
	if !at.Found {
		s.runCommand("Terminal: Create New Terminal")
	} else {
		// Click into it, as a person would.
		if err := s.p.click(at.X, at.Y, 1); err != nil {
			s.t.Fatal(err)
		}
	}
	s.p.waitVSCode(s.t, time.Minute, "a terminal with the focus", func(v vscodeState) bool {
		var focused bool
		s.p.eval(`!!document.activeElement && !!document.activeElement.closest(".xterm")`, &focused)
		return v.Terminal != "" && focused
	})
	if err := s.p.insertText(line); err != nil {
		s.t.Fatal(err)
	}
	if err := s.p.key("Enter", "Enter", 13, 0); err != nil {
		s.t.Fatal(err)
	}
	return s.p.waitVSCode(s.t, time.Minute, fmt.Sprintf("%q in the terminal", want), func(v vscodeState) bool {
		return strings.Contains(v.Terminal, want)
	})
}

// runCommand runs a command from the command palette (F1), clicking its
// row. VS Code registers some commands only once its connection to the
// server is up: while the palette does not offer the command, close it and
// try again.
func (s *vscodeSession) runCommand(label string) {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := s.p.key("F1", "F1", 112, 0); err != nil {
			s.t.Fatal(err)
		}
		s.p.waitState(s.t, 30*time.Second, "the command palette", func(pageState) bool {
			var open bool
			s.p.eval(`(() => { const i = document.querySelector(".quick-input-widget input"); return !!i && document.activeElement === i; })()`, &open)
			return open
		})
		if err := s.p.insertText(label); err != nil {
			s.t.Fatal(err)
		}
		x, y, err := waitLocateFor(s, 10*time.Second, ".quick-input-list .monaco-list-row .label-name", label)
		if err == nil {
			if err := s.p.click(x, y, 1); err != nil {
				s.t.Fatal(err)
			}
			return
		}
		var rows []string
		s.p.eval(`Array.from(document.querySelectorAll(".quick-input-list .monaco-list-row"), r => r.innerText)`, &rows)
		if time.Now().After(deadline) {
			s.t.Fatalf("%v; the palette shows %q", err, rows)
		}
		s.t.Logf("the palette does not offer %q yet (it shows %q): again", label, rows)
		if err := s.p.key("Escape", "Escape", 27, 0); err != nil {
			s.t.Fatal(err)
		}
	}
}

// waitLocate waits up to 30 s for locate to find the element.
func waitLocate(s *vscodeSession, selector, text string) (x, y float64, err error) {
	return waitLocateFor(s, 30*time.Second, selector, text)
}

// waitLocateFor waits up to timeout for locate to find the element.
func waitLocateFor(s *vscodeSession, timeout time.Duration, selector, text string) (x, y float64, err error) {
	deadline := time.Now().Add(timeout)
	for {
		x, y, err = s.p.locate(selector, text)
		if err == nil || time.Now().After(deadline) {
			return x, y, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// openFile double-clicks name in the explorer and waits for an editor that
// shows want.
func (s *vscodeSession) openFile(name, want string) {
	s.t.Helper()
	x, y, err := waitLocate(s, ".explorer-folders-view .monaco-list-row", name)
	if err != nil {
		v, _ := s.p.vscodeState()
		s.t.Fatalf("%v; workbench: %s", err, v)
	}
	if err := s.p.click(x, y, 2); err != nil {
		s.t.Fatal(err)
	}
	s.p.waitVSCode(s.t, time.Minute, fmt.Sprintf("%s open in an editor, saying %q", name, want), func(v vscodeState) bool {
		return strings.Contains(v.Editor, want)
	})
}

// shot keeps a screenshot of the tab among the demo's artifacts.
func (s *vscodeSession) shot(name string) {
	s.t.Helper()
	path := filepath.Join(demoArtifacts(s.t), name)
	if err := s.p.screenshot(path); err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	s.t.Logf("screenshot: %s", path)
}

// stopWorkspace ends the code-server process group of the workspace in
// root, as a container engine stops a container (SIGTERM), and waits until
// it is gone.
func stopWorkspace(t *testing.T, root string) {
	t.Helper()
	leader := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(data), "--user-data-dir\x00"+root+"/") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			leader = pid
		}
	}
	if leader == 0 {
		t.Fatalf("no running code-server with its data under %s", root)
	}
	if err := syscall.Kill(-leader, syscall.SIGTERM); err != nil {
		t.Fatalf("stopping the workspace's process group %d: %v", leader, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(leader, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the workspace's process %d still runs 30 s after SIGTERM", leader)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readEventually waits up to 30 s for path to hold want.
func readEventually(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err == nil && string(data) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q (%v), want %q", path, data, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestVSCodeInChromium runs make demo with real VS Code (code-server) as
// every workspace and uses it in headless Chromium through Traefik, OAuth2
// Proxy and the director: ada signs in, sees the loading page, then the
// workbench; a terminal runs a command; a file edited and saved in the
// editor is on disk, is there after a reload and after her workspace is
// stopped and started again. linus sees his own files only. Every
// WebSocket VS Code opens must be upgraded: one refused (a 403 from VS
// Code's origin check, or a failed dial) fails the test.
func TestVSCodeInChromium(t *testing.T) {
	needChromium(t)
	needCodeServer(t)
	began := time.Now()
	workspaces := filepath.Join(t.TempDir(), "workspaces")
	d := startDemo(t, "DEMO_WORKSPACE=vscode", "DEMO_WORKSPACE_DIR="+workspaces, "DEMO_USERS=ada,linus")

	// The terminal on the DOM renderer, whose text the test can read
	// (headless Chromium has no GPU for the WebGL one), no welcome page, no
	// "leave this page?" dialog on a reload after keyboard shortcuts, and a
	// new shell after a reload (a terminal revived in headless Chromium, the
	// proxy or not, may not take input).
	for _, name := range []string{"vscode-ada", "vscode-linus"} {
		dir := filepath.Join(workspaces, name, "data", "code-server", "User")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		settings := `{"terminal.integrated.gpuAcceleration": "off", "workbench.startupEditor": "none", "workbench.tips.enabled": false, "window.confirmBeforeClose": "never", "terminal.integrated.enablePersistentSessions": false}` + "\n"
		if err := os.WriteFile(filepath.Join(dir, "settings.json"), []byte(settings), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ada := signInVSCode(t, d, "ada")
	st := ada.p.waitState(t, 30*time.Second, "the loading page", func(s pageState) bool {
		return strings.HasPrefix(s.Title, "Starting your workspace")
	})
	if !strings.Contains(st.Text, "vscode-ada") {
		t.Errorf("the loading page does not name vscode-ada: %s", st)
	}
	ada.ws.reset() // the sign-in pages open none
	ada.waitWorkbench("ada's workbench")
	t.Logf("ada's workbench is up after %s", time.Since(began).Round(time.Millisecond))

	// A command's output in the terminal: the typed line says $((6*7)), only
	// the shell's answer says 42.
	ada.runInTerminal(`echo "answer-$((6*7))"; printf 'written-by-the-shell\n' > notes.txt`, "answer-42")
	ada.openFile("notes.txt", "written-by-the-shell")
	ada.ws.check(t, "ada's first session")

	// Edit and save in the editor: the save goes over VS Code's WebSocket.
	notes := filepath.Join(workspaces, "vscode-ada", "home", "notes.txt")
	if err := ada.p.key("a", "KeyA", 65, 2); err != nil { // Ctrl+A
		t.Fatal(err)
	}
	if err := ada.p.insertText("saved-in-the-editor"); err != nil {
		t.Fatal(err)
	}
	if err := ada.p.key("s", "KeyS", 83, 2); err != nil { // Ctrl+S
		t.Fatal(err)
	}
	readEventually(t, notes, "saved-in-the-editor")
	ada.shot("vscode.png")

	// A reload reconnects: the workbench comes back without a reconnecting
	// banner, and the file says what was saved.
	ada.ws.reset()
	if err := ada.p.navigate(d.url); err != nil {
		t.Fatal(err)
	}
	ada.waitWorkbench("ada's workbench after a reload")
	ada.openFile("notes.txt", "saved-in-the-editor")
	ada.runInTerminal(`echo "again-$((6*7))"`, "again-42")
	ada.ws.check(t, "after a reload")

	// Stopped and started again: the home folder and the file are kept.
	if err := ada.p.navigate("about:blank"); err != nil {
		t.Fatal(err)
	}
	stopWorkspace(t, filepath.Join(workspaces, "vscode-ada"))
	ada.ws.reset()
	if err := ada.p.navigate(d.url); err != nil {
		t.Fatal(err)
	}
	st = ada.p.waitState(t, time.Minute, "the stopped workspace's page, or its loading page", func(s pageState) bool {
		return strings.HasPrefix(s.Title, "Your workspace has stopped") || strings.HasPrefix(s.Title, "Starting your workspace")
	})
	if strings.HasPrefix(st.Title, "Your workspace has stopped") {
		if err := ada.p.clickButton("Restart my workspace"); err != nil {
			t.Fatalf("%v; page: %s", err, st)
		}
	}
	ada.ws.reset()
	ada.waitWorkbench("ada's workbench after a stop and a start")
	ada.openFile("notes.txt", "saved-in-the-editor")
	ada.ws.check(t, "after a stop and a start")

	// linus: his own workspace, his own files.
	linus := signInVSCode(t, d, "linus")
	linus.ws.reset()
	v := linus.waitWorkbench("linus's workbench")
	// And leaves a program running in the background of his terminal, in a
	// session of its own: stopping the workspace must end it too.
	linus.runInTerminal(`setsid sleep 600 >/dev/null 2>&1 & printf 'mine\n' > linus.txt; echo "linus-$((6*7))"`, "linus-42")
	v = linus.p.waitVSCode(t, time.Minute, "linus.txt in linus's explorer", func(v vscodeState) bool {
		return slices.Contains(v.Explorer, "linus.txt")
	})
	if slices.Contains(v.Explorer, "notes.txt") {
		t.Errorf("linus's explorer shows ada's notes.txt: %q", v.Explorer)
	}
	if _, err := os.Stat(filepath.Join(workspaces, "vscode-ada", "home", "linus.txt")); err == nil {
		t.Errorf("linus's file is in ada's home folder")
	}
	linus.ws.check(t, "linus's session")
	linus.shot("vscode-linus.png")

	// ada's session is untouched by linus's.
	v, _ = ada.p.vscodeState()
	if slices.Contains(v.Explorer, "linus.txt") {
		t.Errorf("ada's explorer shows linus's file: %q", v.Explorer)
	}

	hosts, err := os.ReadFile(filepath.Join(d.logs, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vscode-ada", "vscode-linus"} {
		if !regexp.MustCompile(`(?m)^127\.0\.1\.\d+\s+` + name + `$`).Match(hosts) {
			t.Errorf("the demo's hosts file has no line for %s:\n%s", name, hosts)
		}
	}
	d.stop(t)
	// The spawner ends each workspace's process group; a process killed
	// last may still be on its way out for a moment.
	deadline := time.Now().Add(15 * time.Second)
	for left := workspaceProcesses(workspaces); len(left) > 0; left = workspaceProcesses(workspaces) {
		if time.Now().After(deadline) {
			t.Errorf("workspace processes left running 15 s after the demo stopped:\n%s", strings.Join(left, "\n"))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the test took %s", time.Since(began).Round(time.Millisecond))
}

// workspaceProcesses lists the processes whose command line mentions dir or
// whose working directory is in it: code-server and its helpers name their
// data directory, the terminal's shells (in sessions of their own, outside
// the workspace's process group) run in the home folder.
func workspaceProcesses(dir string) []string {
	found := processesUnder(dir)
	cwds, _ := filepath.Glob("/proc/[0-9]*/cwd")
	for _, c := range cwds {
		wd, err := os.Readlink(c)
		if err != nil || (wd != dir && !strings.HasPrefix(wd, dir+"/")) {
			continue
		}
		pid := filepath.Base(filepath.Dir(c))
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(c), "cmdline"))
		found = append(found, pid+" (in "+wd+"): "+strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return found
}
