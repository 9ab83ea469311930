package main

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory Backend that counts calls.
type fakeBackend struct {
	mu          sync.Mutex
	containers  map[string]State
	logs        map[string][]string
	createDelay time.Duration
	createErr   error
	conflict    bool // Create answers ErrExists and a running managed container appears
	inspectErr  error
	creates     int
	starts      int
	restarts    int
	logReads    int
	stops       int
	removes     int
	endpoint    string
	users       []string
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{containers: map[string]State{}, logs: map[string][]string{}}
}

func (f *fakeBackend) Inspect(_ context.Context, name string) (State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inspectErr != nil {
		return State{}, f.inspectErr
	}
	st, ok := f.containers[name]
	if !ok {
		return State{}, ErrNotFound
	}
	return st, nil
}

func (f *fakeBackend) Create(_ context.Context, name, user string) error {
	time.Sleep(f.createDelay)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	f.users = append(f.users, user)
	if f.createErr != nil {
		return f.createErr
	}
	if f.conflict {
		f.containers[name] = State{Name: name, Status: StatusRunning, Managed: true, User: user, StartedAt: time.Now()}
		return ErrExists
	}
	if _, ok := f.containers[name]; ok {
		return ErrExists
	}
	f.containers[name] = State{Name: name, Status: StatusCreated, Managed: true, User: user}
	return nil
}

func (f *fakeBackend) Start(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts++
	st, ok := f.containers[name]
	if !ok {
		return ErrNotFound
	}
	if !st.Managed {
		return ErrUnmanaged
	}
	st.Status, st.StartedAt = StatusRunning, time.Now()
	f.containers[name] = st
	return nil
}

func (f *fakeBackend) Restart(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts++
	st, ok := f.containers[name]
	if !ok {
		return ErrNotFound
	}
	if !st.Managed {
		return ErrUnmanaged
	}
	st.Status, st.StartedAt, st.ExitCode = StatusRunning, time.Now(), 0
	f.containers[name] = st
	return nil
}

func (f *fakeBackend) Logs(_ context.Context, name string, n int) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logReads++
	lines := f.logs[name]
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

func (f *fakeBackend) Stop(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops++
	st, ok := f.containers[name]
	if !ok {
		return ErrNotFound
	}
	st.Status, st.ExitCode = StatusExited, 143
	f.containers[name] = st
	return nil
}

func (f *fakeBackend) Remove(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removes++
	delete(f.containers, name)
	return nil
}

func (f *fakeBackend) List(_ context.Context) ([]State, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inspectErr != nil {
		return nil, f.inspectErr
	}
	var out []State
	for _, st := range f.containers {
		if st.Managed {
			out = append(out, st)
		}
	}
	return out, nil
}

func (f *fakeBackend) Endpoint(string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.endpoint
}

func (f *fakeBackend) counts() (creates, starts, restarts, logReads int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates, f.starts, f.restarts, f.logReads
}

