package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/container-director/director/internal/wstest"
)

// echoed is what a container answers: who it is and what it received.
type echoed struct {
	Container string      `json:"container"`
	Host      string      `json:"host"`
	URI       string      `json:"uri"`
	Method    string      `json:"method"`
	Header    http.Header `json:"header"`
}

// container is a user's container: an HTTP server on its own loopback
// address, port 8080, reached by its real host name through /etc/hosts.
type container struct {
	id       string
	addr     string
	srv      *http.Server
	accepted int64 // TCP connections accepted
	requests int64 // requests received

	mu      sync.Mutex
	release map[string]chan struct{} // SSE streams waiting to send more
}

// startContainer serves container id on ip:8080.
func startContainer(id, ip string) (*container, error) {
	c := &container{id: id, addr: net.JoinHostPort(ip, "8080"), release: make(map[string]chan struct{})}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	c.srv = &http.Server{
		Handler:           c.handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				atomic.AddInt64(&c.accepted, 1)
			}
		},
	}
	go c.srv.Serve(ln)
	return c, nil
}

// stop kills the container: its listener and every connection close.
func (c *container) stop() {
	c.srv.Close()
}

func (c *container) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ws", wstest.EchoHandler(c.id+":"))
	mux.HandleFunc("/events", c.serveEvents)
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.URL.Query().Get("size"))
		if err != nil || n < 0 {
			http.Error(w, "bad size", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, io.LimitReader(&pattern{}, int64(n)))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %d %s", c.id, n, hex.EncodeToString(h.Sum(nil)))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{Container: c.id, Host: r.Host, URI: r.RequestURI, Method: r.Method, Header: r.Header})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		atomic.AddInt64(&c.requests, 1)
		mux.ServeHTTP(w, r)
	})
}

// serveEvents streams one event, then another after the test releases the
// stream with releaseEvents(key).
func (c *container) serveEvents(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Query().Get("key")
	ch := make(chan struct{})
	c.mu.Lock()
	c.release[key] = ch
	c.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	fmt.Fprintf(w, "data: first from %s\n\n", c.id)
	w.(http.Flusher).Flush()
	select {
	case <-ch:
	case <-r.Context().Done():
		return
	case <-time.After(30 * time.Second):
	}
	fmt.Fprintf(w, "data: second from %s\n\n", c.id)
}

func (c *container) releaseEvents(key string) {
	c.mu.Lock()
	ch := c.release[key]
	delete(c.release, key)
	c.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

// pattern is an endless, deterministic byte stream for large bodies.
type pattern struct{ pos int }

func (s *pattern) Read(p []byte) (int, error) {
	for i := range p {
		n := s.pos + i
		p[i] = byte(n*7 + n/251)
	}
	s.pos += len(p)
	return len(p), nil
}

// recorded is what reached the spawner.
type recorded struct {
	Host   string
	URI    string
	Header http.Header
	Body   string
}

// spawnerServer stands in for the Container Spawner: it records what
// reaches it, and can "create" a container when asked.
type spawnerServer struct {
	addr string
	srv  *http.Server

	mu       sync.Mutex
	requests []recorded
	onCreate func(containerName string) // called for each request, if set
}

func startSpawner() (*spawnerServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &spawnerServer{addr: ln.Addr().String()}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *spawnerServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	name := r.Header.Get("X-Container-Name")
	s.mu.Lock()
	s.requests = append(s.requests, recorded{Host: r.Host, URI: r.RequestURI, Header: r.Header.Clone(), Body: string(body)})
	create := s.onCreate
	s.mu.Unlock()
	if create != nil {
		create(name)
	}
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "spawner: %s", name)
}

// since returns the requests recorded after the first n.
func (s *spawnerServer) since(n int) []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.requests[n:]...)
}

func (s *spawnerServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

func (s *spawnerServer) setOnCreate(f func(string)) {
	s.mu.Lock()
	s.onCreate = f
	s.mu.Unlock()
}

// authServer stands in for OAuth2 Proxy behind Traefik's forwardAuth: a
// "session" cookie names the signed-in user, returned in
// X-Auth-Request-Preferred-Username; without one, 401.
type authServer struct {
	addr string
	srv  *http.Server
}

func startAuth() (*authServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &authServer{addr: ln.Addr().String()}
	a.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("session")
		if err != nil || c.Value == "" {
			http.Error(w, "sign in first", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Auth-Request-Preferred-Username", c.Value)
		w.WriteHeader(http.StatusAccepted)
	})}
	go a.srv.Serve(ln)
	return a, nil
}

// traefik is a real Traefik process loading the plugin from this checkout in
// local plugin mode.
type traefik struct {
	cmd     *exec.Cmd
	dir     string
	web     string // entry point address
	api     string // API and debug endpoints
	dynamic string // file provider's file
	logs    *syncBuffer
	exited  chan struct{}
}

// dynamicConfig holds what changes between writes of the dynamic configuration.
type dynamicConfig struct {
	Spawner      string
	Auth         string
	ReloadPrefix string
	ReloadTTL    string
}

