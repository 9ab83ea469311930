// Command oidc-provider is a local OpenID Connect provider for trying out and
// testing Container Director behind OAuth2 Proxy: whoever signs in picks the
// user they are, so one provider can sign in alice, then bob, then anyone.
//
// It is github.com/oauth2-proxy/mockoidc (discovery, authorization code flow
// with PKCE, tokens signed with a key made at startup, userinfo) with a sign-in
// step in front of its authorization endpoint. There are no passwords: it is
// for loopback trials and tests, never for real users.
//
// Picking the user:
//
//   - In a browser, the authorization endpoint shows a form: type a user name
//     (it becomes the preferred_username claim) and optionally an e-mail
//     address, or click one of the names given with -users.
//   - In a script, add login_hint=<name> to the authorization URL and the
//     provider signs that user in at once, without a form.
//
// The e-mail address is the name itself when it contains '@', otherwise
// <name>@example.com; it is marked verified. The subject (sub) is the name.
//
// Flags:
//
//	-listen addr           address to listen on (default 127.0.0.1:9000; port 0 picks one)
//	-issuer url            issuer URL, as OAuth2 Proxy and browsers reach the provider:
//	                       http://host[:port]/oidc (default http://<listen address>/oidc)
//	-client-id id          the one client's ID (default container-director)
//	-client-secret secret  the one client's secret (default container-director-secret)
//	-users names           comma-separated names offered as buttons on the form (default alice,bob)
//	-without-preferred-username names
//	                       comma-separated names whose tokens carry no preferred_username
//	                       claim, as some providers (Google) send none
//
// When it is ready it prints the issuer URL, and nothing else, as one line on
// stdout; its log goes to stderr. Point OAuth2 Proxy at it with
// --provider=oidc --oidc-issuer-url=<that URL> and the same client ID and
// secret. SIGTERM or SIGINT stops it.
//
// Usage, from the e2e directory:
//
//	go run ./cmd/oidc-provider -listen 127.0.0.1:9000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oauth2-proxy/mockoidc"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the command line settings.
type options struct {
	listen       string
	issuer       string
	clientID     string
	clientSecret string
	users        []string
	// noPreferred are the users whose tokens carry no preferred_username.
	noPreferred map[string]bool
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var users string
	fs := flag.NewFlagSet("oidc-provider", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9000", "address to listen on; port 0 picks a free one")
	fs.StringVar(&o.issuer, "issuer", "", "issuer URL, http://host[:port]/oidc (default http://<listen address>/oidc)")
	fs.StringVar(&o.clientID, "client-id", "container-director", "the client's ID")
	fs.StringVar(&o.clientSecret, "client-secret", "container-director-secret", "the client's secret")
	fs.StringVar(&users, "users", "alice,bob", "comma-separated user names offered on the sign-in form")
	var noPreferred string
	fs.StringVar(&noPreferred, "without-preferred-username", "", "comma-separated user names whose tokens carry no preferred_username claim")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.clientID == "" || o.clientSecret == "" {
		return o, errors.New("-client-id and -client-secret must not be empty")
	}
	for _, u := range strings.Split(users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.users = append(o.users, u)
		}
	}
	o.noPreferred = make(map[string]bool)
	for _, u := range strings.Split(noPreferred, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.noPreferred[u] = true
		}
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "oidc-provider: %v\n", err)
		return 2
	}
	logger := log.New(stderr, "oidc-provider: ", 0)

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintf(stderr, "oidc-provider: -listen: %v\n", err)
		return 1
	}
	issuer, err := issuerURL(o.issuer, ln.Addr().(*net.TCPAddr))
	if err != nil {
		fmt.Fprintf(stderr, "oidc-provider: -issuer: %v\n", err)
		return 2
	}
	p, err := newProvider(o, issuer, logger)
	if err != nil {
		fmt.Fprintf(stderr, "oidc-provider: %v\n", err)
		return 1
	}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(signals)
	served := make(chan error, 1)
	go func() { served <- p.server.Serve(ln) }()
	fmt.Fprintln(stdout, issuer)
	logger.Printf("issuer %s, client ID %q, listening on %s", issuer, o.clientID, ln.Addr())

	select {
	case err := <-served:
		logger.Printf("serving: %v", err)
		return 1
	case sig := <-signals:
		logger.Printf("%v: stopping", sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.server.Shutdown(ctx)
	return 0
}

// issuerURL checks the -issuer flag, or derives the issuer from the address
// listened on. mockoidc serves everything under /oidc, over plain http.
func issuerURL(flagValue string, addr *net.TCPAddr) (string, error) {
	if flagValue == "" {
		host := addr.IP.String()
		if addr.IP.IsUnspecified() {
			host = "localhost"
		}
		return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port)) + mockoidc.IssuerBase, nil
	}
	u, err := url.Parse(flagValue)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" || u.Host == "" || strings.TrimSuffix(u.Path, "/") != mockoidc.IssuerBase || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: want http://host[:port]%s", flagValue, mockoidc.IssuerBase)
	}
	return "http://" + u.Host + mockoidc.IssuerBase, nil
}

