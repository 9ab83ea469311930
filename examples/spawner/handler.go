package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Form fields of the restart button. They are namespaced so that they do not
// clash with the forms of the application behind the director.
const (
	actionField = "container-director-action"
	tokenField  = "container-director-token"
)

// containerNameHeader carries the container the director wanted to reach.
const containerNameHeader = "X-Container-Name"

// HandlerConfig configures the spawner's HTTP handler.
type HandlerConfig struct {
	// Prefix is the container name prefix; valid names are "<Prefix>-<rest>".
	// Default: "vscode".
	Prefix string
	// UsernameHeader is the identity header set by the auth layer.
	// Default: "X-Forwarded-Preferred-Username".
	UsernameHeader string
	// StartGrace is how long a running container may take to answer before
	// the spawner shows the error page instead of the loading page.
	// Default: 60s.
	StartGrace time.Duration
	// LogLines is how many log lines the error page shows. Default: 30.
	LogLines int
	// OperationTimeout bounds one background create+start or restart,
	// which may include an image pull. Default: 10m.
	OperationTimeout time.Duration
	// FailureMemory is how long a failed create or start is remembered and
	// shown as the error page instead of being retried on every reload.
	// Default: 30s.
	FailureMemory time.Duration
	// MaxRunning is the most containers of the spawner that may run at
	// once; past it a page load gets the "no room right now" page and
	// nothing is created or started. Default: 0, no limit.
	MaxRunning int
	// CSRFKey is the key of the restart tokens. Default: 32 random bytes,
	// so tokens are valid for the life of the process.
	CSRFKey []byte
	// Ready reports whether the container at endpoint (Backend.Endpoint)
	// answers; the spawn duration ends when it does. Default: a TCP dial.
	Ready func(ctx context.Context, endpoint string) error
	// Metrics receives the spawner's figures. Default: a private set that
	// nothing exports.
	Metrics *metrics
	// Logger receives one line per decision. Default: slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
	// Theme is the pages' look. Default: NewTheme(ThemeSettings{}).
	Theme Theme
}

// handler is the spawner's http.Handler. It is reached by the director when
// a user's container does not answer. It gathers what decide needs, calls
// it, and carries out the outcome; the operations it starts live in
// operations.go.
type handler struct {
	cfg     HandlerConfig
	backend Backend
	log     *slog.Logger
	metrics *metrics

	// ctx outlives requests: a create started by one page load goes on
	// when that browser reloads.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	ops      map[string]*operation
	failures map[string]failure
	reserved int // operations that will make one more container run
	released int // places given back so far (see reserve)

	progress *tracker // what the loading page shows
}

var _ http.Handler = (*handler)(nil)

