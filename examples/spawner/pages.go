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
	{stageCreating, "Creating the container"},
	{stageStarting, "Starting it"},
	{stageWaiting, "Waiting for the app"},
}

// refreshSeconds is how often the loading page reloads itself; it is also
// the Retry-After of every 503.
const refreshSeconds = 2

// stageView is one line of the loading page's stage indicator.
type stageView struct {
	Label string
	State string // "done", "current" or "todo"
}

// loadingView is what the loading page shows.
type loadingView struct {
	Name    string
	User    string
	Stage   string
	Stages  []stageView
	Refresh int
	Nonce   string
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
	Nonce      string
}

func newLoadingView(name, user, stage string) loadingView {
	v := loadingView{Name: name, User: user, Stage: stage, Refresh: refreshSeconds}
	reached := false
	for _, s := range stageOrder {
		state := "done"
		switch {
		case s.id == stage:
			state, reached = "current", true
		case reached:
			state = "todo"
		}
		v.Stages = append(v.Stages, stageView{Label: s.label, State: state})
	}
	return v
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
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
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

// pageStyle is shared by both pages.
const pageStyle = `
  :root { color-scheme: light; }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: linear-gradient(160deg, #eef2f7 0%, #e2e8f0 100%); color: #1f2937;
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  main { background: #fff; width: min(600px, 92vw); padding: 36px 40px 30px; border-radius: 16px;
         box-shadow: 0 12px 36px rgba(15, 23, 42, .12); margin: 24px 0; }
  h1 { margin: 0 0 6px; font-size: 24px; line-height: 1.25; }
  .name { display: inline-block; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px;
          background: #f1f5f9; border: 1px solid #e2e8f0; border-radius: 6px; padding: 1px 8px; }
  .sub { margin: 0 0 24px; color: #64748b; }
  .muted { color: #64748b; font-size: 14px; }
`

var loadingTemplate = template.Must(template.New("loading").Funcs(template.FuncMap{
	"inc": func(i int) int { return i + 1 },
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{{.Refresh}}">
<title>Starting your workspace…</title>
<style>` + pageStyle + `
  .head { display: flex; align-items: center; gap: 16px; margin-bottom: 24px; }
  .head .sub { margin: 0; }
  .spinner { flex: none; width: 40px; height: 40px; border-radius: 50%; border: 4px solid #dbeafe;
             border-top-color: #2563eb; animation: spin 1s linear infinite; }
  @keyframes spin { to { transform: rotate(360deg); } }
  ol { list-style: none; margin: 0 0 24px; padding: 0; }
  li { display: flex; align-items: center; gap: 12px; padding: 10px 14px; border-radius: 10px; color: #94a3b8; }
  li .mark { flex: none; width: 26px; height: 26px; border-radius: 50%; display: flex; align-items: center;
             justify-content: center; font-size: 14px; font-weight: 700; background: #f1f5f9; color: #94a3b8; }
  li.done { color: #334155; }
  li.done .mark { background: #dcfce7; color: #15803d; }
  li.current { color: #1e3a8a; background: #eff6ff; font-weight: 600; }
  li.current .mark { background: #2563eb; color: #fff; animation: pulse 1.2s ease-in-out infinite; }
  @keyframes pulse { 50% { box-shadow: 0 0 0 6px rgba(37, 99, 235, .18); } }
  .bar { height: 4px; border-radius: 2px; background: #e2e8f0; overflow: hidden; margin-bottom: 10px; }
  .bar span { display: block; height: 100%; width: 100%; background: #2563eb; transform-origin: left;
              animation: fill {{.Refresh}}s linear forwards; }
  @keyframes fill { from { transform: scaleX(0); } to { transform: scaleX(1); } }
</style>
</head>
<body>
<main>
  <div class="head">
    <div class="spinner" aria-hidden="true"></div>
    <div>
      <h1>Starting your workspace</h1>
      <p class="sub">{{if .User}}Hello {{.User}} · {{end}}<span class="name">{{.Name}}</span></p>
    </div>
  </div>
  <ol aria-label="progress">
  {{- range $i, $s := .Stages}}
    <li class="{{$s.State}}"{{if eq $s.State "current"}} aria-current="step"{{end}}><span class="mark">{{if eq $s.State "done"}}✓{{else}}{{inc $i}}{{end}}</span>{{$s.Label}}</li>
  {{- end}}
  </ol>
  <div class="bar" aria-hidden="true"><span></span></div>
  <p class="muted" id="countdown-line">Checking again in <span id="countdown">{{.Refresh}}</span> s. You will be taken to your workspace as soon as it answers.</p>
</main>
<script nonce="{{.Nonce}}">
(function () {
  var left = {{.Refresh}}, el = document.getElementById("countdown");
  var timer = setInterval(function () {
    left -= 1;
    if (left <= 0) { clearInterval(timer); document.getElementById("countdown-line").textContent = "Checking…"; return; }
    el.textContent = left;
  }, 1000);
})();
</script>
</body>
</html>
`))

var errorTemplate = template.Must(template.New("error").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>` + pageStyle + `
  main { position: relative; overflow: hidden; }
  main::before { content: ""; position: absolute; left: 0; right: 0; top: 0; height: 5px; background: #dc2626; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0 0 20px; font-size: 15px; }
  dt { color: #64748b; }
  dd { margin: 0; font-weight: 500; word-break: break-word; }
  .state { display: inline-block; padding: 0 8px; border-radius: 6px; background: #fee2e2; color: #991b1b; font-weight: 600; }
  h2 { font-size: 15px; margin: 20px 0 8px; color: #334155; text-transform: uppercase; letter-spacing: .04em; }
  .reason { margin: 0 0 8px; }
  pre { margin: 0; max-height: 300px; overflow: auto; background: #0f172a; color: #e2e8f0; padding: 12px 14px;
        border-radius: 10px; font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
  form { margin-top: 22px; }
  button { font: inherit; font-weight: 600; padding: 10px 20px; border: 0; border-radius: 10px; background: #2563eb;
           color: #fff; cursor: pointer; box-shadow: 0 2px 6px rgba(37, 99, 235, .3); }
  button:hover { background: #1d4ed8; }
</style>
</head>
<body>
<main>
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
