package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// The compose examples, run for real: `docker compose up` of
// examples/compose/compose.yml and examples/standalone/compose.yml as
// shipped, with only the .env file written here, on a private Docker Engine
// (engine_test.go) whose images are built from this checkout and the pinned
// Traefik and OAuth2 Proxy. The OIDC provider (cmd/oidc-provider) runs as a
// container beside them, on the example's edge network under the name
// "oidc", so that OAuth2 Proxy and the browser reach it at the same issuer
// URL: the browser through the port it publishes in this namespace, mapped
// by Chromium's --host-resolver-rules.

// exampleStack is one compose example, up.
type exampleStack struct {
	name    string // compose, standalone
	file    string // the compose file, relative to the repository
	project string // the file's name:
	// usersNetwork is the network the spawner puts user containers on.
	usersNetwork string
	// host is DOMAIN; the site is http://host, published on siteAddr.
	host, siteAddr string
	// providerAddr is where the provider's port 9000 is published.
	providerAddr string
	vars         map[string]string
	e            *engine
	envFile      string
	provider     string // the provider's container
}

// exampleIssuer is the provider's issuer URL, for OAuth2 Proxy inside the
// engine and for the browser outside alike. The client and the cookie secret
// are the sign-in tests'.
const exampleIssuer = "http://oidc:9000/oidc"

// composeExample is examples/compose, the plugin in local mode. prefix is
// the first three bytes of the loopback addresses it is published on.
func composeExample(prefix string) *exampleStack {
	return &exampleStack{
		name: "compose", file: "examples/compose/compose.yml", project: "container-director-traefik",
		usersNetwork: "container-director-traefik-users",
		host:         "compose.test", siteAddr: prefix + ".2:80", providerAddr: prefix + ".1:9000",
	}
}

// standaloneExample is examples/standalone.
func standaloneExample(prefix string) *exampleStack {
	return &exampleStack{
		name: "standalone", file: "examples/standalone/compose.yml", project: "container-director",
		usersNetwork: "container-director-users",
		host:         "standalone.test", siteAddr: prefix + ".2:80", providerAddr: prefix + ".1:9000",
		// The default workspace is code-server, which is not among the
		// images made here: the demo workspace stands in for it, without
		// code-server's arguments.
		vars: map[string]string{"WORKSPACE_IMAGE": imageWorkspace, "WORKSPACE_COMMAND": ""},
	}
}

func (s *exampleStack) site() string { return "http://" + s.host }

// compose runs docker compose on the example's file with its .env.
func (s *exampleStack) compose(args ...string) (string, error) {
	return s.e.docker(append([]string{"compose", "--env-file", s.envFile, "-f", s.file}, args...)...)
}

