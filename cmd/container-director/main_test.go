package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	director "github.com/container-director/director"
	"github.com/container-director/director/internal/nstest"
	"github.com/container-director/director/internal/wstest"
)

// testVersion is the version the test binary is built with.
const testVersion = "v0.0.0-test"

// hosts are the containers the tests run, by name, on port 8080 of their
// loopback address in the private network namespace. vscode-bob has no
// server: its container is down.
var hosts = map[string]string{
	"vscode-alice": "127.0.0.2",
	"vscode-bob":   "127.0.0.3",
	"vscode-carol": "127.0.0.4",
	"vscode-dave":  "127.0.0.5",
}

// binary is the path of the container-director built for the tests.
var binary string

// waitLimit bounds every wait for the process; it is a safety net against
// hanging, not a timing assertion.
const waitLimit = 20 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	// Build only in the re-executed binary inside the namespaces.
	if nstest.Inside() {
		dir, err := os.MkdirTemp("", "container-director-test-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "making a temporary directory: %v\n", err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "container-director")
		build := exec.Command("go", "build", "-ldflags=-X main.version="+testVersion, "-o", binary, ".")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building container-director: %v\n%s", err, out)
			return 1
		}
	}
	return nstest.Main(m, hosts)
}

// syncBuffer is a bytes.Buffer safe for a process's output and a test that
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a running container-director.
type process struct {
	cmd    *exec.Cmd
	addr   string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's error, once done is closed
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// command returns a container-director command with exactly the given
// environment (and PATH).
func command(env map[string]string, args ...string) (*exec.Cmd, *syncBuffer, *syncBuffer) {
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, stderr := &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// start runs container-director with env on a free port, waits until it
// accepts connections, and stops it when the test ends.
func start(t *testing.T, env map[string]string) *process {
	t.Helper()
	addr := freeAddr(t)
	env["LISTEN_ADDR"] = addr
	cmd, stdout, stderr := command(env)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, addr: addr, stdout: stdout, stderr: stderr, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	})

	deadline := time.Now().Add(waitLimit)
	for {
		select {
		case <-p.done:
			t.Fatalf("container-director exited before listening: %v\nstderr:\n%s", p.err, stderr)
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("container-director is not listening on %s after %s\nstderr:\n%s", addr, waitLimit, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitOutput waits until the output holds want, and returns it. The output
// reaches the buffer through a pipe, a little after the process wrote it.
func waitOutput(t *testing.T, output *syncBuffer, want string) string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := output.String()
		if strings.Contains(s, want) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// wait waits for the process to exit and returns its exit status.
func (p *process) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(waitLimit):
		t.Fatalf("container-director has not exited after %s", waitLimit)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("waiting for container-director: %v", p.err)
	}
	return 0
}

// serveAt starts a test server for h on addr, closed when the test ends.
func serveAt(t *testing.T, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// container returns the address of name's container, "127.0.0.x:8080".
func container(name string) string {
	return hosts[name] + ":8080"
}

// received is what a test server saw of one request.
type received struct {
	host   string
	header http.Header
}

// recorder is a test server handler that records requests and answers with
// its name and the path.
type recorder struct {
	name string
	mu   sync.Mutex
	reqs []received
}

func (r *recorder) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, received{host: req.Host, header: req.Header.Clone()})
	r.mu.Unlock()
	fmt.Fprintf(rw, "%s: %s", r.name, req.URL.Path)
}

// count returns the number of requests the recorder saw.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

// only returns the one request the recorder saw, or fails the test.
func (r *recorder) only(t *testing.T) received {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) != 1 {
		t.Fatalf("%s received %d requests, want 1", r.name, len(r.reqs))
	}
	return r.reqs[0]
}

// baseEnv is a good environment for a spawner at spawnerAddr.
func baseEnv(spawnerAddr string) map[string]string {
	return map[string]string{
		"SPAWNER_HOST":          spawnerAddr,
		"CONTAINER_HOST_PREFIX": "vscode",
	}
}

