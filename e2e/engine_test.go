package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A real Docker Engine for the tests that run the examples: Debian's dockerd
// started by scripts/dockerd.sh --share-net in this test binary's own network
// namespace (internal/nstest made it), so its bridges and published ports are
// reachable from here and from nowhere else. No registry is reachable, so
// every image the examples name is made here by `docker import` of a tar of
// the binaries TestMain built outside the namespaces.

// Environment variables that carry the static binaries TestMain builds for
// the images (see buildImageTools).
const (
	envSpawner = "E2E_SPAWNER"
	// envDockerSetup says why the docker CLI or compose is missing, if so.
	envDockerSetup = "E2E_DOCKER_SETUP"
)

// buildImageTools builds, outside the namespaces and into dir, what the
// images need that buildSignInTools does not: the spawner (examples/spawner, a module of its
// own) as a static binary, and the compose CLI plugin (scripts/compose.sh).
// A machine without the docker CLI is not an error here: the tests that need
// it say why they cannot run.
func buildImageTools(dir string) error {
	bin := filepath.Join(dir, "spawner")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, ".")
	cmd.Dir = filepath.Join(repoRoot(), "examples", "spawner")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building examples/spawner: %v\n%s", err, out)
	}
	os.Setenv(envSpawner, bin)

	cmd = exec.Command(filepath.Join(repoRoot(), "scripts", "compose.sh"))
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Setenv(envDockerSetup, fmt.Sprintf("scripts/compose.sh: %v: %s", err, strings.TrimSpace(string(out))))
	}
	return nil
}

// engine is a private Docker Engine, running.
type engine struct {
	dir    string // scripts/dockerd.sh's DIR
	host   string // DOCKER_HOST
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

// needEngine skips the test when a private engine cannot run here, and fails
// it under CI=true, where it must.
func needEngine(t *testing.T) {
	t.Helper()
	var reason string
	switch {
	case os.Getenv(envDockerSetup) != "":
		reason = os.Getenv(envDockerSetup)
	case os.Geteuid() != 0:
		reason = "dockerd needs root"
	default:
		for _, tool := range []string{"dockerd", "docker", "unshare"} {
			if _, err := exec.LookPath(tool); err != nil {
				reason = tool + " is not installed (apt-get install docker.io)"
				break
			}
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("a private Docker Engine cannot run, and under CI=true it must: %s", reason)
	}
	t.Skipf("a private Docker Engine cannot run here: %s", reason)
}

// startEngine starts a private engine and waits until it answers. The test's
// cleanup stops it, with every container it runs, and removes its data.
func startEngine(t *testing.T) *engine {
	t.Helper()
	needEngine(t)
	began := time.Now()
	// Not t.TempDir: the engine's files are root's and many (vfs); they are
	// removed here once the engine is gone.
	dir, err := os.MkdirTemp("", "e2e-engine-")
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{dir: dir, host: "unix://" + filepath.Join(dir, "docker.sock"), out: &syncBuffer{}, exited: make(chan struct{})}
	e.cmd = exec.Command(filepath.Join(repoRoot(), "scripts", "dockerd.sh"), "--share-net", dir)
	e.cmd.Stdout, e.cmd.Stderr = e.out, e.out
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := e.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("starting scripts/dockerd.sh: %v", err)
	}
	go func() { e.cmd.Wait(); close(e.exited) }()
	t.Cleanup(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.exited:
		case <-time.After(60 * time.Second):
			t.Errorf("the private engine did not stop within 60 s of SIGTERM:\n%s", e.logTail(20))
			e.cmd.Process.Kill()
			<-e.exited
		}
		os.RemoveAll(dir)
	})

	deadline := time.After(90 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "ready")); err == nil {
			break
		}
		select {
		case <-e.exited:
			msg := fmt.Sprintf("scripts/dockerd.sh exited before the engine answered:\n%s\n%s", e.out.tail(20), e.logTail(20))
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		case <-deadline:
			t.Fatalf("the private engine did not answer within 90 s:\n%s", e.logTail(30))
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("private Docker Engine up in %s (%s)", time.Since(began).Round(time.Millisecond), dir)
	return e
}

