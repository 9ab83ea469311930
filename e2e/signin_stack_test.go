package e2e

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The sign-in tests put the real OAuth2 Proxy and an OIDC provider
// (e2e/cmd/oidc-provider) in front of the director, in both deployment
// shapes, and drive them as a browser does: redirects followed, cookies kept.

const (
	// signInHost is the site's host name, as the browser sees it.
	signInHost = "signin.test"
	// signInSite is the site's URL, PUBLIC_URL in the examples.
	signInSite = "http://" + signInHost

	signInClientID     = "container-director"
	signInClientSecret = "e2e-client-secret"
	signInCookieSecret = "e2e-cookie-secret-32-bytes-long!"

	// janeName is a user name the strict policy rejects; janeLabel is its
	// escaped form, whose container the hosts file maps.
	janeName  = "Jane.Doe@example.com"
	janeLabel = "-4aane-2e-44oe-40example-2ecom"
)

// Environment variables that carry the tools TestMain builds outside the
// namespaces to the tests inside.
const (
	envOAuth2Proxy  = "E2E_OAUTH2_PROXY"
	envOIDCProvider = "E2E_OIDC_PROVIDER"
	envDirector     = "E2E_DIRECTOR"
)

// buildSignInTools builds, outside the namespaces where the Go module proxy
// is reachable, OAuth2 Proxy (scripts/oauth2-proxy.sh), the standalone
// director and the OIDC provider, and sets their paths in the environment.
func buildSignInTools(dir string) error {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "oauth2-proxy.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("scripts/oauth2-proxy.sh: %w", err)
	}
	os.Setenv(envOAuth2Proxy, strings.TrimSpace(string(out)))

	for _, b := range []struct{ env, dir, pkg, name string }{
		{envDirector, repoRoot(), "./cmd/container-director", "container-director"},
		{envOIDCProvider, filepath.Join(repoRoot(), "e2e"), "./cmd/oidc-provider", "oidc-provider"},
	} {
		bin := filepath.Join(dir, b.name)
		// The version names the checkout, so that the director's first
		// log line says whose code runs.
		cmd := exec.Command("go", "build", `-ldflags=-X "main.version=e2e:`+repoRoot()+`"`, "-o", bin, b.pkg)
		cmd.Dir = b.dir
		// Static: the examples' tests put them in images of their own.
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
		}
		os.Setenv(b.env, bin)
	}
	return nil
}

// process is a program the sign-in tests run.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	exited         chan struct{}
}

