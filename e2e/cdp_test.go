package e2e

// A small Chrome DevTools Protocol client over internal/wstest, standard
// library only: enough to drive headless Chromium through a sign-in as a
// person would (navigate, read the page, type, click) and take screenshots.
//
// One Chromium process per browser, each with its own profile directory, so
// two browsers share no cookies. Each page is a target reached over its own
// WebSocket (/devtools/page/<id>); a call sends {"id","method","params"} and
// reads messages until the reply with that id, ignoring events.

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-director/director/internal/wstest"
)

const chromiumPath = "/usr/bin/chromium"

// needChromium skips the test without Chromium, and fails it under CI=true.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is missing; CI must install Debian's chromium package", chromiumPath)
		}
		t.Skipf("%s is missing (apt-get install -y chromium); skipping the browser test", chromiumPath)
	}
}

// chromiumBrowser is one headless Chromium with a profile of its own.
type chromiumBrowser struct {
	cmd    *exec.Cmd
	addr   string // host:port of its DevTools HTTP and WebSocket endpoint
	stderr *syncBuffer
	exited chan struct{}
}

// startChromium launches headless Chromium with a fresh profile, and extra
// flags if any, and waits for its DevTools endpoint. The test's cleanup kills
// it and its helpers.
func startChromium(t *testing.T, extra ...string) *chromiumBrowser {
	t.Helper()
	profile := t.TempDir()
	b := &chromiumBrowser{stderr: &syncBuffer{}, exited: make(chan struct{})}
	args := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--hide-scrollbars", "--user-data-dir=" + profile, "--remote-debugging-port=0",
		"--window-size=1200,800",
	}
	args = append(append(args, extra...), "about:blank")
	b.cmd = exec.Command(chromiumPath, args...)
	b.cmd.Stdout, b.cmd.Stderr = b.stderr, b.stderr
	// Chromium's helper processes stay in its group: the cleanup ends them all.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() {
		syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
	})

	// Chromium writes the port it picked, then the browser's WebSocket
	// path, into DevToolsActivePort.
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if lines := strings.Split(string(data), "\n"); err == nil && len(lines) >= 2 && lines[0] != "" {
			b.addr = net.JoinHostPort("127.0.0.1", strings.TrimSpace(lines[0]))
			return b
		}
		select {
		case <-b.exited:
			t.Fatalf("chromium exited before its DevTools endpoint was up:\n%s", b.stderr.tail(30))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium wrote no DevToolsActivePort within 30 s:\n%s", b.stderr.tail(30))
		}
	}
}

