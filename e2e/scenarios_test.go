package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-director/director/internal/ssetest"
	"github.com/container-director/director/internal/wstest"
)

const identity = "X-Forwarded-Preferred-Username"

// client sends requests to Traefik's entry point.
var client = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}

// send makes a request to the router for host, as user ("" for none).
func send(t *testing.T, method, host, path, user string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+env.traefik.web+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	if user != "" {
		req.Header.Set(identity, user)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s%s as %q: %v", method, host, path, user, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s%s: %v", host, path, err)
	}
	return resp, b
}

// getFrom sends a GET and fails unless container id answered it.
func getFrom(t *testing.T, id, host, path, user string, header http.Header) echoed {
	t.Helper()
	resp, body := send(t, http.MethodGet, host, path, user, nil, header)
	return mustReach(t, id, resp, body)
}

// mustReach fails unless the answer came from container id; it returns what
// the container saw.
func mustReach(t *testing.T, id string, resp *http.Response, body []byte) echoed {
	t.Helper()
	var e echoed
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil {
		t.Fatalf("want an answer from container %q, got status %d: %.300s", id, resp.StatusCode, body)
	}
	if e.Container != id {
		t.Fatalf("want an answer from container %q, got one from %q", id, e.Container)
	}
	return e
}

// requestsTotal returns how many requests the containers have received.
func requestsTotal() int64 {
	var n int64
	for _, c := range env.containers {
		n += atomic.LoadInt64(&c.requests)
	}
	return n
}

func TestTwoUsersTwoContainers(t *testing.T) {
	before := env.spawner.count()
	for i := 0; i < 10; i++ {
		for _, user := range []string{"alice", "bob"} {
			resp, body := send(t, http.MethodGet, "plain.test", fmt.Sprintf("/file/%d?user=%s", i, user), user, nil, nil)
			e := mustReach(t, user, resp, body)
			if got := e.Header.Get(identity); got != user {
				t.Errorf("%s's container got %s %q", user, identity, got)
			}
		}
	}
	if n := env.spawner.count() - before; n != 0 {
		t.Errorf("%d requests reached the spawner", n)
	}
}

func TestDownContainerReachesSpawner(t *testing.T) {
	const dialTimeout = time.Second
	testCases := []struct {
		desc string
		user string
	}{
		{desc: "nothing listening", user: "carol"},
		{desc: "name not in DNS", user: "ghost"},
		{desc: "SYN dropped by a firewall", user: "dave"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			if test.user == "dave" && env.blackhole != "" {
				if os.Getenv("CI") == "true" {
					t.Fatalf("cannot drop SYNs: %s", env.blackhole)
				}
				t.Skipf("cannot drop SYNs: %s", env.blackhole)
			}
			before := env.spawner.count()
			start := time.Now()
			resp, body := send(t, http.MethodGet, "plain.test", "/?folder=/home/"+test.user, test.user, nil, http.Header{"X-Container-Name": {"vscode-alice"}})
			elapsed := time.Since(start)
			want := "spawner: vscode-" + test.user
			if resp.StatusCode != http.StatusServiceUnavailable || string(body) != want {
				t.Fatalf("status %d body %q, want the spawner's 503 %q", resp.StatusCode, body, want)
			}
			got := env.spawner.since(before)
			if len(got) != 1 {
				t.Fatalf("%d requests reached the spawner, want 1", len(got))
			}
			if v := got[0].Header.Values("X-Container-Name"); len(v) != 1 || v[0] != "vscode-"+test.user {
				t.Errorf("spawner got X-Container-Name %q", v)
			}
			if v := got[0].Header.Get(identity); v != test.user {
				t.Errorf("spawner got %s %q", identity, v)
			}
			if got[0].URI != "/?folder=/home/"+test.user || got[0].Host != "plain.test" {
				t.Errorf("spawner got %s%s, want the original host and URI", got[0].Host, got[0].URI)
			}
			// The bound: the dial timeout plus a small margin for the hand-off.
			if limit := dialTimeout + time.Second; elapsed > limit {
				t.Errorf("hand-off took %v, more than dialTimeout %v plus a margin", elapsed, dialTimeout)
			}
		})
	}
}

