package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-director/director/internal/wstest"
)

// TestSignInTraefik runs the sign-in scenarios against examples/compose:
// Traefik with the errors, forwardAuth and director middlewares of its
// labels, OAuth2 Proxy with its flags.
func TestSignInTraefik(t *testing.T) {
	runSignInScenarios(t, startTraefikShape(t))
}

// TestSignInStandalone runs the sign-in scenarios against
// examples/standalone: OAuth2 Proxy with its flags in front of the
// standalone director with its environment.
func TestSignInStandalone(t *testing.T) {
	runSignInScenarios(t, startStandaloneShape(t))
}

func runSignInScenarios(t *testing.T, s *signInShape) {
	t.Run("not signed in goes to sign-in", func(t *testing.T) { testNotSignedIn(t, s) })
	t.Run("each user lands in their own container", func(t *testing.T) { testOwnContainers(t, s) })
	t.Run("a user without preferred_username lands in their own container", func(t *testing.T) { testNoPreferredUsername(t, s) })
	t.Run("down containers reach the spawner as their user", func(t *testing.T) { testDownReachesSpawner(t, s) })
	t.Run("signed-in user cannot claim another identity", func(t *testing.T) { testSpoofedIdentity(t, s) })
	t.Run("name policy", func(t *testing.T) { testNamePolicy(t, s) })
	t.Run("sign-out sends to sign-in again", func(t *testing.T) { testSignOut(t, s) })
	t.Run("WebSocket after sign-in", func(t *testing.T) { testSignedInWebSocket(t, s) })
}

// reached counts what reached any container (connections, which probes
// open too, and requests) or the spawner.
func (s *signInShape) reached() int64 {
	var n int64
	for _, c := range append(containerList(), s.jane) {
		n += atomic.LoadInt64(&c.accepted) + atomic.LoadInt64(&c.requests)
	}
	return n + int64(s.spawner.count())
}

func containerList() []*container {
	var cs []*container
	for _, c := range env.containers {
		cs = append(cs, c)
	}
	return cs
}

// spoofHeaders are identity claims a client may make on its own.
var spoofHeaders = []struct {
	desc   string
	header http.Header
}{
	{"X-Forwarded-Preferred-Username", http.Header{"X-Forwarded-Preferred-Username": {"bob"}}},
	{"X-Auth-Request-Preferred-Username", http.Header{"X-Auth-Request-Preferred-Username": {"bob"}}},
	{"lower case", http.Header{"x-forwarded-preferred-username": {"bob"}, "x-auth-request-preferred-username": {"bob"}}},
	{"upper case", http.Header{"X-FORWARDED-PREFERRED-USERNAME": {"bob"}, "X-AUTH-REQUEST-PREFERRED-USERNAME": {"bob"}}},
	{"underscores", http.Header{"X_Forwarded_Preferred_Username": {"bob"}, "X_Auth_Request_Preferred_Username": {"bob"}}},
	{"two values", http.Header{"X-Forwarded-Preferred-Username": {"bob", "carol"}, "X-Auth-Request-Preferred-Username": {"bob", "carol"}}},
	{"X-Container-Name", http.Header{"X-Container-Name": {"vscode-bob"}, "X_Container_Name": {"vscode-bob"}}},
	{"X-Auth-Request-User and -Email", http.Header{"X-Auth-Request-User": {"bob"}, "X-Auth-Request-Email": {"bob@example.com"}, "X-Forwarded-User": {"bob"}, "X-Forwarded-Email": {"bob@example.com"}}},
}

// allSpoofHeaders is every claim of spoofHeaders at once.
func allSpoofHeaders() http.Header {
	h := http.Header{}
	for _, sh := range spoofHeaders {
		for k, v := range sh.header {
			h[k] = append(h[k], v...)
		}
	}
	return h
}

// lookalikes returns the headers of h that differ from name only in case or
// in '_' for '-', other than name itself.
func lookalikes(h http.Header, name string) []string {
	var out []string
	for k := range h {
		if k != name && strings.EqualFold(strings.ReplaceAll(k, "_", "-"), name) {
			out = append(out, k)
		}
	}
	return out
}

// reachContainer fails unless the answer came from container id, which saw
// exactly user in the shape's identity header.
func (s *signInShape) reachContainer(t *testing.T, id, user string, resp *http.Response, body []byte) echoed {
	t.Helper()
	var e echoed
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil || e.Container == "" {
		t.Fatalf("%s shape: want an answer from %s's container, got status %d from %s: %.300s", s.name, id, resp.StatusCode, resp.Request.URL, body)
	}
	if e.Container != id {
		t.Fatalf("%s shape: want an answer from container %q, got one from %q", s.name, id, e.Container)
	}
	if got := e.Header.Values(s.identity); len(got) != 1 || got[0] != user {
		t.Errorf("%s shape: container %s got %s %q, want [%q]", s.name, id, s.identity, got, user)
	}
	if got := e.Header.Values("X-Container-Name"); len(got) != 0 {
		t.Errorf("%s shape: container %s got X-Container-Name %q", s.name, id, got)
	}
	return e
}

