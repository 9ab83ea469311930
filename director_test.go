package director

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-director/director/internal/ssetest"
	"github.com/container-director/director/internal/wstest"
)

const identity = "X-Forwarded-Preferred-Username"

// echoed is what a test container answers: who it is and what it received.
type echoed struct {
	Container string      `json:"container"`
	Host      string      `json:"host"`
	Method    string      `json:"method"`
	Body      string      `json:"body"`
	Header    http.Header `json:"header"`
}

// containerHandler is a user's container: it answers with its identity and
// the request it received, echoes WebSocket frames on /ws and streams
// events on /events.
func containerHandler(id string, sseRelease chan struct{}) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", wstest.EchoHandler(id+":"))
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: first from %s\n\n", id)
		w.(http.Flusher).Flush()
		select {
		case <-sseRelease:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "data: second from %s\n\n", id)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Container: id, Host: r.Host, Method: r.Method, Body: string(body), Header: r.Header})
	})
	return mux
}

// spawner records the requests handed on to it, and their bodies if
// readBody is set.
type spawner struct {
	readBody bool
	mu       sync.Mutex
	requests []*http.Request
	bodies   []string
}

func (s *spawner) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	var body []byte
	if s.readBody {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			body = []byte("reading the body: " + err.Error())
		}
	}
	s.mu.Lock()
	s.requests = append(s.requests, req.Clone(context.Background()))
	s.bodies = append(s.bodies, string(body))
	s.mu.Unlock()
	rw.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(rw, "spawner: "+req.Header.Get(ContainerNameHeader))
}

func (s *spawner) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *spawner) lastBody() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bodies) == 0 {
		return ""
	}
	return s.bodies[len(s.bodies)-1]
}

func (s *spawner) last() *http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return nil
	}
	return s.requests[len(s.requests)-1]
}

// fixture is a director in front of local containers reached by their
// container names, and a recording spawner behind it.
type fixture struct {
	t          *testing.T
	director   *director
	spawner    *spawner
	front      *httptest.Server
	mu         sync.Mutex
	containers map[string]*httptest.Server // "vscode-alice:8080" → server
	dials      int64
	transport  *http.Transport
}

// vscodeConfig returns the defaults with the prefix "vscode".
func vscodeConfig() *Config {
	cfg := CreateConfig()
	cfg.ContainerHostPrefix = "vscode"
	return cfg
}

func newFixture(t *testing.T, cfg *Config) *fixture {
	t.Helper()
	if cfg == nil {
		cfg = vscodeConfig()
	}
	f := &fixture{t: t, spawner: &spawner{}, containers: make(map[string]*httptest.Server)}
	h, err := New(context.Background(), f.spawner, cfg, "test")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.director = h.(*director)
	f.director.dialer.resolve = func(address string) string { return f.resolve(address) }
	// A transport of its own: every fixture has its own vscode-alice.
	transport := newTransport(func(ctx context.Context, network, address string) (net.Conn, error) {
		return f.director.dialer.DialContext(ctx, network, address)
	})
	f.transport = transport
	d := f.director
	f.director.probes.newProxy = func(user, container, host string) *httputil.ReverseProxy {
		return newReverseProxy(host, transport, func(rw http.ResponseWriter, out *http.Request, err error) {
			d.proxyFailed(rw, out, user, container, host, err)
		})
	}
	probeDial := f.director.probes.dial
	f.director.probes.dial = func(address string) (net.Conn, error) {
		atomic.AddInt64(&f.dials, 1)
		return probeDial(address)
	}
	f.front = httptest.NewServer(f.director)
	t.Cleanup(func() {
		f.front.Close()
		transport.CloseIdleConnections()
		f.mu.Lock()
		for _, s := range f.containers {
			s.Close()
		}
		f.mu.Unlock()
	})
	return f
}

// resolve maps a container's host:port to its local listener, or to a port
// where nothing listens.
func (f *fixture) resolve(address string) string {
	f.mu.Lock()
	s := f.containers[address]
	f.mu.Unlock()
	if s == nil {
		return closedAddr
	}
	return s.Listener.Addr().String()
}

// closedAddr is a loopback address where nothing listens.
var closedAddr = func() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}()

// startContainer starts the container for host (e.g. "vscode-alice:8080").
func (f *fixture) startContainer(host, id string, sseRelease chan struct{}) *httptest.Server {
	s := httptest.NewServer(containerHandler(id, sseRelease))
	f.mu.Lock()
	f.containers[host] = s
	f.mu.Unlock()
	return s
}

// stopContainer stops host's container, as if it had died.
func (f *fixture) stopContainer(host string) {
	f.mu.Lock()
	s := f.containers[host]
	delete(f.containers, host)
	f.mu.Unlock()
	if s != nil {
		s.Close()
	}
	// As the transport finds out soon after a real container dies: a
	// request sent on a connection the container closed meanwhile has
	// its body gone, and gets a 502.
	f.transport.CloseIdleConnections()
}

func (f *fixture) probeDials() int64 {
	return atomic.LoadInt64(&f.dials)
}

// do sends a request through the director as the given user ("" for none).
func (f *fixture) do(method, path, user string, body io.Reader, header http.Header) *http.Response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.front.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if user != "" {
		req.Header.Set(identity, user)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s as %q: %v", method, path, user, err)
	}
	return resp
}

// readEcho reads a container's answer, failing if it came from elsewhere.
func readEcho(t *testing.T, resp *http.Response) echoed {
	t.Helper()
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var e echoed
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, body %q; want 200 from a container", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("decoding container answer %q: %v", body, err)
	}
	return e
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

