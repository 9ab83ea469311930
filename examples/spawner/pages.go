package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"html/template"
	"net/http"
	"strconv"
	"time"
)

// Stages of a workspace start, in order, as the loading page shows them.
const (
	stageCreating = "creating"
	stageStarting = "starting"
	stageWaiting  = "waiting"
)

var stageOrder = []struct{ id, label string }{
	{stagePulling, "Downloading the image"},
	{stageCreating, "Creating the container"},
	{stageStarting, "Starting it"},
	{stageWaiting, "Waiting for the app to answer"},
}

// refreshSeconds is how often the loading page reloads itself without
// JavaScript; it is also the Retry-After of every 503.
const refreshSeconds = 2

// stageView is one line of the loading page's stage indicator.
type stageView struct {
	ID    string  `json:"id"`
	Label string  `json:"label"`
	State string  `json:"state"`          // "done", "current" or "todo"
	Took  float64 `json:"took,omitempty"` // seconds, once done
}

// loadingView is what the loading page shows.
type loadingView struct {
	Name     string
	User     string
	Progress progressView
	Refresh  int
	Status   string // the status endpoint's path
	Header   string // the header only the spawner's answers carry
	Theme    Theme
	Nonce    string
}

// errorView is what the error page shows. Everything in it is meant for the
// user: the container's own state and logs, never the spawner's internals.
type errorView struct {
	Title      string
	Name       string
	User       string
	Reason     string
	Status     string
	Health     string
	ExitCode   string
	StartedAt  string
	FinishedAt string
	EngineErr  string
	Logs       []string
	Advice     string
	CanRestart bool
	Button     string
	Action     string
	TokenField string
	Token      string
	Theme      Theme
	Nonce      string
}

// formatTime shows a time in UTC with how long ago it was, or "" for zero.
func formatTime(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	ago := now.Sub(t).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC") + " (" + ago.String() + " ago)"
}

// newNonce returns a fresh CSP nonce for one page's inline script.
func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setPageHeaders sets the headers every HTML page of the spawner carries.
func setPageHeaders(h http.Header, nonce string) {
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-"+nonce+
		"'; connect-src 'self'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
}

// renderPage renders tmpl into a buffer first, so that a template error
// cannot leave half a page behind a success status.
func renderPage(w http.ResponseWriter, tmpl *template.Template, data any, nonce string, status int) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return err
	}
	setPageHeaders(w.Header(), nonce)
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

var errorTemplate = template.Must(template.Must(template.New("error").Parse(themeStyle)).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · {{.Theme.Product}}</title>
<style>{{template "theme" .Theme}}
  main { position: relative; overflow: hidden; }
  main::before { content: ""; position: absolute; left: 0; right: 0; top: 0; height: 5px; background: var(--danger); }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0 0 20px; font-size: 15px; }
  dt { color: var(--muted); }
  dd { margin: 0; font-weight: 500; word-break: break-word; }
  .state { display: inline-block; padding: 0 8px; border-radius: 6px; background: var(--bad-bg); color: var(--bad-text); font-weight: 600; }
  h2 { font-size: 15px; margin: 20px 0 8px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
  .reason { margin: 0 0 8px; }
  pre { margin: 0; max-height: 300px; overflow: auto; background: var(--log-bg); color: var(--log-text); padding: 12px 14px;
        border-radius: 10px; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
  form { margin-top: 22px; }
  button { font: inherit; font-weight: 600; padding: 10px 20px; border: 0; border-radius: 10px; background: var(--accent);
           color: var(--on-accent); cursor: pointer; }
  button:hover { filter: brightness(.92); }
  button:focus-visible { outline: 3px solid var(--accent-text); outline-offset: 2px; }
</style>
</head>
<body>
<main>
  {{template "brand" .Theme}}
  <h1>{{.Title}}</h1>
  <p class="sub"><span class="name">{{.Name}}</span>{{if .User}} · {{.User}}{{end}}</p>
  <p class="reason">{{.Reason}}</p>
  <dl>
    <dt>Container</dt><dd>{{.Name}}</dd>
    {{- if .Status}}<dt>State</dt><dd><span class="state">{{.Status}}</span>{{if .Health}} ({{.Health}}){{end}}</dd>{{end}}
    {{- if .ExitCode}}<dt>Exit code</dt><dd>{{.ExitCode}}</dd>{{end}}
    {{- if .StartedAt}}<dt>Started at</dt><dd>{{.StartedAt}}</dd>{{end}}
    {{- if .FinishedAt}}<dt>Stopped at</dt><dd>{{.FinishedAt}}</dd>{{end}}
    {{- if .EngineErr}}<dt>Engine says</dt><dd>{{.EngineErr}}</dd>{{end}}
  </dl>
  {{- if .Logs}}
  <h2>Last {{len .Logs}} log lines</h2>
  <pre>{{range .Logs}}{{.}}
{{end}}</pre>
  {{- end}}
  <h2>What to do</h2>
  <p class="reason">{{.Advice}}</p>
  {{- if .CanRestart}}
  <form method="post">
    <input type="hidden" name="{{.Action}}" value="restart">
    <input type="hidden" name="{{.TokenField}}" value="{{.Token}}">
    <button type="submit">{{.Button}}</button>
  </form>
  {{- end}}
</main>
</body>
</html>
`))
