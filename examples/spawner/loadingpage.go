package main

import (
	"html/template"
	"strconv"
)

// colorScheme is the fixed colours of one colour scheme; the accent comes from
// the Theme. Every text colour here reads at 4.5:1 or more on the surfaces
// it is used on (TestSchemeContrast).
type colorScheme struct {
	Page, PageEnd string // the page's background gradient
	Surface       string // the card
	Text          string
	Muted         string // secondary text, on Surface and Subtle
	Subtle        string // chips, the current stage's row
	Border        string
	DoneBg        string // a finished stage's mark
	DoneText      string
	BadBg         string // the error page's state chip
	BadText       string
	Danger        string // the error page's top line (not text)
	LogBg         string // the error page's log
	LogText       string
}

var (
	lightScheme = colorScheme{
		Page: "#eef2f7", PageEnd: "#e2e8f0", Surface: lightSurface, Text: "#1f2937", Muted: "#475569",
		Subtle: "#f1f5f9", Border: "#e2e8f0", DoneBg: "#dcfce7", DoneText: "#166534",
		BadBg: "#fee2e2", BadText: "#991b1b", Danger: "#dc2626", LogBg: "#0f172a", LogText: "#e2e8f0",
	}
	darkScheme = colorScheme{
		Page: "#0f172a", PageEnd: "#020617", Surface: darkSurface, Text: "#e2e8f0", Muted: "#cbd5e1",
		Subtle: "#334155", Border: "#334155", DoneBg: "#14532d", DoneText: "#bbf7d0",
		BadBg: "#7f1d1d", BadText: "#fecaca", Danger: "#f87171", LogBg: "#020617", LogText: "#e2e8f0",
	}
)

// themeStyle defines the pages' shared head: the CSS variables of the
// theme in both schemes, and the shared rules. Its data is a Theme.
const themeStyle = `{{define "theme"}}
  :root { color-scheme: light dark;
    --accent: {{.Light.Accent}}; --on-accent: {{.Light.OnAccent}}; --accent-text: {{.Light.Text}};
    {{template "scheme" .LightScheme}} }
  @media (prefers-color-scheme: dark) { :root {
    --accent: {{.Dark.Accent}}; --on-accent: {{.Dark.OnAccent}}; --accent-text: {{.Dark.Text}};
    {{template "scheme" .DarkScheme}} } }
  * { box-sizing: border-box; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: linear-gradient(160deg, var(--page) 0%, var(--page-end) 100%); color: var(--text);
         font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
  main { background: var(--surface); width: min(600px, 100% - 24px); padding: clamp(20px, 5vw, 36px) clamp(18px, 6vw, 40px) 30px;
         border-radius: 16px; box-shadow: 0 12px 36px rgba(15, 23, 42, .12); margin: 12px 0; }
  .brand { display: flex; align-items: center; gap: 10px; margin: 0 0 18px; font-weight: 600; color: var(--muted); font-size: 15px; }
  .brand img { height: 28px; width: auto; max-width: 160px; }
  h1 { margin: 0 0 6px; font-size: clamp(20px, 5.5vw, 24px); line-height: 1.25; }
  .name { display: inline-block; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px;
          background: var(--subtle); border: 1px solid var(--border); border-radius: 6px; padding: 1px 8px; word-break: break-all; }
  .sub { margin: 0 0 24px; color: var(--muted); }
  .muted { color: var(--muted); font-size: 14px; }
{{end}}{{define "scheme"}}--page: {{.Page}}; --page-end: {{.PageEnd}}; --surface: {{.Surface}}; --text: {{.Text}};
    --muted: {{.Muted}}; --subtle: {{.Subtle}}; --border: {{.Border}}; --done-bg: {{.DoneBg}}; --done-text: {{.DoneText}};
    --bad-bg: {{.BadBg}}; --bad-text: {{.BadText}}; --danger: {{.Danger}}; --log-bg: {{.LogBg}}; --log-text: {{.LogText}};{{end}}
{{define "brand"}}<div class="brand">{{if .Logo}}<img src="{{.Logo}}" alt="">{{end}}<span>{{.Product}}</span></div>{{end}}`

