package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		desc        string
		args        []string
		env         map[string]string
		check       func(c config) bool
		expectedErr string
	}{
		{
			desc: "defaults",
			env:  map[string]string{"SPAWNER_NETWORK": "users"},
			check: func(c config) bool {
				return c.listen == ":8090" && c.backend == "docker" && c.prefix == "vscode" &&
					c.usernameHeader == "X-Forwarded-Preferred-Username" && c.startGrace == 60*time.Second &&
					c.containerPort == 8080 && c.dockerHost == "unix:///var/run/docker.sock" &&
					c.image == "codercom/code-server:4.100.3" && c.pull && c.processAddrs == "127.0.1.1-127.0.1.254" &&
					c.dockerAPI == "" && c.volume == "{name}-home" && c.volumePath == "/home/coder" &&
					c.restartPolicy == "no" && c.stopTimeout == 10*time.Second && c.maxRunning == 0 &&
					c.idleTimeout == 0 && c.metricsListen == "" && len(c.tokenKey) == 32 && c.memory == 0 &&
					c.nanoCPUs == 0 && c.pidsLimit == 0 && c.env == nil &&
					strings.Join(c.command, " ") == "--auth none --bind-addr 0.0.0.0:8080 ."
			},
		},
		{
			desc: "another image runs its own command by default",
			env:  map[string]string{"SPAWNER_NETWORK": "users", "SPAWNER_IMAGE": "example/workspace:1"},
			check: func(c config) bool {
				return c.image == "example/workspace:1" && c.command == nil
			},
		},
		{
			desc: "the default image with a command of the operator's",
			env:  map[string]string{"SPAWNER_NETWORK": "users", "SPAWNER_COMMAND": "--auth password"},
			check: func(c config) bool {
				return strings.Join(c.command, " ") == "--auth password"
			},
		},
		{
			desc: "docker settings",
			env: map[string]string{
				"SPAWNER_NETWORK": "users", "SPAWNER_MEMORY": "2g", "SPAWNER_CPUS": "1.5", "SPAWNER_PIDS_LIMIT": "512",
				"SPAWNER_ENV": `["A=1", "B=two words"]`, "SPAWNER_COMMAND": "--auth none --bind-addr 0.0.0.0:8080",
				"SPAWNER_VOLUME": "none", "SPAWNER_MAX_RUNNING": "20", "SPAWNER_IDLE_TIMEOUT": "30m",
				"SPAWNER_TOKEN_SECRET": "0123456789abcdef0123", "SPAWNER_METRICS_LISTEN": ":9090",
				"SPAWNER_RESTART_POLICY": "unless-stopped", "SPAWNER_STOP_TIMEOUT": "30s",
			},
			check: func(c config) bool {
				return c.memory == 2<<30 && c.nanoCPUs == 1500000000 && c.pidsLimit == 512 &&
					len(c.env) == 2 && c.env[1] == "B=two words" &&
					strings.Join(c.command, "|") == "--auth|none|--bind-addr|0.0.0.0:8080" && c.volume == "" &&
					c.maxRunning == 20 && c.idleTimeout == 30*time.Minute && string(c.tokenKey) == "0123456789abcdef0123" &&
					c.metricsListen == ":9090" && c.restartPolicy == "unless-stopped" && c.stopTimeout == 30*time.Second
			},
		},
		{
			desc: "environment",
			env: map[string]string{
				"SPAWNER_LISTEN": "127.0.0.1:9000", "SPAWNER_BACKEND": "process", "SPAWNER_CONTAINER_PREFIX": "ws",
				"SPAWNER_USERNAME_HEADER": "X-Auth-Request-Preferred-Username, X-Auth-Request-User", "SPAWNER_START_GRACE": "2m",
				"SPAWNER_CONTAINER_PORT": "3000", "DOCKER_HOST": "tcp://127.0.0.1:2375", "SPAWNER_PULL": "false",
				"SPAWNER_HOSTS_FILE": "/tmp/hosts", "SPAWNER_WORKSPACE_START_DELAY": "2s",
			},
			check: func(c config) bool {
				return c.listen == "127.0.0.1:9000" && c.backend == "process" && c.prefix == "ws" &&
					c.usernameHeader == "X-Auth-Request-Preferred-Username, X-Auth-Request-User" && c.startGrace == 2*time.Minute &&
					c.containerPort == 3000 && c.dockerHost == "tcp://127.0.0.1:2375" && !c.pull &&
					c.hostsFile == "/tmp/hosts" && c.workspaceDelay == 2*time.Second
			},
		},
		{
			desc: "flags win over the environment",
			args: []string{"-listen", ":7000", "-backend", "docker", "-start-grace", "5s", "-network", "users"},
			env:  map[string]string{"SPAWNER_LISTEN": ":9000", "SPAWNER_BACKEND": "process", "SPAWNER_START_GRACE": "2m"},
			check: func(c config) bool {
				return c.listen == ":7000" && c.backend == "docker" && c.startGrace == 5*time.Second
			},
		},
		{desc: "bad env duration", env: map[string]string{"SPAWNER_START_GRACE": "soon"}, expectedErr: "SPAWNER_START_GRACE"},
		{desc: "bad env port", env: map[string]string{"SPAWNER_CONTAINER_PORT": "http"}, expectedErr: "SPAWNER_CONTAINER_PORT"},
		{desc: "bad env bool", env: map[string]string{"SPAWNER_PULL": "maybe"}, expectedErr: "SPAWNER_PULL"},
		{desc: "unknown backend", args: []string{"-backend", "k8s"}, expectedErr: "backend"},
		{desc: "port out of range", args: []string{"-container-port", "70000"}, expectedErr: "container-port"},
		{desc: "zero grace", args: []string{"-start-grace", "0s"}, expectedErr: "start-grace"},
		{desc: "bad prefix", args: []string{"-prefix", "VS.Code"}, expectedErr: "prefix"},
		{desc: "empty header", args: []string{"-username-header", ""}, expectedErr: "username-header"},
		{desc: "docker without network", env: map[string]string{}, expectedErr: "SPAWNER_NETWORK"},
		{desc: "bad memory", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_MEMORY": "lots"}, expectedErr: "SPAWNER_MEMORY"},
		{desc: "bad cpus", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_CPUS": "-1"}, expectedErr: "SPAWNER_CPUS"},
		{desc: "bad pids", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_PIDS_LIMIT": "many"}, expectedErr: "SPAWNER_PIDS_LIMIT"},
		{desc: "bad env list", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_ENV": `["A=1"`}, expectedErr: "SPAWNER_ENV"},
		{desc: "bad command list", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_COMMAND": `[1]`}, expectedErr: "SPAWNER_COMMAND"},
		{desc: "negative max running", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_MAX_RUNNING": "-1"}, expectedErr: "SPAWNER_MAX_RUNNING"},
		{desc: "bad idle timeout", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_IDLE_TIMEOUT": "later"}, expectedErr: "SPAWNER_IDLE_TIMEOUT"},
		{desc: "idle timeout on processes", env: map[string]string{"SPAWNER_BACKEND": "process", "SPAWNER_IDLE_TIMEOUT": "1m"}, expectedErr: "SPAWNER_IDLE_TIMEOUT"},
		{desc: "short token secret", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_TOKEN_SECRET": "short"}, expectedErr: "SPAWNER_TOKEN_SECRET"},
		{desc: "missing token secret file", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_TOKEN_SECRET_FILE": "/nonexistent/secret"}, expectedErr: "SPAWNER_TOKEN_SECRET_FILE"},
		{desc: "both token secrets", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_TOKEN_SECRET": "0123456789abcdef0", "SPAWNER_TOKEN_SECRET_FILE": "/x"}, expectedErr: "SPAWNER_TOKEN_SECRET"},
		{desc: "extra argument", args: []string{"serve"}, expectedErr: "unexpected arguments"},
		{desc: "env backend named", env: map[string]string{"SPAWNER_BACKEND": "k8s"}, expectedErr: "SPAWNER_BACKEND"},
		{desc: "env port out of range named", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_CONTAINER_PORT": "0"}, expectedErr: "SPAWNER_CONTAINER_PORT"},
		{desc: "env negative grace named", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_START_GRACE": "-1s"}, expectedErr: "SPAWNER_START_GRACE"},
		{desc: "env bad prefix named", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_CONTAINER_PREFIX": "A"}, expectedErr: "SPAWNER_CONTAINER_PREFIX"},
		{desc: "header with a space", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_USERNAME_HEADER": "X User"}, expectedErr: "SPAWNER_USERNAME_HEADER"},
		{desc: "header list with an empty name", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_USERNAME_HEADER": "X-Auth-Request-User,"}, expectedErr: "SPAWNER_USERNAME_HEADER"},
		{desc: "negative shutdown timeout", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_SHUTDOWN_TIMEOUT": "-5s"}, expectedErr: "SPAWNER_SHUTDOWN_TIMEOUT"},
		{desc: "negative workspace delay", env: map[string]string{"SPAWNER_BACKEND": "process", "SPAWNER_WORKSPACE_START_DELAY": "-1s"}, expectedErr: "SPAWNER_WORKSPACE_START_DELAY"},
		{desc: "memory under the engine's minimum", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_MEMORY": "1k"}, expectedErr: "SPAWNER_MEMORY"},
		{desc: "cpus under the engine's minimum", env: map[string]string{"SPAWNER_NETWORK": "u", "SPAWNER_CPUS": "0.001"}, expectedErr: "SPAWNER_CPUS"},
	}
	for _, test := range tests {
		c, err := parseConfig(test.args, envFrom(test.env), io.Discard)
		if test.expectedErr != "" {
			if err == nil || !strings.Contains(err.Error(), test.expectedErr) {
				t.Errorf("%s: expected an error naming %q, got %v", test.desc, test.expectedErr, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: unexpected error %v", test.desc, err)
			continue
		}
		if !test.check(c) {
			t.Errorf("%s: unexpected config %+v", test.desc, c)
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"-backend", "nope"}, envFrom(nil), &stderr); code != 2 {
		t.Errorf("expected exit code 2, got %d", code)
	}
	if !strings.Contains(stderr.String(), "backend") {
		t.Errorf("expected the error on stderr, got %q", stderr.String())
	}
}

// TestRunRejectsBadListen: an address the spawner cannot listen on exits 2
// and names the setting.
func TestRunRejectsBadListen(t *testing.T) {
	var stderr bytes.Buffer
	env := envFrom(map[string]string{"SPAWNER_BACKEND": "process", "SPAWNER_LISTEN": "127.0.0.1:notaport"})
	if code := run(nil, env, &stderr); code != 2 {
		t.Errorf("expected exit code 2, got %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "SPAWNER_LISTEN") {
		t.Errorf("expected the error to name SPAWNER_LISTEN, got %q", stderr.String())
	}
}

// TestServeAndSIGTERM runs the test binary as the spawner (TestMain's serve
// hook; its workspaces use the workspace hook) and checks that SIGTERM ends
// the spawner and its workspace processes.
func TestServeAndSIGTERM(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip("no executable path")
	}
	hosts := filepath.Join(t.TempDir(), "hosts")
	// A free port; the spawner listens on it a moment later.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsListen := ml.Addr().String()
	ml.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "SPAWNER_TEST_SERVE=1", "SPAWNER_LISTEN="+listen, "SPAWNER_METRICS_LISTEN="+metricsListen,
		"SPAWNER_BACKEND=process", "SPAWNER_PROCESS_ADDRS=127.0.1.30-127.0.1.39", "SPAWNER_CONTAINER_PORT=18083",
		"SPAWNER_HOSTS_FILE="+hosts)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
	}()
	waitFor(t, 15*time.Second, "the spawner to listen", func() bool {
		c, err := net.DialTimeout("tcp", listen, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	req, _ := http.NewRequest(http.MethodGet, "http://"+listen+"/", nil)
	req.Header.Set(containerNameHeader, "vscode-dave")
	req.Header.Set("Accept", "text/html")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("expected the loading page, got %d", resp.StatusCode)
	}
	waitFor(t, 15*time.Second, "dave's workspace to answer", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.1.30:18083", 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	// /metrics on its own address: the spawn, its duration once the
	// workspace answered, and the workspace running.
	expected := []string{`spawner_spawns_total{action="create"} 1`, `spawner_spawn_duration_seconds_count 1`,
		`spawner_containers{state="running"} 1`}
	var text string
	waitFor(t, 10*time.Second, "the figures in /metrics", func() bool {
		resp, err := http.Get("http://" + metricsListen + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text = string(b)
		for _, e := range expected {
			if !strings.Contains(text, e) {
				return false
			}
		}
		return true
	})
	if resp, err := http.Get("http://" + listen + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "spawner_spawns_total") {
			t.Errorf("the metrics are served on the users' address too")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("expected a clean exit on SIGTERM, got %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the spawner did not exit on SIGTERM\n%s", stderr.String())
	}
	if c, err := net.DialTimeout("tcp", "127.0.1.30:18083", 200*time.Millisecond); err == nil {
		c.Close()
		t.Errorf("dave's workspace still answers after the spawner exited")
	}
	if !strings.Contains(stderr.String(), `msg=decision container=vscode-dave user=dave state="not found" action=create`) {
		t.Errorf("expected the decision in the log, got:\n%s", stderr.String())
	}
}
