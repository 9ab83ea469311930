package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// The tests against a real Docker Engine share one private engine, started
// by scripts/dockerd.sh inside its own pid, mount and network namespaces
// (Debian's docker.io, Engine 20.10 here). Its bridge addresses exist only
// in that network namespace; the tests reach containers there only, by
// running this test binary under nsenter (see httpGetInEngine).
//
// No registry is reachable: the images are made offline by importing a tar
// of one static binary each.
const (
	// workspaceImage runs the spawner's own workspace mode on :8080.
	workspaceImage = "spawner-test-workspace:latest"
	// exiterImage runs testdata/exiter: lines on stdout and stderr, then
	// the exit code it is given.
	exiterImage = "spawner-test-exiter:latest"
	// testNetwork is the user-defined network the containers join.
	testNetwork = "users"
)

// engine is the private engine.
type engine struct {
	dir    string
	host   string // DOCKER_HOST
	nsPID  string // a process in the engine's namespaces
	cmd    *exec.Cmd
	exited chan struct{} // closed when dockerd.sh has exited
	client *client.Client
}

var sharedEngine struct {
	once sync.Once
	e    *engine
	err  error
}

// skipOrFail skips the test with reason, except under CI=true, where the
// real engine is required and its absence fails the test.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("real Docker Engine required under CI=true: %s", reason)
	}
	t.Skipf("no real Docker Engine: %s", reason)
}

// realEngine returns the shared private engine, starting it on first use.
func realEngine(t *testing.T) *engine {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "needs root to create namespaces")
	}
	for _, tool := range []string{"dockerd", "unshare", "nsenter", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, tool+" not found (apt-get install docker.io util-linux iproute2)")
		}
	}
	sharedEngine.once.Do(func() { sharedEngine.e, sharedEngine.err = startEngine() })
	if sharedEngine.err != nil {
		skipOrFail(t, sharedEngine.err.Error())
	}
	return sharedEngine.e
}

// startEngine starts an engine and loads the test images and network.
func startEngine() (*engine, error) {
	dir, err := os.MkdirTemp("", "spawner-engine-")
	if err != nil {
		return nil, err
	}
	e, err := startEngineIn(dir)
	if err != nil {
		return nil, err
	}
	if err := e.setUp(); err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// startEngineIn starts an engine on dir, which may hold the data of an
// engine that ran there before.
func startEngineIn(dir string) (*engine, error) {
	script, err := filepath.Abs("../../scripts/dockerd.sh")
	if err != nil {
		return nil, err
	}
	// A pid file left by an engine that was killed would stop this one.
	_ = os.Remove(filepath.Join(dir, "dockerd.pid"))
	// Nor may the last run's marks be taken for this one's.
	_ = os.Remove(filepath.Join(dir, "ready"))
	_ = os.Remove(filepath.Join(dir, "ns.pid"))
	logFile, err := os.OpenFile(filepath.Join(dir, "script.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	e := &engine{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock")}
	e.cmd = exec.Command("bash", script, dir)
	e.cmd.Stdout, e.cmd.Stderr = logFile, logFile
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", script, err)
	}
	exited := make(chan struct{})
	e.exited = exited
	go func() { _ = e.cmd.Wait(); close(exited) }()
	deadline := time.After(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(dir, "script.log"))
			return nil, fmt.Errorf("dockerd.sh exited: %s", lastN(string(log), 2000))
		case <-deadline:
			e.stop()
			return nil, errors.New("the engine did not answer within 90s")
		case <-time.After(100 * time.Millisecond):
		}
	}
	pid, err := os.ReadFile(filepath.Join(dir, "ns.pid"))
	if err != nil {
		e.stop()
		return nil, err
	}
	e.nsPID = strings.TrimSpace(string(pid))
	e.client, err = client.New(client.WithHost(e.host), client.WithAPIVersionNegotiation())
	if err != nil {
		e.stop()
		return nil, err
	}
	return e, nil
}

// setUp builds the static binaries, imports them as images, and creates
// the network.
func (e *engine) setUp() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(e.dir, "bin")
	for _, b := range []struct{ out, pkg string }{{"spawner", "."}, {"exiter", "./testdata/exiter"}} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(bin, b.out), b.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %v\n%s", b.pkg, err, out)
		}
	}
	for _, img := range []struct{ ref, binary, entrypoint string }{
		{workspaceImage, "spawner", `ENTRYPOINT ["/spawner", "workspace", "-listen", ":8080"]`},
		{exiterImage, "exiter", `ENTRYPOINT ["/exiter"]`},
	} {
		if err := e.importBinary(ctx, img.ref, filepath.Join(bin, img.binary), img.entrypoint); err != nil {
			return err
		}
	}
	if _, err := e.client.NetworkCreate(ctx, testNetwork, client.NetworkCreateOptions{Driver: "bridge"}); err != nil {
		return fmt.Errorf("creating network %s: %w", testNetwork, err)
	}
	return nil
}