// NewHandler validates cfg and returns the handler. Close stops its
// background work.
func NewHandler(backend Backend, cfg HandlerConfig) (*handler, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "vscode"
	}
	if !validLabelStart(cfg.Prefix) {
		return nil, fmt.Errorf("prefix: %q is not a valid DNS label start (a-z, 0-9, inner '-', at most 61 characters)", cfg.Prefix)
	}
	if cfg.UsernameHeader == "" {
		cfg.UsernameHeader = "X-Forwarded-Preferred-Username"
	}
	if cfg.StartGrace == 0 {
		cfg.StartGrace = 60 * time.Second
	}
	if cfg.StartGrace < 0 {
		return nil, fmt.Errorf("start-grace: must be positive, got %s", cfg.StartGrace)
	}
	if cfg.MaxRunning < 0 {
		return nil, fmt.Errorf("SPAWNER_MAX_RUNNING: must be 0 (no limit) or more, got %d", cfg.MaxRunning)
	}
	if cfg.LogLines <= 0 {
		cfg.LogLines = 30
	}
	if cfg.OperationTimeout <= 0 {
		cfg.OperationTimeout = 10 * time.Minute
	}
	if cfg.FailureMemory <= 0 {
		cfg.FailureMemory = 30 * time.Second
	}
	if len(cfg.CSRFKey) == 0 {
		key, err := tokenSecret("", "")
		if err != nil {
			return nil, err
		}
		cfg.CSRFKey = key
	}
	if cfg.Ready == nil {
		cfg.Ready = dialReady
	}
	if cfg.Metrics == nil {
		cfg.Metrics = newMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Theme.Product == "" {
		cfg.Theme, _ = NewTheme(ThemeSettings{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &handler{
		cfg: cfg, backend: backend, log: cfg.Logger, metrics: cfg.Metrics,
		ctx: ctx, cancel: cancel,
		ops: map[string]*operation{}, failures: map[string]failure{},
		progress: newTracker(cfg.Now),
	}, nil
}

// Close cancels the operations in progress and waits for them to end.
func (h *handler) Close() {
	h.cancel()
	h.wg.Wait()
}

// validLabelStart reports whether p is a valid prefix: a DNS label itself,
// short enough to be followed by "-" and a name.
func validLabelStart(p string) bool {
	return len(p) <= 61 && validLabel(p)
}

// validLabel reports whether s is a lowercase DNS label: [a-z0-9], inner
// '-', 1 to 63 characters.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// containerName returns the single valid X-Container-Name of r.
func (h *handler) containerName(r *http.Request) (string, error) {
	values := r.Header.Values(containerNameHeader)
	switch {
	case len(values) == 0:
		return "", errors.New("missing X-Container-Name header")
	case len(values) > 1:
		return "", errors.New("several X-Container-Name headers")
	}
	name := values[0]
	if !validLabel(name) || !strings.HasPrefix(name, h.cfg.Prefix+"-") || len(name) <= len(h.cfg.Prefix)+1 {
		return "", fmt.Errorf("invalid X-Container-Name: want a DNS label %q followed by a name", h.cfg.Prefix+"-")
	}
	return name, nil
}

// userFor returns the user name for the container: the first identity header
// (UsernameHeader may list several, comma-separated, as the director's
// usernameHeader does) that holds one sane value, else the part of the name
// after the prefix.
func (h *handler) userFor(r *http.Request, name string) string {
	for _, header := range strings.Split(h.cfg.UsernameHeader, ",") {
		values := r.Header.Values(strings.TrimSpace(header))
		if len(values) != 1 || values[0] == "" {
			continue
		}
		u := strings.TrimSpace(values[0])
		if u != "" && len(u) <= 256 && strings.IndexFunc(u, func(c rune) bool {
			return !unicode.IsPrint(c) || c == unicode.ReplacementChar
		}) < 0 {
			return u
		}
		break
	}
	return strings.TrimPrefix(name, h.cfg.Prefix+"-")
}

// isPageLoad reports whether r is a browser navigating to a page, the only
// kind of request that gets HTML and may start a container.
func isPageLoad(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" && mode != "navigate" {
		return false
	}
	if r.Header.Get("Sec-Fetch-Dest") == "document" {
		return true
	}
	for _, v := range r.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/html") {
				return true
			}
		}
	}
	return false
}

// isRestartPost reports whether r is a form post of the restart button. It
// reads at most 64 KiB of a form body.
func isRestartPost(w http.ResponseWriter, r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		return false
	}
	return r.PostForm.Get(actionField) == "restart"
}

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, err := h.containerName(r)
	if err != nil {
		h.log.Info("decision", "container", "", "user", "", "state", "", "action", "reject: "+err.Error())
		plain(w, http.StatusBadRequest, err.Error()+"\n")
		return
	}
	user := h.userFor(r, name)
	if r.URL.Path == statusPath {
		h.serveStatus(w, r, name, user)
		return
	}
	kind := requestOther
	switch {
	case r.Method == http.MethodPost && isRestartPost(w, r):
		if !sameOrigin(r) {
			h.decision(name, user, "", "reject restart: cross-site")
			plain(w, http.StatusForbidden, "restart refused: the request did not come from this site\n")
			return
		}
		if !h.validToken(name, r.PostForm.Get(tokenField)) {
			h.decision(name, user, "", "reject restart: bad token")
			plain(w, http.StatusForbidden, "restart refused: invalid or expired form; reload the page and try again\n")
			return
		}
		kind = requestRestart
	case isPageLoad(r):
		kind = requestPageLoad
	}
	s := h.gather(r, name, user, kind)
	o := decide(s)
	h.decision(name, user, describeSituation(s), o.Action.String())
	if o.Action.changes() {
		op := h.begin(name, user, o.Action)
		if s.Kind == requestRestart && op != nil {
			// Wait a little, so that the page after the redirect shows
			// the result rather than the old state; tabs that reload
			// meanwhile see the operation and get the loading page.
			timer := time.NewTimer(15 * time.Second)
			defer timer.Stop()
			select {
			case <-op.done:
			case <-timer.C:
			case <-r.Context().Done():
			}
		}
	}
	h.render(w, r, name, user, s, o)
}

