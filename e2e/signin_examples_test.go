package e2e

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

// oauth2ProxyOpenings are OAuth2 Proxy flags that would let a client's own
// identity headers, or an unauthenticated request, through to the director.
var oauth2ProxyOpenings = map[string]string{
	"skip-auth-strip-headers": "false", // keep the client's X-Forwarded-* / X-Auth-Request-* copies
	"skip-auth-route":         "",
	"skip-auth-regex":         "",
	"skip-auth-preflight":     "",
	"skip-jwt-bearer-tokens":  "",
	"trusted-ip":              "",
	"api-route":               "",
}

// checkNoOpenings fails for each flag of args that opens the chain.
func checkNoOpenings(t *testing.T, example string, args []string) {
	t.Helper()
	for name, bad := range oauth2ProxyOpenings {
		v, set := flagValue(args, name)
		if set && (bad == "" || v == bad) {
			t.Errorf("%s: OAuth2 Proxy's --%s=%s lets requests past sign-in, or keeps clients' identity headers", example, name, v)
		}
	}
}

// TestSignInExamplesKeepTheTrustChain checks, in examples/compose and
// examples/standalone, the settings the director's trust in its identity
// header rests on. The sign-in scenarios run these same files; this test
// names the broken link when one of them changes.
func TestSignInExamplesKeepTheTrustChain(t *testing.T) {
	vars := commonVars("http://issuer.test/oidc", "strict")

	t.Run("examples/compose", func(t *testing.T) {
		c, err := loadCompose("examples/compose/compose.yml", vars)
		if err != nil {
			t.Fatal(err)
		}
		checkTraefikExample(t, c)
	})
	t.Run("examples/standalone", func(t *testing.T) {
		c, err := loadCompose("examples/standalone/compose.yml", vars)
		if err != nil {
			t.Fatal(err)
		}
		checkStandaloneExample(t, c)
	})
}

// checkTraefikExample checks the trust chain of a Traefik-shape compose file.
func checkTraefikExample(t *testing.T, c *composeFile) {
	t.Helper()
	example := c.path
	proxy, err := c.service("oauth2-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := flagValue(proxy.Command, "set-xauthrequest"); v != "true" {
		t.Errorf("%s: OAuth2 Proxy needs --set-xauthrequest=true for /oauth2/auth to answer with X-Auth-Request-Preferred-Username, got %q", example, v)
	}
	if v, _ := flagValue(proxy.Command, "reverse-proxy"); v != "true" {
		t.Errorf("%s: OAuth2 Proxy behind Traefik needs --reverse-proxy=true, got %q", example, v)
	}
	checkNoOpenings(t, example, proxy.Command)

	// Every router with the director: forwardAuth to OAuth2 Proxy's
	// /oauth2/auth before it, listing the director's identity header in
	// authResponseHeaders (forwardAuth deletes clients' copies of exactly
	// those).
	routers := labelsUnder(c, "traefik.http.routers.")
	middlewares := labelsUnder(c, "traefik.http.middlewares.")
	var directorRouters int
	for key, value := range routers {
		router, field, _ := strings.Cut(key, ".")
		if field != "middlewares" {
			continue
		}
		chain := splitList(value)
		for i, mw := range chain {
			headerList, isDirector := middlewares[strings.ToLower(mw)+".plugin.director.usernameheader"]
			if !isDirector {
				continue
			}
			directorRouters++
			if !strings.EqualFold(headerList, traefikIdentity) {
				t.Errorf("%s: router %s: the director reads %q; behind forwardAuth it must read %s (OAuth2 Proxy leaves the first empty for providers without preferred_username)", example, router, headerList, traefikIdentity)
			}
			var guarded bool
			for _, before := range chain[:i] {
				address, ok := middlewares[strings.ToLower(before)+".forwardauth.address"]
				if !ok {
					continue
				}
				u, err := url.Parse(address)
				if err != nil || u.Host != "oauth2-proxy:4180" || u.Path != "/oauth2/auth" {
					t.Errorf("%s: router %s: forwardAuth %s goes to %q, want http://oauth2-proxy:4180/oauth2/auth", example, router, before, address)
				}
				listed := splitList(middlewares[strings.ToLower(before)+".forwardauth.authresponseheaders"])
				for _, header := range splitList(headerList) {
					if !slices.ContainsFunc(listed, func(h string) bool { return strings.EqualFold(h, header) }) {
						t.Errorf("%s: router %s: forwardAuth %s does not list %s in authResponseHeaders %q: a client's own copy would reach the director", example, router, before, header, listed)
					}
				}
				guarded = true
			}
			if !guarded {
				t.Errorf("%s: router %s: no forwardAuth before the director %s in %q", example, router, mw, chain)
			}
		}
	}
	if directorRouters == 0 {
		t.Errorf("%s: no router uses the director plugin", example)
	}

	// The spawner must only be reached through the director.
	for key, value := range routers {
		router, field, _ := strings.Cut(key, ".")
		if field != "service" || value != "spawner" {
			continue
		}
		chain := splitList(routers[router+".middlewares"])
		if !slices.ContainsFunc(chain, func(mw string) bool {
			_, ok := middlewares[strings.ToLower(mw)+".plugin.director.usernameheader"]
			return ok
		}) {
			t.Errorf("%s: router %s reaches the spawner without the director: %q", example, router, chain)
		}
	}
	if spawner, err := c.service("spawner"); err == nil {
		if h := spawner.Environment["SPAWNER_USERNAME_HEADER"]; !strings.EqualFold(h, traefikIdentity) {
			t.Errorf("%s: the spawner reads %q as the identity; the director passes on %s", example, h, traefikIdentity)
		}
	}
}

// The identity header lists of the examples: OAuth2 Proxy fills the
// *-Preferred-Username header from the preferred_username claim only, which
// some providers (Google) do not send; the *-User header always has a value.
const (
	traefikIdentity    = "X-Auth-Request-Preferred-Username,X-Auth-Request-User"
	standaloneIdentity = "X-Forwarded-Preferred-Username,X-Forwarded-User"
)

// checkStandaloneExample checks the trust chain of a standalone-shape compose
// file.
func checkStandaloneExample(t *testing.T, c *composeFile) {
	t.Helper()
	example := c.path
	proxy, err := c.service("oauth2-proxy")
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := flagValue(proxy.Command, "pass-user-headers"); v != "true" {
		t.Errorf("%s: OAuth2 Proxy needs --pass-user-headers=true to set X-Forwarded-Preferred-Username, got %q", example, v)
	}
	if v, _ := flagValue(proxy.Command, "upstream"); v != "http://director:8080" {
		t.Errorf("%s: OAuth2 Proxy's --upstream is %q, want http://director:8080", example, v)
	}
	checkNoOpenings(t, example, proxy.Command)
	director, err := c.service("director")
	if err != nil {
		t.Fatal(err)
	}
	if h := director.Environment["USERNAME_HEADER"]; !strings.EqualFold(h, standaloneIdentity) {
		t.Errorf("%s: the director reads %q; behind --pass-user-headers it must read %s", example, h, standaloneIdentity)
	}
	if spawner, err := c.service("spawner"); err == nil {
		if h := spawner.Environment["SPAWNER_USERNAME_HEADER"]; !strings.EqualFold(h, standaloneIdentity) {
			t.Errorf("%s: the spawner reads %q as the identity; the director passes on %s", example, h, standaloneIdentity)
		}
	}
}