func TestNew(t *testing.T) {
	testCases := []struct {
		desc          string
		update        func(c *Config)
		expectedError string // "" for success
	}{
		{desc: "defaults with a prefix", update: func(c *Config) {}},
		{desc: "all keys set", update: func(c *Config) {
			c.ContainerPort = 3000
			c.ContainerDomain = "Workspaces.svc.cluster.local."
			c.UsernameHeader = []string{"x-auth-request-preferred-username, X-Auth-Request-User", "x-auth-request-email"}
			c.UsernamePolicy = "Escape"
			c.DialTimeout = "250ms"
			c.ProbeCacheTTL = "0s"
		}},
		{desc: "missing prefix", update: func(c *Config) { c.ContainerHostPrefix = "" }, expectedError: "containerHostPrefix: required"},
		{desc: "prefix with uppercase", update: func(c *Config) { c.ContainerHostPrefix = "VSCode" }, expectedError: `containerHostPrefix: "VSCode" must start with a lowercase letter`},
		{desc: "prefix with a dot", update: func(c *Config) { c.ContainerHostPrefix = "vs.code" }, expectedError: `containerHostPrefix: "vs.code" may hold only`},
		{desc: "prefix starting with a digit", update: func(c *Config) { c.ContainerHostPrefix = "1vscode" }, expectedError: `containerHostPrefix: "1vscode"`},
		{desc: "prefix ending with a hyphen", update: func(c *Config) { c.ContainerHostPrefix = "vscode-" }, expectedError: `containerHostPrefix: "vscode-" must not contain '-'`},
		{desc: "prefix with a hyphen", update: func(c *Config) { c.ContainerHostPrefix = "jupyter-gpu" }, expectedError: `containerHostPrefix: "jupyter-gpu" must not contain '-': the first '-' of a container's name ends its prefix, so that routers with different prefixes never share a container; use "jupytergpu" instead`},
		{desc: "prefix too long", update: func(c *Config) { c.ContainerHostPrefix = strings.Repeat("a", 62) }, expectedError: "containerHostPrefix: \"" + strings.Repeat("a", 62) + "\" is longer than 61"},
		{desc: "port zero", update: func(c *Config) { c.ContainerPort = 0 }, expectedError: "containerPort: must be 1-65535, got 0"},
		{desc: "port too large", update: func(c *Config) { c.ContainerPort = 65536 }, expectedError: "containerPort: must be 1-65535, got 65536"},
		{desc: "negative port", update: func(c *Config) { c.ContainerPort = -1 }, expectedError: "containerPort: must be 1-65535, got -1"},
		{desc: "domain with an empty label", update: func(c *Config) { c.ContainerDomain = "svc..local" }, expectedError: `containerDomain: "svc..local" has an empty label`},
		{desc: "domain with a slash", update: func(c *Config) { c.ContainerDomain = "evil.com/x" }, expectedError: `containerDomain: "evil.com/x" may hold only`},
		{desc: "domain with a port", update: func(c *Config) { c.ContainerDomain = "svc.local:80" }, expectedError: `containerDomain: "svc.local:80" may hold only`},
		{desc: "domain label starting with a hyphen", update: func(c *Config) { c.ContainerDomain = "-svc.local" }, expectedError: `containerDomain: "-svc.local" has a label that starts or ends with '-'`},
		{desc: "domain too long", update: func(c *Config) { c.ContainerDomain = strings.Repeat("a.", 95) + "a" }, expectedError: "containerDomain: \"" + strings.Repeat("a.", 95) + "a\" is longer than 189"},
		{desc: "no header", update: func(c *Config) { c.UsernameHeader = nil }, expectedError: "usernameHeader: must name at least one header"},
		{desc: "empty header", update: func(c *Config) { c.UsernameHeader = []string{""} }, expectedError: `usernameHeader: "" holds an empty header name`},
		{desc: "empty header in a list", update: func(c *Config) { c.UsernameHeader = []string{"X-User,,X-Email"} }, expectedError: `usernameHeader: "X-User,,X-Email" holds an empty header name`},
		{desc: "header with a space", update: func(c *Config) { c.UsernameHeader = []string{"X User"} }, expectedError: `usernameHeader: "X User" is not a valid header name`},
		{desc: "header is the container header", update: func(c *Config) { c.UsernameHeader = []string{"X-User", "x-container-name"} }, expectedError: `usernameHeader: "x-container-name" is the header the director sets`},
		{desc: "header listed twice", update: func(c *Config) { c.UsernameHeader = []string{"X-User,x-user"} }, expectedError: `usernameHeader: "x-user" is listed twice`},
		{desc: "unknown policy", update: func(c *Config) { c.UsernamePolicy = "lenient" }, expectedError: `usernamePolicy: must be "strict" or "escape", got "lenient"`},
		{desc: "empty policy", update: func(c *Config) { c.UsernamePolicy = "" }, expectedError: `usernamePolicy: must be "strict" or "escape", got ""`},
		{desc: "unparsable dial timeout", update: func(c *Config) { c.DialTimeout = "1 second" }, expectedError: `dialTimeout: "1 second" is not a duration`},
		{desc: "dial timeout without unit", update: func(c *Config) { c.DialTimeout = "5" }, expectedError: `dialTimeout: "5" is not a duration`},
		{desc: "negative dial timeout", update: func(c *Config) { c.DialTimeout = "-1s" }, expectedError: `dialTimeout: must not be negative, got "-1s"`},
		{desc: "zero dial timeout", update: func(c *Config) { c.DialTimeout = "0s" }, expectedError: `dialTimeout: must be positive, got "0s"`},
		{desc: "unparsable cache TTL", update: func(c *Config) { c.ProbeCacheTTL = "ten seconds" }, expectedError: `probeCacheTTL: "ten seconds" is not a duration`},
		{desc: "negative cache TTL", update: func(c *Config) { c.ProbeCacheTTL = "-10s" }, expectedError: `probeCacheTTL: must not be negative, got "-10s"`},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			cfg := vscodeConfig()
			test.update(cfg)
			h, err := New(context.Background(), &spawner{}, cfg, "test")
			if test.expectedError == "" {
				if err != nil {
					t.Fatalf("New: unexpected error %v", err)
				}
				if h == nil {
					t.Fatal("New returned a nil handler and no error")
				}
				return
			}
			if err == nil {
				t.Fatalf("New: no error, want one containing %q", test.expectedError)
			}
			if !strings.Contains(err.Error(), test.expectedError) {
				t.Fatalf("New: error %q, want one containing %q", err, test.expectedError)
			}
			if h != nil {
				t.Fatal("New returned a handler along with an error")
			}
		})
	}
}

func TestNewNilConfigAndNext(t *testing.T) {
	if _, err := New(context.Background(), &spawner{}, nil, "test"); err == nil {
		t.Error("New with a nil config: no error")
	}
	cfg := vscodeConfig()
	if _, err := New(context.Background(), nil, cfg, "test"); err == nil {
		t.Error("New with a nil next handler: no error")
	}
}

func TestCompiledSettings(t *testing.T) {
	cfg := vscodeConfig()
	cfg.ContainerDomain = "Workspaces.Svc.Cluster.Local"
	cfg.ContainerPort = 3000
	cfg.UsernameHeader = []string{" x-auth-request-preferred-username,x-auth-request-user", "X-Auth-Request-Email"}
	s, err := cfg.compile()
	if err != nil {
		t.Fatal(err)
	}
	if s.hostSuffix != ".workspaces.svc.cluster.local:3000" {
		t.Errorf("hostSuffix = %q", s.hostSuffix)
	}
	if got := strings.Join(s.usernameHeaders, ","); got != "X-Auth-Request-Preferred-Username,X-Auth-Request-User,X-Auth-Request-Email" {
		t.Errorf("usernameHeaders = %q", got)
	}
	if s.dialTimeout != time.Second || s.probeCacheTTL != 10*time.Second {
		t.Errorf("durations = %v, %v; want the defaults 1s, 10s", s.dialTimeout, s.probeCacheTTL)
	}
}

func TestNewStartsNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := vscodeConfig()
	for i := 0; i < 50; i++ {
		if _, err := New(context.Background(), &spawner{}, cfg, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before 50 calls of New, %d after", before, after)
	}
}

func TestRejects(t *testing.T) {
	testCases := []struct {
		desc           string
		header         http.Header
		escape         bool
		expectedStatus int
		expectedBody   string
	}{
		{desc: "no identity header", header: http.Header{}, expectedStatus: http.StatusUnauthorized, expectedBody: "no signed-in user"},
		{desc: "two identity headers", header: http.Header{identity: {"alice", "bob"}}, expectedStatus: http.StatusBadRequest, expectedBody: "more than one user"},
		{desc: "empty name", header: http.Header{identity: {""}}, expectedStatus: http.StatusBadRequest, expectedBody: "the user name is empty"},
		{desc: "uppercase under strict", header: http.Header{identity: {"Alice"}}, expectedStatus: http.StatusBadRequest, expectedBody: `user name "Alice" cannot name a container`},
		{desc: "email under strict", header: http.Header{identity: {"jane.doe@example.com"}}, expectedStatus: http.StatusBadRequest, expectedBody: `(usernamePolicy "strict")`},
		{desc: "host injection under strict", header: http.Header{identity: {"x.evil.com:80/"}}, expectedStatus: http.StatusBadRequest, expectedBody: "cannot name a container"},
		{desc: "leading hyphen under strict", header: http.Header{identity: {"-alice"}}, expectedStatus: http.StatusBadRequest, expectedBody: "cannot name a container"},
		{desc: "too long under strict", header: http.Header{identity: {strings.Repeat("a", 57)}}, expectedStatus: http.StatusBadRequest, expectedBody: "too long"},
		{desc: "too long once escaped", header: http.Header{identity: {strings.Repeat("A", 19)}}, escape: true, expectedStatus: http.StatusBadRequest, expectedBody: "too long"},
		{desc: "empty name under escape", header: http.Header{identity: {""}}, escape: true, expectedStatus: http.StatusBadRequest, expectedBody: "the user name is empty"},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			cfg := vscodeConfig()
			if test.escape {
				cfg.UsernamePolicy = PolicyEscape
			}
			f := newFixture(t, cfg)
			// A container that answers for every host, so that only a
			// rejection keeps the request from it.
			var reached int64
			catchAll := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				atomic.AddInt64(&reached, 1)
			}))
			defer catchAll.Close()
			f.director.dialer.resolve = func(address string) string { return catchAll.Listener.Addr().String() }

			resp := f.do(http.MethodGet, "/", "", nil, test.header)
			body := readBody(t, resp)
			if resp.StatusCode != test.expectedStatus {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, test.expectedStatus, body)
			}
			if !strings.Contains(body, test.expectedBody) {
				t.Errorf("body %q, want it to contain %q", body, test.expectedBody)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("Content-Type %q, want text/plain", ct)
			}
			if n := atomic.LoadInt64(&reached); n != 0 {
				t.Errorf("%d requests reached a container", n)
			}
			if n := f.spawner.count(); n != 0 {
				t.Errorf("%d requests reached the spawner", n)
			}
			if n := f.probeDials(); n != 0 {
				t.Errorf("%d probe dials for a rejected request", n)
			}
		})
	}
}

func TestRoutesEachUserToTheirContainer(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	f.startContainer("vscode-bob:8080", "bob", nil)
	for i := 0; i < 3; i++ {
		for _, user := range []string{"alice", "bob", "alice"} {
			e := readEcho(t, f.do(http.MethodGet, "/some/path?q=1", user, nil, nil))
			if e.Container != user {
				t.Fatalf("request of %q reached the container of %q", user, e.Container)
			}
			if got := e.Header.Get(identity); got != user {
				t.Errorf("container got %s %q, want %q", identity, got, user)
			}
		}
	}
	if n := f.spawner.count(); n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
	if n := f.probeDials(); n != 2 {
		t.Errorf("%d probe dials for two users within the cache TTL, want 2", n)
	}
}

func TestEscapePolicyRoutes(t *testing.T) {
	cfg := vscodeConfig()
	cfg.UsernamePolicy = PolicyEscape
	f := newFixture(t, cfg)
	f.startContainer("vscode-jane-2edoe-40example-2ecom:8080", "jane", nil)
	e := readEcho(t, f.do(http.MethodGet, "/", "jane.doe@example.com", nil, nil))
	if e.Container != "jane" {
		t.Fatalf("reached %q", e.Container)
	}
	resp := f.do(http.MethodGet, "/", "Jane.Doe@example.com", nil, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("Jane.Doe: status %d %q, want the spawner's 202", resp.StatusCode, body)
	}
	if got := f.spawner.last().Header.Get(ContainerNameHeader); got != "vscode--4aane-2e-44oe-40example-2ecom" {
		t.Errorf("spawner got %s %q", ContainerNameHeader, got)
	}
}

func TestHandsOffToSpawner(t *testing.T) {
	f := newFixture(t, nil)
	resp := f.do(http.MethodGet, "/?folder=/home", "alice", nil, http.Header{
		ContainerNameHeader:              {"vscode-bob"},
		"X_container_name":               {"vscode-bob"},
		"X_forwarded_preferred_username": {"bob"},
	})
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusAccepted || body != "spawner: vscode-alice" {
		t.Fatalf("status %d body %q, want the spawner's 202 for vscode-alice", resp.StatusCode, body)
	}
	req := f.spawner.last()
	if got := req.Header.Values(ContainerNameHeader); len(got) != 1 || got[0] != "vscode-alice" {
		t.Errorf("spawner got %s %q, want exactly [vscode-alice]", ContainerNameHeader, got)
	}
	if got := req.Header.Get(identity); got != "alice" {
		t.Errorf("spawner got %s %q, want alice", identity, got)
	}
	for k := range req.Header {
		if strings.Contains(k, "_") {
			t.Errorf("spawner got look-alike header %q", k)
		}
	}
	if req.URL.RequestURI() != "/?folder=/home" {
		t.Errorf("spawner got %q, want the original path and query", req.URL.RequestURI())
	}
}

func TestSpoofedContainerNameNeverReachesContainer(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	e := readEcho(t, f.do(http.MethodGet, "/", "alice", nil, http.Header{ContainerNameHeader: {"vscode-bob"}}))
	if e.Container != "alice" {
		t.Fatalf("reached %q", e.Container)
	}
	if got, ok := e.Header[ContainerNameHeader]; ok {
		t.Errorf("container got the client's %s %q", ContainerNameHeader, got)
	}
}

