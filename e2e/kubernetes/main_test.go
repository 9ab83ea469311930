// Package kubernetes applies examples/kubernetes, as shipped, to a real
// Kubernetes API server (kube-apiserver and etcd, built by scripts/kube.sh)
// and runs Traefik v3.6.12's Kubernetes CRD provider against it, with the
// director loaded from this checkout in local plugin mode.
//
// There is no kubelet, no kube-proxy and no controller manager. The test
// plays them where the routing needs them: it creates the namespaces'
// "default" ServiceAccounts, fills each Service's EndpointSlice with the
// address of a local server standing in for its Pod, and serves those
// addresses itself. Names resolve through the private hosts file of
// internal/nstest, as cluster DNS would resolve them.
package kubernetes

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-director/director/examples/spawner/kubeapitest"
	"github.com/container-director/director/internal/nstest"
)

// Pod addresses. EndpointSlices may not hold loopback addresses, so the
// stand-ins listen on addresses of 10.244.0.0/24 that the test adds to the
// loopback interface of its own network namespace.
const (
	aliceAddr   = "10.244.0.2"  // vscode-alice: answers
	bobAddr     = "10.244.0.3"  // vscode-bob: nothing listens
	authAddr    = "10.244.0.10" // oauth2-proxy
	carolAddr   = "10.244.0.4"  // vscode-carol: the node starts it during the test
	spawnerAddr = "10.244.0.20" // container-spawner: a stand-in that records
	realSpawner = "10.244.0.21" // container-spawner: examples/spawner
)

// publicHost is the host of examples/kubernetes/ingressroute.yaml.
const publicHost = "workspaces.example.com"

func hosts() map[string]string {
	return map[string]string{
		"vscode-alice.workspaces.svc.cluster.local":              aliceAddr,
		"vscode-bob.workspaces.svc.cluster.local":                bobAddr,
		"vscode-carol.workspaces.svc.cluster.local":              carolAddr,
		"oauth2-proxy.container-director.svc.cluster.local":      authAddr,
		"container-spawner.container-director.svc.cluster.local": spawnerAddr,
		publicHost: "127.0.0.1",
	}
}

func TestMain(m *testing.M) {
	if !nstest.Inside() {
		// Outside the namespaces, where the Go module proxy is reachable.
		bin, err := run(filepath.Join(repoRoot(), "scripts", "traefik.sh"))
		if err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: building Traefik: %v\n", err)
			os.Exit(1)
		}
		os.Setenv("KUBE_E2E_TRAEFIK", bin)
		// Traefik's module, for its CRD definitions.
		out, err := run("go", "mod", "download", "-json", "github.com/traefik/traefik/v3@"+traefikVersion)
		var mod struct{ Dir string }
		if err == nil {
			err = json.Unmarshal([]byte(out), &mod)
		}
		if err != nil || mod.Dir == "" {
			fmt.Fprintf(os.Stderr, "FAIL: locating Traefik's module: %v: %s\n", err, out)
			os.Exit(1)
		}
		os.Setenv("KUBE_E2E_TRAEFIK_MODULE", mod.Dir)
		// The spawner, with its Kubernetes backend.
		spawner := filepath.Join(os.TempDir(), fmt.Sprintf("kube-e2e-spawner-%d", os.Getpid()))
		build := exec.Command("go", "build", "-o", spawner, ".")
		build.Dir = filepath.Join(repoRoot(), "examples", "spawner")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: building the spawner: %v\n", err)
			os.Exit(1)
		}
		os.Setenv("KUBE_E2E_SPAWNER", spawner)
		if _, err := kubeapitest.Binaries(); err != nil {
			if os.Getenv("CI") == "true" {
				fmt.Fprintf(os.Stderr, "FAIL: building kube-apiserver and etcd: %v\n", err)
				os.Exit(1)
			}
			fmt.Fprintf(os.Stderr, "SKIP: no kube-apiserver: %v\n", err)
			os.Exit(0)
		}
		code := nstest.Main(m, hosts())
		os.Remove(spawner)
		os.Exit(code)
	}
	for _, addr := range []string{aliceAddr, bobAddr, carolAddr, authAddr, spawnerAddr, realSpawner} {
		if out, err := exec.Command("ip", "addr", "add", addr+"/32", "dev", "lo").CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: adding %s to lo: %v: %s\n", addr, err, out)
			os.Exit(1)
		}
	}
	os.Exit(m.Run())
}

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

func repoRoot() string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return root
}
