package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// The Docker backend and the handler against the private real engine (see
// engine_test.go).

func TestDockerBackendConfig(t *testing.T) {
	tests := []struct {
		desc        string
		cfg         DockerConfig
		expectedErr string
	}{
		{desc: "defaults with a network", cfg: DockerConfig{Network: "users"}},
		{desc: "no network", cfg: DockerConfig{}, expectedErr: "SPAWNER_NETWORK"},
		{desc: "volume without {name}", cfg: DockerConfig{Network: "u", Volume: "shared"}, expectedErr: "SPAWNER_VOLUME"},
		{desc: "volume with a slash", cfg: DockerConfig{Network: "u", Volume: "a/{name}"}, expectedErr: "SPAWNER_VOLUME"},
		{desc: "relative volume path", cfg: DockerConfig{Network: "u", Volume: "{name}-home", VolumePath: "home"}, expectedErr: "SPAWNER_VOLUME_PATH"},
		{desc: "bad restart policy", cfg: DockerConfig{Network: "u", RestartPolicy: "sometimes"}, expectedErr: "SPAWNER_RESTART_POLICY"},
		{desc: "retry count on always", cfg: DockerConfig{Network: "u", RestartPolicy: "always:3"}, expectedErr: "SPAWNER_RESTART_POLICY"},
		{desc: "on-failure with a count", cfg: DockerConfig{Network: "u", RestartPolicy: "on-failure:3"}},
		{desc: "bad env", cfg: DockerConfig{Network: "u", Env: []string{"NOEQUALS"}}, expectedErr: "SPAWNER_ENV"},
		{desc: "bad host", cfg: DockerConfig{Network: "u", Host: "no-scheme"}, expectedErr: "DOCKER_HOST"},
		{desc: "bad API version", cfg: DockerConfig{Network: "u", APIVersion: "abc"}, expectedErr: "SPAWNER_DOCKER_API_VERSION"},
		{desc: "API version with a v", cfg: DockerConfig{Network: "u", APIVersion: "v1.41"}},
	}
	for _, test := range tests {
		b, err := NewDockerBackend(test.cfg)
		if test.expectedErr == "" {
			if err != nil {
				t.Errorf("%s: unexpected error %v", test.desc, err)
				continue
			}
			b.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.expectedErr) {
			t.Errorf("%s: expected an error naming %q, got %v", test.desc, test.expectedErr, err)
		}
	}
}

func TestDockerNegotiatesWithEngine(t *testing.T) {
	e := realEngine(t)
	b := e.backend(t, DockerConfig{})
	if _, err := b.Inspect(context.Background(), "vscode-nobody"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expected ErrNotFound, got %v", err)
	}
	if v := b.APIVersion(); v != "1.41" {
		t.Errorf("expected API 1.41 negotiated with Engine 20.10, got %q", v)
	}
}

func TestDockerCheckNetwork(t *testing.T) {
	e := realEngine(t)
	if err := e.backend(t, DockerConfig{}).CheckNetwork(context.Background()); err != nil {
		t.Errorf("expected the test network to be found, got %v", err)
	}
	err := e.backend(t, DockerConfig{Network: "no-such-network"}).CheckNetwork(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SPAWNER_NETWORK") || !strings.Contains(err.Error(), "no-such-network") {
		t.Errorf("expected an error naming SPAWNER_NETWORK and the network, got %v", err)
	}
	// More CPUs than the engine has: every create would fail.
	err = e.backend(t, DockerConfig{NanoCPUs: 100000 * 1e9}).CheckNetwork(context.Background())
	if err == nil || !strings.Contains(err.Error(), "SPAWNER_CPUS") {
		t.Errorf("expected an error naming SPAWNER_CPUS, got %v", err)
	}
	if err := e.backend(t, DockerConfig{NanoCPUs: 1e7}).CheckNetwork(context.Background()); err != nil {
		t.Errorf("expected 0.01 CPUs to be accepted, got %v", err)
	}
	// The predefined networks exist, but every create would fail there.
	for _, network := range []string{"bridge", "host", "none"} {
		err := e.backend(t, DockerConfig{Network: network}).CheckNetwork(context.Background())
		if err == nil || !strings.Contains(err.Error(), "SPAWNER_NETWORK") {
			t.Errorf("%s: expected an error naming SPAWNER_NETWORK, got %v", network, err)
		}
	}
}

func TestDockerEngineDownAtStartUp(t *testing.T) {
	var stderr bytes.Buffer
	code := run(nil, envFrom(map[string]string{
		"DOCKER_HOST": "unix://" + t.TempDir() + "/none.sock", "SPAWNER_NETWORK": "users", "SPAWNER_LISTEN": "127.0.0.1:0",
	}), &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "DOCKER_HOST") {
		t.Errorf("expected exit 2 naming DOCKER_HOST, got %d: %s", code, stderr.String())
	}
}

// TestRunRejectsUnknownNetwork: the binary exits 2 naming the variable.
func TestRunRejectsUnknownNetwork(t *testing.T) {
	e := realEngine(t)
	var stderr bytes.Buffer
	code := run(nil, envFrom(map[string]string{
		"DOCKER_HOST": e.host, "SPAWNER_NETWORK": "no-such-network", "SPAWNER_LISTEN": "127.0.0.1:0",
	}), &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "SPAWNER_NETWORK") {
		t.Errorf("expected exit 2 naming SPAWNER_NETWORK, got %d: %s", code, stderr.String())
	}
}