// set puts a container; a managed one without a user is the user its name
// says.
func (f *fakeBackend) set(st State) {
	if st.Managed && st.User == "" {
		st.User = strings.TrimPrefix(st.Name, "vscode-")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.containers[st.Name] = st
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestHandler(t *testing.T, b Backend, cfg HandlerConfig) *handler {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	h, err := NewHandler(b, cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

// waitIdle waits until no operation is in progress.
func waitIdle(t *testing.T, h *handler) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		n := len(h.ops)
		h.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("operations still in progress after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pageLoad is a browser navigation as Chromium sends it.
func pageLoad(target, name string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, target, nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	r.Header.Set("Sec-Fetch-Mode", "navigate")
	r.Header.Set("Sec-Fetch-Dest", "document")
	if name != "" {
		r.Header.Set(containerNameHeader, name)
	}
	return r
}

func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestNewHandlerConfig(t *testing.T) {
	tests := []struct {
		desc        string
		cfg         HandlerConfig
		expectedErr string
	}{
		{desc: "defaults", cfg: HandlerConfig{}},
		{desc: "custom prefix", cfg: HandlerConfig{Prefix: "ws2"}},
		{desc: "prefix with a dot", cfg: HandlerConfig{Prefix: "a.b"}, expectedErr: "prefix"},
		{desc: "prefix ending in a dash", cfg: HandlerConfig{Prefix: "vscode-"}, expectedErr: "prefix"},
		{desc: "upper-case prefix", cfg: HandlerConfig{Prefix: "VSCode"}, expectedErr: "prefix"},
		{desc: "negative grace", cfg: HandlerConfig{StartGrace: -time.Second}, expectedErr: "start-grace"},
	}
	for _, test := range tests {
		h, err := NewHandler(newFakeBackend(), test.cfg)
		if test.expectedErr == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", test.desc, err)
				continue
			}
			h.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.expectedErr) {
			t.Errorf("%s: expected an error naming %q, got %v", test.desc, test.expectedErr, err)
		}
	}
}

func TestBadContainerName(t *testing.T) {
	tests := []struct {
		desc    string
		headers []string
	}{
		{desc: "missing"},
		{desc: "several", headers: []string{"vscode-jack", "vscode-jill"}},
		{desc: "empty", headers: []string{""}},
		{desc: "prefix only", headers: []string{"vscode-"}},
		{desc: "prefix without dash", headers: []string{"vscode"}},
		{desc: "other prefix", headers: []string{"jupyter-jack"}},
		{desc: "prefix as substring", headers: []string{"vscodejack"}},
		{desc: "upper case", headers: []string{"vscode-Jack"}},
		{desc: "dot", headers: []string{"vscode-jack.evil.com"}},
		{desc: "colon", headers: []string{"vscode-jack:22"}},
		{desc: "slash", headers: []string{"vscode-jack/x"}},
		{desc: "trailing dash", headers: []string{"vscode-jack-"}},
		{desc: "space", headers: []string{"vscode-ja ck"}},
		{desc: "comma list", headers: []string{"vscode-jack, vscode-jill"}},
		{desc: "too long", headers: []string{"vscode-" + strings.Repeat("a", 57)}},
	}
	for _, test := range tests {
		b := newFakeBackend()
		h := newTestHandler(t, b, HandlerConfig{})
		r := pageLoad("/", "")
		for _, v := range test.headers {
			r.Header.Add(containerNameHeader, v)
		}
		w := serve(h, r)
		if w.Code != http.StatusBadRequest {
			t.Errorf("%s: expected 400, got %d", test.desc, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: expected plain text, got %q", test.desc, ct)
		}
		waitIdle(t, h)
		if c, s, r, _ := b.counts(); c+s+r != 0 {
			t.Errorf("%s: expected no backend action, got %d creates %d starts %d restarts", test.desc, c, s, r)
		}
	}
}

func TestValidContainerNames(t *testing.T) {
	for _, name := range []string{"vscode-jack", "vscode-j", "vscode-jack-2", "vscode-" + strings.Repeat("a", 56), "vscode-0"} {
		b := newFakeBackend()
		h := newTestHandler(t, b, HandlerConfig{})
		w := serve(h, pageLoad("/", name))
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Starting your workspace") {
			t.Errorf("%q: expected the loading page, got %d %q", name, w.Code, w.Body.String())
		}
	}
}

func TestClassification(t *testing.T) {
	tests := []struct {
		desc            string
		method          string
		headers         map[string]string
		body            string
		expectedPage    bool
		expectedCreates int
	}{
		{
			desc: "navigation", method: http.MethodGet,
			headers:      map[string]string{"Accept": "text/html,*/*;q=0.8", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
			expectedPage: true, expectedCreates: 1,
		},
		{
			desc: "old browser without fetch metadata", method: http.MethodGet,
			headers:      map[string]string{"Accept": "text/html"},
			expectedPage: true, expectedCreates: 1,
		},
		{
			desc: "document without text/html in Accept", method: http.MethodGet,
			headers:      map[string]string{"Accept": "*/*", "Sec-Fetch-Dest": "document"},
			expectedPage: true, expectedCreates: 1,
		},
		{
			desc: "HEAD navigation", method: http.MethodHead,
			headers:      map[string]string{"Accept": "text/html"},
			expectedPage: true, expectedCreates: 1,
		},
		{
			desc: "fetch", method: http.MethodGet,
			headers: map[string]string{"Accept": "text/html", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
		},
		{
			desc: "XHR for JSON", method: http.MethodGet,
			headers: map[string]string{"Accept": "application/json"},
		},
		{
			desc: "no Accept", method: http.MethodGet,
		},
		{
			desc: "WebSocket upgrade", method: http.MethodGet,
			headers: map[string]string{"Accept": "text/html", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-Fetch-Mode": "websocket"},
		},
		{
			desc: "WebSocket upgrade without fetch metadata", method: http.MethodGet,
			headers: map[string]string{"Accept": "text/html", "Upgrade": "websocket", "Connection": "Upgrade"},
		},
		{
			desc: "application form post", method: http.MethodPost,
			headers: map[string]string{"Accept": "text/html", "Content-Type": "application/x-www-form-urlencoded", "Sec-Fetch-Mode": "navigate"},
			body:    "q=1",
		},
		{
			desc: "JSON post", method: http.MethodPost,
			headers: map[string]string{"Accept": "text/html", "Content-Type": "application/json"},
			body:    `{"a":1}`,
		},
		{
			desc: "DELETE", method: http.MethodDelete,
			headers: map[string]string{"Accept": "text/html"},
		},
	}
	for _, test := range tests {
		b := newFakeBackend()
		h := newTestHandler(t, b, HandlerConfig{})
		r := httptest.NewRequest(test.method, "/some/page?x=1", strings.NewReader(test.body))
		r.Header.Set(containerNameHeader, "vscode-jack")
		for k, v := range test.headers {
			r.Header.Set(k, v)
		}
		w := serve(h, r)
		if w.Code != http.StatusServiceUnavailable {
			t.Errorf("%s: expected 503, got %d", test.desc, w.Code)
		}
		if w.Header().Get("Retry-After") != "2" || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: expected Retry-After 2 and no-store, got %q and %q", test.desc,
				w.Header().Get("Retry-After"), w.Header().Get("Cache-Control"))
		}
		ct := w.Header().Get("Content-Type")
		if test.expectedPage && !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: expected HTML, got %q", test.desc, ct)
		}
		if !test.expectedPage && (!strings.HasPrefix(ct, "text/plain") || strings.Contains(w.Body.String(), "<")) {
			t.Errorf("%s: expected short plain text, got %q: %q", test.desc, ct, w.Body.String())
		}
		waitIdle(t, h)
		if creates, _, _, _ := b.counts(); creates != test.expectedCreates {
			t.Errorf("%s: expected %d creates, got %d", test.desc, test.expectedCreates, creates)
		}
	}
}

func TestNotReadyReportsState(t *testing.T) {
	tests := []struct {
		desc     string
		state    *State
		expected string
	}{
		{desc: "not found", expected: "not running; open it in the browser"},
		{desc: "starting", state: &State{Status: StatusRunning, Managed: true, StartedAt: time.Now()}, expected: "is starting"},
		{desc: "exited", state: &State{Status: StatusExited, Managed: true, ExitCode: 3}, expected: "exit code 3)); reload the page to see why"},
		{desc: "stopped cleanly", state: &State{Status: StatusExited, Managed: true, ExitCode: 143}, expected: "is stopped (exited (exit code 143)); open it in the browser to start it"},
		{desc: "unmanaged", state: &State{Status: StatusRunning}, expected: "not managed"},
	}
	for _, test := range tests {
		b := newFakeBackend()
		if test.state != nil {
			st := *test.state
			st.Name = "vscode-jack"
			b.set(st)
		}
		h := newTestHandler(t, b, HandlerConfig{})
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		r.Header.Set(containerNameHeader, "vscode-jack")
		r.Header.Set("Accept", "application/json")
		w := serve(h, r)
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), test.expected) {
			t.Errorf("%s: expected 503 saying %q, got %d %q", test.desc, test.expected, w.Code, w.Body.String())
		}
		if c, s, rs, _ := b.counts(); c+s+rs != 0 {
			t.Errorf("%s: expected no backend action", test.desc)
		}
	}
}

func TestOneCreateForConcurrentPageLoads(t *testing.T) {
	b := newFakeBackend()
	b.createDelay = 50 * time.Millisecond
	h := newTestHandler(t, b, HandlerConfig{})
	const tabs = 30
	codes := make(chan int, tabs)
	var wg sync.WaitGroup
	for i := 0; i < tabs; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := serve(h, pageLoad("/", "vscode-jack"))
			if !strings.Contains(w.Body.String(), "Starting your workspace") {
				codes <- -1
				return
			}
			codes <- w.Code
		}()
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusServiceUnavailable {
			t.Errorf("expected every tab to get the loading page (503), got %d", code)
		}
	}
	waitIdle(t, h)
	// More reloads after the create: still one create, one start.
	for i := 0; i < 5; i++ {
		serve(h, pageLoad("/", "vscode-jack"))
	}
	waitIdle(t, h)
	creates, starts, _, _ := b.counts()
	if creates != 1 || starts != 1 {
		t.Errorf("expected 1 create and 1 start, got %d and %d", creates, starts)
	}
}