func TestForwardedHeadersPreserved(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	req, err := http.NewRequest(http.MethodGet, f.front.URL+"/x", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "code.example.com"
	req.Header.Set(identity, "alice")
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-Host", "code.example.com")
	req.Header.Set("X-Forwarded-Port", "443")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	e := readEcho(t, resp)
	expected := map[string]string{
		"Host":              "code.example.com",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "code.example.com",
		"X-Forwarded-Port":  "443",
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
	}
	got := map[string]string{"Host": e.Host}
	for k := range expected {
		if k != "Host" {
			got[k] = strings.Join(e.Header.Values(k), "|")
		}
	}
	for k, v := range expected {
		if got[k] != v {
			t.Errorf("container got %s %q, want %q", k, got[k], v)
		}
	}
	if ae := e.Header.Get("Accept-Encoding"); ae != "gzip" {
		t.Errorf("container got Accept-Encoding %q, want the client's own gzip", ae)
	}
}

func TestWebSocketThroughDirector(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	conn, _, err := wstest.Dial(f.front.Listener.Addr().String(), f.front.URL+"/ws", http.Header{identity: {"alice"}}, 5*time.Second)
	if err != nil {
		t.Fatalf("opening WebSocket: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("hello %d", i)
		got, err := conn.RoundTrip(msg)
		if err != nil || got != "alice:"+msg {
			t.Fatalf("echo %q, %v; want %q", got, err, "alice:"+msg)
		}
	}
}

func TestServerSentEventsUnbuffered(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	f.startContainer("vscode-alice:8080", "alice", release)
	resp := f.do(http.MethodGet, "/events", "alice", nil, nil)
	defer resp.Body.Close()
	lines := ssetest.Lines(resp.Body)
	select {
	case line := <-lines:
		if line != "data: first from alice" {
			t.Fatalf("first event %q", line)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("the first event did not arrive before the second was written: the response is buffered")
	}
	close(release)
	if line := <-lines; line != "data: second from alice" {
		t.Fatalf("second event %q", line)
	}
}

func TestConcurrentRequestsShareOneProbe(t *testing.T) {
	f := newFixture(t, nil)
	const n = 20
	release := make(chan struct{})
	f.director.probes.dial = func(address string) (net.Conn, error) {
		atomic.AddInt64(&f.dials, 1)
		<-release
		return nil, errors.New("connection refused")
	}
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set(identity, "alice")
			f.director.ServeHTTP(rec, req)
			statuses <- rec.Code
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.director.probes.waiters("alice") < n-1 {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("only %d requests waiting for the probe", f.director.probes.waiters("alice"))
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(statuses)
	for code := range statuses {
		if code != http.StatusAccepted {
			t.Errorf("status %d, want the spawner's 202", code)
		}
	}
	if d := f.probeDials(); d != 1 {
		t.Errorf("%d dials for %d concurrent requests, want 1", d, n)
	}
	if c := f.spawner.count(); c != n {
		t.Errorf("%d requests reached the spawner, want %d", c, n)
	}
}

func TestProbeCacheExpires(t *testing.T) {
	cfg := vscodeConfig()
	cfg.ProbeCacheTTL = "200ms"
	f := newFixture(t, cfg)
	f.startContainer("vscode-alice:8080", "alice", nil)
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	if d := f.probeDials(); d != 1 {
		t.Fatalf("%d probe dials for two requests within the TTL, want 1", d)
	}
	time.Sleep(300 * time.Millisecond)
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	if d := f.probeDials(); d != 2 {
		t.Fatalf("%d probe dials after the TTL, want 2", d)
	}
}

func TestZeroTTLProbesEveryRequest(t *testing.T) {
	cfg := vscodeConfig()
	cfg.ProbeCacheTTL = "0s"
	f := newFixture(t, cfg)
	f.startContainer("vscode-alice:8080", "alice", nil)
	for i := 0; i < 3; i++ {
		readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	}
	if d := f.probeDials(); d != 3 {
		t.Fatalf("%d probe dials for three requests with probeCacheTTL 0s, want 3", d)
	}
	if n := f.director.probes.entries(); n != 0 {
		t.Errorf("%d cache entries with probeCacheTTL 0s", n)
	}
}

func TestContainerComesUp(t *testing.T) {
	f := newFixture(t, nil)
	resp := f.do(http.MethodGet, "/", "alice", nil, nil)
	if body := readBody(t, resp); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("down container: status %d %q, want the spawner", resp.StatusCode, body)
	}
	f.startContainer("vscode-alice:8080", "alice", nil)
	// Failed probes are not cached: the next request finds the container.
	if e := readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil)); e.Container != "alice" {
		t.Fatalf("reached %q", e.Container)
	}
}

func TestContainerDiesAfterCachedProbe(t *testing.T) {
	testCases := []struct {
		desc           string
		method         string
		body           string
		expectedStatus int
		expectedBody   string
	}{
		{desc: "GET goes on to the spawner", method: http.MethodGet, expectedStatus: http.StatusAccepted, expectedBody: "spawner: vscode-alice"},
		{desc: "HEAD goes on to the spawner", method: http.MethodHead, expectedStatus: http.StatusAccepted},
		{desc: "POST whose body was never sent goes on to the spawner", method: http.MethodPost, body: "unsaved work", expectedStatus: http.StatusAccepted, expectedBody: "spawner: vscode-alice"},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			f := newFixture(t, nil)
			f.startContainer("vscode-alice:8080", "alice", nil)
			readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
			f.stopContainer("vscode-alice:8080")

			var body io.Reader
			if test.body != "" {
				body = strings.NewReader(test.body)
			}
			resp := f.do(test.method, "/file", "alice", body, nil)
			got := readBody(t, resp)
			if resp.StatusCode != test.expectedStatus || !strings.Contains(got, test.expectedBody) {
				t.Fatalf("status %d body %q, want %d with %q", resp.StatusCode, got, test.expectedStatus, test.expectedBody)
			}
			if strings.Contains(got, "127.0.0.1") || strings.Contains(got, "refused") {
				t.Errorf("body %q shows internal error text", got)
			}
			if f.director.probes.entries() != 0 {
				t.Error("the dead container is still cached as alive")
			}
			if req := f.spawner.last(); test.expectedStatus == http.StatusAccepted {
				if req == nil {
					t.Fatal("nothing reached the spawner")
				}
				if xff := req.Header.Values("X-Forwarded-For"); len(xff) != 0 {
					t.Errorf("spawner got X-Forwarded-For %q, which the client did not send", xff)
				}
				if req.URL.Host != "" || req.Host != strings.TrimPrefix(f.front.URL, "http://") {
					t.Errorf("spawner got URL host %q and Host %q, want the request as it came in", req.URL.Host, req.Host)
				}
				if req.Method != test.method || req.URL.Path != "/file" {
					t.Errorf("spawner got %s %s", req.Method, req.URL.Path)
				}
			}
			// The next request probes again and goes to the spawner.
			resp = f.do(http.MethodGet, "/", "alice", nil, nil)
			if got := readBody(t, resp); resp.StatusCode != http.StatusAccepted {
				t.Fatalf("next request: status %d %q, want the spawner", resp.StatusCode, got)
			}
		})
	}
}