func TestDockerCreateStartInspect(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{
		Volume: "{name}-home", VolumePath: "/home/coder", Memory: 256 << 20, NanoCPUs: 500000000, PidsLimit: 100,
		Env: []string{"EXTRA=1"}, Command: []string{"-user", "from-command"}, RestartPolicy: "on-failure:2",
	})
	e.cleanup(t, []string{"vscode-cara"}, []string{"vscode-cara-home"})
	if err := b.Create(ctx, "vscode-cara", "cara"); err != nil {
		t.Fatalf("Create: %v", err)
	}
	st, err := b.Inspect(ctx, "vscode-cara")
	if err != nil || st.Status != StatusCreated || !st.Managed || st.User != "cara" {
		t.Fatalf("expected a created container of cara's, got %+v, %v", st, err)
	}
	if err := b.Create(ctx, "vscode-cara", "cara"); !errors.Is(err, ErrExists) {
		t.Errorf("expected the engine's name conflict as ErrExists, got %v", err)
	}
	if err := b.Start(ctx, "vscode-cara"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := b.Start(ctx, "vscode-cara"); err != nil {
		t.Errorf("starting a running container: expected no error (304), got %v", err)
	}
	res, err := e.client.ContainerInspect(ctx, "vscode-cara", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Container
	checks := []struct {
		what string
		ok   bool
	}{
		{"running", c.State.Running},
		{"hostname", c.Config.Hostname == "vscode-cara"},
		{"env", strings.Contains(strings.Join(c.Config.Env, ","), "USER_NAME=cara") && strings.Contains(strings.Join(c.Config.Env, ","), "EXTRA=1")},
		{"command", strings.Join(c.Config.Cmd, " ") == "-user from-command"},
		{"labels", c.Config.Labels[LabelSpawned] == "true" && c.Config.Labels[LabelUser] == "cara"},
		{"memory", c.HostConfig.Memory == 256<<20},
		{"cpus", c.HostConfig.NanoCPUs == 500000000},
		{"pids", c.HostConfig.PidsLimit != nil && *c.HostConfig.PidsLimit == 100},
		{"no-new-privileges", strings.Join(c.HostConfig.SecurityOpt, ",") == "no-new-privileges:true"},
		{"restart policy", c.HostConfig.RestartPolicy.Name == container.RestartPolicyOnFailure && c.HostConfig.RestartPolicy.MaximumRetryCount == 2},
		{"network", string(c.HostConfig.NetworkMode) == testNetwork && c.NetworkSettings.Networks[testNetwork] != nil},
		{"alias", c.NetworkSettings.Networks[testNetwork] != nil && strings.Contains(strings.Join(c.NetworkSettings.Networks[testNetwork].Aliases, ","), "vscode-cara")},
		{"volume", len(c.Mounts) == 1 && c.Mounts[0].Name == "vscode-cara-home" && c.Mounts[0].Destination == "/home/coder"},
	}
	for _, check := range checks {
		if !check.ok {
			t.Errorf("expected the container's %s as configured, got %+v", check.what, c)
		}
	}
	// The workspace answers on its address, inside the engine's namespace.
	body, err := e.httpGetInEngine("http://"+e.address(t, "vscode-cara")+":8080/whoami", 1, 0)
	if err != nil {
		// It may need a moment to listen.
		time.Sleep(time.Second)
		body, err = e.httpGetInEngine("http://"+e.address(t, "vscode-cara")+":8080/whoami", 1, 0)
	}
	if err != nil || !strings.Contains(body, `"from-command"`) {
		t.Errorf("expected the workspace of from-command to answer, got %v: %s", err, body)
	}
	list, err := b.List(ctx)
	if err != nil || len(list) == 0 {
		t.Fatalf("List: %v, %v", list, err)
	}
	found := false
	for _, st := range list {
		if st.Name == "vscode-cara" {
			found = st.Status == StatusRunning && st.User == "cara" && st.Managed
		}
	}
	if !found {
		t.Errorf("expected vscode-cara running in the list, got %+v", list)
	}
}

func TestDockerPullFailsOffline(t *testing.T) {
	e := realEngine(t)
	b := e.backend(t, DockerConfig{Image: "registry.invalid/nobody/nothing:1", Pull: true})
	e.cleanup(t, []string{"vscode-pat"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := b.Create(ctx, "vscode-pat", "pat")
	if !errors.Is(err, errPull) {
		t.Fatalf("expected a pull failure, got %v", err)
	}
	if _, err := b.Inspect(ctx, "vscode-pat"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected no container after a failed pull, got %v", err)
	}
	b = e.backend(t, DockerConfig{Image: "registry.invalid/nobody/nothing:1"})
	if err := b.Create(ctx, "vscode-pat", "pat"); err == nil || errors.Is(err, errPull) {
		t.Errorf("expected a plain create failure without pull, got %v", err)
	}
}

// runExiter creates name from the exiter image with args and waits until it
// has exited.
func runExiter(t *testing.T, e *engine, b *dockerBackend, name string, tty bool, args ...string) {
	t.Helper()
	ctx := context.Background()
	e.cleanup(t, []string{name}, nil)
	_, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: name,
		Config: &container.Config{Image: exiterImage, Cmd: args, Tty: tty,
			Labels: map[string]string{LabelSpawned: "true", LabelUser: "eve"}},
		HostConfig: &container.HostConfig{NetworkMode: testNetwork},
	})
	if err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
	if err := b.Start(ctx, name); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	waitFor(t, 30*time.Second, name+" to exit", func() bool {
		st, err := b.Inspect(ctx, name)
		return err == nil && st.Status == StatusExited
	})
}

func TestDockerExitCodeAndLogs(t *testing.T) {
	e := realEngine(t)
	b := e.backend(t, DockerConfig{})
	ctx := context.Background()
	runExiter(t, e, b, "vscode-eve", false, "-code", "3", "-lines", "40")
	st, err := b.Inspect(ctx, "vscode-eve")
	if err != nil || st.ExitCode != 3 || st.FinishedAt.IsZero() || st.StartedAt.IsZero() {
		t.Errorf("expected exit code 3 with times, got %+v, %v", st, err)
	}
	lines, err := b.Logs(ctx, "vscode-eve", 30)
	if err != nil {
		t.Fatalf("Logs: %v", err)
	}
	// 80 lines were written, 40 on stdout then 40 on stderr, multiplexed
	// by the engine; the last 30 come back without frame headers.
	if len(lines) != 30 || lines[0] != "err 11" || lines[29] != "err 40" {
		t.Errorf("expected err 11 to err 40, got %q", lines)
	}
	lines, err = b.Logs(ctx, "vscode-eve", 50)
	if err != nil || len(lines) != 50 || lines[0] != "out 31" || lines[9] != "out 40" || lines[10] != "err 1" {
		t.Errorf("expected out 31 to out 40 then err 1 to err 40, got %q, %v", lines, err)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "out ") && !strings.HasPrefix(l, "err ") {
			t.Errorf("expected demultiplexed lines, got %q", l)
		}
	}

	runExiter(t, e, b, "vscode-eve-tty", true, "-code", "0", "-lines", "2")
	lines, err = b.Logs(ctx, "vscode-eve-tty", 30)
	if err != nil || len(lines) != 4 || lines[0] != "out 1" || lines[3] != "err 2" {
		t.Errorf("expected the 4 raw lines of a TTY container, got %q, %v", lines, err)
	}
}