// gather collects what decide needs about name. It asks the engine at
// most twice: the container's state, and the running count when the
// outcome may need room.
func (h *handler) gather(r *http.Request, name, user string, kind requestKind) situation {
	s := situation{Kind: kind, User: user, Now: h.cfg.Now(), StartGrace: h.cfg.StartGrace}
	if stage, op := h.currentOp(name); op != nil {
		s.Operation = stage
		return s
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	st, err := h.backend.Inspect(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		h.log.Error("inspect failed", "container", name, "user", user, "error", err)
		h.metrics.failure("engine")
		s.EngineDown = true
		return s
	default:
		s.Found, s.State = true, st
	}
	if f, ok := h.recentFailure(name); ok {
		s.Failed = f.action
	}
	if h.cfg.MaxRunning > 0 && kind != requestOther && decide(s).Action.needsRoom() ||
		h.cfg.MaxRunning > 0 && kind == requestRestart && s.Found && !countsAsRunning(s.State.Status) {
		full, err := h.full(ctx)
		if err != nil {
			h.log.Error("counting running containers failed", "container", name, "error", err)
			h.metrics.failure("engine")
			s.EngineDown = true
			return s
		}
		s.Full = full
	}
	return s
}

// describeSituation is the state as logged.
func describeSituation(s situation) string {
	switch {
	case s.Operation != "":
		return "operation in progress: " + s.Operation
	case s.EngineDown:
		return "unknown"
	case !s.Found:
		return "not found"
	}
	d := describe(s.State)
	if s.Failed != "" {
		d += ", " + s.Failed + " failed"
	}
	if s.Full {
		d += ", no room"
	}
	return d
}

// describe is the state as logged and as told in plain text.
func describe(st State) string {
	s := st.Status
	if st.Health != "" {
		s += "/" + st.Health
	}
	if st.Status == StatusExited || st.Status == StatusDead {
		s += " (exit code " + strconv.Itoa(st.ExitCode) + ")"
	}
	return s
}

func (h *handler) decision(name, user, state, action string) {
	h.log.Info("decision", "container", name, "user", user, "state", state, "action", action)
}

// render writes the answer for outcome o.
func (h *handler) render(w http.ResponseWriter, r *http.Request, name, user string, s situation, o outcome) {
	switch o.Action {
	case actRetryLater:
		plain(w, http.StatusServiceUnavailable, notReadyMessage(name, s, o))
	case actRedirect, actRestart:
		h.seeOther(w, r)
	case actCreate, actStart, actRecreate:
		if s.Kind == requestRestart {
			h.seeOther(w, r)
			return
		}
		h.renderLoading(w, name, user, o.Stage)
	case actLoading:
		if s.Kind == requestRestart {
			h.seeOther(w, r)
			return
		}
		h.renderLoading(w, name, user, o.Stage)
	case actCapacity:
		// Also for the restart button: a redirect would show the same
		// error page again, as if the restart had been done.
		h.renderError(w, r, errorView{
			Title: "No room for your workspace right now", Name: name, User: user,
			Reason: "As many workspaces as this server allows are running; yours was not started.",
			Advice: "Reload this page in a few minutes: a workspace that nobody uses is stopped after a while. If it keeps happening, ask your administrator.",
		}, http.StatusServiceUnavailable)
	case actUnavailable:
		if s.Kind == requestRestart {
			plain(w, http.StatusServiceUnavailable, "the workspace service is unavailable; retry shortly\n")
			return
		}
		h.renderError(w, r, errorView{
			Title: "The workspace service is unavailable", Name: name, User: user,
			Reason: "The spawner cannot reach the container engine right now.",
			Advice: "Reload this page in a minute. If it keeps failing, ask your administrator.",
		}, http.StatusServiceUnavailable)
	case actNotManaged:
		if s.Kind == requestRestart {
			plain(w, http.StatusForbidden, "restart refused: this container is not managed by the spawner\n")
			return
		}
		h.renderError(w, r, errorView{
			Title: "This container is not managed by the spawner", Name: name, User: user,
			Reason: "A container with this name exists, but the spawner did not create it, so it will not start, restart or inspect it.",
			Status: s.State.Status, Health: s.State.Health,
			Advice: "Ask your administrator to remove or rename that container; the spawner will then create yours.",
		}, http.StatusBadGateway)
	case actNotOwner:
		if s.Kind == requestRestart {
			plain(w, http.StatusForbidden, "restart refused: this container belongs to another user\n")
			return
		}
		h.renderError(w, r, errorView{
			Title: "This workspace belongs to someone else", Name: name, User: user,
			Reason: "The container with this name was created for another user, so the spawner will not start, restart or inspect it for you.",
			Advice: "Ask your administrator: two user names must not lead to the same container.",
		}, http.StatusForbidden)
	case actFailedPage:
		if s.Found {
			h.renderStateError(w, r, s.State, user, outcome{Title: o.Title,
				Reason: h.failureReason(name, "Starting the container failed a moment ago.")})
			return
		}
		h.renderError(w, r, errorView{
			Title: o.Title, Name: name, User: user,
			Reason: h.failureReason(name, "Creating or starting the container failed a moment ago."),
			Advice: "Try again. If it keeps failing, ask your administrator to look at the spawner's log.",
			Button: "Try again", CanRestart: true,
		}, http.StatusBadGateway)
	default:
		h.renderStateError(w, r, s.State, user, o)
	}
}

// notReadyMessage is the plain-text answer to a request that is not a page
// load.
func notReadyMessage(name string, s situation, o outcome) string {
	switch {
	case s.Operation != "":
		return fmt.Sprintf("workspace %s is starting (%s); retry shortly\n", name, s.Operation)
	case s.EngineDown:
		return fmt.Sprintf("workspace %s is unavailable; retry shortly\n", name)
	case !s.Found:
		return fmt.Sprintf("workspace %s is not running; open it in the browser to start it\n", name)
	case !s.State.Managed:
		return fmt.Sprintf("workspace %s is not managed by the spawner\n", name)
	case s.State.User != s.User:
		return fmt.Sprintf("workspace %s belongs to another user\n", name)
	case o.Stage != "":
		return fmt.Sprintf("workspace %s is starting (%s); retry shortly\n", name, describe(s.State))
	}
	if page := decide(situation{Kind: requestPageLoad, User: s.User, Found: true, State: s.State,
		Now: s.Now, StartGrace: s.StartGrace}); page.Action.needsRoom() {
		return fmt.Sprintf("workspace %s is stopped (%s); open it in the browser to start it\n", name, describe(s.State))
	}
	return fmt.Sprintf("workspace %s is not running (%s); reload the page to see why\n", name, describe(s.State))
}

// plain writes a short plain-text response that no cache keeps.
func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(refreshSeconds))
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(msg))
}

