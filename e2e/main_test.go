// Package e2e proves the director inside a real Traefik, loaded from this
// checkout in local plugin mode, with user containers reached by their real
// host names inside private network namespaces.
package e2e

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-director/director/internal/nstest"
)

var benchFlag = flag.Bool("bench", false, "run the side-by-side benchmark (make bench) instead of skipping it")

// Loopback addresses of the containers, by user.
var addrs = map[string]string{
	"alice":      "127.0.0.2",
	"bob":        "127.0.0.3",
	"carol":      "127.0.0.4", // never listens
	"erin":       "127.0.0.5", // created by the spawner during a test
	"frank":      "127.0.0.6", // killed while cached
	"grace":      "127.0.0.7", // holds a WebSocket open
	"heidi":      "127.0.0.8", // killed while cached, with a body in flight
	"dave":       "127.0.0.9", // SYNs dropped: dials hang until their timeout
	"code-alice": "127.0.0.10",
	"ivan":       "127.0.0.11", // killed while cached, asked over HTTP/3
	janeLabel:    "127.0.2.1",  // Jane.Doe@example.com escaped: sign-in tests
}

// loadUsers are the users of the load test.
const loadUsers = 50

func loadUser(i int) string { return fmt.Sprintf("user%02d", i+1) }

func hosts() map[string]string {
	h := make(map[string]string)
	for user, ip := range addrs {
		if strings.HasPrefix(user, "code-") {
			h[user] = ip
			continue
		}
		h["vscode-"+user] = ip
	}
	for i := 0; i < loadUsers; i++ {
		h["vscode-"+loadUser(i)] = fmt.Sprintf("127.0.1.%d", i+1)
	}
	return h
}

// env is the running system, shared by the tests.
var env struct {
	traefik    *traefik
	spawner    *spawnerServer
	auth       *authServer
	containers map[string]*container // by id
	blackhole  string                // why SYNs cannot be dropped, or ""
}

func TestMain(m *testing.M) {
	flag.Parse()
	if !nstest.Inside() {
		os.Exit(runOutside(m))
	}
	os.Exit(runInside(m))
}

// runOutside builds what the tests need, outside the namespaces where the Go
// module proxy is reachable, then runs the tests inside them.
func runOutside(m *testing.M) int {
	bin, err := buildTraefik()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building Traefik: %v\n", err)
		return 1
	}
	os.Setenv("E2E_TRAEFIK", bin)
	// The binaries built from this checkout go into a directory of this
	// run's own. In a shared one, a run in another checkout on the same
	// machine could replace them between their build here and the moment a
	// test starts them or makes the examples' images from them, and the
	// test would run code that is not this checkout's.
	dir, err := os.MkdirTemp("", "e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildSignInTools(dir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building the sign-in tools: %v\n", err)
		return 1
	}
	if err := downloadDemoModules(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	if err := buildImageTools(dir); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: building the examples' images: %v\n", err)
		return 1
	}
	// VS Code for TestVSCodeInChromium, from the npm registry.
	installCodeServer()
	return nstest.Main(m, hosts())
}

func repoRoot() string {
	root, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	return root
}

// buildTraefik builds (or finds in the cache) the pinned Traefik.
func buildTraefik() (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot(), "scripts", "traefik.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func runInside(m *testing.M) int {
	// A host whose dials hang, as behind a firewall that drops packets.
	if out, err := exec.Command("iptables", "-A", "INPUT", "-d", addrs["dave"], "-p", "tcp", "--syn", "-j", "DROP").CombinedOutput(); err != nil {
		env.blackhole = fmt.Sprintf("iptables: %v: %s", err, strings.TrimSpace(string(out)))
	}

	env.containers = make(map[string]*container)
	var ids []string
	for _, id := range []string{"alice", "bob", "frank", "grace", "heidi"} {
		ids = append(ids, id)
	}
	for i := 0; i < loadUsers; i++ {
		ids = append(ids, loadUser(i))
	}
	for _, id := range ids {
		ip := addrs[id]
		if ip == "" {
			ip = hosts()["vscode-"+id]
		}
		c, err := startContainer(id, ip)
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
			return 1
		}
		env.containers[id] = c
	}
	c, err := startContainer("code-alice", addrs["code-alice"])
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	env.containers["code-alice"] = c

	if env.spawner, err = startSpawner(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: spawner: %v\n", err)
		return 1
	}
	if env.auth, err = startAuth(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: auth: %v\n", err)
		return 1
	}
	env.traefik, err = startTraefik(os.Getenv("E2E_TRAEFIK"), baseConfig(), *benchFlag)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	defer env.traefik.stop()
	if err := waitReady(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: Traefik did not route through the plugin: %v\nTraefik's last log lines:\n%s\n", err, env.traefik.logs.tail(40))
		return 1
	}
	code := m.Run()
	if code != 0 || os.Getenv("E2E_LOGS") != "" {
		fmt.Fprintf(os.Stderr, "Traefik's last log lines:\n%s\n", env.traefik.logs.tail(60))
	}
	return code
}

func baseConfig() dynamicConfig {
	return dynamicConfig{Spawner: env.spawner.addr, Auth: env.auth.addr, ReloadPrefix: "vscode", ReloadTTL: "0s"}
}

// waitReady waits until Traefik routes alice to her container through the
// plugin.
func waitReady() error {
	deadline := time.Now().Add(90 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if !env.traefik.alive() {
			return fmt.Errorf("traefik exited")
		}
		req, _ := http.NewRequest(http.MethodGet, "http://"+env.traefik.web+"/", nil)
		req.Host = "plain.test"
		req.Header.Set("X-Forwarded-Preferred-Username", "alice")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"container":"alice"`) {
				return nil
			}
			last = fmt.Sprintf("status %d: %.200s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("timed out; last answer: %s", last)
}