func startProcess(name string, env []string, bin string, args ...string) (*process, error) {
	if bin == "" {
		return nil, fmt.Errorf("%s: no binary: TestMain builds it outside the namespaces", name)
	}
	p := &process{name: name, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = p.stdout
	p.cmd.Stderr = p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *process) tail(n int) string {
	return fmt.Sprintf("--- %s stdout:\n%s\n--- %s stderr:\n%s", p.name, p.stdout.tail(n), p.name, p.stderr.tail(n))
}

// waitUntil polls check until it returns nil, the process exits or timeout
// passes.
func waitUntil(p *process, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if p != nil && !p.alive() {
			return fmt.Errorf("%s exited: %v", p.name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// noPreferredUser signs in without a preferred_username claim, as users of
// some providers (Google) do.
const noPreferredUser = "grace"

// startOIDCProvider runs e2e/cmd/oidc-provider and returns it with its issuer.
func startOIDCProvider() (*process, string, error) {
	p, err := startProcess("oidc-provider", nil, os.Getenv(envOIDCProvider),
		"-listen", "127.0.0.1:0", "-client-id", signInClientID, "-client-secret", signInClientSecret,
		"-without-preferred-username", noPreferredUser)
	if err != nil {
		return nil, "", err
	}
	var issuer string
	err = waitUntil(p, 30*time.Second, func() error {
		line, _, _ := strings.Cut(p.stdout.String(), "\n")
		if !strings.HasPrefix(line, "http://") || !strings.HasSuffix(p.stdout.String(), "\n") {
			return fmt.Errorf("no issuer printed yet")
		}
		issuer = line
		return nil
	})
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, issuer, nil
}

// startOAuth2Proxy runs OAuth2 Proxy and waits for its /ping.
func startOAuth2Proxy(addr string, args, env []string) (*process, error) {
	p, err := startProcess("oauth2-proxy", env, os.Getenv(envOAuth2Proxy), args...)
	if err != nil {
		return nil, err
	}
	err = waitUntil(p, 30*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/ping")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ping: status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("%v\n%s", err, p.tail(30))
	}
	return p, nil
}

// startTraefikDynamic runs Traefik with the plugin from this checkout in
// local mode, as startTraefik does, with the given dynamic configuration.
func startTraefikDynamic(bin string, dynamic []byte) (*traefik, error) {
	return launchTraefik(bin, dynamic, false)
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// signInShape is one deployment shape running with real sign-in.
type signInShape struct {
	name string
	// entry is the address a browser connects to for signInSite.
	entry string
	// issuer is the OIDC provider's issuer URL.
	issuer string
	// identity is the header the director trusts in this shape.
	identity string
	spawner  *spawnerServer
	jane     *container
	// setPolicy switches the director's usernamePolicy, by the example's
	// USERNAME_POLICY variable.
	setPolicy func(policy string) error
	// logSources give the tails of the processes' logs.
	logSources []func() string
}

func (s *signInShape) addLog(f func() string) { s.logSources = append(s.logSources, f) }

// logs returns the tails of the shape's logs.
func (s *signInShape) logs() string {
	var b strings.Builder
	for _, l := range s.logSources {
		b.WriteString(l() + "\n")
	}
	return b.String()
}

// commonVars are the compose variables of both examples, as a .env would
// set them for this site.
func commonVars(issuer, policy string) map[string]string {
	return map[string]string{
		"DOMAIN":             signInHost,
		"PUBLIC_URL":         signInSite,
		"COOKIE_SECURE":      "false",
		"OIDC_ISSUER_URL":    issuer,
		"OIDC_CLIENT_ID":     signInClientID,
		"OIDC_CLIENT_SECRET": signInClientSecret,
		"COOKIE_SECRET":      signInCookieSecret,
		"USERNAME_POLICY":    policy,
	}
}

// startShapeCommon starts what both shapes share: the provider, a spawner
// stand-in and Jane's container. Everything started is stopped by t.Cleanup.
func startShapeCommon(t *testing.T, s *signInShape) {
	t.Helper()
	provider, issuer, err := startOIDCProvider()
	if err != nil {
		t.Fatalf("OIDC provider: %v", err)
	}
	t.Cleanup(provider.stop)
	s.issuer = issuer
	if s.spawner, err = startSpawner(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.spawner.srv.Close() })
	if s.jane, err = startContainer("jane", addrs[janeLabel]); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.jane.stop)
	s.addLog(func() string { return provider.tail(20) })
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs of the %s shape:\n%s", s.name, s.logs())
		}
	})
}

// startExampleOAuth2Proxy runs OAuth2 Proxy on addr with the flags and
// environment of the example's oauth2-proxy service, its service addresses
// replaced by the test's.
func startExampleOAuth2Proxy(t *testing.T, s *signInShape, c *composeFile, example, addr string, services map[string]string) *process {
	t.Helper()
	svc, err := c.service("oauth2-proxy")
	if err != nil {
		t.Fatal(err)
	}
	args, env := oauth2ProxyArgs(svc, addr, services)
	proxy, err := startOAuth2Proxy(addr, args, env)
	if err != nil {
		t.Fatalf("OAuth2 Proxy with the flags of %s: %v", example, err)
	}
	t.Cleanup(proxy.stop)
	s.addLog(func() string { return proxy.tail(30) })
	return proxy
}

// startTraefikShape runs examples/compose: Traefik with the labels of
// compose.yml, OAuth2 Proxy with its flags, the spawner stand-in as the
// router's service.
func startTraefikShape(t *testing.T) *signInShape {
	t.Helper()
	s := &signInShape{name: "Traefik", identity: "X-Auth-Request-Preferred-Username"}
	startShapeCommon(t, s)
	const example = "examples/compose/compose.yml"
	c, err := loadCompose(example, commonVars(s.issuer, "strict"))
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr := freeAddr()
	services := map[string]string{"oauth2-proxy": proxyAddr, "spawner": s.spawner.addr}
	startExampleOAuth2Proxy(t, s, c, example, proxyAddr, services)

	dynamic, err := traefikDynamic(c, services)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := startTraefikDynamic(os.Getenv("E2E_TRAEFIK"), dynamic)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.stop)
	s.addLog(func() string {
		return "--- traefik:\n" + tr.logs.tail(40) + "\n--- dynamic configuration from " + example + ":\n" + string(dynamic)
	})
	s.entry = tr.web
	s.setPolicy = func(policy string) error {
		c, err := loadCompose(example, commonVars(s.issuer, policy))
		if err != nil {
			return err
		}
		dynamic, err := traefikDynamic(c, services)
		if err != nil {
			return err
		}
		return writeFileAtomic(tr.dynamic, dynamic)
	}
	waitSignInReady(t, s, func() bool { return tr.alive() })
	return s
}