// upExample brings the example up, as a user would after filling in .env,
// and waits until a page load leads to sign-in. The test's cleanup takes it
// down, with the user containers.
func upExample(t *testing.T, e *engine, s *exampleStack) *exampleStack {
	t.Helper()
	began := time.Now()
	s.e = e
	vars := map[string]string{
		"DOMAIN":             s.host,
		"PUBLIC_URL":         s.site(),
		"PUBLISH_ADDR":       s.siteAddr,
		"COOKIE_SECURE":      "false",
		"OIDC_ISSUER_URL":    exampleIssuer,
		"OIDC_CLIENT_ID":     signInClientID,
		"OIDC_CLIENT_SECRET": signInClientSecret,
		"COOKIE_SECRET":      signInCookieSecret,
		"DOCKER_GID":         e.socketGID(t),
	}
	for k, v := range s.vars {
		vars[k] = v
	}
	var env strings.Builder
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&env, "%s=%s\n", k, vars[k])
	}
	s.envFile = filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(s.envFile, []byte(env.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// The images exist already: nothing is built or pulled.
	up := []string{"--no-build", "--pull", "never"}
	t.Cleanup(func() { s.down(t) })
	// Networks and containers first, so that the provider can join the
	// edge network before OAuth2 Proxy asks it for its configuration.
	if _, err := s.compose(append([]string{"up", "--no-start"}, up...)...); err != nil {
		t.Fatal(err)
	}
	edge, err := e.docker("network", "ls", "--format", "{{.Name}}",
		"--filter", "label=com.docker.compose.project="+s.project, "--filter", "label=com.docker.compose.network=edge")
	if err != nil {
		t.Fatal(err)
	}
	if edge = strings.TrimSpace(edge); edge == "" || strings.Contains(edge, "\n") {
		t.Fatalf("%s: want one edge network, got %q", s.file, edge)
	}
	s.provider = s.project + "-oidc"
	if _, err := e.docker("run", "-d", "--name", s.provider, "--network", edge, "--network-alias", "oidc",
		"-p", s.providerAddr+":9000", imageProvider,
		"-listen", ":9000", "-issuer", exampleIssuer,
		"-client-id", signInClientID, "-client-secret", signInClientSecret, "-users", "alice,bob"); err != nil {
		t.Fatal(err)
	}
	client := s.client(nil)
	err = pollUntil(30*time.Second, func() error {
		resp, err := client.Get(exampleIssuer + "/.well-known/openid-configuration")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the OIDC provider did not answer: %v\n%s", err, s.logs())
	}
	if _, err := s.compose(append([]string{"up", "-d"}, up...)...); err != nil {
		t.Fatalf("%v\n%s", err, s.logs())
	}

	// Up: a page load leads to sign-in. Traefik needs a moment to read the
	// labels; OAuth2 Proxy, to read the provider's configuration.
	err = pollUntil(90*time.Second, func() error {
		resp, err := client.Get(s.site() + "/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if signInAnswer(resp, body) {
			return nil
		}
		return fmt.Errorf("status %d from %s: %.200s", resp.StatusCode, resp.Request.URL, body)
	})
	if err != nil {
		t.Fatalf("%s: a page load never led to sign-in: %v\n%s", s.file, err, s.logs())
	}
	t.Logf("%s: docker compose up, and the site leads to sign-in, in %s", s.file, time.Since(began).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of %s:\n%s", s.file, s.logs())
		}
	})
	return s
}

// signInAnswer tells whether an answer is a step of sign-in: OAuth2 Proxy's
// sign-in page, or the provider's form.
func signInAnswer(resp *http.Response, body []byte) bool {
	if _, ok := findForm(body, stepProxyPage); ok {
		return true
	}
	_, ok := findForm(body, stepProviderForm)
	return ok && strings.HasPrefix(resp.Request.URL.String(), exampleIssuer+"/authorize")
}

// down takes the example down: the user containers the spawner made, the
// provider, then the project with its volumes.
func (s *exampleStack) down(t *testing.T) {
	t.Helper()
	if s.provider != "" {
		s.e.docker("rm", "-f", s.provider)
	}
	// The spawner's containers are not the project's: remove them first,
	// or the users network cannot go.
	if out, err := s.e.docker("ps", "-aq", "--filter", "name=^vscode-"); err == nil && strings.TrimSpace(out) != "" {
		if _, err := s.e.docker(append([]string{"rm", "-f", "-v"}, strings.Fields(out)...)...); err != nil {
			t.Errorf("removing the user containers: %v", err)
		}
	}
	if _, err := s.compose("down", "-v", "--remove-orphans", "--timeout", "5"); err != nil {
		t.Errorf("docker compose down: %v", err)
	}
	// The users' volumes, if the spawner made any: the next example starts
	// from nothing. The engine is this test's own.
	if _, err := s.e.docker("volume", "prune", "-f"); err != nil {
		t.Errorf("removing the users' volumes: %v", err)
	}
}