func TestDockerUnmanaged(t *testing.T) {
	e := realEngine(t)
	b := e.backend(t, DockerConfig{})
	ctx := context.Background()
	e.cleanup(t, []string{"vscode-mallory"}, nil)
	_, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name: "vscode-mallory", Config: &container.Config{Image: exiterImage, Cmd: []string{"-code", "1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.Inspect(ctx, "vscode-mallory")
	if err != nil || st.Managed {
		t.Errorf("expected an unmanaged container, got %+v, %v", st, err)
	}
	for what, err := range map[string]error{
		"start":   b.Start(ctx, "vscode-mallory"),
		"restart": b.Restart(ctx, "vscode-mallory"),
		"stop":    b.Stop(ctx, "vscode-mallory"),
		"remove":  b.Remove(ctx, "vscode-mallory"),
	} {
		if !errors.Is(err, ErrUnmanaged) {
			t.Errorf("%s: expected ErrUnmanaged, got %v", what, err)
		}
	}
	if st, err := b.Inspect(ctx, "vscode-mallory"); err != nil || st.Status != StatusCreated {
		t.Errorf("expected the unmanaged container untouched, got %+v, %v", st, err)
	}
}

// readFile reads one file out of a container (running or not).
func readFile(t *testing.T, e *engine, name, path string) (string, error) {
	t.Helper()
	res, err := e.client.CopyFromContainer(context.Background(), name, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return "", err
	}
	defer res.Content.Close()
	tr := tar.NewReader(res.Content)
	if _, err := tr.Next(); err != nil {
		return "", err
	}
	b, err := io.ReadAll(tr)
	return string(b), err
}

// TestDockerVolumeSurvives: a file in the user's volume survives stop,
// remove and re-create; another user's container gets a volume of its own,
// and a volume of another user's is refused.
func TestDockerVolumeSurvives(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{Volume: "{name}-home", VolumePath: "/home/coder"})
	e.cleanup(t, []string{"vscode-vic", "vscode-val"}, []string{"vscode-vic-home", "vscode-val-home"})
	if err := b.Create(ctx, "vscode-vic", "vic"); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	_ = tw.WriteHeader(&tar.Header{Name: "notes.txt", Mode: 0o644, Size: 5})
	_, _ = tw.Write([]byte("hello"))
	_ = tw.Close()
	if _, err := e.client.CopyToContainer(ctx, "vscode-vic", client.CopyToContainerOptions{DestinationPath: "/home/coder", Content: &archive}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, "vscode-vic"); err != nil {
		t.Fatal(err)
	}
	// A Go program that is the first process of its container and gets
	// SIGTERM before main has installed its handler exits 2 (the runtime's
	// fallback when the default action is ignored for that process): stop
	// the workspace once it runs, as the idle stop does.
	waitFor(t, 10*time.Second, "the workspace to listen", func() bool {
		lines, _ := b.Logs(ctx, "vscode-vic", 5)
		return strings.Contains(strings.Join(lines, "\n"), "listening on :8080")
	})
	if err := b.Stop(ctx, "vscode-vic"); err != nil {
		t.Fatal(err)
	}
	st, _ := b.Inspect(ctx, "vscode-vic")
	if st.Status != StatusExited || !cleanExit(st) {
		t.Errorf("expected a clean stop of the workspace (exit 0 or 143), got %+v", st)
	}
	if err := b.Remove(ctx, "vscode-vic"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Inspect(ctx, "vscode-vic"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expected the container removed, got %v", err)
	}
	if err := b.Create(ctx, "vscode-vic", "vic"); err != nil {
		t.Fatal(err)
	}
	if got, err := readFile(t, e, "vscode-vic", "/home/coder/notes.txt"); err != nil || got != "hello" {
		t.Errorf("expected the file to survive remove and re-create, got %q, %v", got, err)
	}
	if err := b.Create(ctx, "vscode-val", "val"); err != nil {
		t.Fatal(err)
	}
	if _, err := readFile(t, e, "vscode-val", "/home/coder/notes.txt"); err == nil {
		t.Errorf("another user's container sees vic's file")
	}
	// The volume of vscode-vic is labelled vic's: creating vscode-vic for
	// someone else must not mount it.
	if _, err := e.client.ContainerRemove(ctx, "vscode-vic", client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx, "vscode-vic", "intruder"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected a volume of another user's refused, got %v", err)
	}
}

// pageLoadRecorder serves one page load of user through h.
func pageLoadOf(h http.Handler, name, user string) (int, string) {
	r := pageLoad("/", name)
	r.Header.Set("X-Forwarded-Preferred-Username", user)
	w := serve(h, r)
	return w.Code, w.Body.String()
}

// TestHandlerLifecycleOnEngine walks one user through the lifecycle on the
// real engine: first visit (create), the workspace answers, docker stop, the
// next visit starts it again, a crash shows the error page with its exit
// code and logs, the restart button.
func TestHandlerLifecycleOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{Volume: "{name}-home"})
	e.cleanup(t, []string{"vscode-lou"}, []string{"vscode-lou-home"})
	h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil }})
	code, body := pageLoadOf(h, "vscode-lou", "lou")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "Creating the container") {
		t.Fatalf("expected the loading page, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	st, err := b.Inspect(ctx, "vscode-lou")
	if err != nil || st.Status != StatusRunning {
		t.Fatalf("expected vscode-lou running, got %+v, %v", st, err)
	}
	if out, err := e.httpGetInEngine("http://"+e.address(t, "vscode-lou")+":8080/whoami", 1, 0); err != nil || !strings.Contains(out, `"lou"`) {
		time.Sleep(time.Second)
		if out, err = e.httpGetInEngine("http://"+e.address(t, "vscode-lou")+":8080/whoami", 1, 0); err != nil || !strings.Contains(out, `"lou"`) {
			t.Errorf("expected lou's workspace to answer, got %v: %s", err, out)
		}
	}

	// Stopped cleanly: the next page load starts it again.
	if _, err := e.client.ContainerStop(ctx, "vscode-lou", client.ContainerStopOptions{}); err != nil {
		t.Fatal(err)
	}
	code, body = pageLoadOf(h, "vscode-lou", "lou")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `<span>Starting it</span>`) {
		t.Fatalf("expected the loading page at Starting it after docker stop, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	if st, err := b.Inspect(ctx, "vscode-lou"); err != nil || st.Status != StatusRunning {
		t.Fatalf("expected vscode-lou running again, got %+v, %v", st, err)
	}

	// Another user never touches it.
	code, body = pageLoadOf(h, "vscode-lou", "someone-else")
	if code != http.StatusForbidden || !strings.Contains(body, "belongs to someone else") {
		t.Errorf("expected the not-owner page, got %d %s", code, lastN(body, 300))
	}

	// A crash: the workspace killed with SIGKILL (exit 137).
	if _, err := e.client.ContainerKill(ctx, "vscode-lou", client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "vscode-lou to exit", func() bool {
		st, err := b.Inspect(ctx, "vscode-lou")
		return err == nil && st.Status == StatusExited
	})
	code, body = pageLoadOf(h, "vscode-lou", "lou")
	if code != http.StatusBadGateway || !strings.Contains(body, "<dt>Exit code</dt><dd>137</dd>") || !strings.Contains(body, "listening on :8080") {
		t.Fatalf("expected the error page with exit code 137 and the log, got %d %s", code, body)
	}
	// The restart button.
	r := restartPost("/", "vscode-lou", h.token("vscode-lou"))
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("X-Forwarded-Preferred-Username", "lou")
	if w := serve(h, r); w.Code != http.StatusSeeOther {
		t.Fatalf("expected 303 from the restart button, got %d %s", w.Code, w.Body.String())
	}
	waitIdle(t, h)
	if st, err := b.Inspect(ctx, "vscode-lou"); err != nil || st.Status != StatusRunning {
		t.Errorf("expected vscode-lou running after the restart, got %+v, %v", st, err)
	}
}

// TestReplicasRaceOnEngine: two spawner replicas (two handlers, one shared
// token key) get the first page load of one user at the same moment: one
// container is created, both show the loading page, and each accepts the
// other's restart token.
func TestReplicasRaceOnEngine(t *testing.T) {
	e := realEngine(t)
	key := []byte("shared by both replicas, 32 bytes")
	e.cleanup(t, []string{"vscode-rae"}, nil)
	ready := HandlerConfig{CSRFKey: key, Ready: func(context.Context, string) error { return nil },
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))}
	one := newTestHandler(t, e.backend(t, DockerConfig{}), ready)
	two := newTestHandler(t, e.backend(t, DockerConfig{}), ready)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i, h := range []*handler{one, two} {
		wg.Add(1)
		go func(i int, h *handler) {
			defer wg.Done()
			codes[i], _ = pageLoadOf(h, "vscode-rae", "rae")
		}(i, h)
	}
	wg.Wait()
	waitIdle(t, one)
	waitIdle(t, two)
	if codes[0] != http.StatusServiceUnavailable || codes[1] != http.StatusServiceUnavailable {
		t.Errorf("expected both replicas to show the loading page, got %v", codes)
	}
	res, err := e.client.ContainerList(context.Background(), client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("name", "^/vscode-rae$"),
	})
	if err != nil || len(res.Items) != 1 || res.Items[0].State != container.StateRunning {
		t.Errorf("expected exactly one running vscode-rae, got %+v, %v", res.Items, err)
	}
	if _, failed := one.recentFailure("vscode-rae"); failed {
		t.Errorf("replica one remembered a failure")
	}
	if _, failed := two.recentFailure("vscode-rae"); failed {
		t.Errorf("replica two remembered a failure")
	}
	if !two.validToken("vscode-rae", one.token("vscode-rae")) {
		t.Errorf("expected the replicas to accept each other's tokens")
	}
}