// get sends a GET for path to the director at addr as the browser would
// through OAuth2 Proxy, with a forged X-Container-Name.
func get(t *testing.T, addr, path, user string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "code.example.com"
	if user != "" {
		req.Header.Set(director.DefaultUsernameHeader, user)
	}
	req.Header.Set(director.ContainerNameHeader, "vscode-mallory")
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Forwarded-Host", "code.example.com")
	req.Header.Set("X-Forwarded-Proto", "https")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestVersion(t *testing.T) {
	cmd, stdout, stderr := command(nil, "-version")
	if err := cmd.Run(); err != nil {
		t.Fatalf("-version: %v\nstderr:\n%s", err, stderr)
	}
	if got, expected := stdout.String(), "container-director "+testVersion+"\n"; got != expected {
		t.Errorf("-version printed %q, want %q", got, expected)
	}
}

func TestBadEnvironment(t *testing.T) {
	good := func() map[string]string { return baseEnv("spawner:8090") }
	tests := []struct {
		desc     string
		set      map[string]string
		unset    string
		args     []string
		expected string // the whole message, after "container-director: "; or its start, ending in ": "
	}{
		{desc: "missing SPAWNER_HOST", unset: "SPAWNER_HOST", expected: `SPAWNER_HOST: required, e.g. "spawner:8090" or "http://spawner:8090"`},
		{desc: "SPAWNER_HOST with another scheme", set: map[string]string{"SPAWNER_HOST": "ftp://x"}, expected: `SPAWNER_HOST: "ftp://x": the scheme must be http or https, got "ftp"`},
		{desc: "SPAWNER_HOST without a host", set: map[string]string{"SPAWNER_HOST": "http://"}, expected: `SPAWNER_HOST: "http://" has no host`},
		{desc: "SPAWNER_HOST with a bad port", set: map[string]string{"SPAWNER_HOST": "spawner:0"}, expected: `SPAWNER_HOST: "spawner:0": the port must be 1-65535`},
		{desc: "missing CONTAINER_HOST_PREFIX", unset: "CONTAINER_HOST_PREFIX", expected: `CONTAINER_HOST_PREFIX: required, e.g. "vscode"`},
		{desc: "bad CONTAINER_HOST_PREFIX", set: map[string]string{"CONTAINER_HOST_PREFIX": "VSCode"}, expected: `CONTAINER_HOST_PREFIX: "VSCode" must start with a lowercase letter`},
		{desc: "CONTAINER_PORT not a number", set: map[string]string{"CONTAINER_PORT": "abc"}, expected: `CONTAINER_PORT: "abc" is not a number`},
		{desc: "CONTAINER_PORT zero", set: map[string]string{"CONTAINER_PORT": "0"}, expected: `CONTAINER_PORT: must be 1-65535, got 0`},
		{desc: "CONTAINER_PORT too large", set: map[string]string{"CONTAINER_PORT": "65536"}, expected: `CONTAINER_PORT: must be 1-65535, got 65536`},
		{desc: "bad CONTAINER_DOMAIN", set: map[string]string{"CONTAINER_DOMAIN": "svc..local"}, expected: `CONTAINER_DOMAIN: "svc..local" has an empty label`},
		{desc: "bad USERNAME_HEADER", set: map[string]string{"USERNAME_HEADER": "X User"}, expected: `USERNAME_HEADER: "X User" is not a valid header name`},
		{desc: "USERNAME_HEADER the spawner's header", set: map[string]string{"USERNAME_HEADER": "x-container-name"}, expected: `USERNAME_HEADER: "x-container-name" is the header the director sets for the spawner`},
		{desc: "bad USERNAME_POLICY", set: map[string]string{"USERNAME_POLICY": "lenient"}, expected: `USERNAME_POLICY: must be "strict" or "escape", got "lenient"`},
		{desc: "DIAL_TIMEOUT not a duration", set: map[string]string{"DIAL_TIMEOUT": "soon"}, expected: `DIAL_TIMEOUT: "soon" is not a duration like "1s" or "250ms"`},
		{desc: "DIAL_TIMEOUT zero", set: map[string]string{"DIAL_TIMEOUT": "0s"}, expected: `DIAL_TIMEOUT: must be positive, got "0s"`},
		{desc: "PROBE_CACHE_TTL negative", set: map[string]string{"PROBE_CACHE_TTL": "-1s"}, expected: `PROBE_CACHE_TTL: must not be negative, got "-1s"`},
		{desc: "LISTEN_ADDR without a port", set: map[string]string{"LISTEN_ADDR": "8080"}, expected: `LISTEN_ADDR: "8080" is not an address like ":8080" or "10.0.0.2:8080"`},
		{desc: "LISTEN_ADDR with a bad port", set: map[string]string{"LISTEN_ADDR": ":http-alt"}, expected: `LISTEN_ADDR: ":http-alt": the port must be a number 0-65535`},
		{desc: "SHUTDOWN_TIMEOUT not a duration", set: map[string]string{"SHUTDOWN_TIMEOUT": "forever"}, expected: `SHUTDOWN_TIMEOUT: "forever" is not a duration like "30s" or "2m"`},
		{desc: "arguments", args: []string{"serve"}, expected: `unexpected arguments ["serve"]: the configuration is read from the environment`},
	}
	for _, test := range tests {
		t.Run(test.desc, func(t *testing.T) {
			env := good()
			// A port nothing listens on: the director must not open it.
			addr := freeAddr(t)
			env["LISTEN_ADDR"] = addr
			for k, v := range test.set {
				env[k] = v
			}
			delete(env, test.unset)
			cmd, stdout, stderr := command(env, test.args...)
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit: %v, want status 2\nstderr:\n%s", err, stderr)
			}
			expected := "container-director: " + test.expected + "\n"
			if got := stderr.String(); got != expected {
				t.Errorf("stderr:\n%q\nwant\n%q", got, expected)
			}
			if got := stdout.String(); got != "" {
				t.Errorf("stdout: %q, want nothing", got)
			}
			if c, err := net.Dial("tcp", env["LISTEN_ADDR"]); err == nil {
				c.Close()
				t.Errorf("something listens on %s", env["LISTEN_ADDR"])
			}
		})
	}
}