// startStandaloneShape runs examples/standalone: OAuth2 Proxy with the flags
// of compose.yml in front of the standalone director with its environment.
func startStandaloneShape(t *testing.T) *signInShape {
	t.Helper()
	s := &signInShape{name: "standalone", identity: "X-Forwarded-Preferred-Username"}
	startShapeCommon(t, s)
	const example = "examples/standalone/compose.yml"
	proxyAddr, directorAddr := freeAddr(), freeAddr()
	services := map[string]string{"oauth2-proxy": proxyAddr, "director": directorAddr, "spawner": s.spawner.addr}

	var director *process
	startDirector := func(policy string) error {
		c, err := loadCompose(example, commonVars(s.issuer, policy))
		if err != nil {
			return err
		}
		svc, err := c.service("director")
		if err != nil {
			return err
		}
		var env []string
		for k, v := range svc.Environment {
			if k == "LISTEN_ADDR" {
				v = directorAddr
			}
			env = append(env, k+"="+relocate(v, services))
		}
		if director != nil {
			director.stop()
		}
		director, err = startProcess("container-director", env, os.Getenv(envDirector))
		if err != nil {
			return err
		}
		return waitUntil(director, 30*time.Second, func() error {
			if !strings.Contains(director.stdout.String(), "listening on") {
				return fmt.Errorf("no startup line yet")
			}
			return nil
		})
	}
	if err := startDirector("strict"); err != nil {
		t.Fatalf("director with the environment of %s: %v", example, err)
	}
	t.Cleanup(func() { director.stop() })
	s.addLog(func() string { return director.tail(30) })
	s.setPolicy = startDirector

	c, err := loadCompose(example, commonVars(s.issuer, "strict"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startExampleOAuth2Proxy(t, s, c, example, proxyAddr, services)
	s.entry = proxyAddr
	waitSignInReady(t, s, proxy.alive)
	return s
}

// waitSignInReady waits until a page load on the site leads to sign-in.
func waitSignInReady(t *testing.T, s *signInShape, alive func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if !alive() {
			t.Fatalf("%s shape: a process exited before it was ready", s.name)
		}
		b := s.newBrowser(t)
		resp, body, err := b.tryGet("/", nil)
		if err == nil {
			if step := s.signInStep(resp, body); step != "" {
				return
			}
			last = fmt.Sprintf("status %d from %s: %.200s", resp.StatusCode, resp.Request.URL, body)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s shape: a page load never led to sign-in; last answer: %s", s.name, last)
}

// browser is one person's browser: a cookie jar, redirects followed, and
// signInSite reached at the shape's entry address.
type browser struct {
	shape  *signInShape
	jar    *cookiejar.Jar
	client *http.Client
	// hops are the URLs of the last request's redirects.
	hops []string
}

func (s *signInShape) newBrowser(t *testing.T) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &browser{shape: s, jar: jar}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	b.client = &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableCompression: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if addr == signInHost+":80" {
					addr = s.entry
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			b.hops = append(b.hops, req.URL.String())
			if len(via) >= 20 {
				return fmt.Errorf("redirect loop: %q", b.hops)
			}
			return nil
		},
	}
	t.Cleanup(b.client.CloseIdleConnections)
	return b
}

// tryGet loads signInSite+path, following redirects.
func (b *browser) tryGet(path string, header http.Header) (*http.Response, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, signInSite+path, nil)
	if err != nil {
		return nil, nil, err
	}
	return b.do(req, header)
}