func TestClientGoneKeepsContainerCached(t *testing.T) {
	f := newFixture(t, nil)
	received := make(chan struct{}, 1)
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			received <- struct{}{}
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	f.mu.Lock()
	f.containers["vscode-alice:8080"] = container
	f.mu.Unlock()
	if resp := f.do(http.MethodGet, "/", "alice", nil, nil); readBody(t, resp) != "ok" {
		t.Fatalf("status %d, want the container's answer", resp.StatusCode)
	}

	// The client gives up before the container answers.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequest(http.MethodGet, "/slow", nil).WithContext(ctx)
	req.Header.Set(identity, "alice")
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		f.director.ServeHTTP(rec, req)
		close(done)
	}()
	select {
	case <-received:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the container")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ServeHTTP did not return after the client went away")
	}
	if rec.Code != statusClientClosedRequest {
		t.Errorf("status %d, want %d", rec.Code, statusClientClosedRequest)
	}
	if n := f.director.probes.entries(); n != 1 {
		t.Errorf("%d cache entries after a client went away, want the live container still cached", n)
	}
	if resp := f.do(http.MethodGet, "/", "alice", nil, nil); readBody(t, resp) != "ok" {
		t.Fatalf("next request: status %d, want the container's answer", resp.StatusCode)
	}
	if d := f.probeDials(); d != 1 {
		t.Errorf("%d probe dials, want 1: a client going away says nothing about the container", d)
	}
	if n := f.spawner.count(); n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
}

func TestProbeCacheIsBounded(t *testing.T) {
	f := newFixture(t, nil)
	f.director.probes.maxEntries = 16
	// Every host answers.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	f.director.dialer.resolve = func(address string) string { return up.Listener.Addr().String() }
	for i := 0; i < 100; i++ {
		resp := f.do(http.MethodGet, "/", fmt.Sprintf("user%d", i), nil, nil)
		readBody(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if n := f.director.probes.entries(); n > 16 {
			t.Fatalf("%d cache entries after %d users, cap 16", n, i+1)
		}
	}
}

func TestContainerLabel(t *testing.T) {
	testCases := []struct {
		desc     string
		name     string
		escape   bool
		expected string
		wantErr  bool
	}{
		{desc: "strict plain", name: "jack", expected: "jack"},
		{desc: "strict digits and hyphen", name: "jack-2", expected: "jack-2"},
		{desc: "strict uppercase", name: "Jack", wantErr: true},
		{desc: "strict dot", name: "jack.doe", wantErr: true},
		{desc: "strict trailing hyphen", name: "jack-", wantErr: true},
		{desc: "strict space", name: "jack doe", wantErr: true},
		{desc: "strict unicode", name: "jäck", wantErr: true},
		{desc: "strict longest", name: strings.Repeat("a", 56), expected: strings.Repeat("a", 56)},
		{desc: "strict one too long", name: strings.Repeat("a", 57), wantErr: true},
		{desc: "escape plain", name: "jack", escape: true, expected: "jack"},
		{desc: "escape uppercase", name: "Jack", escape: true, expected: "-4aack"},
		{desc: "escape dot", name: "jack.doe", escape: true, expected: "jack-2edoe"},
		{desc: "escape hyphen", name: "jack-doe", escape: true, expected: "jack-2ddoe"},
		{desc: "escape at", name: "jack@doe", escape: true, expected: "jack-40doe"},
		{desc: "escape slash and colon", name: "a/b:c", escape: true, expected: "a-2fb-3ac"},
		{desc: "escape control", name: "a\nb", escape: true, expected: "a-0ab"},
		{desc: "escape unicode", name: "jäck", escape: true, expected: "j-c3-a4ck"},
		{desc: "escape too long", name: strings.Repeat(".", 19), escape: true, wantErr: true},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			got, err := containerLabel(test.name, test.escape, maxLabelLength-len("vscode-"))
			if test.wantErr {
				if err == nil {
					t.Fatalf("containerLabel(%q) = %q, want an error", test.name, got)
				}
				return
			}
			if err != nil || got != test.expected {
				t.Fatalf("containerLabel(%q) = %q, %v; want %q", test.name, got, err, test.expected)
			}
		})
	}
}

func TestEscapeDistinguishesLookalikes(t *testing.T) {
	names := []string{"Jack", "jack", "jack.doe", "jack-doe", "jack@doe", "jack_doe", "jackdoe", "jack-2ddoe", "JACK", "jack "}
	seen := make(map[string]string)
	for _, n := range names {
		m := escapeName(n)
		if other, ok := seen[m]; ok {
			t.Errorf("%q and %q both map to %q", n, other, m)
		}
		seen[m] = n
	}
}

// checkMapped fails unless mapped is label text under the prefix that
// decodes back to name.
func checkMapped(t *testing.T, name, label string) {
	t.Helper()
	if !strings.HasPrefix(label, "vscode-") || len(label) > maxLabelLength || len(label) <= len("vscode-") {
		t.Fatalf("name %q gives label %q: not \"vscode-\" and 1-%d more characters", name, label, maxLabelLength-len("vscode-"))
	}
	if label[len(label)-1] == '-' {
		t.Fatalf("name %q gives label %q ending with '-'", name, label)
	}
	for i := 0; i < len(label); i++ {
		if !isLabelByte(label[i]) {
			t.Fatalf("name %q gives label %q with byte %q", name, label, label[i])
		}
	}
}

func FuzzContainerLabel(f *testing.F) {
	for _, s := range []string{"jack", "Jack", "jack.doe", "jack-doe", "jack@doe", "", "-", "a\x00b", "ü", "x.evil.com:80/"} {
		f.Add(s)
	}
	room := maxLabelLength - len("vscode-")
	f.Fuzz(func(t *testing.T, name string) {
		for _, escape := range []bool{false, true} {
			mapped, err := containerLabel(name, escape, room)
			if err != nil {
				continue
			}
			checkMapped(t, name, "vscode-"+mapped)
			if !escape && mapped != name {
				t.Fatalf("strict: %q mapped to %q", name, mapped)
			}
			if escape {
				// Injective: the mapping has an inverse.
				back, ok := unescapeName(mapped)
				if !ok || back != name {
					t.Fatalf("escape: %q → %q → %q, %v", name, mapped, back, ok)
				}
				if isStrictName(name) && !strings.Contains(name, "-") && mapped != name {
					t.Fatalf("escape changed plain name %q to %q", name, mapped)
				}
			}
		}
	})
}

