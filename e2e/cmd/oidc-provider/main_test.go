package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestIssuerURL(t *testing.T) {
	testCases := []struct {
		desc     string
		flag     string
		addr     *net.TCPAddr
		expected string
		wantErr  bool
	}{
		{desc: "derived from a loopback address", addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}, expected: "http://127.0.0.1:9000/oidc"},
		{desc: "derived from an unspecified address", addr: &net.TCPAddr{IP: net.IPv4zero, Port: 9000}, expected: "http://localhost:9000/oidc"},
		{desc: "given", flag: "http://oidc.test:9000/oidc", addr: &net.TCPAddr{Port: 1}, expected: "http://oidc.test:9000/oidc"},
		{desc: "given with a trailing slash", flag: "http://oidc.test/oidc/", addr: &net.TCPAddr{Port: 1}, expected: "http://oidc.test/oidc"},
		{desc: "wrong path", flag: "http://oidc.test/", addr: &net.TCPAddr{Port: 1}, wantErr: true},
		{desc: "https", flag: "https://oidc.test/oidc", addr: &net.TCPAddr{Port: 1}, wantErr: true},
		{desc: "no host", flag: "http:///oidc", addr: &net.TCPAddr{Port: 1}, wantErr: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			got, err := issuerURL(test.flag, test.addr)
			if test.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != test.expected {
				t.Errorf("got %q, want %q", got, test.expected)
			}
		})
	}
}

// startProvider serves a provider on a free loopback port.
func startProvider(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := issuerURL("", ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	p, err := newProvider(options{clientID: "cid", clientSecret: "secret", users: []string{"alice", "bob"}}, issuer, log.New(io.Discard, "", 0))
	if err != nil {
		t.Fatal(err)
	}
	go p.server.Serve(ln)
	t.Cleanup(func() { p.server.Close() })
	return issuer
}

var noRedirects = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// discover returns the provider's authorization and token endpoints.
func discover(t *testing.T, issuer string) (authorize, token string) {
	t.Helper()
	resp, err := noRedirects.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if doc.Issuer != issuer {
		t.Fatalf("discovery names issuer %q, want %q", doc.Issuer, issuer)
	}
	return doc.AuthorizationEndpoint, doc.TokenEndpoint
}

func authorizeParams(state string) url.Values {
	return url.Values{
		"client_id":     {"cid"},
		"redirect_uri":  {"http://client.test/callback"},
		"response_type": {"code"},
		"scope":         {"openid email profile"},
		"state":         {state},
	}
}

// codeFrom checks the redirect back to the client and returns its code.
func codeFrom(t *testing.T, resp *http.Response, state string) string {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("want a redirect back to the client, got status %d: %s", resp.StatusCode, b)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if loc.Host != "client.test" || loc.Path != "/callback" || loc.Query().Get("state") != state || loc.Query().Get("code") == "" {
		t.Fatalf("redirected to %q", loc)
	}
	return loc.Query().Get("code")
}

// claims exchanges code for tokens and returns the ID token's claims.
func claims(t *testing.T, token, code string) map[string]any {
	t.Helper()
	resp, err := noRedirects.PostForm(token, url.Values{
		"client_id":     {"cid"},
		"client_secret": {"secret"},
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {"http://client.test/callback"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		IDToken string `json:"id_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
	}
	parts := strings.Split(tr.IDToken, ".")
	if len(parts) != 3 {
		t.Fatalf("id_token %q is not a JWT", tr.IDToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

var hiddenInput = regexp.MustCompile(`<input type="hidden" name="([^"]*)" value="([^"]*)">`)

func TestSignInThroughTheForm(t *testing.T) {
	issuer := startProvider(t)
	authorize, token := discover(t, issuer)

	resp, err := noRedirects.Get(authorize + "?" + authorizeParams("s1&<x>").Encode())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), `name="username"`) {
		t.Fatalf("want the sign-in form, got status %d: %s", resp.StatusCode, page)
	}
	for _, u := range []string{"alice", "bob"} {
		if !strings.Contains(string(page), `value="`+u+`">`+u+`</button>`) {
			t.Errorf("the form offers no button for %s", u)
		}
	}
	// Submit the typed-name form as a browser would: its hidden fields
	// and the name.
	form := url.Values{}
	typed := page[strings.Index(string(page), `id="signin"`):]
	for _, m := range hiddenInput.FindAllSubmatch(typed, -1) {
		form.Add(string(m[1]), strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">", "&#34;", `"`, "&#39;", "'").Replace(string(m[2])))
	}
	form.Set("username", "Jane.Doe@example.com")
	resp, err = noRedirects.PostForm(authorize, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := claims(t, token, codeFrom(t, resp, "s1&<x>"))
	if c["preferred_username"] != "Jane.Doe@example.com" || c["email"] != "Jane.Doe@example.com" || c["sub"] != "Jane.Doe@example.com" || c["email_verified"] != true {
		t.Errorf("claims: %v", c)
	}
}

func TestSignInWithLoginHint(t *testing.T) {
	issuer := startProvider(t)
	authorize, token := discover(t, issuer)

	// A refused authorization must not leave its user for the next one.
	bad := authorizeParams("s0")
	bad.Set("client_id", "someone-else")
	bad.Set("login_hint", "mallory")
	resp, err := noRedirects.Get(authorize + "?" + bad.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusFound {
		t.Fatalf("an unknown client was let in")
	}

	for i, user := range []string{"alice", "bob"} {
		state := "s" + user
		q := authorizeParams(state)
		q.Set("login_hint", user)
		resp, err := noRedirects.Get(authorize + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		c := claims(t, token, codeFrom(t, resp, state))
		if c["preferred_username"] != user || c["email"] != user+"@example.com" {
			t.Errorf("sign-in %d as %s: claims %v", i, user, c)
		}
	}
}