func TestCreateConflictTreatedAsExists(t *testing.T) {
	b := newFakeBackend()
	b.conflict = true
	h := newTestHandler(t, b, HandlerConfig{})
	w := serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Starting your workspace") {
		t.Fatalf("expected the loading page, got %d", w.Code)
	}
	waitIdle(t, h)
	if _, ok := h.recentFailure("vscode-jack"); ok {
		t.Errorf("a name conflict was remembered as a failure")
	}
	w = serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), `aria-current="step"><span class="mark" aria-hidden="true">3</span><span>Waiting for the app`) {
		t.Errorf("expected the loading page at stage 3, got %d %q", w.Code, w.Body.String())
	}
	if creates, starts, _, _ := b.counts(); creates != 1 || starts != 0 {
		t.Errorf("expected 1 create and no start of a running container, got %d and %d", creates, starts)
	}
}

func TestLoadingPage(t *testing.T) {
	b := newFakeBackend()
	h := newTestHandler(t, b, HandlerConfig{})
	w := serve(h, pageLoad("/project/?folder=%2Fhome", "vscode-jack"))
	body := w.Body.String()
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("expected 503, got %d", w.Code)
	}
	for header, expected := range map[string]string{
		"Retry-After":   "2",
		"Cache-Control": "no-store",
		"Content-Type":  "text/html; charset=utf-8",
	} {
		if got := w.Header().Get(header); got != expected {
			t.Errorf("expected %s %q, got %q", header, expected, got)
		}
	}
	for _, expected := range []string{
		// Without JavaScript, the page reloads itself; with it, it asks
		// the status endpoint instead.
		`<noscript><meta http-equiv="refresh" content="2"></noscript>`,
		"vscode-jack",
		"Hello jack",
		`<li class="current" aria-current="step"><span class="mark" aria-hidden="true">1</span><span>Creating the container</span></li>`,
		`<li class="todo"><span class="mark" aria-hidden="true">3</span><span>Waiting for the app to answer</span></li>`,
		`role="status" aria-live="polite">Creating the container…</p>`,
		`var statusPath = "/.container-director/status", spawnerHeader = "X-Container-Spawner"`,
	} {
		if !strings.Contains(body, expected) {
			t.Errorf("expected the loading page to contain %q", expected)
		}
	}
	// The CSP nonce of the header is the script's.
	csp := w.Header().Get("Content-Security-Policy")
	start := strings.Index(csp, "'nonce-")
	if start < 0 {
		t.Fatalf("expected a script nonce in the CSP, got %q", csp)
	}
	nonce := csp[start+len("'nonce-"):]
	nonce = nonce[:strings.Index(nonce, "'")]
	if !strings.Contains(body, `<script nonce="`+nonce+`">`) {
		t.Errorf("expected the inline script to carry the nonce %q", nonce)
	}
	// No external assets.
	for _, external := range []string{"src=", "href=", "@import", "url("} {
		if strings.Contains(body, external) {
			t.Errorf("expected a self-contained page, found %q", external)
		}
	}
}