// unescapeName is the inverse of escapeName; ok is false for text that
// escapeName cannot produce. Its existence proves the mapping injective.
func unescapeName(mapped string) (string, bool) {
	buf := make([]byte, 0, len(mapped))
	for i := 0; i < len(mapped); i++ {
		c := mapped[i]
		if isPlainByte(c) {
			buf = append(buf, c)
			continue
		}
		if c != '-' || i+2 >= len(mapped) {
			return "", false
		}
		hi, lo := hexValue(mapped[i+1]), hexValue(mapped[i+2])
		if hi < 0 || lo < 0 {
			return "", false
		}
		b := byte(hi<<4 | lo)
		if isPlainByte(b) {
			return "", false
		}
		buf = append(buf, b)
		i += 2
	}
	return string(buf), true
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	}
	return -1
}

func BenchmarkServeHTTP(b *testing.B) {
	container := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	defer container.Close()
	cfg := vscodeConfig()
	h, err := New(context.Background(), &spawner{}, cfg, "bench")
	if err != nil {
		b.Fatal(err)
	}
	d := h.(*director)
	d.dialer.resolve = func(address string) string { return container.Listener.Addr().String() }
	d.debug.SetOutput(io.Discard)

	b.Run("proxy cached", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header.Set(identity, "alice")
			d.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
	b.Run("reject 401", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			rec := httptest.NewRecorder()
			d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		}
	})
}

func TestInstancesShareTransports(t *testing.T) {
	newDirector := func(dialTimeout string) *director {
		cfg := vscodeConfig()
		cfg.DialTimeout = dialTimeout
		h, err := New(context.Background(), &spawner{}, cfg, "test")
		if err != nil {
			t.Fatal(err)
		}
		return h.(*director)
	}
	transport := func(d *director) http.RoundTripper {
		return d.probes.newProxy("a", "vscode-a", "vscode-a:8080").Transport
	}
	// A reload: the same settings again.
	a, b := newDirector("1s"), newDirector("1s")
	if transport(a) != transport(b) {
		t.Error("two instances with the same settings have transports of their own: a reload would strand idle connections")
	}
	c := newDirector("3s")
	if transport(a) == transport(c) {
		t.Error("instances with different dial timeouts share a transport")
	}
	if tr, ok := transport(c).(*http.Transport); !ok || tr.DialContext == nil {
		t.Fatalf("transport %T without a dialer", transport(c))
	}
	if a.dialer.net.Timeout != time.Second || c.dialer.net.Timeout != 3*time.Second {
		t.Errorf("probe dial timeouts %v and %v, want 1s and 3s", a.dialer.net.Timeout, c.dialer.net.Timeout)
	}
}

func TestInvalidUpgradeKeepsContainerCached(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))

	// An Upgrade the proxy refuses before it dials: the container is fine.
	req := httptest.NewRequest(http.MethodGet, "/ws", nil)
	req.Header.Set(identity, "alice")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "\x80x")
	rec := httptest.NewRecorder()
	f.director.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "invalid protocol upgrade") {
		t.Fatalf("status %d body %q, want 400 about the upgrade", rec.Code, rec.Body)
	}
	if n := f.spawner.count(); n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
	if n := f.director.probes.entries(); n != 1 {
		t.Errorf("%d cache entries, want alice's container still cached", n)
	}
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	if d := f.probeDials(); d != 1 {
		t.Errorf("%d probe dials, want 1: a refused upgrade says nothing about the container", d)
	}
}

// TestManifestTestData checks .traefik.yml as the plugin catalog reads it:
// the import path, and a testData block that sets every configuration key
// and that New accepts without the network.
func TestManifestTestData(t *testing.T) {
	raw, err := os.ReadFile(".traefik.yml")
	if err != nil {
		t.Fatal(err)
	}
	top := make(map[string]string)
	testData := make(map[string]interface{})
	inTestData := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		indented := strings.HasPrefix(line, " ")
		key, value, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		if !indented {
			top[key] = value
			inTestData = key == "testData"
			continue
		}
		if !inTestData {
			continue
		}
		if n, err := strconv.Atoi(value); err == nil {
			testData[key] = n
		} else {
			testData[key] = strings.Trim(value, `"`)
		}
	}
	if top["type"] != "middleware" || top["import"] != "github.com/container-director/director" || top["displayName"] == "" {
		t.Errorf("manifest type %q import %q displayName %q", top["type"], top["import"], top["displayName"])
	}
	// The catalog shows the icon at iconPath, relative to the repository.
	if icon := top["iconPath"]; icon == "" {
		t.Error("manifest has no iconPath")
	} else if f, err := os.Open(icon); err != nil {
		t.Errorf("iconPath: %v", err)
	} else {
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Errorf("iconPath %s: not a PNG: %v", icon, err)
		} else if b := img.Bounds(); b.Dx() < 64 || b.Dx() != b.Dy() {
			t.Errorf("iconPath %s: %dx%d, want a square of at least 64 pixels", icon, b.Dx(), b.Dy())
		}
	}
	for _, key := range []string{"containerHostPrefix", "containerPort", "containerDomain", "usernameHeader", "usernamePolicy", "dialTimeout", "probeCacheTTL"} {
		if _, ok := testData[key]; !ok {
			t.Errorf("testData does not set %s", key)
		}
	}
	// Traefik decodes with weak typing: a string splits on commas into a
	// list setting.
	if s, ok := testData["usernameHeader"].(string); ok {
		testData["usernameHeader"] = strings.Split(s, ",")
	}
	cfg := CreateConfig()
	b, _ := json.Marshal(testData)
	if err := json.Unmarshal(b, cfg); err != nil {
		t.Fatalf("testData %s does not decode into Config: %v", b, err)
	}
	if _, err := New(context.Background(), &spawner{}, cfg, "catalog"); err != nil {
		t.Fatalf("New on testData: %v", err)
	}
}