func (b *browser) do(req *http.Request, header http.Header) (*http.Response, []byte, error) {
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	b.hops = nil
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func (b *browser) get(t *testing.T, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, body, err := b.tryGet(path, header)
	if err != nil {
		t.Fatalf("%s shape: GET %s: %v", b.shape.name, path, err)
	}
	return resp, body
}

// signIn loads path and signs in as user wherever sign-in is asked for:
// OAuth2 Proxy's sign-in page, then the provider's form. It returns the
// answer at the end and the sign-in steps it went through.
func (b *browser) signIn(t *testing.T, path, user string) (*http.Response, []byte, []string) {
	t.Helper()
	resp, body := b.get(t, path, nil)
	var steps []string
	for i := 0; i < 4; i++ {
		step := b.shape.signInStep(resp, body)
		if step == "" {
			break
		}
		steps = append(steps, step)
		f, ok := findForm(body, step)
		if !ok {
			t.Fatalf("no form on the %s", step)
		}
		if step == stepProviderForm {
			f.fields.Set("username", user)
		}
		req, err := f.request(resp.Request.URL)
		if err != nil {
			t.Fatal(err)
		}
		var derr error
		resp, body, derr = b.do(req, nil)
		if derr != nil {
			t.Fatalf("%s shape: submitting the %s: %v", b.shape.name, step, derr)
		}
	}
	if len(steps) == 0 || steps[len(steps)-1] != stepProviderForm {
		t.Fatalf("%s shape: signing in as %s at %s went through %q, not the provider's form; last answer: status %d from %s: %.300s",
			b.shape.name, user, path, steps, resp.StatusCode, resp.Request.URL, body)
	}
	return resp, body, steps
}

// cookieHeader returns the Cookie header the browser sends to the site.
func (b *browser) cookieHeader() string {
	u, _ := url.Parse(signInSite + "/")
	var parts []string
	for _, c := range b.jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// The sign-in steps a browser may be shown.
const (
	stepProxyPage    = "OAuth2 Proxy's sign-in page"
	stepProviderForm = "provider's sign-in form"
)

// signInStep tells which sign-in step an answer is, or "" for none.
func (s *signInShape) signInStep(resp *http.Response, body []byte) string {
	u := resp.Request.URL
	issuer, _ := url.Parse(s.issuer)
	switch {
	case u.Host == issuer.Host && u.Path == issuer.Path+"/authorize" && resp.StatusCode == http.StatusOK:
		if _, ok := findForm(body, stepProviderForm); ok {
			return stepProviderForm
		}
	case u.Host == signInHost:
		if _, ok := findForm(body, stepProxyPage); ok {
			return stepProxyPage
		}
	}
	return ""
}

// htmlForm is a form of a page: where it goes and its hidden fields.
type htmlForm struct {
	action, method string
	fields         url.Values
}

var (
	formElement  = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	inputElement = regexp.MustCompile(`<input\b([^>]*)>`)
	attribute    = regexp.MustCompile(`([a-zA-Z-]+)="([^"]*)"`)
)

func attributes(s string) map[string]string {
	m := make(map[string]string)
	for _, a := range attribute.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
}

// findForm finds the form of a sign-in step: OAuth2 Proxy's form to
// /oauth2/start, or the provider's form with a user name to type.
func findForm(body []byte, step string) (htmlForm, bool) {
	for _, m := range formElement.FindAllStringSubmatch(string(body), -1) {
		attrs := attributes(m[1])
		f := htmlForm{action: attrs["action"], method: strings.ToUpper(attrs["method"]), fields: url.Values{}}
		if f.method == "" {
			f.method = http.MethodGet
		}
		var typed bool
		for _, in := range inputElement.FindAllStringSubmatch(m[2], -1) {
			a := attributes(in[1])
			switch {
			case a["type"] == "hidden":
				f.fields.Add(a["name"], a["value"])
			case a["name"] == "username":
				typed = true
			}
		}
		switch {
		case step == stepProxyPage && strings.HasSuffix(f.action, "/oauth2/start"):
			return f, true
		case step == stepProviderForm && typed:
			return f, true
		}
	}
	return htmlForm{}, false
}

// request builds the request that submitting the form sends.
func (f htmlForm) request(page *url.URL) (*http.Request, error) {
	action, err := page.Parse(f.action)
	if err != nil {
		return nil, err
	}
	if f.method == http.MethodGet {
		action.RawQuery = f.fields.Encode()
		return http.NewRequest(http.MethodGet, action.String(), nil)
	}
	req, err := http.NewRequest(f.method, action.String(), strings.NewReader(f.fields.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}