func TestUserName(t *testing.T) {
	tests := []struct {
		desc     string
		header   string
		values   []string
		expected string
	}{
		{desc: "from the identity header", values: []string{"Jack Smith"}, expected: "Jack Smith"},
		{desc: "absent", expected: "jack"},
		{desc: "several values", values: []string{"a", "b"}, expected: "jack"},
		{desc: "control character", values: []string{"ja\x00ck"}, expected: "jack"},
		{desc: "forwardAuth header", header: "X-Auth-Request-Preferred-Username", values: []string{"jack@example.com"}, expected: "jack@example.com"},
	}
	for _, test := range tests {
		b := newFakeBackend()
		h := newTestHandler(t, b, HandlerConfig{UsernameHeader: test.header})
		r := pageLoad("/", "vscode-jack")
		header := test.header
		if header == "" {
			header = "X-Forwarded-Preferred-Username"
		}
		for _, v := range test.values {
			r.Header.Add(header, v)
		}
		serve(h, r)
		waitIdle(t, h)
		if len(b.users) != 1 || b.users[0] != test.expected {
			t.Errorf("%s: expected user %q, got %q", test.desc, test.expected, b.users)
		}
	}
}

func TestPageLoadStates(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		desc           string
		state          State
		expectedCode   int
		expectedText   string
		expectedStarts int
	}{
		{
			desc:         "running within the grace",
			state:        State{Status: StatusRunning, StartedAt: now.Add(-10 * time.Second)},
			expectedCode: http.StatusServiceUnavailable, expectedText: `<span class="mark" aria-hidden="true">3</span><span>Waiting for the app`,
		},
		{
			desc:         "health starting",
			state:        State{Status: StatusRunning, Health: HealthStarting, StartedAt: now.Add(-10 * time.Second)},
			expectedCode: http.StatusServiceUnavailable, expectedText: `aria-current="step"><span class="mark" aria-hidden="true">2</span><span>Starting it`,
		},
		{
			desc:         "created, never started",
			state:        State{Status: StatusCreated},
			expectedCode: http.StatusServiceUnavailable, expectedText: `<span>Starting it</span>`, // current, or done if the start was quick
			expectedStarts: 1,
		},
		{
			desc:         "running past the grace",
			state:        State{Status: StatusRunning, StartedAt: now.Add(-2 * time.Minute)},
			expectedCode: http.StatusBadGateway, expectedText: "does not accept connections",
		},
		{
			desc:         "unhealthy",
			state:        State{Status: StatusRunning, Health: HealthUnhealthy, StartedAt: now.Add(-10 * time.Second)},
			expectedCode: http.StatusBadGateway, expectedText: "health check fails",
		},
		{
			desc:         "restarting",
			state:        State{Status: StatusRestarting, ExitCode: 1},
			expectedCode: http.StatusBadGateway, expectedText: "keeps restarting",
		},
		{
			desc:         "paused",
			state:        State{Status: StatusPaused},
			expectedCode: http.StatusBadGateway, expectedText: "is paused",
		},
	}
	for _, test := range tests {
		b := newFakeBackend()
		st := test.state
		st.Name, st.Managed = "vscode-jack", true
		b.set(st)
		h := newTestHandler(t, b, HandlerConfig{Now: func() time.Time { return now }})
		w := serve(h, pageLoad("/", "vscode-jack"))
		if w.Code != test.expectedCode || !strings.Contains(w.Body.String(), test.expectedText) {
			t.Errorf("%s: expected %d with %q, got %d %q", test.desc, test.expectedCode, test.expectedText, w.Code, w.Body.String())
		}
		waitIdle(t, h)
		if creates, starts, restarts, _ := b.counts(); creates != 0 || starts != test.expectedStarts || restarts != 0 {
			t.Errorf("%s: expected %d starts and nothing else, got %d creates %d starts %d restarts",
				test.desc, test.expectedStarts, creates, starts, restarts)
		}
	}
}

