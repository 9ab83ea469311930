package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeContainer is one container of the fake engine.
type fakeContainer struct {
	status     string
	health     string
	exitCode   int
	labels     map[string]string
	tty        bool
	startedAt  time.Time
	finishedAt time.Time
	logs       []byte // in the format the engine sends
}

// fakeEngine is a Docker Engine API server, as far as the spawner uses it.
type fakeEngine struct {
	t            *testing.T
	mu           sync.Mutex
	containers   map[string]*fakeContainer
	images       map[string]bool // pulled images
	createBodies []createRequest
	calls        []string // "METHOD path"
	logQueries   []string
	failInspect  bool
	// racing names exist but inspect says 404 until a create hits the
	// conflict: another spawner replica won the race.
	racing map[string]bool
}

func (e *fakeEngine) record(r *http.Request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, r.Method+" "+r.URL.Path)
}

// put adds a container.
func (e *fakeEngine) put(name string, c *fakeContainer) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers[name] = c
}

// locked runs fn with the engine's lock held, to read what it recorded.
func (e *fakeEngine) locked(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	fn()
}

func (e *fakeEngine) count(call string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.calls {
		if c == call {
			n++
		}
	}
	return n
}

func writeEngineError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func engineTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func (e *fakeEngine) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1.41/containers/create", func(w http.ResponseWriter, r *http.Request) {
		e.record(r)
		var body createRequest
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			writeEngineError(w, http.StatusBadRequest, "bad body")
			return
		}
		name := r.URL.Query().Get("name")
		e.mu.Lock()
		defer e.mu.Unlock()
		e.createBodies = append(e.createBodies, body)
		if strings.HasPrefix(body.Image, "missing") && !e.images[body.Image] {
			writeEngineError(w, http.StatusNotFound, "No such image: "+body.Image)
			return
		}
		if _, ok := e.containers[name]; ok {
			delete(e.racing, name)
			writeEngineError(w, http.StatusConflict, fmt.Sprintf("Conflict. The container name %q is already in use by container \"0123\".", "/"+name))
			return
		}
		e.containers[name] = &fakeContainer{status: StatusCreated, labels: body.Labels}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"Id":"0123456789ab","Warnings":[]}`))
	})
	mux.HandleFunc("POST /v1.41/images/create", func(w http.ResponseWriter, r *http.Request) {
		e.record(r)
		image := r.URL.Query().Get("fromImage") + ":" + r.URL.Query().Get("tag")
		e.mu.Lock()
		e.images[image] = true
		e.mu.Unlock()
		_, _ = w.Write([]byte(`{"status":"Pulling from ` + image + `"}` + "\n" + `{"status":"Download complete"}` + "\n"))
	})
	withContainer := func(fn func(w http.ResponseWriter, r *http.Request, c *fakeContainer)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			e.record(r)
			e.mu.Lock()
			defer e.mu.Unlock()
			c, ok := e.containers[r.PathValue("name")]
			if !ok || e.racing[r.PathValue("name")] {
				writeEngineError(w, http.StatusNotFound, "No such container: "+r.PathValue("name"))
				return
			}
			fn(w, r, c)
		}
	}
	mux.HandleFunc("GET /v1.41/containers/{name}/json", withContainer(func(w http.ResponseWriter, r *http.Request, c *fakeContainer) {
		if e.failInspect {
			writeEngineError(w, http.StatusInternalServerError, "engine on fire at /var/lib/docker")
			return
		}
		state := map[string]any{
			"Status": c.status, "Running": c.status == StatusRunning, "ExitCode": c.exitCode, "Error": "",
			"StartedAt": engineTime(c.startedAt), "FinishedAt": engineTime(c.finishedAt),
		}
		if c.health != "" {
			state["Health"] = map[string]any{"Status": c.health, "FailingStreak": 0}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"Id": "0123456789ab", "Name": "/" + r.PathValue("name"), "State": state,
			"Config": map[string]any{"Tty": c.tty, "Labels": c.labels, "Image": "img"},
		})
	}))
	mux.HandleFunc("POST /v1.41/containers/{name}/start", withContainer(func(w http.ResponseWriter, r *http.Request, c *fakeContainer) {
		if c.status == StatusRunning {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		c.status, c.startedAt, c.exitCode = StatusRunning, time.Now(), 0
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /v1.41/containers/{name}/restart", withContainer(func(w http.ResponseWriter, r *http.Request, c *fakeContainer) {
		c.status, c.startedAt, c.exitCode = StatusRunning, time.Now(), 0
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET /v1.41/containers/{name}/logs", withContainer(func(w http.ResponseWriter, r *http.Request, c *fakeContainer) {
		e.logQueries = append(e.logQueries, r.URL.RawQuery)
		// Before API 1.42 the engine labels both formats raw-stream.
		w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
		_, _ = w.Write(c.logs)
	}))
	return mux
}

// startFakeEngine serves a fake engine on a Unix socket and returns it with
// its DOCKER_HOST.
func startFakeEngine(t *testing.T) (*fakeEngine, string) {
	t.Helper()
	// A short directory of its own: Unix socket paths are limited to about
	// 100 bytes, and test names make t.TempDir long.
	dir, err := os.MkdirTemp("", "engine")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listening on %q: %v", sock, err)
	}
	e := &fakeEngine{t: t, containers: map[string]*fakeContainer{}, images: map[string]bool{}, racing: map[string]bool{}}
	srv := &http.Server{Handler: e.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return e, "unix://" + sock
}

func newTestDocker(t *testing.T, cfg DockerConfig) Backend {
	t.Helper()
	b, err := NewDockerBackend(cfg)
	if err != nil {
		t.Fatalf("NewDockerBackend: %v", err)
	}
	return b
}

// frame is one frame of the engine's multiplexed stream format.
func frame(stream byte, payload string) []byte {
	head := []byte{stream, 0, 0, 0}
	head = binary.BigEndian.AppendUint32(head, uint32(len(payload)))
	return append(head, payload...)
}

func TestDockerBackendConfig(t *testing.T) {
	tests := []struct {
		desc        string
		host        string
		expectedErr string
	}{
		{desc: "unix socket", host: "unix:///var/run/docker.sock"},
		{desc: "tcp", host: "tcp://127.0.0.1:2375"},
		{desc: "default", host: ""},
		{desc: "unix without path", host: "unix://", expectedErr: "no socket path"},
		{desc: "ssh", host: "ssh://user@host", expectedErr: "unsupported scheme"},
	}
	for _, test := range tests {
		_, err := NewDockerBackend(DockerConfig{Host: test.host})
		if test.expectedErr == "" && err != nil {
			t.Errorf("%s: unexpected error %v", test.desc, err)
		}
		if test.expectedErr != "" && (err == nil || !strings.Contains(err.Error(), test.expectedErr)) {
			t.Errorf("%s: expected an error with %q, got %v", test.desc, test.expectedErr, err)
		}
	}
}

func TestDockerCreateStartInspect(t *testing.T) {
	e, host := startFakeEngine(t)
	d := newTestDocker(t, DockerConfig{Host: host, Image: "example/ws:1.2", Network: "workspaces"})
	ctx := context.Background()

	if _, err := d.Inspect(ctx, "vscode-jack"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expected ErrNotFound before create, got %v", err)
	}
	if err := d.Start(ctx, "vscode-jack"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected ErrNotFound starting a missing container, got %v", err)
	}
	if err := d.Create(ctx, "vscode-jack", "Jack Smith"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	var body createRequest
	e.locked(func() { body = e.createBodies[0] })
	if body.Image != "example/ws:1.2" || body.Hostname != "vscode-jack" {
		t.Errorf("unexpected image or hostname: %+v", body)
	}
	if len(body.Env) != 1 || body.Env[0] != "USER_NAME=Jack Smith" {
		t.Errorf("expected Env USER_NAME=Jack Smith, got %q", body.Env)
	}
	if body.Labels[LabelSpawned] != "true" || body.Labels[LabelUser] != "Jack Smith" {
		t.Errorf("expected the spawner labels, got %v", body.Labels)
	}
	if body.HostConfig.NetworkMode != "workspaces" || body.NetworkingConfig == nil ||
		len(body.NetworkingConfig.EndpointsConfig["workspaces"].Aliases) != 1 {
		t.Errorf("expected network workspaces with an alias, got %+v %+v", body.HostConfig, body.NetworkingConfig)
	}

	st, err := d.Inspect(ctx, "vscode-jack")
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	if st.Status != StatusCreated || !st.Managed || st.User != "Jack Smith" || !st.StartedAt.IsZero() {
		t.Errorf("unexpected state after create: %+v", st)
	}
	if err := d.Start(ctx, "vscode-jack"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := d.Start(ctx, "vscode-jack"); err != nil {
		t.Errorf("expected starting a running container (304) to succeed, got %v", err)
	}
	st, err = d.Inspect(ctx, "vscode-jack")
	if err != nil || st.Status != StatusRunning || st.StartedAt.IsZero() {
		t.Errorf("expected running with a start time, got %+v, %v", st, err)
	}
	if err := d.Restart(ctx, "vscode-jack"); err != nil {
		t.Errorf("Restart: %v", err)
	}
	if e.count("POST /v1.41/containers/vscode-jack/restart") != 1 {
		t.Errorf("expected one restart call")
	}
}

func TestDockerCreateConflict(t *testing.T) {
	e, host := startFakeEngine(t)
	e.put("vscode-jack", &fakeContainer{status: StatusRunning, labels: map[string]string{LabelSpawned: "true"}})
	d := newTestDocker(t, DockerConfig{Host: host})
	if err := d.Create(context.Background(), "vscode-jack", "jack"); !errors.Is(err, ErrExists) {
		t.Errorf("expected ErrExists for a 409, got %v", err)
	}
}

func TestDockerPullMissingImage(t *testing.T) {
	e, host := startFakeEngine(t)
	d := newTestDocker(t, DockerConfig{Host: host, Image: "missing/img:2", Pull: true})
	if err := d.Create(context.Background(), "vscode-jack", "jack"); err != nil {
		t.Fatalf("Create with pull: %v", err)
	}
	var pulled bool
	e.locked(func() { pulled = e.images["missing/img:2"] })
	if e.count("POST /v1.41/images/create") != 1 || !pulled {
		t.Errorf("expected one pull of missing/img:2")
	}
	d = newTestDocker(t, DockerConfig{Host: host, Image: "missing/other:1", Pull: false})
	if err := d.Create(context.Background(), "vscode-jill", "jill"); err == nil || !strings.Contains(err.Error(), "No such image") {
		t.Errorf("expected a no-such-image error without pull, got %v", err)
	}
}

func TestDockerExited(t *testing.T) {
	e, host := startFakeEngine(t)
	finished := time.Date(2026, 5, 1, 11, 58, 30, 123000000, time.UTC)
	e.put("vscode-jack", &fakeContainer{
		status: StatusExited, exitCode: 137, labels: map[string]string{LabelSpawned: "true", LabelUser: "jack"},
		startedAt: finished.Add(-time.Hour), finishedAt: finished,
	})
	e.put("vscode-jill", &fakeContainer{
		status: StatusRunning, health: HealthUnhealthy, labels: map[string]string{LabelSpawned: "true"},
	})
	d := newTestDocker(t, DockerConfig{Host: host})
	st, err := d.Inspect(context.Background(), "vscode-jack")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusExited || st.ExitCode != 137 || !st.FinishedAt.Equal(finished) || st.User != "jack" {
		t.Errorf("unexpected exited state: %+v", st)
	}
	st, err = d.Inspect(context.Background(), "vscode-jill")
	if err != nil || st.Health != HealthUnhealthy {
		t.Errorf("expected health unhealthy, got %+v, %v", st, err)
	}
}

func TestDockerLogs(t *testing.T) {
	e, host := startFakeEngine(t)
	var multiplexed []byte
	multiplexed = append(multiplexed, frame(1, "starting server\nlistening on ")...)
	multiplexed = append(multiplexed, frame(1, "0.0.0.0:8080\n")...)
	multiplexed = append(multiplexed, frame(2, "panic: <script>boom</script>\r\n")...)
	multiplexed = append(multiplexed, frame(2, "goroutine 1 [running]:\n")...)
	e.put("vscode-jack", &fakeContainer{status: StatusExited, labels: map[string]string{LabelSpawned: "true"}, logs: multiplexed})
	e.put("vscode-tty", &fakeContainer{status: StatusExited, labels: map[string]string{LabelSpawned: "true"}, tty: true,
		logs: []byte("\x01\x00\x00\x00 looks like a header but this is a TTY\nsecond\n")})
	d := newTestDocker(t, DockerConfig{Host: host})

	lines, err := d.Logs(context.Background(), "vscode-jack", 30)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	expected := []string{"starting server", "listening on 0.0.0.0:8080", "panic: <script>boom</script>", "goroutine 1 [running]:"}
	if strings.Join(lines, "|") != strings.Join(expected, "|") {
		t.Errorf("expected %q, got %q", expected, lines)
	}
	var queries []string
	e.locked(func() { queries = e.logQueries })
	if len(queries) != 1 || !strings.Contains(queries[0], "tail=30") ||
		!strings.Contains(queries[0], "stdout=1") || !strings.Contains(queries[0], "stderr=1") {
		t.Errorf("unexpected logs query %q", queries)
	}
	lines, err = d.Logs(context.Background(), "vscode-jack", 2)
	if err != nil || len(lines) != 2 || lines[1] != "goroutine 1 [running]:" {
		t.Errorf("expected the last 2 lines, got %q, %v", lines, err)
	}
	lines, err = d.Logs(context.Background(), "vscode-tty", 30)
	if err != nil || len(lines) != 2 || !strings.HasSuffix(lines[0], "this is a TTY") {
		t.Errorf("expected raw TTY lines, got %q, %v", lines, err)
	}
	if _, err := d.Logs(context.Background(), "vscode-nobody", 30); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected ErrNotFound, got %v", err)
	}
}

func TestDemultiplexTruncated(t *testing.T) {
	b := append(frame(1, "complete\n"), frame(2, "cut short")[:12]...)
	if got := string(demultiplex(b)); got != "complete\ncut " {
		t.Errorf("unexpected %q", got)
	}
	if got := demultiplex([]byte{1, 0, 0}); len(got) != 0 {
		t.Errorf("expected nothing from a partial header, got %q", got)
	}
}

func TestDockerUnmanaged(t *testing.T) {
	e, host := startFakeEngine(t)
	e.put("vscode-jack", &fakeContainer{status: StatusExited, exitCode: 1, labels: map[string]string{"com.example": "x"}})
	d := newTestDocker(t, DockerConfig{Host: host})
	ctx := context.Background()
	st, err := d.Inspect(ctx, "vscode-jack")
	if err != nil || st.Managed {
		t.Errorf("expected an unmanaged container, got %+v, %v", st, err)
	}
	if err := d.Start(ctx, "vscode-jack"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected ErrUnmanaged from Start, got %v", err)
	}
	if err := d.Restart(ctx, "vscode-jack"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected ErrUnmanaged from Restart, got %v", err)
	}
	if e.count("POST /v1.41/containers/vscode-jack/start")+e.count("POST /v1.41/containers/vscode-jack/restart") != 0 {
		t.Errorf("the backend sent a start or restart for an unmanaged container")
	}
}

// TestHandlerWithDockerEngine runs the handler on the fake engine: many tabs,
// one create; a conflict from another spawner; an unmanaged container.
func TestHandlerWithDockerEngine(t *testing.T) {
	e, host := startFakeEngine(t)
	h := newTestHandler(t, newTestDocker(t, DockerConfig{Host: host}), HandlerConfig{})

	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := serve(h, pageLoad("/", "vscode-jack"))
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("expected the loading page, got %d", w.Code)
			}
		}()
	}
	wg.Wait()
	waitIdle(t, h)
	if n := e.count("POST /v1.41/containers/create"); n != 1 {
		t.Errorf("expected 1 create, got %d", n)
	}
	if n := e.count("POST /v1.41/containers/vscode-jack/start"); n != 1 {
		t.Errorf("expected 1 start, got %d", n)
	}

	// Another spawner replica created vscode-jill between our inspect and
	// our create: the 409 counts as exists, and its created container gets
	// started.
	e.put("vscode-jill", &fakeContainer{status: StatusCreated, labels: map[string]string{LabelSpawned: "true"}})
	e.locked(func() { e.racing["vscode-jill"] = true })
	if w := serve(h, pageLoad("/", "vscode-jill")); w.Code != http.StatusServiceUnavailable {
		t.Errorf("expected the loading page for vscode-jill, got %d", w.Code)
	}
	waitIdle(t, h)
	if n := e.count("POST /v1.41/containers/create"); n != 2 {
		t.Errorf("expected a second create (for vscode-jill) that met the conflict, got %d creates", n)
	}
	if _, ok := h.recentFailure("vscode-jill"); ok {
		t.Errorf("a 409 was remembered as a failure")
	}
	if st, err := h.backend.Inspect(context.Background(), "vscode-jill"); err != nil || st.Status != StatusRunning {
		t.Errorf("expected vscode-jill running after the conflict, got %+v, %v", st, err)
	}

	e.put("vscode-eve", &fakeContainer{status: StatusExited, labels: nil, logs: frame(1, "private\n")})
	w := serve(h, pageLoad("/", "vscode-eve"))
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "not managed by the spawner") ||
		strings.Contains(w.Body.String(), "private") {
		t.Errorf("expected the not-managed page without logs, got %d", w.Code)
	}
	if e.count("GET /v1.41/containers/vscode-eve/logs")+e.count("POST /v1.41/containers/vscode-eve/start") != 0 {
		t.Errorf("the spawner touched an unmanaged container")
	}

	e.mu.Lock()
	e.failInspect = true
	e.mu.Unlock()
	w = serve(h, pageLoad("/", "vscode-jack"))
	if w.Code != http.StatusServiceUnavailable || strings.Contains(w.Body.String(), "on fire") {
		t.Errorf("expected a 503 page without the engine's internals, got %d", w.Code)
	}
}