func TestKilledContainerGoesToSpawner(t *testing.T) {
	t.Run("GET after kill reaches the spawner", func(t *testing.T) {
		getFrom(t, "frank", "plain.test", "/", "frank", nil)
		env.containers["frank"].stop()
		before := env.spawner.count()
		resp, body := send(t, http.MethodGet, "plain.test", "/after-kill", "frank", nil, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: vscode-frank" {
			t.Fatalf("status %d body %q, want the spawner, not a 502", resp.StatusCode, body)
		}
		got := env.spawner.since(before)
		if len(got) != 1 || got[0].URI != "/after-kill" || got[0].Host != "plain.test" {
			t.Fatalf("spawner got %+v", got)
		}
		// As a request handed on without proxying would have it: the
		// client once, appended by Traefik's service proxy.
		if xff := strings.Join(got[0].Header.Values("X-Forwarded-For"), ", "); xff != "127.0.0.1" {
			t.Errorf("spawner got X-Forwarded-For %q, want the client once", xff)
		}
		if v := got[0].Header.Values("X-Container-Name"); len(v) != 1 || v[0] != "vscode-frank" {
			t.Errorf("spawner got X-Container-Name %q", v)
		}
	})
	t.Run("POST after kill reaches the spawner with its body", func(t *testing.T) {
		// Nothing of the body reached the dead container (its dial was
		// refused), so the request can still go on, body intact; a 502 is
		// only for a body partly sent (unit tested: TestPartlySentBodyGets502).
		getFrom(t, "heidi", "plain.test", "/", "heidi", nil)
		env.containers["heidi"].stop()
		// A moment for Traefik's transport to see the container close its
		// idle connection: a POST written on that dead connection within
		// the same microseconds has its body gone, which is a 502 by design
		// (unit tested: TestPartlySentBodyGets502).
		time.Sleep(500 * time.Millisecond)
		before := env.spawner.count()
		resp, body := send(t, http.MethodPost, "plain.test", "/save", "heidi", strings.NewReader("unsaved work"), nil)
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: vscode-heidi" {
			t.Fatalf("status %d body %q, want the spawner", resp.StatusCode, body)
		}
		got := env.spawner.since(before)
		if len(got) != 1 || got[0].URI != "/save" || got[0].Body != "unsaved work" {
			t.Fatalf("spawner got %+v, want the POST with its body", got)
		}
		resp, body = send(t, http.MethodGet, "plain.test", "/", "heidi", nil, nil)
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: vscode-heidi" {
			t.Fatalf("next GET: status %d body %q, want the spawner", resp.StatusCode, body)
		}
	})
}

func TestContainerComesUp(t *testing.T) {
	var created int32
	env.spawner.setOnCreate(func(name string) {
		if name == "vscode-erin" && atomic.CompareAndSwapInt32(&created, 0, 1) {
			c, err := startContainer("erin", addrs["erin"])
			if err != nil {
				t.Errorf("creating erin: %v", err)
				return
			}
			env.containers["erin"] = c
		}
	})
	defer env.spawner.setOnCreate(nil)
	resp, body := send(t, http.MethodGet, "plain.test", "/", "erin", nil, nil)
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: vscode-erin" {
		t.Fatalf("first request: status %d body %q, want the spawner", resp.StatusCode, body)
	}
	if atomic.LoadInt32(&created) != 1 {
		t.Fatal("the spawner did not create erin's container")
	}
	// A failed probe is not cached: the very next request finds it.
	getFrom(t, "erin", "plain.test", "/", "erin", nil)
}