func TestErrorPage(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	b := newFakeBackend()
	b.set(State{
		Name: "vscode-jack", Status: StatusExited, Managed: true, ExitCode: 3,
		StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-90 * time.Second),
	})
	var lines []string
	for i := 0; i < 40; i++ {
		lines = append(lines, "line "+strings.Repeat("x", i%3))
	}
	lines = append(lines, `<script>alert("pwned")</script>`, "fatal: out of memory")
	b.logs["vscode-jack"] = lines
	h := newTestHandler(t, b, HandlerConfig{Now: func() time.Time { return now }})
	w := serve(h, pageLoad("/", "vscode-jack"))
	body := w.Body.String()
	if w.Code != http.StatusBadGateway {
		t.Errorf("expected 502, got %d", w.Code)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("expected no-store, got %q", w.Header().Get("Cache-Control"))
	}
	for _, expected := range []string{
		"Your workspace has stopped",
		"<dd>vscode-jack</dd>",
		`<span class="state">exited</span>`,
		"<dt>Exit code</dt><dd>3</dd>",
		"2026-05-01 11:58:30 UTC (1m30s ago)",
		"Last 30 log lines",
		"&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;",
		"fatal: out of memory",
		`<button type="submit">Restart my workspace</button>`,
		`name="container-director-action" value="restart"`,
		`name="container-director-token" value="` + h.token("vscode-jack") + `"`,
	} {
		if !strings.Contains(body, expected) {
			t.Errorf("expected the error page to contain %q", expected)
		}
	}
	if strings.Contains(body, `<script>alert`) {
		t.Errorf("a log line reached the page unescaped")
	}
	if strings.Count(body, "line ") != 28 {
		t.Errorf("expected 28 earlier log lines plus the last 2, got %d", strings.Count(body, "line "))
	}
	if creates, starts, restarts, _ := b.counts(); creates+starts+restarts != 0 {
		t.Errorf("expected the error page to change nothing")
	}
}