// provider is mockoidc with a sign-in step that picks the user.
type provider struct {
	oidc   *mockoidc.MockOIDC
	server *http.Server
	users  []string
	logger *log.Logger
	// noPreferred are the users whose tokens carry no preferred_username.
	noPreferred map[string]bool

	// signIn serializes authorizations: mockoidc's user queue is shared,
	// and each authorization must pop the user its own sign-in queued.
	signIn sync.Mutex
}

func newProvider(o options, issuer string, logger *log.Logger) (*provider, error) {
	m, err := mockoidc.NewServer(nil)
	if err != nil {
		return nil, fmt.Errorf("making the signing key: %w", err)
	}
	m.ClientID = o.clientID
	m.ClientSecret = o.clientSecret
	p := &provider{oidc: m, users: o.users, logger: logger, noPreferred: o.noPreferred}

	mux := http.NewServeMux()
	mux.HandleFunc(mockoidc.AuthorizationEndpoint, p.authorize)
	mux.HandleFunc(mockoidc.TokenEndpoint, m.Token)
	mux.HandleFunc(mockoidc.UserinfoEndpoint, m.Userinfo)
	mux.HandleFunc(mockoidc.JWKSEndpoint, m.JWKS)
	mux.HandleFunc(mockoidc.DiscoveryEndpoint, m.Discovery)
	// mockoidc builds the issuer and every endpoint URL from Server.Addr,
	// so it holds the issuer's host rather than the address listened on.
	p.server = &http.Server{
		Addr:              strings.TrimSuffix(strings.TrimPrefix(issuer, "http://"), mockoidc.IssuerBase),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	m.Server = p.server
	return p, nil
}

// authorize is the authorization endpoint. With a user chosen (the form's
// "username", or login_hint) it signs that user in and redirects back to the
// client; otherwise it shows the sign-in form.
func (p *provider) authorize(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("username"))
	if name == "" {
		name = strings.TrimSpace(r.Form.Get("login_hint"))
	}
	if name == "" {
		p.showForm(w, r)
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	if email == "" {
		email = defaultEmail(name)
	}
	user := &mockoidc.MockUser{
		Subject:           name,
		Email:             email,
		EmailVerified:     true,
		PreferredUsername: name,
	}
	if p.noPreferred[name] {
		// An empty claim is left out of the tokens and of userinfo.
		user.PreferredUsername = ""
	}

	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	p.signIn.Lock()
	p.oidc.QueueUser(user)
	p.oidc.Authorize(rec, r)
	// An authorization that failed its checks did not pop the user: drop
	// it, or the next sign-in would get it.
	p.oidc.UserQueue.Lock()
	p.oidc.UserQueue.Queue = nil
	p.oidc.UserQueue.Unlock()
	p.signIn.Unlock()
	if rec.status != http.StatusFound {
		p.logger.Printf("authorization for preferred_username=%q refused: status %d", name, rec.status)
		return
	}
	p.logger.Printf("signed in preferred_username=%q email=%q for client %q", name, email, r.Form.Get("client_id"))
}

// statusRecorder notes the status of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// defaultEmail is the address of a user who did not give one.
func defaultEmail(name string) string {
	if strings.Contains(name, "@") {
		return name
	}
	return name + "@example.com"
}

// formData is what the sign-in form shows and carries on.
type formData struct {
	Action string
	Params []param // the authorization request's parameters, sent back hidden
	Users  []string
}

type param struct{ Name, Value string }

var formTemplate = template.Must(template.New("form").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in: local OIDC provider</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 26rem; margin: 4rem auto; padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.4rem; }
p.note { color: #59636e; font-size: .9rem; }
label { display: block; margin: .8rem 0 .2rem; }
input[type=text], input[type=email] { width: 100%; box-sizing: border-box; padding: .45rem; font-size: 1rem; }
button { margin-top: 1rem; padding: .45rem 1rem; font-size: 1rem; cursor: pointer; }
.users button { margin-right: .4rem; }
</style>
</head>
<body>
<h1>Sign in</h1>
<p class="note">Local test provider: no password, pick who you are.</p>
{{- if .Users}}
<form method="post" action="{{.Action}}" class="users">
{{- range .Params}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
{{- range .Users}}
<button type="submit" name="username" value="{{.}}">{{.}}</button>
{{- end}}
</form>
{{- end}}
<form method="post" action="{{.Action}}" id="signin">
{{- range .Params}}
<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{- end}}
<label for="username">User name (preferred_username)</label>
<input type="text" id="username" name="username" required autofocus autocomplete="off">
<label for="email">E-mail (optional)</label>
<input type="email" id="email" name="email" autocomplete="off">
<button type="submit">Sign in</button>
</form>
</body>
</html>
`))

// showForm shows the sign-in form. It carries the authorization request's
// parameters in hidden fields, so that submitting it is the same request with
// a user chosen.
func (p *provider) showForm(w http.ResponseWriter, r *http.Request) {
	data := formData{Action: mockoidc.AuthorizationEndpoint, Users: p.users}
	names := make([]string, 0, len(r.Form))
	for name := range r.Form {
		if name != "username" && name != "email" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		for _, v := range r.Form[name] {
			data.Params = append(data.Params, param{Name: name, Value: v})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := formTemplate.Execute(w, data); err != nil {
		p.logger.Printf("writing the sign-in form: %v", err)
	}
}