// wantSpawner fails unless the answer is the spawner's for container, and
// every request that reached the spawner since n named that container and
// user, once each.
func (s *signInShape) wantSpawner(t *testing.T, container, user string, n int, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: "+container {
		t.Fatalf("%s shape: want the spawner's answer for %s, got status %d from %s: %.300s", s.name, container, resp.StatusCode, resp.Request.URL, body)
	}
	got := s.spawner.since(n)
	if len(got) == 0 {
		t.Fatalf("%s shape: nothing reached the spawner", s.name)
	}
	for _, r := range got {
		if v := r.Header.Values("X-Container-Name"); len(v) != 1 || v[0] != container {
			t.Errorf("%s shape: the spawner got X-Container-Name %q, want [%q]", s.name, v, container)
		}
		if v := r.Header.Values(s.identity); len(v) != 1 || v[0] != user {
			t.Errorf("%s shape: the spawner got %s %q, want [%q]", s.name, s.identity, v, user)
		}
		for _, name := range []string{s.identity, "X-Container-Name"} {
			if l := lookalikes(r.Header, name); len(l) != 0 {
				t.Errorf("%s shape: the spawner got look-alikes of %s: %q", s.name, name, l)
			}
		}
	}
}

// testNotSignedIn: without a session, page loads, posts, spoofed identity
// headers and WebSockets all end at sign-in, and nothing reaches a container
// or the spawner.
func testNotSignedIn(t *testing.T, s *signInShape) {
	before := s.reached()
	b := s.newBrowser(t)
	for _, path := range []string{"/", "/some/page?x=1"} {
		resp, body := b.get(t, path, nil)
		if step := s.signInStep(resp, body); step == "" {
			t.Errorf("%s shape: GET %s without a session: want sign-in, got status %d from %s: %.300s", s.name, path, resp.StatusCode, resp.Request.URL, body)
		}
	}
	for _, sh := range spoofHeaders {
		resp, body := b.get(t, "/", sh.header)
		if step := s.signInStep(resp, body); step == "" {
			t.Errorf("%s shape: without a session but with %s: want sign-in, got status %d from %s: %.300s", s.name, sh.desc, resp.StatusCode, resp.Request.URL, body)
		}
	}

	// A form post and an upgrade: no sign-in page is owed, but nothing may
	// get through.
	req, err := http.NewRequest(http.MethodPost, signInSite+"/upload", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body, err := b.do(req, http.Header{"X-Forwarded-Preferred-Username": {"alice"}, "X-Auth-Request-Preferred-Username": {"alice"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode < 300 && resp.Request.URL.Host == signInHost {
		t.Errorf("%s shape: POST without a session: status %d: %.300s", s.name, resp.StatusCode, body)
	}
	conn, wsResp, err := wstest.Dial(s.entry, signInSite+"/ws", http.Header{"X-Forwarded-Preferred-Username": {"alice"}, "X-Auth-Request-Preferred-Username": {"alice"}}, 10*time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("%s shape: a WebSocket opened without a session", s.name)
	} else if wsResp == nil {
		t.Errorf("%s shape: WebSocket without a session: %v", s.name, err)
	}

	if n := s.reached() - before; n != 0 {
		t.Errorf("%s shape: %d connections or requests reached a container or the spawner without a session", s.name, n)
	}
}

// testNoPreferredUsername: a user whose provider sends no
// preferred_username claim gets no *-Preferred-Username header from OAuth2
// Proxy; the director, reading the next header of its list, sends them to
// their own container instead of a 401 that would lead back to sign-in.
func testNoPreferredUsername(t *testing.T, s *signInShape) {
	spawned := s.spawner.count()
	userHeader := strings.Replace(s.identity, "Preferred-Username", "User", 1)
	b := s.newBrowser(t)
	resp, body, steps := b.signIn(t, "/notebook", noPreferredUser)
	for i := 0; i < 3; i++ {
		var e echoed
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil || e.Container != noPreferredUser {
			t.Fatalf("%s shape: %s (no preferred_username, signed in through %q): want their container, got status %d from %s: %.300s", s.name, noPreferredUser, steps, resp.StatusCode, resp.Request.URL, body)
		}
		if got := e.Header.Values(s.identity); len(got) > 1 || (len(got) == 1 && got[0] != "") {
			t.Errorf("%s shape: %s got %s %q, want none: the provider sent no preferred_username", s.name, noPreferredUser, s.identity, got)
		}
		if got := e.Header.Values(userHeader); len(got) != 1 || got[0] != noPreferredUser {
			t.Errorf("%s shape: %s got %s %q, want [%q]", s.name, noPreferredUser, userHeader, got, noPreferredUser)
		}
		// Signed in, they stay in their container: no loop to sign-in.
		resp, body = b.get(t, fmt.Sprintf("/notebook/%d", i), nil)
	}
	if n := s.spawner.count() - spawned; n != 0 {
		t.Errorf("%s shape: %d requests reached the spawner", s.name, n)
	}
}

// testOwnContainers: alice and bob sign in, each in their own browser, and
// each lands in their own container, at the page they asked for.
func testOwnContainers(t *testing.T, s *signInShape) {
	spawned := s.spawner.count()
	browsers := make(map[string]*browser)
	for _, user := range []string{"alice", "bob"} {
		b := s.newBrowser(t)
		browsers[user] = b
		path := "/work/" + user + "?tab=1"
		resp, body, steps := b.signIn(t, path, user)
		e := s.reachContainer(t, user, user, resp, body)
		if e.URI != path {
			t.Errorf("%s shape: after sign-in %s landed at %q, want %q", s.name, user, e.URI, path)
		}
		if e.Host != signInHost {
			t.Errorf("%s shape: %s's container got Host %q, want %q", s.name, user, e.Host, signInHost)
		}
		t.Logf("%s shape: %s signed in through %q", s.name, user, steps)
	}
	// Signed in, each stays in their own container without signing in again.
	for i := 0; i < 3; i++ {
		for _, user := range []string{"alice", "bob"} {
			resp, body := browsers[user].get(t, fmt.Sprintf("/file/%d", i), nil)
			s.reachContainer(t, user, user, resp, body)
		}
	}
	if n := s.spawner.count() - spawned; n != 0 {
		t.Errorf("%s shape: %d requests reached the spawner", s.name, n)
	}
}

// testDownReachesSpawner: users whose containers do not answer reach the
// spawner, each with their own container name and identity.
func testDownReachesSpawner(t *testing.T, s *signInShape) {
	for _, user := range []string{"carol", "ghost"} {
		b := s.newBrowser(t)
		n := s.spawner.count()
		resp, body, _ := b.signIn(t, "/", user)
		s.wantSpawner(t, "vscode-"+user, user, n, resp, body)
	}
}

// testSpoofedIdentity: a signed-in user who claims another identity, in
// any spelling, still gets their own container; one whose container is
// down reaches the spawner as themselves.
func testSpoofedIdentity(t *testing.T, s *signInShape) {
	alice := s.newBrowser(t)
	resp, body, _ := alice.signIn(t, "/", "alice")
	s.reachContainer(t, "alice", "alice", resp, body)
	bobRequests := atomic.LoadInt64(&env.containers["bob"].requests)
	for _, sh := range append(spoofHeaders, struct {
		desc   string
		header http.Header
	}{"all at once", allSpoofHeaders()}) {
		resp, body := alice.get(t, "/spoof", sh.header)
		e := s.reachContainer(t, "alice", "alice", resp, body)
		if l := lookalikes(e.Header, s.identity); len(l) != 0 {
			// Not a routing decision, but what the workspace sees.
			t.Logf("%s shape: with %s, alice's container also got look-alikes of %s: %q", s.name, sh.desc, s.identity, l)
		}
	}
	if n := atomic.LoadInt64(&env.containers["bob"].requests) - bobRequests; n != 0 {
		t.Errorf("%s shape: %d requests reached bob's container", s.name, n)
	}

	carol := s.newBrowser(t)
	n := s.spawner.count()
	resp, body, _ = carol.signIn(t, "/", "carol")
	s.wantSpawner(t, "vscode-carol", "carol", n, resp, body)
	n = s.spawner.count()
	resp, body = carol.get(t, "/spoof", allSpoofHeaders())
	s.wantSpawner(t, "vscode-carol", "carol", n, resp, body)
}

// testNamePolicy: a preferred_username that is not a DNS label gets a 400
// that explains the policy under strict, and its own container under escape.
func testNamePolicy(t *testing.T, s *signInShape) {
	jane := s.newBrowser(t)
	before := s.reached()
	resp, body, _ := jane.signIn(t, "/", janeName)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("%s shape: %s under strict: want 400, got status %d from %s: %.300s", s.name, janeName, resp.StatusCode, resp.Request.URL, body)
	}
	for _, want := range []string{janeName, "only lowercase letters a-z, digits 0-9 and inner '-'", `"strict"`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("%s shape: the 400 does not say %q: %s", s.name, want, body)
		}
	}
	if n := s.reached() - before; n != 0 {
		t.Errorf("%s shape: %d connections or requests reached a container or the spawner for a rejected name", s.name, n)
	}

	if err := s.setPolicy("escape"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.setPolicy("strict"); err != nil {
			t.Fatal(err)
		}
		waitForAnswer(t, s, jane, "/", func(resp *http.Response, _ []byte) bool { return resp.StatusCode == http.StatusBadRequest })
	}()
	resp, body = waitForAnswer(t, s, jane, "/escaped", func(resp *http.Response, _ []byte) bool { return resp.StatusCode == http.StatusOK })
	s.reachContainer(t, "jane", janeName, resp, body)
	// Under escape, names of a-z and 0-9 map to themselves.
	alice := s.newBrowser(t)
	resp, body, _ = alice.signIn(t, "/", "alice")
	s.reachContainer(t, "alice", "alice", resp, body)
}

// waitForAnswer loads path until done accepts the answer (the director's
// settings are being reloaded), for up to a minute.
func waitForAnswer(t *testing.T, s *signInShape, b *browser, path string, done func(*http.Response, []byte) bool) (*http.Response, []byte) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last string
	for time.Now().Before(deadline) {
		resp, body, err := b.tryGet(path, nil)
		if err == nil && done(resp, body) {
			return resp, body
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d from %s: %.300s", resp.StatusCode, resp.Request.URL, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s shape: the new usernamePolicy never took effect; last answer: %s", s.name, last)
	return nil, nil
}

// testSignOut: after /oauth2/sign_out the browser is sent to sign-in again
// and reaches nothing.
func testSignOut(t *testing.T, s *signInShape) {
	b := s.newBrowser(t)
	resp, body, _ := b.signIn(t, "/", "alice")
	s.reachContainer(t, "alice", "alice", resp, body)
	stolen := b.cookieHeader()

	resp, body = b.get(t, "/oauth2/sign_out", nil)
	if step := s.signInStep(resp, body); step == "" {
		t.Errorf("%s shape: sign-out did not lead to sign-in: status %d from %s: %.300s", s.name, resp.StatusCode, resp.Request.URL, body)
	}
	if c := b.cookieHeader(); strings.Contains(c, "_oauth2_proxy=") {
		t.Errorf("%s shape: the session cookie is still there after sign-out: %q", s.name, c)
	}
	before := s.reached()
	resp, body = b.get(t, "/after", nil)
	if step := s.signInStep(resp, body); step == "" {
		t.Errorf("%s shape: after sign-out: want sign-in, got status %d from %s: %.300s", s.name, resp.StatusCode, resp.Request.URL, body)
	}
	if n := s.reached() - before; n != 0 {
		t.Errorf("%s shape: %d connections or requests reached a container or the spawner after sign-out", s.name, n)
	}

	// OAuth2 Proxy keeps sessions in the cookie itself by default: a copy
	// taken before sign-out is not revoked by it. Recorded, not asserted.
	replay := s.newBrowser(t)
	resp, body = replay.get(t, "/replayed", http.Header{"Cookie": {stolen}})
	var e echoed
	if json.Unmarshal(body, &e) == nil && e.Container != "" {
		t.Logf("%s shape: a session cookie copied before sign-out still reaches container %q (cookie session store)", s.name, e.Container)
	} else {
		t.Logf("%s shape: a session cookie copied before sign-out gets status %d", s.name, resp.StatusCode)
	}
}

// testSignedInWebSocket: a WebSocket opened with the session cookie reaches
// the user's container and echoes both ways.
func testSignedInWebSocket(t *testing.T, s *signInShape) {
	b := s.newBrowser(t)
	resp, body, _ := b.signIn(t, "/", "bob")
	s.reachContainer(t, "bob", "bob", resp, body)

	conn, _, err := wstest.Dial(s.entry, signInSite+"/ws", http.Header{
		"Cookie":                            {b.cookieHeader()},
		"X-Auth-Request-Preferred-Username": {"alice"},
		"X-Forwarded-Preferred-Username":    {"alice"},
	}, 10*time.Second)
	if err != nil {
		t.Fatalf("%s shape: WebSocket with bob's session: %v", s.name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 3; i++ {
		msg := fmt.Sprintf("hello %d", i)
		got, err := conn.RoundTrip(msg)
		if err != nil || got != "bob:"+msg {
			t.Fatalf("%s shape: WebSocket echo %q, %v; want %q from bob's container", s.name, got, err, "bob:"+msg)
		}
	}
}