// dynamicTemplate routes by Host:
//   - plain.test: the director alone, reading X-Forwarded-Preferred-Username;
//   - authed.test: forwardAuth (the OAuth2 Proxy stand-in), then the director
//     reading X-Auth-Request-Preferred-Username;
//   - reload.test: a director whose settings the reload test rewrites;
//   - direct.test and spawner.test: straight to alice's container and to the
//     spawner, for the side-by-side benchmark;
//   - floor.test: the floor plugin, proxying to alice's container (the
//     benchmark's floor for an interpreted director).
var dynamicTemplate = template.Must(template.New("dynamic").Parse(`http:
  routers:
    plain:
      rule: Host(` + "`plain.test`" + `)
      entryPoints: [web]
      middlewares: [director]
      service: spawner
    authed:
      rule: Host(` + "`authed.test`" + `)
      entryPoints: [web]
      middlewares: [auth, director-auth]
      service: spawner
    reload:
      rule: Host(` + "`reload.test`" + `)
      entryPoints: [web]
      middlewares: [director-reload]
      service: spawner
    direct:
      rule: Host(` + "`direct.test`" + `)
      entryPoints: [web]
      service: alice
    spawner-direct:
      rule: Host(` + "`spawner.test`" + `)
      entryPoints: [web]
      service: spawner
    floor:
      rule: Host(` + "`floor.test`" + `)
      entryPoints: [web]
      middlewares: [floor]
      service: spawner
  middlewares:
    floor:
      plugin:
        floor:
          backend: http://vscode-alice:8080
    director:
      plugin:
        director:
          containerHostPrefix: vscode
          dialTimeout: 1s
          probeCacheTTL: 30s
    auth:
      forwardAuth:
        address: http://{{.Auth}}/auth
        authResponseHeaders:
          - X-Auth-Request-Preferred-Username
    director-auth:
      plugin:
        director:
          containerHostPrefix: vscode
          usernameHeader: X-Auth-Request-Preferred-Username
          dialTimeout: 1s
          probeCacheTTL: 30s
    director-reload:
      plugin:
        director:
          containerHostPrefix: {{.ReloadPrefix}}
          dialTimeout: 1s
          probeCacheTTL: {{.ReloadTTL}}
  services:
    spawner:
      loadBalancer:
        servers:
          - url: http://{{.Spawner}}
    alice:
      loadBalancer:
        servers:
          - url: http://vscode-alice:8080
`))

const staticTemplate = `global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: %s
  noColor: true
%s
api:
  insecure: true
  dashboard: false
  debug: true
entryPoints:
  web:
    address: "%s"
  traefik:
    address: "%s"
%sproviders:
  providersThrottleDuration: 100ms
  file:
    filename: "%s"
    watch: true
experimental:
  abortOnPluginFailure: true
  localPlugins:
    director:
      moduleName: github.com/container-director/director
    floor:
      moduleName: github.com/container-director/floor
`

// startTraefik runs bin with the plugin from this checkout in local mode and
// cfg as its dynamic configuration. quiet turns off the debug and access
// logs, which would dominate a benchmark.
func startTraefik(bin string, cfg dynamicConfig, quiet bool) (*traefik, error) {
	var b bytes.Buffer
	if err := dynamicTemplate.Execute(&b, cfg); err != nil {
		return nil, err
	}
	return launchTraefik(bin, b.Bytes(), quiet)
}

// launchTraefik runs bin with the plugin from this checkout in local mode,
// watching a file provider that holds dynamic.
func launchTraefik(bin string, dynamic []byte, quiet bool) (*traefik, error) {
	return launchTraefikWith(bin, dynamic, quiet, "")
}

// launchTraefikWith is launchTraefik with more entry points, given as YAML
// lines of the static configuration's entryPoints block.
func launchTraefikWith(bin string, dynamic []byte, quiet bool, entryPoints string) (*traefik, error) {
	dir, err := os.MkdirTemp("", "e2e-traefik-")
	if err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "plugins-local", "src", "github.com", "container-director")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return nil, err
	}
	if err := os.Symlink(repoRoot(), filepath.Join(src, "director")); err != nil {
		return nil, err
	}
	if err := os.Symlink(floorDir(), filepath.Join(src, "floor")); err != nil {
		return nil, err
	}
	tr := &traefik{dir: dir, web: freeAddr(), api: freeAddr(), dynamic: filepath.Join(dir, "dynamic.yml"), logs: &syncBuffer{}, exited: make(chan struct{})}
	if err := writeFileAtomic(tr.dynamic, dynamic); err != nil {
		return nil, err
	}
	level, accessLog := "DEBUG", "accessLog: {}"
	if quiet {
		level, accessLog = "ERROR", ""
	}
	static := filepath.Join(dir, "traefik.yml")
	if err := os.WriteFile(static, []byte(fmt.Sprintf(staticTemplate, level, accessLog, tr.web, tr.api, entryPoints, tr.dynamic)), 0o644); err != nil {
		return nil, err
	}
	tr.cmd = exec.Command(bin, "--configFile="+static)
	tr.cmd.Dir = dir
	tr.cmd.Stdout = tr.logs
	tr.cmd.Stderr = tr.logs
	tr.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := tr.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting traefik: %w", err)
	}
	go func() {
		tr.cmd.Wait()
		close(tr.exited)
	}()
	return tr, nil
}

// writeDynamic rewrites the file provider's configuration in place.
func (tr *traefik) writeDynamic(cfg dynamicConfig) error {
	var b bytes.Buffer
	if err := dynamicTemplate.Execute(&b, cfg); err != nil {
		return err
	}
	return writeFileAtomic(tr.dynamic, b.Bytes())
}

func (tr *traefik) stop() {
	tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.exited:
	case <-time.After(10 * time.Second):
		tr.cmd.Process.Kill()
		<-tr.exited
	}
	os.RemoveAll(tr.dir)
}

// alive reports whether Traefik is still running.
func (tr *traefik) alive() bool {
	select {
	case <-tr.exited:
		return false
	default:
		return true
	}
}

// freeAddr returns a loopback address with a port free at the time.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail returns the last n lines.
func (s *syncBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(s.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