// newPage opens a tab on about:blank and connects to it.
func (b *chromiumBrowser) newPage(t *testing.T) *page {
	t.Helper()
	// Chromium refuses GET here: creating a target takes PUT.
	req, _ := http.NewRequest(http.MethodPut, "http://"+b.addr+"/json/new?about:blank", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	defer resp.Body.Close()
	var target struct {
		ID, Type, WebSocketDebuggerURL string
	}
	if err := json.NewDecoder(resp.Body).Decode(&target); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("opening a tab: status %d, %v", resp.StatusCode, err)
	}
	if target.Type != "page" || !strings.HasPrefix(target.WebSocketDebuggerURL, "ws://") {
		t.Fatalf("opening a tab: got target %+v", target)
	}
	conn, _, err := wstest.Dial(b.addr, "http://"+strings.TrimPrefix(target.WebSocketDebuggerURL, "ws://"), nil, 10*time.Second)
	if err != nil {
		t.Fatalf("connecting to the tab: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return &page{conn: conn}
}

// page is one tab. Its methods are not safe for concurrent use.
type page struct {
	conn   *wstest.Conn
	nextID int
	// onEvent, if set, gets every event read while waiting for a reply
	// (events come only for the domains enabled, e.g. Network.enable).
	onEvent func(method string, params json.RawMessage)
	// navs, if set, records the main-frame navigations (watchNavigations).
	navs *navigations
}

// cdpError is an error reply of the protocol.
type cdpError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *cdpError) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// call sends method with params and decodes the reply's result into result
// (if not nil), within 30 seconds.
func (p *page) call(method string, params, result any) error {
	p.nextID++
	id := p.nextID
	msg, err := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	if err != nil {
		return err
	}
	p.conn.SetDeadline(time.Now().Add(30 * time.Second))
	defer p.conn.SetDeadline(time.Time{})
	if err := p.conn.Write(wstest.OpText, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	for {
		data, err := p.readMessage()
		if err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		var reply struct {
			ID     int             `json:"id"`
			Result json.RawMessage `json:"result"`
			Error  *cdpError       `json:"error"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(data, &reply); err != nil {
			return fmt.Errorf("%s: decoding %.200q: %w", method, data, err)
		}
		if reply.ID == 0 && reply.Method != "" && p.onEvent != nil {
			p.onEvent(reply.Method, reply.Params)
		}
		if reply.ID != id {
			continue // an event, or the reply of an abandoned call
		}
		if reply.Error != nil {
			return fmt.Errorf("%s: %w", method, reply.Error)
		}
		if result == nil {
			return nil
		}
		return json.Unmarshal(reply.Result, result)
	}
}

// readMessage returns the next text message. wstest.Conn.Read returns single
// frames and does not report FIN, so a message fragmented into a text frame
// and continuation frames (opcode 0) is put together here: a proper prefix
// of a JSON object is never valid JSON, so frames are appended until the
// message parses. Chromium sends each message in one frame so far; large
// ones (screenshots, hundreds of KB) still fit wstest's 16 MiB limit.
func (p *page) readMessage() ([]byte, error) {
	var msg []byte
	for {
		op, payload, err := p.conn.Read()
		if err != nil {
			return nil, err
		}
		switch op {
		case wstest.OpText:
			msg = append(msg[:0], payload...)
		case 0: // continuation
			if msg == nil {
				return nil, errors.New("continuation frame without a message")
			}
			msg = append(msg, payload...)
		case wstest.OpPing:
			p.conn.Write(wstest.OpPong, payload)
			continue
		case wstest.OpClose:
			return nil, errors.New("chromium closed the connection")
		default:
			continue
		}
		if json.Valid(msg) {
			return msg, nil
		}
	}
}

// navigate loads url in the tab and waits until the navigation commits.
func (p *page) navigate(url string) error {
	var r struct {
		ErrorText string `json:"errorText"`
	}
	if err := p.call("Page.navigate", map[string]any{"url": url}, &r); err != nil {
		return err
	}
	if r.ErrorText != "" {
		return fmt.Errorf("navigating to %s: %s", url, r.ErrorText)
	}
	return nil
}

// eval evaluates a JavaScript expression in the page, awaiting a promise,
// and decodes its value into result (if not nil). An exception is an error;
// so is a page in the middle of a navigation, which callers that poll treat
// as "not yet".
func (p *page) eval(expr string, result any) error {
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.call("Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("evaluating %q: %s %s", expr, e.Text, e.Exception.Description)
	}
	if result == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, result)
}

// insertText types text into the focused element, as an input method does.
func (p *page) insertText(text string) error {
	return p.call("Input.insertText", map[string]any{"text": text}, nil)
}

// pageState is what a person sees of the page.
type pageState struct {
	URL   string `json:"url"`
	Title string `json:"title"`
	Text  string `json:"text"` // document.body.innerText
	// Parsed is whether the whole document has been parsed: before, the
	// title can be there while the body is not, or only part of it.
	Parsed bool `json:"parsed"`
}

func (s pageState) String() string {
	return fmt.Sprintf("%s (title %q):\n%s", s.URL, s.Title, s.Text)
}

// state reads the page's URL, title and visible text.
func (p *page) state() (pageState, error) {
	var s pageState
	err := p.eval(`({url: location.href, title: document.title, text: document.body ? document.body.innerText : "", parsed: document.readyState !== "loading"})`, &s)
	return s, err
}

// waitState polls the page every 100 ms until it is parsed and ok accepts
// its state, and fails the test after timeout with the last state seen.
func (p *page) waitState(t *testing.T, timeout time.Duration, what string, ok func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last pageState
	var lastErr error
	for {
		s, err := p.state()
		if err == nil && s.Parsed && ok(s) {
			return s
		}
		if err == nil {
			last = s
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s; last page: %s\nlast error: %v", timeout, what, last, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot writes a PNG of the visible page to path.
func (p *page) screenshot(path string) error {
	var r struct {
		Data string `json:"data"`
	}
	if err := p.call("Page.captureScreenshot", map[string]any{"format": "png"}, &r); err != nil {
		return err
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		return fmt.Errorf("decoding the screenshot: %w", err)
	}
	if !strings.HasPrefix(string(png), "\x89PNG\r\n\x1a\n") {
		return fmt.Errorf("the screenshot is not a PNG (%d bytes)", len(png))
	}
	return os.WriteFile(path, png, 0o644)
}

// clickButton clicks, with the mouse, the first visible button (or submit
// input) whose text contains label, as a person would: it scrolls it into
// view and presses and releases the left button over its middle.
//
// It clicks only once the page has loaded (document.readyState "complete")
// and the button is the element under that point: a page whose text is
// there while its stylesheet is still loading moves its buttons when the
// stylesheet applies, and a click at the old place would land beside the
// button and do nothing (OAuth2 Proxy's sign-in page, with Bulma, did).
func (p *page) clickButton(label string) error {
	quoted, _ := json.Marshal(label)
	var at struct {
		State string  `json:"state"` // "found", "loading", "covered" or "missing"
		X     float64 `json:"x"`
		Y     float64 `json:"y"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := p.eval(`(() => {
			if (document.readyState !== "complete") return {state: "loading"};
			const label = `+string(quoted)+`;
			for (const e of document.querySelectorAll("button, input[type=submit]")) {
				const text = (e.innerText || e.value || "").trim();
				const r = e.getBoundingClientRect();
				if (!text.includes(label) || r.width === 0 || r.height === 0) continue;
				e.scrollIntoView({block: "center"});
				const c = e.getBoundingClientRect();
				const x = c.left + c.width / 2, y = c.top + c.height / 2;
				const hit = document.elementFromPoint(x, y);
				if (!hit || (hit !== e && !e.contains(hit))) return {state: "covered"};
				return {state: "found", x: x, y: y};
			}
			return {state: "missing"};
		})()`, &at)
		if err != nil {
			return err
		}
		if at.State == "found" {
			break
		}
		if time.Now().After(deadline) {
			if at.State == "missing" {
				return fmt.Errorf("no visible button %q on the page", label)
			}
			return fmt.Errorf("button %q not clickable after 10s: page %s", label, at.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		ev := map[string]any{"type": typ, "x": at.X, "y": at.Y}
		if typ != "mouseMoved" {
			ev["button"], ev["clickCount"] = "left", 1
		}
		if err := p.call("Input.dispatchMouseEvent", ev, nil); err != nil {
			return err
		}
	}
	return nil
}

// typeInto focuses the element matching selector and types text into it.
func (p *page) typeInto(selector, text string) error {
	quoted, _ := json.Marshal(selector)
	var found bool
	if err := p.eval(`(() => { const e = document.querySelector(`+string(quoted)+`); if (!e) return false; e.focus(); return document.activeElement === e; })()`, &found); err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no focusable %s on the page", selector)
	}
	return p.insertText(text)
}