// seeOther redirects back to the URL that was posted to, as a GET.
func (h *handler) seeOther(w http.ResponseWriter, r *http.Request) {
	loc := r.URL.RequestURI()
	// "//host/…" would be a protocol-relative redirect to another site.
	if strings.HasPrefix(loc, "//") || strings.HasPrefix(loc, "/\\") || !strings.HasPrefix(loc, "/") {
		loc = "/" + strings.TrimLeft(loc, "/\\")
	}
	w.Header().Set("Location", loc)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusSeeOther)
}

// renderLoading writes the loading page: 503, Retry-After, no-store.
func (h *handler) renderLoading(w http.ResponseWriter, name, user, stage string) {
	v := loadingView{Name: name, User: user, Progress: h.loadingProgress(name, stage), Refresh: refreshSeconds,
		Status: statusPath, Header: spawnerHeader, Theme: h.cfg.Theme, Nonce: newNonce()}
	w.Header().Set("Retry-After", strconv.Itoa(refreshSeconds))
	if err := renderPage(w, loadingTemplate, v, v.Nonce, http.StatusServiceUnavailable); err != nil {
		h.log.Error("rendering loading page", "container", name, "error", err)
	}
}

// renderStateError writes the error page for a managed container in state
// st, with its logs and the restart button.
func (h *handler) renderStateError(w http.ResponseWriter, r *http.Request, st State, user string, o outcome) {
	now := h.cfg.Now()
	view := errorView{
		Title: o.Title, Name: st.Name, User: user, Reason: o.Reason,
		Status: st.Status, Health: st.Health,
		StartedAt:  formatTime(st.StartedAt, now),
		CanRestart: true, Button: "Restart my workspace",
		Advice: "Restart your workspace; your files stay where they are. If it stops again, " +
			"its log usually says why: send it to your administrator if it does not make sense.",
	}
	if st.Error != "" {
		// The engine's own message names host paths and the runtime's
		// internals: it is for the administrator, in the log.
		h.log.Warn("engine error", "container", st.Name, "user", user, "error", st.Error)
	}
	if st.Status == StatusExited || st.Status == StatusDead || st.Status == StatusRestarting {
		view.ExitCode = strconv.Itoa(st.ExitCode)
		view.FinishedAt = formatTime(st.FinishedAt, now)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if lines, err := h.backend.Logs(ctx, st.Name, h.cfg.LogLines); err != nil {
		h.log.Warn("reading logs failed", "container", st.Name, "error", err)
	} else {
		view.Logs = lines
	}
	h.renderError(w, r, view, http.StatusBadGateway)
}

// renderError writes an error page; it fills in the restart form's fields.
func (h *handler) renderError(w http.ResponseWriter, r *http.Request, v errorView, status int) {
	v.Nonce, v.Theme = newNonce(), h.cfg.Theme
	if v.CanRestart {
		v.Action, v.TokenField, v.Token = actionField, tokenField, h.token(v.Name)
		if v.Button == "" {
			v.Button = "Restart my workspace"
		}
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(refreshSeconds))
	}
	if err := renderPage(w, errorTemplate, v, v.Nonce, status); err != nil {
		h.log.Error("rendering error page", "container", v.Name, "error", err)
	}
}
