package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// The workspace mode is a stand-in for a user's container: a small HTTP
// server that says whose workspace it is and echoes over a WebSocket.

var workspaceTemplate = template.Must(template.New("workspace").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Workspace of {{.User}}</title>
<style>
  :root { color-scheme: light; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: #eef2f7; color: #1f2937;
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  main { background: #fff; width: min(560px, 92vw); padding: 32px 36px; border-radius: 14px;
         box-shadow: 0 10px 30px rgba(15, 23, 42, .10); }
  h1 { margin: 0 0 4px; font-size: 26px; }
  .sub { margin: 0 0 24px; color: #6b7280; }
  .status { display: inline-flex; align-items: center; gap: 8px; font-weight: 600; }
  .dot { width: 10px; height: 10px; border-radius: 50%; background: #f59e0b; }
  .status.ok .dot { background: #16a34a; }
  .status.bad .dot { background: #dc2626; }
  form { display: flex; gap: 8px; margin: 20px 0 12px; }
  input { flex: 1; font: inherit; padding: 8px 10px; border: 1px solid #cbd5e1; border-radius: 8px; }
  button { font: inherit; padding: 8px 16px; border: 0; border-radius: 8px; background: #2563eb; color: #fff; cursor: pointer; }
  ul { list-style: none; margin: 0; padding: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px; }
  li { padding: 6px 10px; border-radius: 6px; background: #f1f5f9; margin-top: 6px; }
</style>
</head>
<body>
<main>
  <h1>Workspace of {{.User}}</h1>
  <p class="sub">Served by <code>{{.Host}}</code></p>
  <div id="status" class="status"><span class="dot"></span><span id="status-text">connecting…</span></div>
  <form id="send"><input id="message" autocomplete="off" placeholder="Type a message to echo"><button>Send</button></form>
  <ul id="log"></ul>
</main>
<script>
(function () {
  var status = document.getElementById("status"), text = document.getElementById("status-text");
  var log = document.getElementById("log"), input = document.getElementById("message");
  var proto = location.protocol === "https:" ? "wss:" : "ws:";
  var ws = new WebSocket(proto + "//" + location.host + "/ws");
  function add(line) { var li = document.createElement("li"); li.textContent = line; log.appendChild(li); }
  ws.onopen = function () { status.className = "status ok"; text.textContent = "connected"; ws.send("hello from the browser"); };
  ws.onmessage = function (e) { add("echo: " + e.data); };
  ws.onclose = function () { status.className = "status bad"; text.textContent = "disconnected"; };
  document.getElementById("send").onsubmit = function (e) {
    e.preventDefault();
    if (input.value && ws.readyState === WebSocket.OPEN) { ws.send(input.value); input.value = ""; }
  };
})();
</script>
</body>
</html>
`))

// workspaceServer is the handler of the workspace mode.
type workspaceServer struct {
	user string
	host string
	log  *log.Logger
}

func (s *workspaceServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ws":
		c, err := upgradeWebSocket(w, r)
		if err != nil {
			s.log.Printf("websocket: %v", err)
			return
		}
		s.log.Printf("websocket connected from %s", r.RemoteAddr)
		c.echo()
		s.log.Printf("websocket closed from %s", r.RemoteAddr)
	case "/whoami":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(struct {
			User    string      `json:"user"`
			Host    string      `json:"host"`
			Headers http.Header `json:"headers"`
		}{s.user, r.Host, r.Header})
	default:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := workspaceTemplate.Execute(w, struct{ User, Host string }{s.user, s.host}); err != nil {
			s.log.Printf("rendering page: %v", err)
		}
	}
}

// runWorkspace runs the workspace mode until SIGINT or SIGTERM and returns
// the process exit code.
func runWorkspace(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("spawner workspace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "address to listen on")
	user := fs.String("user", os.Getenv("USER_NAME"), "whose workspace this is (env USER_NAME)")
	startDelay := fs.Duration("start-delay", 0, "wait this long before listening, to show a slow start")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(os.Stdout, "workspace: ", log.LstdFlags)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger.Printf("workspace of %q starting, listening on %s in %s", *user, *listen, *startDelay)
	select {
	case <-time.After(*startDelay):
	case <-ctx.Done():
		return 0
	}
	host, _ := os.Hostname()
	if name := os.Getenv("CONTAINER_NAME"); name != "" {
		host = name
	}
	srv := &http.Server{
		Addr:              *listen,
		Handler:           &workspaceServer{user: *user, host: host, log: logger},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Printf("listening on %s", *listen)
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "workspace: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(stderr, "workspace: shutting down: %v\n", err)
	}
	logger.Printf("stopped")
	return 0
}