// importBinary imports an image whose only file is binary, at the root.
func (e *engine) importBinary(ctx context.Context, ref, binary, entrypoint string) error {
	data, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"tmp/", "home/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: filepath.Base(binary), Mode: 0o755, Size: int64(len(data))}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := e.client.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{entrypoint}})
	if err != nil {
		return fmt.Errorf("importing %s: %w", ref, err)
	}
	defer res.Close()
	_, err = io.Copy(io.Discard, res)
	return err
}

// stop ends the engine (and its containers) and removes its files.
func (e *engine) stop() {
	e.shutDown()
	_ = os.RemoveAll(e.dir)
}

// shutDown ends the engine as a service manager does (SIGTERM: the engine
// stops its containers first) and keeps its files.
func (e *engine) shutDown() {
	if e.client != nil {
		_ = e.client.Close()
	}
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(60 * time.Second):
			e.crash()
		}
	}
}

// crash ends the engine and everything in its namespaces at once, as a
// power cut does, and keeps its files.
func (e *engine) crash() {
	if e.client != nil {
		_ = e.client.Close()
	}
	// The first process of a pid namespace takes every other one with it.
	var pid int
	fmt.Sscan(e.nsPID, &pid)
	if pid > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	select {
	case <-e.exited:
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
	}
	// A reboot empties /run, where the exec root lives: its pid files
	// would otherwise name processes of the next pid namespace.
	_ = os.RemoveAll(filepath.Join(e.dir, "exec"))
}

// stopSharedEngine is called by TestMain after the tests.
func stopSharedEngine() {
	if sharedEngine.e != nil {
		sharedEngine.e.stop()
	}
}

// backend returns a Docker backend on the engine; the test removes the
// containers and volumes it made.
func (e *engine) backend(t *testing.T, cfg DockerConfig) *dockerBackend {
	t.Helper()
	cfg.Host = e.host
	if cfg.Network == "" {
		cfg.Network = testNetwork
	}
	if cfg.Image == "" {
		cfg.Image = workspaceImage
	}
	b, err := NewDockerBackend(cfg)
	if err != nil {
		t.Fatalf("NewDockerBackend: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// cleanup removes the named containers and volumes when the test ends.
func (e *engine) cleanup(t *testing.T, containers, volumes []string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, c := range containers {
			_, _ = e.client.ContainerRemove(ctx, c, client.ContainerRemoveOptions{Force: true})
		}
		for _, v := range volumes {
			_, _ = e.client.VolumeRemove(ctx, v, client.VolumeRemoveOptions{Force: true})
		}
	})
}

// address is the container's address on the test network (meaningful only
// inside the engine's network namespace).
func (e *engine) address(t *testing.T, name string) string {
	t.Helper()
	res, err := e.client.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	if err != nil {
		t.Fatalf("inspecting %s: %v", name, err)
	}
	if res.Container.NetworkSettings == nil || res.Container.NetworkSettings.Networks[testNetwork] == nil {
		t.Fatalf("%s is not on %s", name, testNetwork)
	}
	addr := res.Container.NetworkSettings.Networks[testNetwork].IPAddress
	if !addr.IsValid() {
		t.Fatalf("%s has no address on %s", name, testNetwork)
	}
	return addr.String()
}

// httpGetInEngine GETs url from inside the engine's network namespace, the
// only place where its bridge addresses exist: the test binary runs itself
// there under nsenter (TestMain's SPAWNER_TEST_HTTPGET hook).
func (e *engine) httpGetInEngine(url string, repeat int, every time.Duration) (string, error) {
	cmd := exec.Command("nsenter", "--net=/proc/"+e.nsPID+"/ns/net", os.Args[0])
	cmd.Env = append(os.Environ(), "SPAWNER_TEST_HTTPGET="+url,
		fmt.Sprintf("SPAWNER_TEST_HTTPGET_REPEAT=%d", repeat), "SPAWNER_TEST_HTTPGET_EVERY="+every.String())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// httpGetHook is TestMain's SPAWNER_TEST_HTTPGET hook: GET the URL
// (SPAWNER_TEST_HTTPGET_REPEAT times, SPAWNER_TEST_HTTPGET_EVERY apart),
// print the last body, exit 1 on failure.
func httpGetHook(url string) int {
	repeat := 1
	fmt.Sscan(os.Getenv("SPAWNER_TEST_HTTPGET_REPEAT"), &repeat)
	every, _ := time.ParseDuration(os.Getenv("SPAWNER_TEST_HTTPGET_EVERY"))
	c := &http.Client{Timeout: 3 * time.Second}
	var body []byte
	for i := 0; i < repeat; i++ {
		if i > 0 {
			time.Sleep(every)
		}
		resp, err := c.Get(url)
		if err != nil {
			fmt.Println(err)
			return 1
		}
		body, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fmt.Printf("status %d: %s\n", resp.StatusCode, body)
			return 1
		}
	}
	fmt.Print(string(body))
	return 0
}