func TestProxy(t *testing.T) {
	alice := &recorder{name: "alice's container"}
	serveAt(t, container("vscode-alice"), alice)
	spawner := &recorder{name: "spawner"}
	spawnerSrv := serveAt(t, "127.0.0.1:0", spawner)

	env := baseEnv("http://" + spawnerSrv.Listener.Addr().String())
	env["PROBE_CACHE_TTL"] = "0s"
	p := start(t, env)

	t.Run("startup line", func(t *testing.T) {
		line := strings.SplitN(waitOutput(t, p.stdout, "\n"), "\n", 2)[0]
		for _, expected := range []string{
			"container-director[standalone]: version " + testVersion + " listening on " + p.addr + ":",
			` LISTEN_ADDR="` + p.addr + `"`,
			` SPAWNER_HOST="http://` + spawnerSrv.Listener.Addr().String() + `"`,
			` CONTAINER_HOST_PREFIX="vscode"`,
			` CONTAINER_PORT="8080"`,
			` CONTAINER_DOMAIN=""`,
			` USERNAME_HEADER="X-Forwarded-Preferred-Username"`,
			` USERNAME_POLICY="strict"`,
			` DIAL_TIMEOUT="1s"`,
			` PROBE_CACHE_TTL="0s"`,
			` SHUTDOWN_TIMEOUT="30s"`,
		} {
			if !strings.Contains(line, expected) {
				t.Errorf("startup line %q does not contain %q", line, expected)
			}
		}
	})

	t.Run("live container", func(t *testing.T) {
		code, body := get(t, p.addr, "/alice/file.txt", "alice")
		if code != http.StatusOK || body != "alice's container: /alice/file.txt" {
			t.Fatalf("got %d %q, want 200 from alice's container", code, body)
		}
		r := alice.only(t)
		checkForwarded(t, r)
		if v, ok := r.header[director.ContainerNameHeader]; ok {
			t.Errorf("the container received X-Container-Name %q", v)
		}
		if n := spawner.count(); n != 0 {
			t.Errorf("the spawner received %d requests, want none", n)
		}
	})

	t.Run("container down", func(t *testing.T) {
		code, body := get(t, p.addr, "/bob/", "bob")
		if code != http.StatusOK || body != "spawner: /bob/" {
			t.Fatalf("got %d %q, want 200 from the spawner", code, body)
		}
		r := spawner.only(t)
		checkForwarded(t, r)
		if got := r.header[director.ContainerNameHeader]; !reflect.DeepEqual(got, []string{"vscode-bob"}) {
			t.Errorf("X-Container-Name at the spawner: %q, want [vscode-bob]", got)
		}
		if got := r.header[director.DefaultUsernameHeader]; !reflect.DeepEqual(got, []string{"bob"}) {
			t.Errorf("identity header at the spawner: %q, want [bob]", got)
		}
	})

	t.Run("no identity", func(t *testing.T) {
		code, _ := get(t, p.addr, "/", "")
		if code != http.StatusUnauthorized {
			t.Errorf("got %d, want 401", code)
		}
	})
}