// LightScheme and DarkScheme give the templates the fixed colours.
func (Theme) LightScheme() colorScheme { return lightScheme }
func (Theme) DarkScheme() colorScheme  { return darkScheme }

var loadingTemplate = template.Must(template.Must(template.New("loading").Funcs(template.FuncMap{
	"inc": func(i int) int { return i + 1 },
	"mb": func(n int64) string {
		if n < 1e7 {
			return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + " MB"
		}
		return strconv.FormatFloat(float64(n)/1e6, 'f', 0, 64) + " MB"
	},
	"percent": func(cur, total int64) string {
		if total <= 0 {
			return "0"
		}
		return strconv.FormatFloat(100*float64(cur)/float64(total), 'f', 1, 64)
	},
}).Parse(themeStyle)).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<noscript><meta http-equiv="refresh" content="{{.Refresh}}"></noscript>
<title>{{.Theme.Title}} · {{.Theme.Product}}</title>
<style>{{template "theme" .Theme}}
  .head { display: flex; align-items: center; gap: 16px; margin-bottom: 20px; }
  .head .sub { margin: 0; }
  .spinner { flex: none; width: 40px; height: 40px; border-radius: 50%; border: 4px solid var(--subtle);
             border-top-color: var(--accent); animation: spin 1s linear infinite; }
  @keyframes spin { to { transform: rotate(360deg); } }
  @media (prefers-reduced-motion: reduce) { .spinner, li.current .mark { animation: none; } }
  .now { margin: 0 0 16px; font-weight: 600; }
  ol { list-style: none; margin: 0 0 18px; padding: 0; }
  li { display: flex; align-items: center; gap: 12px; padding: 9px 12px; border-radius: 10px; color: var(--muted);
       border-left: 4px solid transparent; }
  li .mark { flex: none; width: 26px; height: 26px; border-radius: 50%; display: flex; align-items: center;
             justify-content: center; font-size: 14px; font-weight: 700; background: var(--subtle); color: var(--muted); }
  li .took { margin-left: auto; font-size: 14px; font-variant-numeric: tabular-nums; }
  li.done { color: var(--text); }
  li.done .mark { background: var(--done-bg); color: var(--done-text); }
  li.current { color: var(--text); background: var(--subtle); font-weight: 600; border-left-color: var(--accent); }
  li.current .mark { background: var(--accent); color: var(--on-accent); animation: pulse 1.2s ease-in-out infinite; }
  @keyframes pulse { 50% { box-shadow: 0 0 0 5px var(--border); } }
  .bar { height: 6px; border-radius: 3px; background: var(--subtle); overflow: hidden; margin: 0 0 8px; }
  .bar span { display: block; height: 100%; width: 0; background: var(--accent); transition: width .3s; }
  .bar.unknown span { width: 30%; animation: slide 1.4s ease-in-out infinite; }
  @keyframes slide { from { transform: translateX(-100%); } to { transform: translateX(340%); } }
  .facts { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 4px 16px; margin: 0 0 12px; }
  .facts span { font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<main>
  {{template "brand" .Theme}}
  <div class="head">
    <div class="spinner" aria-hidden="true"></div>
    <div>
      <h1>{{.Theme.Title}}</h1>
      <p class="sub">{{if .User}}Hello {{.User}} · {{end}}<span class="name">{{.Name}}</span></p>
    </div>
  </div>
  <p class="now" id="now" role="status" aria-live="polite">{{.Progress.Label}}…</p>
  <ol id="stages" aria-label="Progress">
  {{- range $i, $s := .Progress.Stages}}
    <li class="{{$s.State}}"{{if eq $s.State "current"}} aria-current="step"{{end}}><span class="mark" aria-hidden="true">{{if eq $s.State "done"}}✓{{else}}{{inc $i}}{{end}}</span><span>{{$s.Label}}</span>{{if $s.Took}}<span class="took">{{printf "%.1f" $s.Took}} s</span>{{end}}</li>
  {{- end}}
  </ol>
  <div class="bar{{if not .Progress.Total}} unknown{{end}}" id="bar" aria-hidden="true"><span{{if .Progress.Total}} style="width: {{percent .Progress.Current .Progress.Total}}%"{{end}}></span></div>
  <p class="muted facts"><span id="detail">{{.Progress.Detail}}{{if .Progress.Total}}{{if .Progress.Detail}}: {{end}}{{mb .Progress.Current}} of {{mb .Progress.Total}}{{end}}</span><span>Elapsed: <span id="elapsed">{{printf "%.0f" .Progress.Elapsed}}</span> s</span></p>
  <p class="muted" id="hint">You will be taken to your workspace as soon as it answers.</p>
</main>
<script nonce="{{.Nonce}}">
(function () {
  "use strict";
  var statusPath = {{.Status}}, spawnerHeader = {{.Header}}, refresh = {{.Refresh}};
  var leftKey = "container-director-left:" + {{.Name}};
  var s = {{.Progress}};
  var list = document.getElementById("stages"), now = document.getElementById("now");
  var bar = document.getElementById("bar"), detail = document.getElementById("detail");
  var elapsed = document.getElementById("elapsed");
  var version = s.version, label = s.label, base = s.elapsed, at = Date.now(), leaving = false, failures = 0;

  function mb(n) { return (n / 1e6).toFixed(n < 1e7 ? 1 : 0) + " MB"; }
  function render(next) {
    s = next;
    list.textContent = "";
    s.stages.forEach(function (st, i) {
      var li = document.createElement("li"), mark = document.createElement("span"), text = document.createElement("span");
      li.className = st.state;
      if (st.state === "current") { li.setAttribute("aria-current", "step"); }
      mark.className = "mark";
      mark.setAttribute("aria-hidden", "true");
      mark.textContent = st.state === "done" ? "\u2713" : String(i + 1);
      text.textContent = st.label;
      li.appendChild(mark);
      li.appendChild(text);
      if (st.took) {
        var took = document.createElement("span");
        took.className = "took";
        took.textContent = st.took.toFixed(1) + " s";
        li.appendChild(took);
      }
      list.appendChild(li);
    });
    // Only a new stage is announced: bytes and seconds would flood a
    // screen reader.
    if (s.label !== label) { label = s.label; now.textContent = s.label + "\u2026"; }
    var text = s.detail || "";
    if (s.total > 0) {
      text = (text ? text + ": " : "") + mb(s.current) + " of " + mb(s.total);
      bar.className = "bar";
      bar.firstChild.style.width = Math.min(100, 100 * s.current / s.total).toFixed(1) + "%";
    } else {
      bar.className = "bar unknown";
      bar.firstChild.style.width = "";
    }
    detail.textContent = text;
    base = s.elapsed;
    at = Date.now();
  }
  setInterval(function () { elapsed.textContent = Math.floor(base + (Date.now() - at) / 1000); }, 500);

  // leave loads the page the user asked for. It is a navigation, so the
  // director decides again where it goes; if it comes back here within
  // seconds, wait a little before the next one.
  function leave() {
    if (leaving) { return; }
    leaving = true;
    var wait = 0;
    try {
      var last = Number(sessionStorage.getItem(leftKey) || 0);
      if (Date.now() - last < 3000) { wait = 1000; }
      sessionStorage.setItem(leftKey, String(Date.now() + wait));
    } catch (e) { wait = 0; }
    setTimeout(function () { location.reload(); }, wait);
  }

  // poll asks the spawner how the start goes. The spawner holds the
  // request until something changes, so a waiting page sends a few light
  // requests a second at most. The same URL reaches the workspace once it
  // answers the director: an answer without the spawner's header, or a
  // redirect, is the workspace (or the sign-in page), so the page loads.
  function poll() {
    fetch(statusPath + "?v=" + encodeURIComponent(version), {
      cache: "no-store", credentials: "same-origin", redirect: "manual", headers: { "Accept": "application/json" }
    }).then(function (r) {
      if (r.type === "opaqueredirect" || !r.headers.get(spawnerHeader)) { leave(); return; }
      return r.json().then(function (next) {
        failures = 0;
        version = next.version;
        render(next);
        if (next.state !== "progress") { leave(); return; }
        poll();
      });
    }).catch(function () {
      // The spawner cannot be asked: fall back to reloading, as the page
      // does without JavaScript.
      failures += 1;
      if (failures >= 3) { leave(); return; }
      setTimeout(poll, refresh * 1000 / 2);
    });
  }
  poll();
})();
</script>
</body>
</html>
`))