// TestUnsentBodyGoesToSpawner covers requests that claim a body of which
// nothing reached the dead container: they go on to the spawner, body intact.
func TestUnsentBodyGoesToSpawner(t *testing.T) {
	testCases := []struct {
		desc         string
		send         func(f *fixture) (int, string)
		expectedBody string // what the spawner reads of the body
	}{
		{
			desc: "HTTP/3 GET: ContentLength -1 and no body",
			send: func(f *fixture) (int, string) {
				// As quic-go's server hands it to Traefik.
				req := httptest.NewRequest(http.MethodGet, "/page", nil)
				req.ContentLength = -1
				req.Body = io.NopCloser(strings.NewReader(""))
				req.Header.Set(identity, "alice")
				rec := httptest.NewRecorder()
				f.director.ServeHTTP(rec, req)
				return rec.Code, rec.Body.String()
			},
		},
		{
			desc: "Expect: 100-continue, body never sent",
			send: func(f *fixture) (int, string) {
				req, _ := http.NewRequest(http.MethodPut, f.front.URL+"/file", strings.NewReader("unsent"))
				req.Header.Set(identity, "alice")
				req.Header.Set("Expect", "100-continue")
				client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				return resp.StatusCode, readBody(t, resp)
			},
			// The spawner asked for it: the body is still the client's.
			expectedBody: "unsent",
		},
		{
			desc: "empty chunked body",
			send: func(f *fixture) (int, string) {
				// A reader of unknown length: the client sends it chunked.
				resp := f.do(http.MethodPost, "/form", "alice", io.MultiReader(), nil)
				return resp.StatusCode, readBody(t, resp)
			},
		},
		{
			desc: "POST with a body, dial refused",
			send: func(f *fixture) (int, string) {
				resp := f.do(http.MethodPost, "/form", "alice", strings.NewReader("unsaved work"), nil)
				return resp.StatusCode, readBody(t, resp)
			},
			expectedBody: "unsaved work",
		},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			f := newFixture(t, nil)
			f.spawner.readBody = true
			f.startContainer("vscode-alice:8080", "alice", nil)
			readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
			f.stopContainer("vscode-alice:8080")

			code, body := test.send(f)
			if code != http.StatusAccepted || body != "spawner: vscode-alice" {
				t.Fatalf("status %d body %q, want the spawner's 202", code, body)
			}
			if got := f.spawner.lastBody(); got != test.expectedBody {
				t.Errorf("spawner read body %q, want %q", got, test.expectedBody)
			}
			if f.director.probes.entries() != 0 {
				t.Error("the dead container is still cached as alive")
			}
		})
	}
}

// TestPartlySentBodyGets502: a container that dies after it read part of a
// body: the rest cannot go anywhere, the request gets a 502.
func TestPartlySentBodyGets502(t *testing.T) {
	f := newFixture(t, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Read the head and the first bytes of the body, then die.
				var got []byte
				buf := make([]byte, 4096)
				for {
					n, err := conn.Read(buf)
					got = append(got, buf[:n]...)
					if err != nil {
						break
					}
					if i := strings.Index(string(got), "\r\n\r\n"); i >= 0 && strings.Contains(string(got[i:]), "part") {
						// The client may end its body: the director
						// has read part of it.
						pw.Close()
						break
					}
				}
				conn.Close()
			}()
		}
	}()
	addr := ln.Addr().String()
	f.director.dialer.resolve = func(address string) string { return addr }

	go func() { _, _ = pw.Write([]byte("part")) }()
	resp := f.do(http.MethodPost, "/upload", "alice", pr, nil)
	body := readBody(t, resp)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "your container stopped answering") {
		t.Fatalf("status %d body %q, want 502", resp.StatusCode, body)
	}
	if n := f.spawner.count(); n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
}

// switchingContainer answers /switch with a 101 to the protocol named by
// ?to=, and reports on closed when the director closes that connection.
func switchingContainer(t *testing.T, f *fixture, closed chan<- struct{}) {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/switch" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.URL.Query().Get("to"))
		brw.Flush()
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, conn); err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			closed <- struct{}{}
		}
	}))
	t.Cleanup(s.Close)
	f.mu.Lock()
	f.containers["vscode-alice:8080"] = s
	f.mu.Unlock()
}

func TestUnaskedSwitchIs502(t *testing.T) {
	testCases := []struct {
		desc    string
		upgrade string // the protocol the request asks for, "" for none
	}{
		{desc: "another protocol than asked for", upgrade: "websocket"},
		{desc: "a switch not asked for", upgrade: ""},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			f := newFixture(t, nil)
			closed := make(chan struct{}, 1)
			switchingContainer(t, f, closed)
			if resp := f.do(http.MethodGet, "/", "alice", nil, nil); readBody(t, resp) != "ok" {
				t.Fatalf("status %d, want the container's answer", resp.StatusCode)
			}
			header := http.Header{}
			if test.upgrade != "" {
				header.Set("Connection", "Upgrade")
				header.Set("Upgrade", test.upgrade)
			}
			resp := f.do(http.MethodGet, "/switch?to=h2c", "alice", nil, header)
			body := readBody(t, resp)
			if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "cannot be passed on") {
				t.Fatalf("status %d body %q, want 502", resp.StatusCode, body)
			}
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Error("the container's connection of the refused switch is still open")
			}
			if n := f.spawner.count(); n != 0 {
				t.Errorf("%d requests reached the spawner", n)
			}
			if n := f.director.probes.entries(); n != 1 {
				t.Errorf("%d cache entries, want the live container still cached", n)
			}
			if resp := f.do(http.MethodGet, "/", "alice", nil, nil); readBody(t, resp) != "ok" {
				t.Fatalf("next request: status %d, want the container's answer", resp.StatusCode)
			}
			if d := f.probeDials(); d != 1 {
				t.Errorf("%d probe dials, want 1: the container answered", d)
			}
		})
	}
}

// hijackedWriter is a ResponseWriter whose connection is taken over and
// then fails every write, as when the client went away. It records what was
// written through it after the takeover.
type hijackedWriter struct {
	header    http.Header
	hijacked  bool
	afterward []string
}

func (w *hijackedWriter) Header() http.Header { return w.header }

func (w *hijackedWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		w.afterward = append(w.afterward, "Write "+string(p))
	}
	return len(p), nil
}

func (w *hijackedWriter) WriteHeader(code int) {
	if w.hijacked {
		w.afterward = append(w.afterward, "WriteHeader "+strconv.Itoa(code))
	}
}

func (w *hijackedWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	server, client := net.Pipe()
	client.Close()
	return server, bufio.NewReadWriter(bufio.NewReader(server), bufio.NewWriter(server)), nil
}

func TestSwitchFailingAfterTakeoverWritesNothing(t *testing.T) {
	f := newFixture(t, nil)
	closed := make(chan struct{}, 1)
	switchingContainer(t, f, closed)
	if resp := f.do(http.MethodGet, "/", "alice", nil, nil); readBody(t, resp) != "ok" {
		t.Fatalf("status %d, want the container's answer", resp.StatusCode)
	}
	req := httptest.NewRequest(http.MethodGet, "/switch?to=test", nil)
	req.Header.Set(identity, "alice")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "test")
	w := &hijackedWriter{header: http.Header{}}
	f.director.ServeHTTP(w, req)
	if !w.hijacked {
		t.Fatal("the proxy did not take the connection over")
	}
	if len(w.afterward) != 0 {
		t.Errorf("written after the takeover: %q", w.afterward)
	}
	if n := f.spawner.count(); n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
	if n := f.director.probes.entries(); n != 1 {
		t.Errorf("%d cache entries, want the live container still cached", n)
	}
}