// checkForwarded checks that a request reached its server as the client sent
// it through OAuth2 Proxy: same Host and X-Forwarded-Host/-Proto, the
// director appended to X-Forwarded-For.
func checkForwarded(t *testing.T, r received) {
	t.Helper()
	if r.host != "code.example.com" {
		t.Errorf("Host %q, want code.example.com", r.host)
	}
	expected := http.Header{
		"X-Forwarded-For":   {"203.0.113.7, 127.0.0.1"},
		"X-Forwarded-Host":  {"code.example.com"},
		"X-Forwarded-Proto": {"https"},
	}
	for k, v := range expected {
		if got := r.header[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("%s %q, want %q", k, got, v)
		}
	}
}

func TestSpawnerDown(t *testing.T) {
	spawnerAddr := freeAddr(t)
	p := start(t, baseEnv(spawnerAddr))
	code, body := get(t, p.addr, "/", "bob")
	if code != http.StatusBadGateway {
		t.Errorf("got %d, want 502", code)
	}
	_, port, _ := net.SplitHostPort(spawnerAddr)
	if strings.Contains(body, "127.0.0.1") || strings.Contains(body, port) || strings.Contains(body, "refused") {
		t.Errorf("the client was shown internal details: %q", body)
	}
	if !strings.Contains(body, "Bad Gateway") {
		t.Errorf("body %q does not say Bad Gateway", body)
	}
	if stderr := waitOutput(t, p.stderr, spawnerAddr); !strings.Contains(stderr, spawnerAddr) {
		t.Errorf("stderr does not name the spawner %s:\n%s", spawnerAddr, stderr)
	}
}