// TestCapacityOnEngine: with one place and one workspace running, another
// user's first visit gets the "no room" page and nothing is created.
func TestCapacityOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{})
	e.cleanup(t, []string{"vscode-cap1", "vscode-cap2"}, nil)
	// Other tests' containers may run: count them in.
	running := 0
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if st.Status == StatusRunning {
			running++
		}
	}
	h := newTestHandler(t, b, HandlerConfig{MaxRunning: running + 1, Ready: func(context.Context, string) error { return nil }})
	if code, body := pageLoadOf(h, "vscode-cap1", "cap1"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Creating the container") {
		t.Fatalf("expected the loading page for the first, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	code, body := pageLoadOf(h, "vscode-cap2", "cap2")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "No room for your workspace right now") {
		t.Errorf("expected the no-room page, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	if _, err := b.Inspect(ctx, "vscode-cap2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected nothing created past the maximum, got %v", err)
	}
}

// TestIdleStopOnEngine: a workspace with traffic keeps running; without, it
// is stopped (not removed) after the idle timeout, and the next page load
// starts it again.
func TestIdleStopOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{})
	e.cleanup(t, []string{"vscode-ida"}, nil)
	if err := b.Create(ctx, "vscode-ida", "ida"); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx, "vscode-ida"); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(nil)
	idle := &idleStopper{backend: b, meter: b, timeout: 3 * time.Second, every: 500 * time.Millisecond,
		metrics: m, log: quietLogger(), now: time.Now}
	only := &onlyBackend{Backend: b, name: "vscode-ida"} // leave other tests' containers alone
	idle.backend = only
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); idle.run(runCtx) }()
	defer func() { cancel(); <-done }()

	// Traffic every 500 ms for 6 s (twice the timeout) keeps it running.
	url := "http://" + e.address(t, "vscode-ida") + ":8080/whoami"
	if out, err := e.httpGetInEngine(url, 12, 500*time.Millisecond); err != nil {
		t.Fatalf("traffic to the workspace failed: %v: %s", err, out)
	}
	if st, err := b.Inspect(ctx, "vscode-ida"); err != nil || st.Status != StatusRunning {
		t.Fatalf("expected a workspace with traffic to keep running, got %+v, %v", st, err)
	}
	// Without traffic it is stopped.
	waitFor(t, 30*time.Second, "the idle stop", func() bool {
		st, err := b.Inspect(ctx, "vscode-ida")
		return err == nil && st.Status == StatusExited
	})
	st, _ := b.Inspect(ctx, "vscode-ida")
	if !cleanExit(st) {
		t.Errorf("expected the idle stop to be a clean stop, got exit code %d", st.ExitCode)
	}
	if got := counterValue(t, m, "spawner_idle_stops_total"); got != 1 {
		t.Errorf("expected 1 idle stop counted, got %v", got)
	}
	// The next visit starts it again.
	h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil }})
	if code, body := pageLoadOf(h, "vscode-ida", "ida"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Starting it") {
		t.Errorf("expected the loading page after an idle stop, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	if st, err := b.Inspect(ctx, "vscode-ida"); err != nil || st.Status != StatusRunning {
		t.Errorf("expected the workspace running again, got %+v, %v", st, err)
	}
}