// logs returns the tails of the example's logs and the state of its
// containers, for a failure's report.
func (s *exampleStack) logs() string {
	var b strings.Builder
	if out, err := s.compose("ps", "-a"); err == nil {
		b.WriteString("--- docker compose ps -a:\n" + out)
	}
	if out, err := s.compose("logs", "--no-color", "--tail", "40"); err == nil {
		b.WriteString("--- docker compose logs:\n" + out)
	} else {
		b.WriteString(err.Error() + "\n")
	}
	if s.provider != "" {
		out, _ := s.e.command("logs", "--tail", "20", s.provider).CombinedOutput()
		b.WriteString("--- " + s.provider + ":\n" + string(out))
	}
	if out, err := s.e.docker("ps", "-a", "--filter", "name=^vscode-"); err == nil {
		b.WriteString("--- user containers:\n" + out)
	}
	b.WriteString(s.e.logTail(15))
	return b.String()
}

// client returns an HTTP client that reaches the site and the provider at
// their published addresses, keeping cookies in jar (if not nil) and
// following redirects as a browser does.
func (s *exampleStack) client(jar http.CookieJar) *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableCompression: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				switch addr {
				case s.host + ":80":
					addr = s.siteAddr
				case "oidc:9000":
					addr = s.providerAddr
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
	}
}

// chromium starts a browser that reaches the site and the provider at their
// published addresses.
func (s *exampleStack) chromium(t *testing.T) *page {
	t.Helper()
	host, _, _ := net.SplitHostPort(s.siteAddr)
	provider, _, _ := net.SplitHostPort(s.providerAddr)
	return startChromium(t, fmt.Sprintf("--host-resolver-rules=MAP %s %s, MAP oidc %s", s.host, host, provider)).newPage(t)
}

