package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	// CSRFKey is the key of the restart tokens. Default: 32 random bytes,
	// so tokens are valid for the life of the process.
	CSRFKey []byte
	// Logger receives one line per decision. Default: slog.Default().
	Logger *slog.Logger
	// Now returns the current time. Default: time.Now.
	Now func() time.Time
}

// handler is the spawner's http.Handler. It is reached by the director when
// a user's container does not answer.
type handler struct {
	cfg     HandlerConfig
	backend Backend
	log     *slog.Logger

	// ctx outlives requests: a create started by one page load goes on
	// when that browser reloads.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	ops      map[string]*operation
	failures map[string]failure
}

var _ http.Handler = (*handler)(nil)

// operation is a create+start or a restart in progress for one container;
// there is at most one per name.
type operation struct {
	stage string // guarded by handler.mu
	done  chan struct{}
}

// failure is a create, start or restart that failed recently.
type failure struct {
	at     time.Time
	action string
}

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
		cfg.CSRFKey = make([]byte, 32)
		if _, err := rand.Read(cfg.CSRFKey); err != nil {
			return nil, fmt.Errorf("generating the restart token key: %w", err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &handler{
		cfg: cfg, backend: backend, log: cfg.Logger,
		ctx: ctx, cancel: cancel,
		ops: map[string]*operation{}, failures: map[string]failure{},
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

// ServeHTTP implements http.Handler.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, err := h.containerName(r)
	if err != nil {
		h.log.Info("decision", "container", "", "user", "", "state", "", "action", "reject: "+err.Error())
		plain(w, http.StatusBadRequest, err.Error()+"\n")
		return
	}
	user := h.userFor(r, name)
	if r.Method == http.MethodPost && isRestartPost(w, r) {
		h.serveRestart(w, r, name, user)
		return
	}
	if !isPageLoad(r) {
		h.serveNotReady(w, r, name, user)
		return
	}
	h.servePageLoad(w, r, name, user)
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

func (h *handler) decision(name, user, state, action string) {
	h.log.Info("decision", "container", name, "user", user, "state", state, "action", action)
}

// currentOp returns the operation in progress for name, if any.
func (h *handler) currentOp(name string) (stage string, op *operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op := h.ops[name]; op != nil {
		return op.stage, op
	}
	return "", nil
}

// recentFailure returns the failure of name remembered within FailureMemory.
func (h *handler) recentFailure(name string) (failure, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.failures[name]
	if ok && h.cfg.Now().Sub(f.at) > h.cfg.FailureMemory {
		delete(h.failures, name)
		return failure{}, false
	}
	return f, ok
}

// begin starts run in the background as name's operation, unless one is in
// progress already; either way it returns the operation in progress. This
// is the per-name singleflight: dozens of tabs reloading at once lead to a
// single create.
func (h *handler) begin(name, user, stage, action string, run func(ctx context.Context, setStage func(string)) error) (op *operation, started bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if op := h.ops[name]; op != nil {
		return op, false
	}
	if h.ctx.Err() != nil {
		return nil, false
	}
	op = &operation{stage: stage, done: make(chan struct{})}
	h.ops[name] = op
	delete(h.failures, name)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.OperationTimeout)
		defer cancel()
		err := run(ctx, func(s string) {
			h.mu.Lock()
			op.stage = s
			h.mu.Unlock()
		})
		h.mu.Lock()
		delete(h.ops, name)
		if err != nil {
			h.failures[name] = failure{at: h.cfg.Now(), action: action}
		}
		h.mu.Unlock()
		close(op.done)
		if err != nil {
			h.log.Error("operation failed", "container", name, "user", user, "action", action, "error", err)
		} else {
			h.log.Info("operation done", "container", name, "user", user, "action", action)
		}
	}()
	return op, true
}

// beginCreate creates and starts name in the background. The operation
// looks again before it creates: a page load that saw "not found" just
// before another operation finished must not create a second time. A name
// conflict means someone else created it meanwhile; either way, an existing
// container of the spawner's that was never started is started.
func (h *handler) beginCreate(name, user string) bool {
	_, started := h.begin(name, user, stageCreating, "create", func(ctx context.Context, setStage func(string)) error {
		st, err := h.backend.Inspect(ctx, name)
		if errors.Is(err, ErrNotFound) {
			err = h.backend.Create(ctx, name, user)
			if err == nil {
				setStage(stageStarting)
				return h.backend.Start(ctx, name)
			}
			if !errors.Is(err, ErrExists) {
				return err
			}
			h.decision(name, user, "exists", "create conflict: treated as exists")
			st, err = h.backend.Inspect(ctx, name)
		}
		if err != nil {
			return err
		}
		if !st.Managed || st.Status != StatusCreated {
			return nil // running already, or not ours: the next load shows which
		}
		setStage(stageStarting)
		return h.backend.Start(ctx, name)
	})
	return started
}

// beginStart starts an existing, created but never started container.
func (h *handler) beginStart(name, user string) bool {
	_, started := h.begin(name, user, stageStarting, "start", func(ctx context.Context, _ func(string)) error {
		return h.backend.Start(ctx, name)
	})
	return started
}

// inspect asks the backend with a short timeout of its own.
func (h *handler) inspect(r *http.Request, name string) (State, error) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	return h.backend.Inspect(ctx, name)
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

// verdict is what a page load should show for an existing container.
type verdict struct {
	loading bool
	stage   string // when loading
	title   string // when not
	reason  string
}

// judge decides between the loading page and the error page for a managed
// container in state st.
func (h *handler) judge(st State) verdict {
	now := h.cfg.Now()
	switch st.Status {
	case StatusCreated:
		return verdict{loading: true, stage: stageStarting}
	case StatusRunning:
		if st.Health == HealthUnhealthy {
			return verdict{title: "Your workspace is unhealthy",
				reason: "The container is running, but its health check fails."}
		}
		if !st.StartedAt.IsZero() && now.Sub(st.StartedAt) > h.cfg.StartGrace {
			return verdict{title: "Your workspace does not answer",
				reason: fmt.Sprintf("The container has been running for %s but does not accept connections (the limit is %s).",
					now.Sub(st.StartedAt).Round(time.Second), h.cfg.StartGrace)}
		}
		if st.Health == HealthStarting {
			return verdict{loading: true, stage: stageStarting}
		}
		return verdict{loading: true, stage: stageWaiting}
	case StatusExited:
		return verdict{title: "Your workspace has stopped",
			reason: fmt.Sprintf("The container exited with code %d.", st.ExitCode)}
	case StatusDead:
		return verdict{title: "Your workspace is dead",
			reason: "The container engine could not stop or remove the container cleanly."}
	case StatusRestarting:
		return verdict{title: "Your workspace keeps restarting",
			reason: fmt.Sprintf("The container is being restarted by its restart policy; it last exited with code %d.", st.ExitCode)}
	case StatusPaused:
		return verdict{title: "Your workspace is paused", reason: "The container is paused."}
	default:
		return verdict{title: "Your workspace is not running",
			reason: fmt.Sprintf("The container is in state %q.", st.Status)}
	}
}

// servePageLoad answers a browser navigation: it starts what needs
// starting and shows the loading page, or shows the error page.
func (h *handler) servePageLoad(w http.ResponseWriter, r *http.Request, name, user string) {
	if stage, op := h.currentOp(name); op != nil {
		h.decision(name, user, "operation in progress", "loading page: "+stage)
		h.renderLoading(w, name, user, stage)
		return
	}
	st, err := h.inspect(r, name)
	switch {
	case errors.Is(err, ErrNotFound):
		if f, ok := h.recentFailure(name); ok {
			h.decision(name, user, "not found", "error page: "+f.action+" failed")
			h.renderError(w, r, errorView{
				Title: "Your workspace could not be created", Name: name, User: user,
				Reason: "Creating or starting the container failed a moment ago.",
				Advice: "Try again. If it keeps failing, ask your administrator to look at the spawner's log.",
				Button: "Try again", CanRestart: true,
			}, http.StatusBadGateway)
			return
		}
		h.beginCreate(name, user)
		h.decision(name, user, "not found", "create; loading page")
		h.renderLoading(w, name, user, stageCreating)
		return
	case err != nil:
		h.log.Error("inspect failed", "container", name, "user", user, "error", err)
		h.decision(name, user, "unknown", "error page: engine unavailable")
		h.renderError(w, r, errorView{
			Title: "The workspace service is unavailable", Name: name, User: user,
			Reason: "The spawner cannot reach the container engine right now.",
			Advice: "Reload this page in a minute. If it keeps failing, ask your administrator.",
		}, http.StatusServiceUnavailable)
		return
	}
	if !st.Managed {
		h.decision(name, user, describe(st), "error page: not managed, untouched")
		h.renderError(w, r, errorView{
			Title: "This container is not managed by the spawner", Name: name, User: user,
			Reason: "A container with this name exists, but the spawner did not create it, so it will not start, restart or inspect it.",
			Status: st.Status, Health: st.Health,
			Advice: "Ask your administrator to remove or rename that container; the spawner will then create yours.",
		}, http.StatusBadGateway)
		return
	}
	if st.Status == StatusCreated {
		if f, ok := h.recentFailure(name); ok {
			h.decision(name, user, describe(st), "error page: "+f.action+" failed")
			h.renderStateError(w, r, st, user, verdict{title: "Your workspace could not be started",
				reason: "Starting the container failed a moment ago."})
			return
		}
		h.beginStart(name, user)
		h.decision(name, user, describe(st), "start; loading page")
		h.renderLoading(w, name, user, stageStarting)
		return
	}
	v := h.judge(st)
	if v.loading {
		h.decision(name, user, describe(st), "loading page: "+v.stage)
		h.renderLoading(w, name, user, v.stage)
		return
	}
	h.decision(name, user, describe(st), "error page")
	h.renderStateError(w, r, st, user, v)
}

// serveNotReady answers a request that is not a page load (XHR, fetch,
// WebSocket, a form post of the application): a short 503 in plain text.
// It never creates or starts anything.
func (h *handler) serveNotReady(w http.ResponseWriter, r *http.Request, name, user string) {
	if stage, op := h.currentOp(name); op != nil {
		h.decision(name, user, "operation in progress", "503: not a page load")
		plain(w, http.StatusServiceUnavailable, fmt.Sprintf("workspace %s is starting (%s); retry shortly\n", name, stage))
		return
	}
	st, err := h.inspect(r, name)
	var msg string
	switch {
	case errors.Is(err, ErrNotFound):
		msg = fmt.Sprintf("workspace %s is not running; open it in the browser to start it\n", name)
	case err != nil:
		h.log.Error("inspect failed", "container", name, "user", user, "error", err)
		msg = fmt.Sprintf("workspace %s is unavailable; retry shortly\n", name)
	case !st.Managed:
		msg = fmt.Sprintf("workspace %s is not managed by the spawner\n", name)
	default:
		if v := h.judge(st); v.loading {
			msg = fmt.Sprintf("workspace %s is starting (%s); retry shortly\n", name, describe(st))
		} else {
			msg = fmt.Sprintf("workspace %s is not running (%s); reload the page to see why\n", name, describe(st))
		}
	}
	state := "unknown"
	if err == nil {
		state = describe(st)
	} else if errors.Is(err, ErrNotFound) {
		state = "not found"
	}
	h.decision(name, user, state, "503: not a page load")
	plain(w, http.StatusServiceUnavailable, msg)
}

// serveRestart handles the restart button: same origin, valid token, a
// container of the spawner's own; then restart (or create) and 303 back.
func (h *handler) serveRestart(w http.ResponseWriter, r *http.Request, name, user string) {
	if !sameOrigin(r) {
		h.decision(name, user, "", "reject restart: cross-site")
		plain(w, http.StatusForbidden, "restart refused: the request did not come from this site\n")
		return
	}
	if !hmac.Equal([]byte(r.PostForm.Get(tokenField)), []byte(h.token(name))) {
		h.decision(name, user, "", "reject restart: bad token")
		plain(w, http.StatusForbidden, "restart refused: invalid or expired form; reload the page and try again\n")
		return
	}
	if _, op := h.currentOp(name); op != nil {
		h.decision(name, user, "operation in progress", "restart: already in progress; redirect")
		h.seeOther(w, r)
		return
	}
	st, err := h.inspect(r, name)
	switch {
	case errors.Is(err, ErrNotFound):
		h.beginCreate(name, user)
		h.decision(name, user, "not found", "restart: create; redirect")
		h.seeOther(w, r)
		return
	case err != nil:
		h.log.Error("inspect failed", "container", name, "user", user, "error", err)
		plain(w, http.StatusServiceUnavailable, "the workspace service is unavailable; retry shortly\n")
		return
	case !st.Managed:
		h.decision(name, user, describe(st), "reject restart: not managed, untouched")
		plain(w, http.StatusForbidden, "restart refused: this container is not managed by the spawner\n")
		return
	}
	op, _ := h.begin(name, user, stageStarting, "restart", func(ctx context.Context, _ func(string)) error {
		if st.Status == StatusCreated {
			return h.backend.Start(ctx, name)
		}
		return h.backend.Restart(ctx, name)
	})
	h.decision(name, user, describe(st), "restart; redirect")
	if op != nil {
		// Wait a little, so that the page after the redirect shows the
		// result rather than the old state; tabs that reload meanwhile see
		// the operation and get the loading page.
		timer := time.NewTimer(15 * time.Second)
		defer timer.Stop()
		select {
		case <-op.done:
		case <-timer.C:
		case <-r.Context().Done():
		}
	}
	h.seeOther(w, r)
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

// token is the restart form's CSRF token for name: HMAC-SHA256 of the name
// under the per-process key.
func (h *handler) token(name string) string {
	m := hmac.New(sha256.New, h.cfg.CSRFKey)
	m.Write([]byte(name))
	return hex.EncodeToString(m.Sum(nil))
}

// sameOrigin reports whether a post comes from the spawner's own pages:
// Sec-Fetch-Site when the browser sends it, else an Origin equal to the
// request's own scheme and host.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return false
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])); p == "https" || p == "http" {
		scheme = p
	}
	if strings.EqualFold(origin, scheme+"://"+r.Host) {
		return true
	}
	// Behind a proxy that rewrites Host, its X-Forwarded-Host is the host
	// the browser saw. A cross-site form cannot set that header.
	if fh := strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Host"), ",")[0]); fh != "" {
		return strings.EqualFold(origin, scheme+"://"+fh)
	}
	return false
}

// renderLoading writes the loading page: 503, Retry-After, no-store.
func (h *handler) renderLoading(w http.ResponseWriter, name, user, stage string) {
	v := newLoadingView(name, user, stage)
	v.Nonce = newNonce()
	w.Header().Set("Retry-After", strconv.Itoa(refreshSeconds))
	if err := renderPage(w, loadingTemplate, v, v.Nonce, http.StatusServiceUnavailable); err != nil {
		h.log.Error("rendering loading page", "container", name, "error", err)
	}
}

// renderStateError writes the error page for a managed container in state
// st, with its logs and the restart button.
func (h *handler) renderStateError(w http.ResponseWriter, r *http.Request, st State, user string, v verdict) {
	now := h.cfg.Now()
	view := errorView{
		Title: v.title, Name: st.Name, User: user, Reason: v.reason,
		Status: st.Status, Health: st.Health,
		StartedAt: formatTime(st.StartedAt, now), EngineErr: st.Error,
		CanRestart: true, Button: "Restart my workspace",
		Advice: "Restart your workspace; your files stay where they are. If it stops again, " +
			"its log usually says why: send it to your administrator if it does not make sense.",
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
	v.Nonce = newNonce()
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