// onlyBackend lists one container of the backend's.
type onlyBackend struct {
	Backend
	name string
}

func (o *onlyBackend) List(ctx context.Context) ([]State, error) {
	list, err := o.Backend.List(ctx)
	var out []State
	for _, st := range list {
		if st.Name == o.name {
			out = append(out, st)
		}
	}
	return out, err
}

// testWriter sends a logger's lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestDockerHealthOnEngine: the engine's health states reach the page: a
// check that has not run yet is the "Starting it" stage, a failing one the
// error page.
func TestDockerHealthOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{})
	h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil }})
	for _, c := range []struct {
		name, expectedHealth, expectedText string
		interval                           time.Duration
	}{
		{"vscode-hal", HealthStarting, `aria-current="step"><span class="mark" aria-hidden="true">2</span><span>Starting it`, time.Hour},
		{"vscode-hank", HealthUnhealthy, "health check fails", 200 * time.Millisecond},
	} {
		e.cleanup(t, []string{c.name}, nil)
		user := strings.TrimPrefix(c.name, "vscode-")
		_, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
			Name: c.name,
			Config: &container.Config{Image: exiterImage, Cmd: []string{"-sleep", "1h", "-lines", "0"},
				Labels: map[string]string{LabelSpawned: "true", LabelUser: user},
				Healthcheck: &container.HealthConfig{Test: []string{"CMD", "/exiter", "-code", "1", "-lines", "0"},
					Interval: c.interval, Timeout: 5 * time.Second, Retries: 1}},
			HostConfig: &container.HostConfig{NetworkMode: testNetwork},
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx, c.name); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, c.name+" health "+c.expectedHealth, func() bool {
			st, err := b.Inspect(ctx, c.name)
			return err == nil && st.Health == c.expectedHealth
		})
		if code, body := pageLoadOf(h, c.name, user); !strings.Contains(body, c.expectedText) {
			t.Errorf("%s: expected %q, got %d %s", c.name, c.expectedText, code, lastN(body, 300))
		}
	}
}