// pollUntil calls check every 200 ms until it returns nil or timeout passes.
func pollUntil(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestExamplesUp brings up each compose example as shipped on a private
// Docker Engine and signs two users in, in headless Chromium: alice types
// her name on the provider's form, bob clicks his. Each sees the spawner's
// loading page naming their container, then lands in their own workspace
// (the demo workspace, vscode-<user>, which the spawner created on the
// example's users network), whose WebSocket echoes through the example's
// proxies. The loading page switches to the workspace by its script, with
// no reload in between, after announcing a stage of the engine's start
// (waitSwitch). A reload keeps alice in hers.
func TestExamplesUp(t *testing.T) {
	needChromium(t)
	e := startEngine(t)
	importExampleImages(t, e)
	t.Run("compose", func(t *testing.T) {
		signInTwoUsers(t, upExample(t, e, composeExample("127.0.4")))
	})
	t.Run("standalone", func(t *testing.T) {
		signInTwoUsers(t, upExample(t, e, standaloneExample("127.0.5")))
	})
}

func signInTwoUsers(t *testing.T, s *exampleStack) {
	t.Helper()
	// Beside the demo's: $ARTIFACTS_DIR, or e2e/artifacts (ignored by git).
	artifacts := os.Getenv("ARTIFACTS_DIR")
	if artifacts == "" {
		artifacts = "artifacts"
	}
	artifacts, err := filepath.Abs(filepath.Join(artifacts, "examples-"+s.name))
	if err == nil {
		err = os.MkdirAll(artifacts, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
	shot := func(p *page, name string) {
		t.Helper()
		if err := p.screenshot(filepath.Join(artifacts, name)); err != nil {
			t.Errorf("screenshot %s: %v", name, err)
		}
	}

	alice := s.signInChromium(t, "alice", true)
	loading := s.waitLoading(t, alice, "alice")
	shot(alice, "loading.png")
	s.waitSwitch(t, alice, "alice", loading)
	s.waitWorkspace(t, alice, "alice")
	shot(alice, "workspace.png")

	bob := s.signInChromium(t, "bob", false)
	loading = s.waitLoading(t, bob, "bob")
	s.waitSwitch(t, bob, "bob", loading)
	st := s.waitWorkspace(t, bob, "bob")
	if strings.Contains(st.Text, "alice") {
		t.Errorf("bob's workspace mentions alice: %s", st)
	}
	shot(bob, "workspace-bob.png")

	// alice's session is her own: a reload is still her workspace.
	if err := alice.navigate(s.site() + "/"); err != nil {
		t.Fatal(err)
	}
	s.waitWorkspace(t, alice, "alice")

	// Two containers, each running on the example's users network.
	for _, user := range []string{"alice", "bob"} {
		out, err := s.e.docker("inspect", "-f", `{{.State.Status}} {{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}`, "vscode-"+user)
		if err != nil {
			t.Errorf("%s's container: %v", user, err)
			continue
		}
		if f := strings.Fields(out); len(f) < 2 || f[0] != "running" || !slices.Contains(f[1:], s.usersNetwork) {
			t.Errorf("vscode-%s is %q, want running on %s", user, strings.TrimSpace(out), s.usersNetwork)
		}
	}
	t.Logf("screenshots in %s", artifacts)
}

// signInChromium opens the site in a fresh browser and signs in as user on
// the provider's form, typing the name or clicking its button; it returns
// the tab on the page that follows. The compose example shows OAuth2 Proxy's
// sign-in page first (its button leads to the provider); the standalone
// example skips it (--skip-provider-button).
func (s *exampleStack) signInChromium(t *testing.T, user string, typed bool) *page {
	t.Helper()
	p := s.chromium(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s's tab: %s", user, describeNavigation(p))
		}
	})
	watchNavigations(t, p)
	if err := p.navigate(s.site() + "/"); err != nil {
		t.Fatal(err)
	}
	const form = "User name (preferred_username)"
	st := p.waitState(t, 30*time.Second, "a sign-in page", func(st pageState) bool {
		return strings.Contains(st.Text, "Sign in with") || strings.Contains(st.Text, form)
	})
	if !strings.Contains(st.Text, form) {
		if st.URL != s.site()+"/" {
			t.Errorf("OAuth2 Proxy's sign-in page is at %s, want the site's URL %s/ (the errors middleware serves it in place)", st.URL, s.site())
		}
		// The button moves once the page's style sheet is in: click it after.
		waitComplete(t, p)
		if err := p.clickButton("Sign in with"); err != nil {
			t.Fatalf("%v; page: %s", err, st)
		}
		st = p.waitState(t, 30*time.Second, "the provider's form", func(st pageState) bool {
			return strings.Contains(st.Text, form)
		})
	}
	if !strings.HasPrefix(st.URL, exampleIssuer+"/") {
		t.Errorf("the provider's form is at %s, want under %s", st.URL, exampleIssuer)
	}
	waitComplete(t, p)
	if typed {
		if err := p.typeInto("#username", user); err != nil {
			t.Fatal(err)
		}
		if err := p.clickButton("Sign in"); err != nil {
			t.Fatal(err)
		}
	} else if err := p.clickButton(user); err != nil {
		t.Fatal(err)
	}
	return p
}

// describeNavigation tells what the tab's last navigation received, for a
// failure's report: a blank page may be an answer with an empty body or a
// load still waiting for its answer.
func describeNavigation(p *page) string {
	var nav struct {
		URL        string  `json:"url"`
		Status     int     `json:"status"`
		Type       string  `json:"type"`
		Ms         float64 `json:"ms"`
		BodyBytes  int     `json:"bodyBytes"`
		ReadyState string  `json:"readyState"`
		HTML       string  `json:"html"`
	}
	err := p.eval(`(() => {
		const n = performance.getEntriesByType("navigation")[0] || {};
		return {url: n.name || "", status: n.responseStatus || 0, type: n.type || "",
			ms: n.duration || 0, bodyBytes: n.decodedBodySize || 0,
			readyState: document.readyState, html: document.documentElement.outerHTML.slice(0, 300)};
	})()`, &nav)
	if err != nil {
		return fmt.Sprintf("cannot read its navigation: %v", err)
	}
	return fmt.Sprintf("last navigation %s (%s): status %d, %d body bytes, %.0f ms, document %s; HTML: %s",
		nav.URL, nav.Type, nav.Status, nav.BodyBytes, nav.Ms, nav.ReadyState, nav.HTML)
}

// waitComplete waits until the page and everything it loads are in.
func waitComplete(t *testing.T, p *page) {
	t.Helper()
	var state string
	err := pollUntil(30*time.Second, func() error {
		if err := p.eval("document.readyState", &state); err != nil {
			return err
		}
		if state != "complete" {
			return fmt.Errorf("document.readyState is %q", state)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// navigations are the URLs of a tab's main-frame navigations, in order.
type navigations struct{ urls []string }

// watchNavigations records the tab's main-frame navigations from now on
// (Page.frameNavigated, read while the tab answers calls).
func watchNavigations(t *testing.T, p *page) *navigations {
	t.Helper()
	n := &navigations{}
	p.onEvent = func(method string, params json.RawMessage) {
		if method != "Page.frameNavigated" {
			return
		}
		var e struct {
			Frame struct {
				ParentID string `json:"parentId"`
				URL      string `json:"url"`
			} `json:"frame"`
		}
		if json.Unmarshal(params, &e) == nil && e.Frame.ParentID == "" {
			n.urls = append(n.urls, e.Frame.URL)
		}
	}
	p.navs = n
	if err := p.call("Page.enable", nil, nil); err != nil {
		t.Fatal(err)
	}
	return n
}

// loadingShown is the loading page as the test first saw it.
type loadingShown struct {
	navigations int       // main-frame navigations of the tab until then
	at          time.Time // when it was first painted
}

// waitLoading waits for the spawner's loading page for user's container, at
// the site's URL.
func (s *exampleStack) waitLoading(t *testing.T, p *page, user string) loadingShown {
	t.Helper()
	// The title comes before the body: wait for the name in the text too.
	st := p.waitState(t, 30*time.Second, user+"'s loading page naming vscode-"+user, func(st pageState) bool {
		return strings.HasPrefix(st.Title, "Starting your workspace") && strings.Contains(st.Text, "vscode-"+user)
	})
	if st.URL != s.site()+"/" {
		t.Errorf("%s's loading page is at %s, want %s/", user, st.URL, s.site())
	}
	shown := loadingShown{navigations: len(p.navs.urls)}
	at, err := p.shownAt()
	if err != nil {
		t.Fatalf("%s's loading page: %v", user, err)
	}
	shown.at = at
	return shown
}

// loadingStages are the stage labels of the spawner's loading page
// (examples/spawner/pages.go).
var loadingStages = []string{"Downloading the image", "Creating the container", "Starting it", "Waiting for the app to answer"}

// waitSwitch follows user's tab from the loading page to the workspace's
// page, reading the stage the loading page announces as it goes. The page
// must switch with no reload in between: exactly one navigation, which
// the page's script made (its leave() stamps sessionStorage before it
// reloads; the meta refresh, inside <noscript>, stamps nothing). On the
// way it must have announced at least one of the engine's stages, and
// never shown another page (the error page). It logs the time from the
// loading page's first paint to the workspace's.
func (s *exampleStack) waitSwitch(t *testing.T, p *page, user string, loading loadingShown) {
	t.Helper()
	type view struct {
		Title  string `json:"title"`
		Now    string `json:"now"`
		Parsed bool   `json:"parsed"`
	}
	var announced []string
	deadline := time.Now().Add(90 * time.Second)
	for {
		var v view
		err := p.eval(`(() => {
			const now = document.getElementById("now");
			return {title: document.title, now: now ? now.textContent : "", parsed: document.readyState !== "loading"};
		})()`, &v)
		if err == nil && v.Parsed {
			if v.Title == "Workspace of "+user {
				break
			}
			if !strings.HasPrefix(v.Title, "Starting your workspace") {
				st, _ := p.state()
				t.Fatalf("%s's tab left the loading page for another page than the workspace: %s", user, st)
			}
			if label := strings.TrimSuffix(strings.TrimSpace(v.Now), "\u2026"); label != "" && !slices.Contains(announced, label) {
				announced = append(announced, label)
			}
		}
		if time.Now().After(deadline) {
			st, _ := p.state()
			t.Fatalf("%s's loading page did not switch to the workspace within 90 s; stages seen %q; page: %s", user, announced, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if navs := p.navs.urls[loading.navigations:]; len(navs) != 1 || navs[0] != s.site()+"/" {
		t.Errorf("%s's tab navigated %d times from the loading page to the workspace (%q), want once, to %s/", user, len(navs), navs, s.site())
	}
	var left float64
	if err := p.eval(`Number(sessionStorage.getItem("container-director-left:vscode-`+user+`") || 0)`, &left); err != nil {
		t.Fatal(err)
	}
	// leave() stamps the time it reloads (plus any wait it adds).
	if stamp := time.UnixMilli(int64(left)); stamp.Before(loading.at.Add(-time.Second)) {
		t.Errorf("%s's workspace was not loaded by the loading page's script (its stamp in sessionStorage: %v, the loading page was shown at %v)", user, left, loading.at)
	}
	engine := false
	for _, a := range announced {
		engine = engine || slices.Contains(loadingStages, a)
	}
	if !engine {
		t.Errorf("%s's loading page announced no stage of the engine's start: saw %q, want one of %q", user, announced, loadingStages)
	}
	shown, err := p.shownAt()
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		shown, err = p.shownAt()
	}
	if err != nil {
		t.Fatalf("%s's workspace: %v", user, err)
	}
	t.Logf("%s: the loading page announced %q; the workspace's page was shown %s after it",
		user, announced, shown.Sub(loading.at).Round(time.Millisecond))
}

// waitWorkspace waits for user's workspace in the tab, at the site's URL,
// with its WebSocket connected and its first message echoed.
func (s *exampleStack) waitWorkspace(t *testing.T, p *page, user string) pageState {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last workspaceStatus
	for {
		ws, err := p.workspaceStatus()
		if err == nil {
			last = ws
			if ws.Title == "Workspace of "+user && ws.Status == "connected" && len(ws.Echoes) > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			st, _ := p.state()
			t.Fatalf("%s's workspace did not connect within 90 s: %+v; page: %s", user, last, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if want := "echo: hello from the browser"; last.Echoes[0] != want {
		t.Errorf("%s's workspace: first echo %q, want %q", user, last.Echoes[0], want)
	}
	st, err := p.state()
	if err != nil {
		t.Fatal(err)
	}
	if st.URL != s.site()+"/" {
		t.Errorf("%s's workspace is at %s, want %s/", user, st.URL, s.site())
	}
	if want := "Served by vscode-" + user + "\n"; !strings.Contains(st.Text, want) {
		t.Errorf("%s's workspace does not say %q: %s", user, strings.TrimSpace(want), st)
	}
	return st
}

// signInHTTP signs user in with a plain HTTP client, as signInChromium does
// in a browser, and stops before the site's first page after the provider:
// the jar then holds the session, and no page load has reached the
// spawner yet.
func (s *exampleStack) signInHTTP(user string) (*http.Client, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return nil, err
	}
	c := s.client(jar)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if via[len(via)-1].URL.Path == "/oauth2/callback" {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return fmt.Errorf("redirect loop")
		}
		return nil
	}
	req, _ := http.NewRequest(http.MethodGet, s.site()+"/", nil)
	for i := 0; i < 4; i++ {
		req.Header.Set("Accept", "text/html")
		resp, err := c.Do(req)
		if err != nil {
			return nil, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Request.URL.Path == "/oauth2/callback" {
			if resp.StatusCode != http.StatusFound {
				return nil, fmt.Errorf("signing in %s: the callback answered %d: %.200s", user, resp.StatusCode, body)
			}
			return c, nil
		}
		f, ok := findForm(body, stepProviderForm)
		if ok {
			f.fields.Set("username", user)
		} else if f, ok = findForm(body, stepProxyPage); !ok {
			return nil, fmt.Errorf("signing in %s: status %d from %s is no sign-in step: %.200s", user, resp.StatusCode, resp.Request.URL, body)
		}
		if req, err = f.request(resp.Request.URL); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("signing in %s: no callback after 4 steps", user)
}

var workspaceTitle = regexp.MustCompile(`<title>Workspace of ([^<]*)</title>`)

// TestBenchSpawn (make bench) measures how long a workspace takes to come up
// on a real engine: examples/compose up with the demo workspace image, 20
// users signed in beforehand, then all 20 load the site at once. For each,
// the time from that first page load (the spawner's loading page) until a
// load is answered by the user's own workspace. The load is repeated every
// 100 ms rather than at the loading page's refresh interval, to measure the
// workspace rather than the interval. Printed, never asserted.
func TestBenchSpawn(t *testing.T) {
	if !*benchFlag {
		t.Skip("make bench runs it (-bench)")
	}
	e := startEngine(t)
	importExampleImages(t, e)
	s := upExample(t, e, composeExample("127.0.6"))

	const users = 20
	clients := make([]*http.Client, users)
	for i := range clients {
		c, err := s.signInHTTP(fmt.Sprintf("bench%02d", i+1))
		if err != nil {
			t.Fatalf("%v\n%s", err, s.logs())
		}
		clients[i] = c
	}

	type result struct {
		took    time.Duration
		loading bool // the first load was the loading page
		err     error
	}
	results := make([]result, users)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			user := fmt.Sprintf("bench%02d", i+1)
			r := &results[i]
			<-start
			t0 := time.Now()
			deadline := t0.Add(3 * time.Minute)
			for n := 0; ; n++ {
				req, _ := http.NewRequest(http.MethodGet, s.site()+"/", nil)
				req.Header.Set("Accept", "text/html")
				resp, err := clients[i].Do(req)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					if m := workspaceTitle.FindSubmatch(body); m != nil {
						if string(m[1]) != user {
							r.err = fmt.Errorf("%s got the workspace of %s", user, m[1])
							return
						}
						r.took = time.Since(t0)
						return
					}
					if n == 0 {
						r.loading = strings.Contains(string(body), "<title>Starting your workspace")
					}
				}
				if time.Now().After(deadline) {
					r.err = fmt.Errorf("%s: no workspace within 3 minutes; last answer: %v %.200s", user, err, body)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
		}(i)
	}
	began := time.Now()
	close(start)
	wg.Wait()
	all := time.Since(began)

	var took []time.Duration
	loading := 0
	for _, r := range results {
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		took = append(took, r.took)
		if r.loading {
			loading++
		}
	}
	if len(took) == 0 {
		t.Fatalf("no workspace came up\n%s", s.logs())
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	pct := func(p float64) time.Duration { return took[int(p*float64(len(took)-1)+0.5)] }
	var out strings.Builder
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "users\tup\tfirst load = loading page\tmin\tp50\tp95\tmax\tall up after\t\n")
	fmt.Fprintf(w, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t\n", users, len(took), loading,
		took[0].Round(time.Millisecond), pct(0.50).Round(time.Millisecond), pct(0.95).Round(time.Millisecond),
		took[len(took)-1].Round(time.Millisecond), all.Round(time.Millisecond))
	w.Flush()
	t.Logf("spawn latency on a real Docker Engine (%s, vfs), examples/compose with the demo workspace: first page load until the workspace answers, %d users at once:\n%s",
		engineVersion(e), users, out.String())
}

// engineVersion is the engine's version, for the figures' caption.
func engineVersion(e *engine) string {
	v, err := e.docker("version", "--format", "Engine {{.Server.Version}}, API {{.Server.APIVersion}}")
	if err != nil {
		return "engine version unknown"
	}
	return strings.TrimSpace(v)
}