// logTail returns the end of dockerd's log.
func (e *engine) logTail(n int) string {
	data, _ := os.ReadFile(filepath.Join(e.dir, "dockerd.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- dockerd.log:\n" + strings.Join(lines, "\n")
}

// command returns the docker CLI with args, talking to this engine.
func (e *engine) command(args ...string) *exec.Cmd {
	cmd := exec.Command("docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+e.host)
	cmd.Dir = repoRoot()
	return cmd
}

// docker runs the docker CLI and returns its stdout, or an error with its
// stderr.
func (e *engine) docker(args ...string) (string, error) {
	cmd := e.command(args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// socketGID is the group of the engine's socket, the DOCKER_GID the compose
// examples ask for.
func (e *engine) socketGID(t *testing.T) string {
	t.Helper()
	fi, err := os.Stat(filepath.Join(e.dir, "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(fi.Sys().(*syscall.Stat_t).Gid)
}

// imageSpec is an image made from binaries of this machine.
type imageSpec struct {
	name string
	// files maps a path in the image to a binary on this machine; the
	// shared libraries it links (ldd) come along.
	files map[string]string
	// changes are docker import's --change instructions: ENTRYPOINT, USER,
	// EXPOSE, WORKDIR as the image the examples name has them.
	changes []string
}

// The base of every image: the nonroot user of distroless images (uid
// 65532), /tmp, and name lookup through /etc/hosts, then DNS.
var imageBase = map[string]string{
	"/etc/passwd":        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
	"/etc/group":         "root:x:0:\nnonroot:x:65532:\n",
	"/etc/nsswitch.conf": "hosts: files dns\n",
}

// importImage streams the image's files as a tar into docker import.
func (e *engine) importImage(spec imageSpec) error {
	args := []string{"import"}
	for _, c := range spec.changes {
		args = append(args, "--change", c)
	}
	args = append(args, "-", spec.name)
	cmd := e.command(args...)
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		err := writeImageTar(pw, spec)
		pw.CloseWithError(err)
		written <- err
	}()
	cmd.Stdin = pr
	out, err := cmd.CombinedOutput()
	pr.Close() // a writer still going, if docker import ended early, stops
	if werr := <-written; werr != nil {
		return fmt.Errorf("image %s: %w", spec.name, werr)
	}
	if err != nil {
		return fmt.Errorf("docker import %s: %v: %s", spec.name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// writeImageTar writes the image's file system: imageBase, the files and
// the libraries they load.
func writeImageTar(w io.Writer, spec imageSpec) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	mkdirs := func(path string) error {
		var parts []string
		for d := filepath.Dir(path); d != "/"; d = filepath.Dir(d) {
			parts = append([]string{d}, parts...)
		}
		for _, d := range parts {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	}
	add := func(path string, mode int64, data []byte) error {
		if err := mkdirs(path); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(path, "/"), Mode: mode, Size: int64(len(data))}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "tmp/", Mode: 0o1777}); err != nil {
		return err
	}
	for path, text := range imageBase {
		if err := add(path, 0o644, []byte(text)); err != nil {
			return err
		}
	}
	added := map[string]bool{}
	for path, src := range spec.files {
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := add(path, 0o755, data); err != nil {
			return err
		}
		libs, err := sharedLibraries(src)
		if err != nil {
			return err
		}
		for _, lib := range libs {
			if added[lib] {
				continue
			}
			added[lib] = true
			data, err := os.ReadFile(lib) // follows the symlink: the library itself
			if err != nil {
				return err
			}
			if err := add(lib, 0o755, data); err != nil {
				return err
			}
		}
	}
	return tw.Close()
}

var lddPath = regexp.MustCompile(`(?m)(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists the libraries ldd says bin loads, the dynamic loader
// included; none for a static binary.
func sharedLibraries(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %v: %s", bin, err, out)
	}
	var libs []string
	for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
		libs = append(libs, m[1])
	}
	return libs, nil
}

// Images under the names the compose examples use, and the OIDC provider's.
const (
	imageTraefik     = "traefik:v3.6.12"
	imageOAuth2Proxy = "quay.io/oauth2-proxy/oauth2-proxy:v7.15.6"
	imageSpawner     = "container-director-spawner:dev"
	imageWorkspace   = "container-director-workspace:dev"
	imageDirector    = "container-director:dev"
	imageProvider    = "container-director-oidc-provider:e2e"
)

// importExampleImages makes every image the examples run.
func importExampleImages(t *testing.T, e *engine) {
	t.Helper()
	began := time.Now()
	nonroot := "USER 65532:65532"
	specs := []imageSpec{
		// The official image's entrypoint runs traefik with the command's
		// flags, as root, from /.
		{imageTraefik, map[string]string{"/usr/local/bin/traefik": os.Getenv("E2E_TRAEFIK")},
			[]string{`ENTRYPOINT ["/usr/local/bin/traefik"]`, "EXPOSE 80", "WORKDIR /"}},
		// Distroless, nonroot, /bin/oauth2-proxy.
		{imageOAuth2Proxy, map[string]string{"/bin/oauth2-proxy": os.Getenv(envOAuth2Proxy)},
			[]string{`ENTRYPOINT ["/bin/oauth2-proxy"]`, nonroot, "EXPOSE 4180"}},
		// examples/spawner/Dockerfile's two targets.
		{imageSpawner, map[string]string{"/usr/local/bin/spawner": os.Getenv(envSpawner)},
			[]string{`ENTRYPOINT ["/usr/local/bin/spawner"]`, nonroot, "EXPOSE 8090"}},
		{imageWorkspace, map[string]string{"/usr/local/bin/spawner": os.Getenv(envSpawner)},
			[]string{`ENTRYPOINT ["/usr/local/bin/spawner", "workspace", "-listen", ":8080"]`, nonroot, "EXPOSE 8080"}},
		// The repository's Dockerfile: the standalone director.
		{imageDirector, map[string]string{"/usr/local/bin/container-director": os.Getenv(envDirector)},
			[]string{`ENTRYPOINT ["/usr/local/bin/container-director"]`, nonroot, "EXPOSE 8080"}},
		{imageProvider, map[string]string{"/usr/local/bin/oidc-provider": os.Getenv(envOIDCProvider)},
			[]string{`ENTRYPOINT ["/usr/local/bin/oidc-provider"]`, nonroot, "EXPOSE 9000"}},
	}
	for _, s := range specs {
		for _, src := range s.files {
			if src == "" {
				t.Fatalf("image %s: a binary is missing: TestMain builds them outside the namespaces", s.name)
			}
		}
		if err := e.importImage(s); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("imported %d images in %s", len(specs), time.Since(began).Round(time.Millisecond))
}