// TestMetricsOnEngine: the spawn duration from the first page load until
// the workspace answers (dialled inside the engine's network namespace, as
// a spawner on the containers' network would), and the containers by
// state as the engine reports them.
func TestMetricsOnEngine(t *testing.T) {
	e := realEngine(t)
	b := e.backend(t, DockerConfig{})
	e.cleanup(t, []string{"vscode-mia"}, nil)
	m := newMetrics(&onlyBackend{Backend: b, name: "vscode-mia"})
	h := newTestHandler(t, b, HandlerConfig{Metrics: m, Ready: func(ctx context.Context, endpoint string) error {
		name, port, _ := strings.Cut(endpoint, ":")
		res, err := e.client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
		if err != nil {
			return err
		}
		addr := res.Container.NetworkSettings.Networks[testNetwork].IPAddress
		_, err = e.httpGetInEngine("http://"+addr.String()+":"+port+"/whoami", 1, 0)
		return err
	}})
	began := time.Now()
	if code, body := pageLoadOf(h, "vscode-mia", "mia"); code != http.StatusServiceUnavailable {
		t.Fatalf("expected the loading page, got %d %s", code, lastN(body, 300))
	}
	waitFor(t, 30*time.Second, "the spawn duration", func() bool {
		return counterValue(t, m, "spawner_spawn_duration_seconds") == 1
	})
	families, _ := m.registry.Gather()
	for _, f := range families {
		if f.GetName() == "spawner_spawn_duration_seconds" {
			sum := f.GetMetric()[0].GetHistogram().GetSampleSum()
			if sum <= 0 || sum > time.Since(began).Seconds() {
				t.Errorf("expected a spawn duration between 0 and %s, got %vs", time.Since(began), sum)
			}
			t.Logf("spawn duration on the real engine (first page load until the workspace answers): %.3fs", sum)
		}
	}
	text := scrape(t, m)
	for _, expected := range []string{`spawner_containers{state="running"} 1`, `spawner_spawns_total{action="create"} 1`} {
		if !strings.Contains(text, expected) {
			t.Errorf("expected %q in /metrics", expected)
		}
	}
}

// TestEngineRestartOnEngine: a workspace stopped by its engine (a clean
// engine shutdown, and an engine killed with everything in it, as by a
// power cut) is started again on the next page load. It runs an engine of
// its own.
func TestEngineRestartOnEngine(t *testing.T) {
	realEngine(t) // the checks of the shared engine's prerequisites
	e, err := startEngine()
	if err != nil {
		skipOrFail(t, err.Error())
	}
	dir := e.dir
	defer func() { e.stop() }()
	defer func() {
		if t.Failed() {
			log, _ := os.ReadFile(dir + "/dockerd.log")
			t.Log(lastN(string(log), 3000))
		}
	}()
	ctx := context.Background()
	restart := func(how string, end func()) {
		t.Helper()
		b := e.backend(t, DockerConfig{})
		if _, err := b.Inspect(ctx, "vscode-ren"); errors.Is(err, ErrNotFound) {
			if err := b.Create(ctx, "vscode-ren", "ren"); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Start(ctx, "vscode-ren"); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the workspace to listen", func() bool {
			lines, _ := b.Logs(ctx, "vscode-ren", 5)
			return strings.Contains(strings.Join(lines, "\n"), "listening on :8080")
		})
		end()
		e, err = startEngineIn(dir)
		if err != nil {
			t.Fatalf("%s: starting the engine again: %v", how, err)
		}
		b = e.backend(t, DockerConfig{})
		st, err := b.Inspect(ctx, "vscode-ren")
		if err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		t.Logf("after %s: %s, exit code %d", how, st.Status, st.ExitCode)
		if st.Status != StatusExited || !cleanExit(st) {
			t.Errorf("%s: expected a clean stop, got %+v", how, st)
		}
		h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil }})
		if code, body := pageLoadOf(h, "vscode-ren", "ren"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Starting it") {
			t.Errorf("%s: expected the loading page, got %d %s", how, code, lastN(body, 300))
		}
		waitIdle(t, h)
		if st, err := b.Inspect(ctx, "vscode-ren"); err != nil || st.Status != StatusRunning {
			t.Errorf("%s: expected the workspace running again, got %+v, %v", how, st, err)
		}
	}
	restart("an engine shutdown", func() { e.shutDown() })
	restart("an engine killed with its containers", func() { e.crash() })
}