func TestRejectedRequestsReachNothing(t *testing.T) {
	testCases := []struct {
		desc           string
		header         http.Header
		expectedStatus int
		expectedBody   string
	}{
		{desc: "no identity", header: http.Header{}, expectedStatus: http.StatusUnauthorized, expectedBody: "no signed-in user"},
		{desc: "two identities", header: http.Header{identity: {"alice", "bob"}}, expectedStatus: http.StatusBadRequest, expectedBody: "more than one user"},
		{desc: "empty identity", header: http.Header{identity: {""}}, expectedStatus: http.StatusBadRequest, expectedBody: "empty"},
		{desc: "uppercase under strict", header: http.Header{identity: {"Alice"}}, expectedStatus: http.StatusBadRequest, expectedBody: "usernamePolicy"},
		{desc: "host injection", header: http.Header{identity: {"alice.evil.com:80"}}, expectedStatus: http.StatusBadRequest, expectedBody: "cannot name a container"},
		{desc: "too long", header: http.Header{identity: {strings.Repeat("a", 60)}}, expectedStatus: http.StatusBadRequest, expectedBody: "too long"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			spawned, accepted := env.spawner.count(), requestsTotal()
			resp, body := send(t, http.MethodGet, "plain.test", "/", "", nil, test.header)
			if resp.StatusCode != test.expectedStatus || !strings.Contains(string(body), test.expectedBody) {
				t.Fatalf("status %d body %q, want %d with %q", resp.StatusCode, body, test.expectedStatus, test.expectedBody)
			}
			if n := env.spawner.count() - spawned; n != 0 {
				t.Errorf("%d requests reached the spawner", n)
			}
			if n := requestsTotal() - accepted; n != 0 {
				t.Errorf("%d requests reached containers", n)
			}
		})
	}
}

func TestIdentityCannotBeSpoofed(t *testing.T) {
	spoof := http.Header{
		"X-Auth-Request-Preferred-Username": {"bob"},
		"X-Forwarded-Preferred-Username":    {"bob"},
		"X-Container-Name":                  {"vscode-bob"},
	}
	t.Run("signed in as alice, claiming bob", func(t *testing.T) {
		h := spoof.Clone()
		h.Set("Cookie", "session=alice")
		e := getFrom(t, "alice", "authed.test", "/", "", h)
		if v := e.Header.Values("X-Auth-Request-Preferred-Username"); len(v) != 1 || v[0] != "alice" {
			t.Errorf("container got X-Auth-Request-Preferred-Username %q", v)
		}
		if v := e.Header.Values("X-Container-Name"); len(v) != 0 {
			t.Errorf("container got X-Container-Name %q", v)
		}
	})
	t.Run("signed in as carol, down, claiming bob's container", func(t *testing.T) {
		h := spoof.Clone()
		h.Set("Cookie", "session=carol")
		before := env.spawner.count()
		resp, body := send(t, http.MethodGet, "authed.test", "/", "", nil, h)
		if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "spawner: vscode-carol" {
			t.Fatalf("status %d body %q, want the spawner for vscode-carol", resp.StatusCode, body)
		}
		got := env.spawner.since(before)
		if len(got) != 1 || got[0].Header.Get("X-Container-Name") != "vscode-carol" || got[0].Header.Get("X-Auth-Request-Preferred-Username") != "carol" {
			t.Fatalf("spawner got %+v", got)
		}
	})
	t.Run("not signed in", func(t *testing.T) {
		spawned, accepted := env.spawner.count(), requestsTotal()
		resp, _ := send(t, http.MethodGet, "authed.test", "/", "", nil, spoof)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want the auth server's 401", resp.StatusCode)
		}
		if env.spawner.count() != spawned || requestsTotal() != accepted {
			t.Error("an unauthenticated request reached a container or the spawner")
		}
	})
}

func TestForwardedHeadersReachContainer(t *testing.T) {
	e := getFrom(t, "alice", "plain.test", "/fwd", "alice", nil)
	// Traefik takes X-Forwarded-Port from the Host header: none, so 80.
	expected := map[string]string{
		"Host":              "plain.test",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "plain.test",
		"X-Forwarded-Port":  "80",
	}
	got := map[string]string{"Host": e.Host}
	for k := range expected {
		if k != "Host" {
			got[k] = strings.Join(e.Header.Values(k), "|")
		}
	}
	for k, v := range expected {
		if got[k] != v {
			t.Errorf("container got %s %q, want %q", k, got[k], v)
		}
	}
	if xff := e.Header.Get("X-Forwarded-For"); !strings.HasPrefix(xff, "127.0.0.1") {
		t.Errorf("container got X-Forwarded-For %q, want the client first", xff)
	}
}