func TestWebSocket(t *testing.T) {
	serveAt(t, container("vscode-carol"), wstest.EchoHandler("carol: "))
	p := start(t, baseEnv(freeAddr(t)))

	header := http.Header{director.DefaultUsernameHeader: {"carol"}}
	conn, _, err := wstest.Dial(p.addr, "http://code.example.com/socket", header, waitLimit)
	if err != nil {
		t.Fatalf("dialing the WebSocket: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(waitLimit))
	for _, msg := range []string{"hello", "again"} {
		got, err := conn.RoundTrip(msg)
		if err != nil || got != "carol: "+msg {
			t.Errorf("echo %q, %v; want %q", got, err, "carol: "+msg)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	serveAt(t, container("vscode-dave"), http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		_, _ = io.WriteString(rw, "first half\n")
		rw.(http.Flusher).Flush()
		close(started)
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
		_, _ = io.WriteString(rw, "second half\n")
	}))
	p := start(t, baseEnv(freeAddr(t)))

	type result struct {
		code int
		body string
		err  error
	}
	results := make(chan result, 1)
	go func() {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+p.addr+"/slow", nil)
		req.Header.Set(director.DefaultUsernameHeader, "dave")
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * waitLimit}
		resp, err := client.Do(req)
		if err != nil {
			results <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		results <- result{code: resp.StatusCode, body: string(body), err: err}
	}()

	select {
	case <-started:
	case <-time.After(waitLimit):
		t.Fatal("the slow request did not reach the container")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// The listener closes while the request is still in flight.
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("still accepting connections %s after SIGTERM", waitLimit)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-p.done:
		t.Fatalf("exited with a request in flight: %v", p.err)
	default:
	}

	close(release)
	r := <-results
	if r.err != nil {
		t.Fatalf("the request in flight failed: %v", r.err)
	}
	if r.code != http.StatusOK || r.body != "first half\nsecond half\n" {
		t.Errorf("the request in flight got %d %q, want 200 and both halves", r.code, r.body)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit status %d, want 0\nstderr:\n%s", code, p.stderr)
	}
	if out := p.stdout.String(); !strings.Contains(out, "terminated: shutting down") || !strings.HasSuffix(out, "stopped\n") {
		t.Errorf("stdout does not tell of the shutdown:\n%s", out)
	}
	if c, err := net.Dial("tcp", p.addr); err == nil {
		c.Close()
		t.Errorf("something still listens on %s", p.addr)
	}
}

// TestPluginVars checks that every key of the plugin's configuration has its
// environment variable, so that a new key cannot be forgotten here.
func TestPluginVars(t *testing.T) {
	keys := map[string]bool{}
	for _, v := range pluginVars {
		keys[v.key] = true
	}
	typ := reflect.TypeOf(director.Config{})
	for i := 0; i < typ.NumField(); i++ {
		key := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
		if !keys[key] {
			t.Errorf("configuration key %q has no environment variable", key)
		}
		delete(keys, key)
	}
	for key := range keys {
		t.Errorf("environment variable for %q, which is not a configuration key", key)
	}
}

func TestParseSpawnerHost(t *testing.T) {
	tests := []struct {
		desc        string
		value       string
		expected    string
		expectedErr bool
	}{
		{desc: "bare host", value: "spawner", expected: "http://spawner:80"},
		{desc: "host and port", value: "spawner:8090", expected: "http://spawner:8090"},
		{desc: "http URL", value: "http://spawner:8090", expected: "http://spawner:8090"},
		{desc: "http URL with a slash", value: "http://spawner:8090/", expected: "http://spawner:8090"},
		{desc: "https URL without a port", value: "HTTPS://spawner.example.com", expected: "https://spawner.example.com:443"},
		{desc: "IPv6", value: "[::1]:8090", expected: "http://[::1]:8090"},
		{desc: "empty", value: "", expectedErr: true},
		{desc: "ftp", value: "ftp://x", expectedErr: true},
		{desc: "no host", value: "http://", expectedErr: true},
		{desc: "only a port", value: ":8090", expectedErr: true},
		{desc: "port out of range", value: "spawner:65536", expectedErr: true},
		{desc: "port not a number", value: "spawner:http", expectedErr: true},
		{desc: "path", value: "http://spawner:8090/spawn", expectedErr: true},
		{desc: "query", value: "http://spawner:8090?x=1", expectedErr: true},
		{desc: "user information", value: "http://user:pw@spawner:8090", expectedErr: true},
	}
	for _, test := range tests {
		u, err := parseSpawnerHost(test.value)
		if test.expectedErr {
			if err == nil {
				t.Errorf("%s: %q gave %v, want an error", test.desc, test.value, u)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %q: %v", test.desc, test.value, err)
			continue
		}
		if got := u.String(); got != test.expected {
			t.Errorf("%s: %q gave %q, want %q", test.desc, test.value, got, test.expected)
		}
	}
}

func TestEnvError(t *testing.T) {
	tests := []struct {
		desc     string
		err      string
		expected string
	}{
		{desc: "a key", err: "containerPort: must be 1-65535, got 0", expected: "CONTAINER_PORT: must be 1-65535, got 0"},
		{desc: "a key that starts another", err: `containerHostPrefix: required, e.g. "vscode"`, expected: `CONTAINER_HOST_PREFIX: required, e.g. "vscode"`},
		{desc: "the last key", err: `probeCacheTTL: must not be negative, got "-1s"`, expected: `PROBE_CACHE_TTL: must not be negative, got "-1s"`},
		{desc: "no key", err: "container-director: no next handler", expected: "container-director: no next handler"},
	}
	for _, test := range tests {
		if got := envError(errors.New(test.err)); got != test.expected {
			t.Errorf("%s: got %q, want %q", test.desc, got, test.expected)
		}
	}
}