func TestEmptyForwardedForReachesSpawnerAsSent(t *testing.T) {
	f := newFixture(t, nil)
	f.startContainer("vscode-alice:8080", "alice", nil)
	readEcho(t, f.do(http.MethodGet, "/", "alice", nil, nil))
	f.stopContainer("vscode-alice:8080")

	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(identity, "alice")
	req.Header["X-Forwarded-For"] = []string{""}
	rec := httptest.NewRecorder()
	f.director.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status %d body %q, want the spawner", rec.Code, rec.Body)
	}
	if got := f.spawner.last().Header["X-Forwarded-For"]; len(got) != 1 || got[0] != "" {
		t.Errorf("spawner got X-Forwarded-For %q, want the empty value the client sent", got)
	}
}

func TestIdentityHeaderList(t *testing.T) {
	const (
		preferred = "X-Auth-Request-Preferred-Username"
		user      = "X-Auth-Request-User"
	)
	testCases := []struct {
		desc              string
		header            http.Header
		expectedStatus    int
		expectedContainer string // reached, or named to the spawner
	}{
		{desc: "first header wins", header: http.Header{preferred: {"alice"}, user: {"bob"}}, expectedStatus: http.StatusOK, expectedContainer: "alice"},
		{desc: "empty first header: the next one", header: http.Header{preferred: {""}, user: {"bob"}}, expectedStatus: http.StatusOK, expectedContainer: "bob"},
		{desc: "missing first header: the next one", header: http.Header{user: {"bob"}}, expectedStatus: http.StatusOK, expectedContainer: "bob"},
		{desc: "next one's container down: the spawner", header: http.Header{user: {"carol"}}, expectedStatus: http.StatusAccepted, expectedContainer: "vscode-carol"},
		{desc: "none: 401", header: http.Header{"X-Forwarded-Preferred-Username": {"alice"}}, expectedStatus: http.StatusUnauthorized},
		{desc: "all empty: 400", header: http.Header{preferred: {""}, user: {""}}, expectedStatus: http.StatusBadRequest},
		{desc: "deciding header repeated: 400", header: http.Header{user: {"bob", "alice"}}, expectedStatus: http.StatusBadRequest},
		{desc: "second name invalid: 400", header: http.Header{user: {"Bob"}}, expectedStatus: http.StatusBadRequest},
	}
	for _, test := range testCases {
		test := test
		t.Run(test.desc, func(t *testing.T) {
			cfg := vscodeConfig()
			cfg.UsernameHeader = []string{preferred + "," + user}
			f := newFixture(t, cfg)
			f.startContainer("vscode-alice:8080", "alice", nil)
			f.startContainer("vscode-bob:8080", "bob", nil)
			for i := 0; i < 2; i++ { // probed, then cached
				resp := f.do(http.MethodGet, "/", "", nil, test.header)
				switch body := readBody(t, resp); {
				case resp.StatusCode != test.expectedStatus:
					t.Fatalf("status %d body %q, want %d", resp.StatusCode, body, test.expectedStatus)
				case test.expectedStatus == http.StatusOK && !strings.Contains(body, `"container":"`+test.expectedContainer+`"`):
					t.Fatalf("reached %q, want %s's container", body, test.expectedContainer)
				case test.expectedStatus == http.StatusAccepted && body != "spawner: "+test.expectedContainer:
					t.Fatalf("spawner answered %q, want it asked for %s", body, test.expectedContainer)
				}
			}
			if test.expectedStatus == http.StatusOK && f.probeDials() != 1 {
				t.Errorf("%d probe dials, want 1: the second request finds the container cached", f.probeDials())
			}
		})
	}
}

// TestLookalikesOfEveryIdentityHeaderDropped: no listed header reaches the
// spawner under a '_' spelling a CGI-style server would read as it.
func TestLookalikesOfEveryIdentityHeaderDropped(t *testing.T) {
	cfg := vscodeConfig()
	cfg.UsernameHeader = []string{"X-Auth-Request-Preferred-Username", "X-Auth-Request-User"}
	f := newFixture(t, cfg)
	resp := f.do(http.MethodGet, "/", "", nil, http.Header{
		"X-Auth-Request-User":               {"alice"},
		"X_auth_request_preferred_username": {"bob"},
		"X_auth_request_user":               {"bob"},
	})
	if body := readBody(t, resp); resp.StatusCode != http.StatusAccepted || body != "spawner: vscode-alice" {
		t.Fatalf("status %d body %q, want the spawner for alice", resp.StatusCode, body)
	}
	for k := range f.spawner.last().Header {
		if strings.Contains(k, "_") {
			t.Errorf("spawner got look-alike header %q", k)
		}
	}
}

// FuzzPrefixesNeverShareAContainer maps two names through two instances
// with different prefixes (and any policies): their hosts always differ.
func FuzzPrefixesNeverShareAContainer(f *testing.F) {
	f.Add("jupyter", "gpu-alice", false, "jupyter-gpu", "alice", false)
	f.Add("jupyter", "gpu-alice", true, "jupyter-gpu", "2dalice", true)
	f.Add("jupyter", "gpu-alice", true, "jupyter-gpu", "2dalice", false)
	f.Add("vscode", "alice", false, "jupyter", "alice", true)
	f.Add("a", "b-c", false, "a-b", "c", false)
	f.Fuzz(func(t *testing.T, prefix1, name1 string, escape1 bool, prefix2, name2 string, escape2 bool) {
		if prefix1 == prefix2 {
			return
		}
		host1, ok1 := hostFor(prefix1, name1, escape1)
		host2, ok2 := hostFor(prefix2, name2, escape2)
		if ok1 && ok2 && host1 == host2 {
			t.Fatalf("prefix %q user %q and prefix %q user %q both reach %q", prefix1, name1, prefix2, name2, host1)
		}
	})
}

// hostFor returns the container host that a director with prefix and policy
// gives name, and false if New refuses the prefix or the name is refused.
func hostFor(prefix, name string, escape bool) (string, bool) {
	cfg := CreateConfig()
	cfg.ContainerHostPrefix = prefix
	if escape {
		cfg.UsernamePolicy = PolicyEscape
	}
	h, err := New(context.Background(), &spawner{}, cfg, "fuzz")
	if err != nil {
		return "", false
	}
	d := h.(*director)
	mapped, err := containerLabel(name, d.settings.escape, d.room)
	if err != nil {
		return "", false
	}
	return d.settings.prefix + "-" + mapped + d.settings.hostSuffix, true
}
