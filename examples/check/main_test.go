package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// composeJSON builds `docker compose config --format json` output with one
// auth service and one spawner service.
func composeJSON(t *testing.T, authLabels, spawnerLabels, spawnerEnv map[string]string) []byte {
	t.Helper()
	env := map[string]*string{}
	for k, v := range spawnerEnv {
		v := v
		env[k] = &v
	}
	p := map[string]any{"services": map[string]any{
		"oauth2-proxy": map[string]any{"labels": authLabels},
		"spawner":      map[string]any{"labels": spawnerLabels, "environment": env},
	}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func goodAuthLabels() map[string]string {
	return map[string]string{
		"traefik.http.middlewares.oauth-errors.errors.status":                 "401",
		"traefik.http.middlewares.oauth-auth.forwardauth.address":             "http://oauth2-proxy:4180/oauth2/auth",
		"traefik.http.middlewares.oauth-auth.forwardauth.authResponseHeaders": "X-Auth-Request-Preferred-Username,X-Auth-Request-Email",
		"traefik.http.routers.oauth2.rule":                                    "PathPrefix(`/oauth2/`)",
		"traefik.http.services.oauth2-proxy.loadbalancer.server.port":         "4180",
		"traefik.http.middlewares.oauth-errors.errors.query":                  "/oauth2/sign_in?rd={url}",
		"traefik.http.middlewares.oauth-errors.errors.service":                "oauth2-proxy",
		"traefik.http.routers.oauth2.entrypoints":                             "web",
	}
}

func goodSpawnerLabels() map[string]string {
	return map[string]string{
		"traefik.http.routers.workspaces.middlewares":                           "oauth-errors,oauth-auth,director",
		"traefik.http.middlewares.director.plugin.director.containerHostPrefix": "vscode",
		"traefik.http.middlewares.director.plugin.director.containerPort":       "8080",
		"traefik.http.middlewares.director.plugin.director.usernameHeader":      "X-Auth-Request-Preferred-Username",
	}
}

func goodSpawnerEnv() map[string]string {
	return map[string]string{
		"SPAWNER_CONTAINER_PREFIX": "vscode",
		"SPAWNER_USERNAME_HEADER":  "X-Auth-Request-Preferred-Username",
	}
}

func TestCheckCompose(t *testing.T) {
	tests := []struct {
		desc          string
		edit          func(auth, spawner, env map[string]string)
		expectedError string // "" for none
	}{
		{desc: "the example's shape", edit: func(_, _, _ map[string]string) {}},
		{
			desc: "a port the plugin refuses",
			edit: func(_, s, _ map[string]string) {
				s["traefik.http.middlewares.director.plugin.director.containerPort"] = "0"
			},
			expectedError: "containerPort: must be 1-65535",
		},
		{
			desc: "a misspelt key",
			edit: func(_, s, _ map[string]string) {
				s["traefik.http.middlewares.director.plugin.director.probeCacheTL"] = "1s"
			},
			expectedError: `unknown key "probeCacheTL"`,
		},
		{
			desc: "a header forwardAuth does not set",
			edit: func(_, s, e map[string]string) {
				s["traefik.http.middlewares.director.plugin.director.usernameHeader"] = "X-Forwarded-User"
				e["SPAWNER_USERNAME_HEADER"] = "X-Forwarded-User"
			},
			expectedError: "a client could set it",
		},
		{
			desc: "a list whose second header forwardAuth does not set",
			edit: func(_, s, e map[string]string) {
				s["traefik.http.middlewares.director.plugin.director.usernameHeader"] = "X-Auth-Request-Preferred-Username,X-Forwarded-User"
				e["SPAWNER_USERNAME_HEADER"] = "X-Auth-Request-Preferred-Username,X-Forwarded-User"
			},
			expectedError: "trusts X-Forwarded-User, but no forwardAuth",
		},
		{
			desc: "the director before forwardAuth",
			edit: func(_, s, _ map[string]string) {
				s["traefik.http.routers.workspaces.middlewares"] = "director,oauth-auth"
			},
			expectedError: "a client could set it",
		},
		{
			desc: "no forwardAuth at all",
			edit: func(_, s, _ map[string]string) {
				s["traefik.http.routers.workspaces.middlewares"] = "oauth-errors,director"
			},
			expectedError: "a client could set it",
		},
		{
			desc: "an undeclared middleware",
			edit: func(_, s, _ map[string]string) {
				s["traefik.http.routers.workspaces.middlewares"] = "oauth-errors,oauth-auth,director,nope"
			},
			expectedError: `middleware "nope" is not declared`,
		},
		{
			desc:          "a spawner with another prefix",
			edit:          func(_, _, e map[string]string) { e["SPAWNER_CONTAINER_PREFIX"] = "code" },
			expectedError: "SPAWNER_CONTAINER_PREFIX",
		},
		{
			desc:          "a spawner reading another header",
			edit:          func(_, _, e map[string]string) { delete(e, "SPAWNER_USERNAME_HEADER") },
			expectedError: "SPAWNER_USERNAME_HEADER (unset)",
		},
	}
	for _, test := range tests {
		auth, spawner, env := goodAuthLabels(), goodSpawnerLabels(), goodSpawnerEnv()
		test.edit(auth, spawner, env)
		errs := checkCompose(composeJSON(t, auth, spawner, env))
		assertErrors(t, test.desc, errs, test.expectedError)
	}
}

const goodManifests = `apiVersion: v1
kind: Service
metadata: {name: oauth2-proxy, namespace: cd}
---
apiVersion: v1
kind: Service
metadata: {name: spawner, namespace: cd}
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: director, namespace: cd}
spec:
  plugin:
    director:
      containerHostPrefix: vscode
      containerPort: 8080
      containerDomain: workspaces.svc.cluster.local
      usernameHeader: X-Auth-Request-Preferred-Username
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: auth, namespace: cd}
spec:
  forwardAuth:
    address: http://oauth2-proxy.cd:4180/oauth2/auth
    authResponseHeaders: [X-Auth-Request-Preferred-Username]
---
apiVersion: traefik.io/v1alpha1
kind: Middleware
metadata: {name: errors, namespace: cd}
spec:
  errors:
    status: ["401"]
    service: {name: oauth2-proxy, port: 4180}
    query: /oauth2/sign_in?rd={url}
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: route, namespace: cd}
spec:
  routes:
    - match: PathPrefix(` + "`/`" + `)
      kind: Rule
      middlewares: [{name: errors}, {name: auth}, {name: director}]
      services: [{name: spawner, port: 8090}]
---
`

func TestCheckManifests(t *testing.T) {
	tests := []struct {
		desc          string
		old, new      string
		expectedError string
	}{
		{desc: "the example's shape"},
		{desc: "a domain the plugin refuses", old: "workspaces.svc.cluster.local", new: "bad_domain", expectedError: "containerDomain"},
		{desc: "the port as a string", old: "containerPort: 8080", new: `containerPort: "8080"`},
		{desc: "a header forwardAuth does not set", old: "[X-Auth-Request-Preferred-Username]", new: "[X-Auth-Request-Email]", expectedError: "a client could set it"},
		{desc: "a list of identity headers", old: "usernameHeader: X-Auth-Request-Preferred-Username", new: "usernameHeader: [X-Auth-Request-Preferred-Username, X-Auth-Request-User]", expectedError: "trusts X-Auth-Request-User"},
		{desc: "an errors service that does not exist", old: "service: {name: oauth2-proxy", new: "service: {name: oauth", expectedError: `errors.service "oauth"`},
		{desc: "a route service that does not exist", old: "name: spawner, port", new: "name: spawn, port", expectedError: `service "spawn" is not a Service`},
		{desc: "a plugin under another name", old: "  plugin:\n    director:", new: "  plugin:\n    cd:", expectedError: `exactly the key "director"`},
		{desc: "an old API group", old: "apiVersion: traefik.io/v1alpha1\nkind: IngressRoute", new: "apiVersion: traefik.containo.us/v1alpha1\nkind: IngressRoute", expectedError: "want traefik.io/v1alpha1"},
		{desc: "an object without a name", old: "metadata: {name: spawner, namespace: cd}", new: "metadata: {namespace: cd}", expectedError: "no metadata.name"},
		{desc: "broken YAML", old: "kind: Rule", new: "kind: [Rule", expectedError: "document"},
	}
	for _, test := range tests {
		text := goodManifests
		if test.old != "" {
			if !strings.Contains(text, test.old) {
				t.Fatalf("%s: %q is not in the manifests", test.desc, test.old)
			}
			text = strings.Replace(text, test.old, test.new, 1)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		assertErrors(t, test.desc, checkKubernetesDir(dir), test.expectedError)
	}
}

func TestCheckTraefikStatic(t *testing.T) {
	tests := []struct {
		desc          string
		static        string
		expectedError string
	}{
		{desc: "local", static: "experimental:\n  localPlugins:\n    director:\n      moduleName: github.com/container-director/director\n"},
		{desc: "catalog", static: "experimental:\n  plugins:\n    director:\n      moduleName: github.com/container-director/director\n      version: v0.1.0\n"},
		{desc: "catalog without a version", static: "experimental:\n  plugins:\n    director:\n      moduleName: github.com/container-director/director\n", expectedError: "want a tag"},
		{desc: "another module", static: "experimental:\n  localPlugins:\n    director:\n      moduleName: github.com/x/y\n", expectedError: "moduleName"},
		{desc: "no plugin", static: "entryPoints: {}\n", expectedError: "declares no plugin"},
	}
	for _, test := range tests {
		assertErrors(t, test.desc, checkTraefikStatic([]byte(test.static)), test.expectedError)
	}
}

func TestRunExamples(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"-kubernetes", "../kubernetes", "-traefik-static", "../compose/traefik.yml", "-traefik-static", "../compose/traefik.catalog.yml"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit code %d\n%s%s", code, out.String(), errOut.String())
	}
}

func assertErrors(t *testing.T, desc string, errs []error, expected string) {
	t.Helper()
	if expected == "" {
		if len(errs) > 0 {
			t.Errorf("%s: unexpected errors: %v", desc, errs)
		}
		return
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), expected) {
			return
		}
	}
	t.Errorf("%s: expected an error containing %q, got %v", desc, expected, errs)
}