func TestUnmanagedContainerUntouched(t *testing.T) {
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", Status: StatusExited, ExitCode: 1})
	b.logs["vscode-jack"] = []string{"secret of someone else"}
	h := newTestHandler(t, b, HandlerConfig{})
	w := serve(h, pageLoad("/", "vscode-jack"))
	body := w.Body.String()
	if w.Code != http.StatusBadGateway || !strings.Contains(body, "not managed by the spawner") {
		t.Errorf("expected the not-managed error page, got %d %q", w.Code, body)
	}
	if strings.Contains(body, "<form") || strings.Contains(body, "secret") {
		t.Errorf("expected no restart button and no logs on the not-managed page")
	}
	// A restart post with a valid token is refused too.
	r := restartPost("/", "vscode-jack", h.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := serve(h, r); w.Code != http.StatusForbidden {
		t.Errorf("expected 403 for a restart of an unmanaged container, got %d", w.Code)
	}
	waitIdle(t, h)
	if creates, starts, restarts, logReads := b.counts(); creates+starts+restarts+logReads != 0 {
		t.Errorf("expected the unmanaged container untouched, got %d creates %d starts %d restarts %d log reads",
			creates, starts, restarts, logReads)
	}
}

func restartPost(target, name, token string) *http.Request {
	form := url.Values{actionField: {"restart"}, tokenField: {token}}
	r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set(containerNameHeader, name)
	r.Header.Set("Accept", "text/html")
	return r
}

func TestRestart(t *testing.T) {
	tests := []struct {
		desc             string
		token            string // "valid" for the right one
		headers          map[string]string
		tls              bool
		expectedCode     int
		expectedRestarts int
	}{
		{desc: "same origin, valid token", token: "valid", headers: map[string]string{"Sec-Fetch-Site": "same-origin"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "typed by the user", token: "valid", headers: map[string]string{"Sec-Fetch-Site": "none"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "Origin matches, no fetch metadata", token: "valid", headers: map[string]string{"Origin": "http://example.com"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "Origin matches behind TLS proxy", token: "valid",
			headers:      map[string]string{"Origin": "https://example.com", "X-Forwarded-Proto": "https"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "Origin matches X-Forwarded-Host", token: "valid",
			headers:      map[string]string{"Origin": "https://code.example.org", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "code.example.org"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "Origin matches under TLS", token: "valid", tls: true, headers: map[string]string{"Origin": "https://example.com"},
			expectedCode: http.StatusSeeOther, expectedRestarts: 1},
		{desc: "wrong token", token: "0000", headers: map[string]string{"Sec-Fetch-Site": "same-origin"},
			expectedCode: http.StatusForbidden},
		{desc: "token of another container", token: "other", headers: map[string]string{"Sec-Fetch-Site": "same-origin"},
			expectedCode: http.StatusForbidden},
		{desc: "no token", token: "", headers: map[string]string{"Sec-Fetch-Site": "same-origin"},
			expectedCode: http.StatusForbidden},
		{desc: "cross-site", token: "valid", headers: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://example.com"},
			expectedCode: http.StatusForbidden},
		{desc: "same-site sibling", token: "valid", headers: map[string]string{"Sec-Fetch-Site": "same-site"},
			expectedCode: http.StatusForbidden},
		{desc: "foreign Origin", token: "valid", headers: map[string]string{"Origin": "http://evil.example"},
			expectedCode: http.StatusForbidden},
		{desc: "scheme mismatch", token: "valid", headers: map[string]string{"Origin": "https://example.com"},
			expectedCode: http.StatusForbidden},
		{desc: "null Origin", token: "valid", headers: map[string]string{"Origin": "null"},
			expectedCode: http.StatusForbidden},
		{desc: "neither Origin nor fetch metadata", token: "valid",
			expectedCode: http.StatusForbidden},
	}
	for _, test := range tests {
		b := newFakeBackend()
		b.set(State{Name: "vscode-jack", Status: StatusExited, Managed: true, ExitCode: 1})
		h := newTestHandler(t, b, HandlerConfig{})
		token := test.token
		switch token {
		case "valid":
			token = h.token("vscode-jack")
		case "other":
			token = h.token("vscode-jill")
		}
		r := restartPost("http://example.com/project/?a=1", "vscode-jack", token)
		for k, v := range test.headers {
			r.Header.Set(k, v)
		}
		if test.tls {
			r.TLS = &tls.ConnectionState{}
		}
		w := serve(h, r)
		if w.Code != test.expectedCode {
			t.Errorf("%s: expected %d, got %d %q", test.desc, test.expectedCode, w.Code, w.Body.String())
		}
		if w.Code == http.StatusSeeOther && w.Header().Get("Location") != "/project/?a=1" {
			t.Errorf("%s: expected a redirect to the same URL, got %q", test.desc, w.Header().Get("Location"))
		}
		waitIdle(t, h)
		if _, _, restarts, _ := b.counts(); restarts != test.expectedRestarts {
			t.Errorf("%s: expected %d restarts, got %d", test.desc, test.expectedRestarts, restarts)
		}
	}
}

func TestRestartThenLoading(t *testing.T) {
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", Status: StatusExited, Managed: true, ExitCode: 1})
	h := newTestHandler(t, b, HandlerConfig{})
	r := restartPost("/", "vscode-jack", h.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := serve(h, r); w.Code != http.StatusSeeOther {
		t.Fatalf("expected 303, got %d", w.Code)
	}
	w := serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "Waiting for the app") {
		t.Errorf("expected the loading page after a restart, got %d", w.Code)
	}
}

func TestRestartRedirectStaysOnSite(t *testing.T) {
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", Status: StatusExited, Managed: true})
	h := newTestHandler(t, b, HandlerConfig{})
	r := restartPost("/", "vscode-jack", h.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.URL = &url.URL{Path: "//evil.example/x"}
	w := serve(h, r)
	if loc := w.Header().Get("Location"); loc != "/evil.example/x" {
		t.Errorf("expected a local redirect, got %q", loc)
	}
}

func TestRestartCreatesMissingContainer(t *testing.T) {
	b := newFakeBackend()
	h := newTestHandler(t, b, HandlerConfig{})
	r := restartPost("/", "vscode-jack", h.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := serve(h, r); w.Code != http.StatusSeeOther {
		t.Fatalf("expected 303, got %d", w.Code)
	}
	waitIdle(t, h)
	if creates, starts, _, _ := b.counts(); creates != 1 || starts != 1 {
		t.Errorf("expected 1 create and 1 start, got %d and %d", creates, starts)
	}
}

func TestCreateFailureShown(t *testing.T) {
	b := newFakeBackend()
	b.createErr = errors.New("dial unix /var/run/docker.sock: connect: permission denied")
	h := newTestHandler(t, b, HandlerConfig{})
	if w := serve(h, pageLoad("/", "vscode-jack")); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("expected the loading page first, got %d", w.Code)
	}
	waitIdle(t, h)
	w := serve(h, pageLoad("/", "vscode-jack"))
	body := w.Body.String()
	if w.Code != http.StatusBadGateway || !strings.Contains(body, "could not be created") || !strings.Contains(body, "Try again") {
		t.Errorf("expected the create-failed page, got %d %q", w.Code, body)
	}
	if strings.Contains(body, "docker.sock") || strings.Contains(body, "permission denied") {
		t.Errorf("internal error text reached the user")
	}
	waitIdle(t, h)
	if creates, _, _, _ := b.counts(); creates != 1 {
		t.Errorf("expected a failed create not to be retried on reload, got %d creates", creates)
	}
}

func TestEngineUnavailable(t *testing.T) {
	b := newFakeBackend()
	b.inspectErr = errors.New("dial unix /var/run/docker.sock: connect: no such file or directory")
	h := newTestHandler(t, b, HandlerConfig{})
	w := serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "docker.sock") {
		t.Errorf("expected a 503 page without internals, got %d %q", w.Code, w.Body.String())
	}
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.Header.Set(containerNameHeader, "vscode-jack")
	w = serve(h, r)
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "docker.sock") {
		t.Errorf("expected a plain 503 without internals, got %d %q", w.Code, w.Body.String())
	}
}

func TestLifecycle(t *testing.T) {
	tests := []struct {
		desc             string
		state            *State
		maxRunning       int
		others           int // running containers of other users
		expectedCode     int
		expectedText     string
		expectedCreates  int
		expectedStarts   int
		expectedRemoves  int
		expectedLogReads int
	}{
		{desc: "stopped cleanly: started again", state: &State{Status: StatusExited, ExitCode: 143},
			expectedCode: http.StatusServiceUnavailable, expectedText: "Starting your workspace", expectedStarts: 1},
		{desc: "exit 0: started again", state: &State{Status: StatusExited, ExitCode: 0},
			expectedCode: http.StatusServiceUnavailable, expectedText: "Starting your workspace", expectedStarts: 1},
		{desc: "crashed: error page with logs", state: &State{Status: StatusExited, ExitCode: 2},
			expectedCode: http.StatusBadGateway, expectedText: "exited with code 2", expectedLogReads: 1},
		{desc: "dead: removed and created again", state: &State{Status: StatusDead},
			expectedCode: http.StatusServiceUnavailable, expectedText: "Creating the container",
			expectedRemoves: 1, expectedCreates: 1, expectedStarts: 1},
		{desc: "no room: nothing created", maxRunning: 2, others: 2,
			expectedCode: http.StatusServiceUnavailable, expectedText: "No room for your workspace right now"},
		{desc: "room left: created", maxRunning: 3, others: 2,
			expectedCode: http.StatusServiceUnavailable, expectedText: "Starting your workspace", expectedCreates: 1, expectedStarts: 1},
		{desc: "no room: stopped one stays stopped", state: &State{Status: StatusExited}, maxRunning: 1, others: 1,
			expectedCode: http.StatusServiceUnavailable, expectedText: "No room"},
		{desc: "another user's container untouched", state: &State{Status: StatusExited, ExitCode: 0, User: "jill"},
			expectedCode: http.StatusForbidden, expectedText: "belongs to someone else"},
	}
	for _, test := range tests {
		b := newFakeBackend()
		if test.state != nil {
			st := *test.state
			st.Name, st.Managed = "vscode-jack", true
			b.set(st)
		}
		for i := 0; i < test.others; i++ {
			b.set(State{Name: "vscode-other" + strconv.Itoa(i), Status: StatusRunning, Managed: true, StartedAt: time.Now()})
		}
		h := newTestHandler(t, b, HandlerConfig{MaxRunning: test.maxRunning})
		w := serve(h, pageLoad("/", "vscode-jack"))
		if w.Code != test.expectedCode || !strings.Contains(w.Body.String(), test.expectedText) {
			t.Errorf("%s: expected %d with %q, got %d %q", test.desc, test.expectedCode, test.expectedText, w.Code, lastN(w.Body.String(), 300))
		}
		waitIdle(t, h)
		creates, starts, _, logReads := b.counts()
		b.mu.Lock()
		removes := b.removes
		b.mu.Unlock()
		if creates != test.expectedCreates || starts != test.expectedStarts || removes != test.expectedRemoves || logReads != test.expectedLogReads {
			t.Errorf("%s: expected %d creates %d starts %d removes %d log reads, got %d %d %d %d", test.desc,
				test.expectedCreates, test.expectedStarts, test.expectedRemoves, test.expectedLogReads, creates, starts, removes, logReads)
		}
	}
}

// TestCapacityWithinOneReplica: page loads of more users than there is room
// for, all at once: no more containers run than allowed.
func TestCapacityWithinOneReplica(t *testing.T) {
	b := newFakeBackend()
	b.createDelay = 20 * time.Millisecond
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: 3})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			serve(h, pageLoad("/", "vscode-u"+strconv.Itoa(i)))
		}(i)
	}
	wg.Wait()
	waitIdle(t, h)
	list, _ := b.List(context.Background())
	running := 0
	for _, st := range list {
		if st.Status == StatusRunning {
			running++
		}
	}
	if running != 3 {
		t.Errorf("expected exactly 3 running containers, got %d", running)
	}
}

func TestSharedTokenSecret(t *testing.T) {
	key := []byte("a shared secret of the replicas")
	b := newFakeBackend()
	b.set(State{Name: "vscode-jack", Status: StatusExited, Managed: true, ExitCode: 1})
	one := newTestHandler(t, b, HandlerConfig{CSRFKey: key})
	two := newTestHandler(t, b, HandlerConfig{CSRFKey: key})
	other := newTestHandler(t, b, HandlerConfig{})
	r := restartPost("/", "vscode-jack", one.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := serve(two, r); w.Code != http.StatusSeeOther {
		t.Errorf("expected the other replica to accept the token, got %d", w.Code)
	}
	r = restartPost("/", "vscode-jack", one.token("vscode-jack"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if w := serve(other, r); w.Code != http.StatusForbidden {
		t.Errorf("expected a spawner with another key to refuse the token, got %d", w.Code)
	}
}

func TestTokenSecret(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/secret"
	if err := os.WriteFile(file, []byte("  from a file, long enough\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := tokenSecret("", file)
	if err != nil || string(key) != "from a file, long enough" {
		t.Errorf("expected the file's trimmed content, got %q, %v", key, err)
	}
	a, _ := tokenSecret("", "")
	b, _ := tokenSecret("", "")
	if len(a) != 32 || string(a) == string(b) {
		t.Errorf("expected 32 fresh random bytes each time")
	}
}