// TestDeadOnEngine: a container the engine could not remove is "dead"; the
// next page load removes it and creates it again, with the user's volume.
// The removal is made to fail the way a busy or protected file makes it
// fail: an immutable file in the container's layer (vfs keeps it as a
// plain directory).
func TestDeadOnEngine(t *testing.T) {
	e := realEngine(t)
	if _, err := exec.LookPath("chattr"); err != nil {
		skipOrFail(t, "chattr not found (e2fsprogs)")
	}
	ctx := context.Background()
	b := e.backend(t, DockerConfig{Volume: "{name}-home"})
	e.cleanup(t, []string{"vscode-ded"}, []string{"vscode-ded-home"})
	if err := b.Create(ctx, "vscode-ded", "ded"); err != nil {
		t.Fatal(err)
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	_ = tw.WriteHeader(&tar.Header{Name: "stuck", Mode: 0o644, Size: 1})
	_, _ = tw.Write([]byte("x"))
	_ = tw.WriteHeader(&tar.Header{Name: "notes.txt", Mode: 0o644, Size: 4})
	_, _ = tw.Write([]byte("kept"))
	_ = tw.Close()
	if _, err := e.client.CopyToContainer(ctx, "vscode-ded", client.CopyToContainerOptions{DestinationPath: "/home/coder", Content: bytes.NewReader(archive.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CopyToContainer(ctx, "vscode-ded", client.CopyToContainerOptions{DestinationPath: "/tmp", Content: bytes.NewReader(archive.Bytes())}); err != nil {
		t.Fatal(err)
	}
	res, err := e.client.ContainerInspect(ctx, "vscode-ded", client.ContainerInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mountID, err := os.ReadFile(filepath.Join(e.dir, "root", "image", "vfs", "layerdb", "mounts", res.Container.ID, "mount-id"))
	if err != nil {
		t.Fatalf("finding the container's layer: %v", err)
	}
	stuck := filepath.Join(e.dir, "root", "vfs", "dir", string(mountID), "tmp", "stuck")
	if out, err := exec.Command("chattr", "+i", stuck).CombinedOutput(); err != nil {
		skipOrFail(t, fmt.Sprintf("chattr +i: %v: %s", err, out))
	}
	unstick := func() { _ = exec.Command("chattr", "-i", stuck).Run() }
	t.Cleanup(unstick)
	if _, err := e.client.ContainerRemove(ctx, "vscode-ded", client.ContainerRemoveOptions{Force: true}); err == nil {
		t.Fatal("expected the removal to fail")
	}
	st, err := b.Inspect(ctx, "vscode-ded")
	if err != nil || st.Status != StatusDead {
		t.Fatalf("expected a dead container, got %+v, %v", st, err)
	}
	unstick() // what an administrator would fix; the engine still says dead
	h := newTestHandler(t, b, HandlerConfig{Ready: func(context.Context, string) error { return nil }})
	if code, body := pageLoadOf(h, "vscode-ded", "ded"); code != http.StatusServiceUnavailable || !strings.Contains(body, `<span>Creating the container</span>`) {
		t.Fatalf("expected the loading page at Creating the container, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)
	st, err = b.Inspect(ctx, "vscode-ded")
	if err != nil || st.Status != StatusRunning {
		t.Fatalf("expected the re-created container running, got %+v, %v", st, err)
	}
	if got, err := readFile(t, e, "vscode-ded", "/home/coder/notes.txt"); err != nil || got != "kept" {
		t.Errorf("expected the volume kept through the re-create, got %q, %v", got, err)
	}
	if _, err := readFile(t, e, "vscode-ded", "/tmp/stuck"); err == nil {
		t.Errorf("expected a new container, but the old one's layer is still there")
	}
}

// TestPrefixesOnEngine: two spawners with different prefixes on one engine
// leave each other's containers alone: the list, the capacity and the idle
// stop of each count its own only; a container of the previous version
// (LabelSpawned without LabelPrefix) stays its prefix's.
func TestPrefixesOnEngine(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	vs := e.backend(t, DockerConfig{Prefix: "vscode"})
	ju := e.backend(t, DockerConfig{Prefix: "jupyter"})
	e.cleanup(t, []string{"jupyter-pia", "jupyter-pio", "vscode-pia", "vscode-old"}, nil)
	for _, name := range []string{"jupyter-pia", "jupyter-pio"} {
		if err := ju.Create(ctx, name, strings.TrimPrefix(name, "jupyter-")); err != nil {
			t.Fatal(err)
		}
		if err := ju.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	// A container made before LabelPrefix existed.
	if _, err := e.client.ContainerCreate(ctx, client.ContainerCreateOptions{
		Name:       "vscode-old",
		Config:     &container.Config{Image: workspaceImage, Labels: map[string]string{LabelSpawned: "true", LabelUser: "old"}},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(testNetwork)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := vs.Start(ctx, "vscode-old"); err != nil {
		t.Fatalf("expected the previous version's container managed, got %v", err)
	}
	names := func(b *dockerBackend) map[string]bool {
		list, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, st := range list {
			out[st.Name] = true
		}
		return out
	}
	if got := names(vs); got["jupyter-pia"] || got["jupyter-pio"] || !got["vscode-old"] {
		t.Errorf("expected vscode's list with vscode-old and without jupyter's, got %v", got)
	}
	if got := names(ju); !got["jupyter-pia"] || !got["jupyter-pio"] || got["vscode-old"] {
		t.Errorf("expected jupyter's list with its two and without vscode-old, got %v", got)
	}
	if err := vs.Stop(ctx, "jupyter-pia"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected vscode's spawner to refuse to stop jupyter-pia, got %v", err)
	}
	if err := ju.Stop(ctx, "vscode-old"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected jupyter's spawner to refuse to stop vscode-old, got %v", err)
	}

	// Capacity: room for one more vscode workspace, whatever jupyter runs.
	res, err := e.client.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, c := range res.Items {
		if len(c.Names) > 0 && strings.HasPrefix(c.Names[0], "/vscode-") {
			running++
		}
	}
	h := newTestHandler(t, vs, HandlerConfig{MaxRunning: running + 1, Ready: func(context.Context, string) error { return nil }})
	if code, body := pageLoadOf(h, "vscode-pia", "pia"); code != http.StatusServiceUnavailable || !strings.Contains(body, "Creating the container") {
		t.Fatalf("expected jupyter's containers not counted against vscode's maximum, got %d %s", code, lastN(body, 300))
	}
	waitIdle(t, h)

	// Idle stop: jupyter's, with no traffic, stops its own only.
	idle := &idleStopper{backend: ju, meter: ju, timeout: time.Second, every: 200 * time.Millisecond,
		metrics: newMetrics(nil), log: quietLogger(), now: time.Now}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); idle.run(runCtx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 30*time.Second, "jupyter's idle stop", func() bool {
		a, errA := ju.Inspect(ctx, "jupyter-pia")
		b, errB := ju.Inspect(ctx, "jupyter-pio")
		return errA == nil && errB == nil && a.Status == StatusExited && b.Status == StatusExited
	})
	// Two more rounds, in case it were about to stop vscode's too.
	time.Sleep(500 * time.Millisecond)
	for _, name := range []string{"vscode-pia", "vscode-old"} {
		if st, err := vs.Inspect(ctx, name); err != nil || st.Status != StatusRunning {
			t.Errorf("expected %s left running by jupyter's idle stop, got %+v, %v", name, st, err)
		}
	}
}

// volumeRacer lets the Docker client through to the engine, but creates the
// volume vol for someone else just before the client's own create of it: a
// racing create that wins between the inspect and the create.
type volumeRacer struct {
	e    *engine
	vol  string
	next http.RoundTripper
	once sync.Once
	err  error
}

func (r *volumeRacer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/volumes/create") {
		r.once.Do(func() {
			_, r.err = r.e.client.VolumeCreate(req.Context(), client.VolumeCreateOptions{
				Name: r.vol, Labels: map[string]string{LabelSpawned: "true", LabelPrefix: "vscode", LabelUser: "bob"},
			})
		})
	}
	return r.next.RoundTrip(req)
}

// TestDockerVolumeCreateRace: bob's create of the volume wins the race
// between amy's inspect (no volume) and amy's create; amy's create is
// refused, and no container of hers mounts bob's volume.
func TestDockerVolumeCreateRace(t *testing.T) {
	e := realEngine(t)
	ctx := context.Background()
	b := e.backend(t, DockerConfig{Volume: "{name}-home"})
	e.cleanup(t, []string{"vscode-rac"}, []string{"vscode-rac-home"})
	sock := strings.TrimPrefix(e.host, "unix://")
	racer := &volumeRacer{e: e, vol: "vscode-rac-home", next: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	c, err := client.New(client.WithHost(e.host), client.WithHTTPClient(&http.Client{Transport: racer}), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	b.client.Close()
	b.client = c
	if err := b.Create(ctx, "vscode-rac", "amy"); !errors.Is(err, ErrUnmanaged) {
		t.Errorf("expected amy's create refused, bob's volume won the race, got %v", err)
	}
	if racer.err != nil {
		t.Fatalf("bob's racing create: %v", racer.err)
	}
	if _, err := b.Inspect(ctx, "vscode-rac"); !errors.Is(err, ErrNotFound) {
		t.Errorf("expected no container created on bob's volume, got %v", err)
	}
}