func TestServerSentEventsUnbuffered(t *testing.T) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+env.traefik.web+"/events?key=sse1", nil)
	req.Host = "plain.test"
	req.Header.Set(identity, "bob")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := ssetest.Lines(resp.Body)
	select {
	case line := <-lines:
		if line != "data: first from bob" {
			t.Fatalf("first event %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first event did not arrive before the second was written: the stream is buffered")
	}
	env.containers["bob"].releaseEvents("sse1")
	if line := <-lines; line != "data: second from bob" {
		t.Fatalf("second event %q", line)
	}
}

func TestLargeBodiesArriveIntact(t *testing.T) {
	const size = 20 << 20
	payload := make([]byte, size)
	io.ReadFull(&pattern{}, payload)
	for i := range payload {
		payload[i] ^= byte(i >> 13)
	}
	sum := sha256.Sum256(payload)

	resp, body := send(t, http.MethodPost, "plain.test", "/upload", "alice", bytes.NewReader(payload), nil)
	if want := fmt.Sprintf("alice %d %s", size, hex.EncodeToString(sum[:])); resp.StatusCode != http.StatusOK || string(body) != want {
		t.Fatalf("upload: status %d, container saw %q, want %q", resp.StatusCode, body, want)
	}

	resp, body = send(t, http.MethodGet, "plain.test", fmt.Sprintf("/download?size=%d", size), "alice", nil, nil)
	want := make([]byte, size)
	io.ReadFull(&pattern{}, want)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("download: status %d, %d bytes, identical %v", resp.StatusCode, len(body), bytes.Equal(body, want))
	}
}

func TestWebSocketStaysOpen(t *testing.T) {
	t.Parallel()
	const (
		duration = 90 * time.Second
		interval = 5 * time.Second
	)
	conn, resp, err := wstest.Dial(env.traefik.web, "http://plain.test/ws", http.Header{identity: {"grace"}}, 10*time.Second)
	if err != nil {
		t.Fatalf("opening WebSocket through Traefik: %v (response %v)", err, resp)
	}
	defer conn.Close()
	start := time.Now()
	for i := 0; time.Since(start) < duration; i++ {
		msg := fmt.Sprintf("keepalive %d at %v", i, time.Since(start).Round(time.Second))
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		got, err := conn.RoundTrip(msg)
		if err != nil || got != "grace:"+msg {
			t.Fatalf("after %v: echo %q, %v; want %q", time.Since(start), got, err, "grace:"+msg)
		}
		time.Sleep(interval)
	}
}

func TestLoadAcrossUsers(t *testing.T) {
	t.Parallel()
	const (
		connections = 200
		duration    = 30 * time.Second
	)
	var ok, failed int64
	var firstErr atomic.Value
	fail := func(err error) {
		atomic.AddInt64(&failed, 1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for i := 0; i < connections; i++ {
		user := loadUser(i % loadUsers)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			defer c.CloseIdleConnections()
			for n := 0; time.Now().Before(stop); n++ {
				req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/load/%d", env.traefik.web, n), nil)
				req.Host = "plain.test"
				req.Header.Set(identity, user)
				resp, err := c.Do(req)
				if err != nil {
					fail(err)
					continue
				}
				var e echoed
				err = json.NewDecoder(resp.Body).Decode(&e)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					fail(fmt.Errorf("%s: status %d: %v", user, resp.StatusCode, err))
				case resp.StatusCode != http.StatusOK || e.Container != user:
					fail(fmt.Errorf("%s: status %d from container %q", user, resp.StatusCode, e.Container))
				default:
					atomic.AddInt64(&ok, 1)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d connections, %d users, %v: %d requests answered by the right container (%.0f/s), %d errors",
		connections, loadUsers, duration, ok, float64(ok)/duration.Seconds(), failed)
	if failed != 0 {
		t.Fatalf("%d errors; first: %v", failed, firstErr.Load())
	}
	if ok == 0 {
		t.Fatal("no request succeeded")
	}
}
