package kubernetes

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/container-director/director/examples/spawner/kubeapitest"
)

// traefikVersion is the Traefik whose CRD definitions are applied; the same
// that scripts/traefik.sh builds.
const traefikVersion = "v3.6.12"

// TestExamplesWithTraefikCRDProvider applies Traefik's own CRD definitions
// and RBAC and every manifest of examples/kubernetes to a real API server,
// runs Traefik's Kubernetes CRD provider with the RBAC of its ServiceAccount,
// and sends requests through the IngressRoute of the example: a signed-in
// user reaches the server standing in for their Pod, a user whose Pod does
// not answer reaches the spawner, and one without a session is sent to sign
// in.
func TestExamplesWithTraefikCRDProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := kubeapitest.Binaries()
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kubeapitest.Start(bin, kubeapitest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("API server logs:\n%s", cluster.Logs(40))
		}
	}()
	admin := cluster.AdminConfig()

	// Traefik's CRDs and the RBAC of its documentation, as shipped.
	ref := filepath.Join(os.Getenv("KUBE_E2E_TRAEFIK_MODULE"), "docs", "content", "reference", "dynamic-configuration")
	for _, name := range []string{"kubernetes-crd-definition-v1.yml", "kubernetes-crd-rbac.yml"} {
		applyFile(ctx, t, admin, filepath.Join(ref, name))
	}
	// The ServiceAccount that the documentation's ClusterRoleBinding names.
	if err := kubeapitest.Apply(ctx, admin, []byte("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: traefik-ingress-controller\n  namespace: default\n")); err != nil {
		t.Fatal(err)
	}

	// examples/kubernetes, as shipped: the namespaces first, then the rest.
	examples := filepath.Join(repoRoot(), "examples", "kubernetes")
	applyFile(ctx, t, admin, filepath.Join(examples, "namespaces.yaml"))
	// The controller manager would create these; Pods need them.
	if err := cluster.EnsureDefaultServiceAccounts(ctx); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(examples, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	for _, f := range files {
		switch filepath.Base(f) {
		case "namespaces.yaml":
		case "traefik-values.yaml": // Helm values, read below
		default:
			applyFile(ctx, t, admin, f)
		}
	}

	// The endpoint controller's part: each Service's EndpointSlice holds the
	// address of the local server standing in for its Pod.
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []struct{ ns, svc, addr string }{
		{"container-director", "oauth2-proxy", authAddr},
		{"container-director", "container-spawner", spawnerAddr},
		{"workspaces", "vscode-alice", aliceAddr},
	} {
		if err := fillEndpointSlice(ctx, cs, ep.ns, ep.svc, ep.addr); err != nil {
			t.Fatal(err)
		}
	}

	// The Pods' stand-ins.
	alice := startServer(t, net.JoinHostPort(aliceAddr, "8080"), "alice's workspace")
	defer alice.Close()
	auth := startServer(t, net.JoinHostPort(authAddr, "4180"), "")
	auth.handler = oauth2ProxyStandIn
	defer auth.Close()
	spawner := startServer(t, net.JoinHostPort(spawnerAddr, "8090"), "spawner")
	spawner.status = http.StatusServiceUnavailable
	defer spawner.Close()

	// Traefik, configured as traefik-values.yaml configures the Helm chart,
	// with the plugin in local mode and the token of its ServiceAccount.
	values := readValues(t, filepath.Join(examples, "traefik-values.yaml"))
	token, err := cluster.ServiceAccountToken(ctx, "default", "traefik-ingress-controller")
	if err != nil {
		t.Fatal(err)
	}
	tr := startTraefik(t, os.Getenv("KUBE_E2E_TRAEFIK"), cluster, token, values)
	defer tr.stop()
	defer func() {
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("Traefik's last log lines:\n%s", tr.logs.Tail(60))
		}
	}()

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			// Traefik's default certificate: the route's tls is {}.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	base := "https://" + net.JoinHostPort(publicHost, tr.port)
	get := func(path, user string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Accept", "text/html")
		if user != "" {
			req.AddCookie(&http.Cookie{Name: "session", Value: user})
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}

	// Traefik reads the CRDs and loads the plugin: wait for the route.
	deadline := time.Now().Add(90 * time.Second)
	for {
		code, body, err := get("/", "alice")
		if err == nil && code == http.StatusOK && strings.Contains(body, "alice's workspace") {
			break
		}
		if !tr.alive() {
			t.Fatalf("Traefik exited")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the IngressRoute did not route alice to her Pod: %d %q %v", code, body, err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("signed-in user reaches her Pod", func(t *testing.T) {
		before := spawner.count()
		code, body, err := get("/some/page?x=1", "alice")
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET as alice: %d %v", code, err)
		}
		var got echoed
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("alice's Pod answered %q: %v", body, err)
		}
		host := net.JoinHostPort(publicHost, tr.port)
		if got.Server != "alice's workspace" || got.URI != "/some/page?x=1" || got.Host != host {
			t.Errorf("alice's Pod got %+v, want her request with Host %s", got, host)
		}
		if p := got.Header.Get("X-Forwarded-Proto"); p != "https" {
			t.Errorf("X-Forwarded-Proto at the Pod: %q, want https (Traefik's, unchanged)", p)
		}
		if u := got.Header.Get("X-Auth-Request-Preferred-Username"); u != "alice" {
			t.Errorf("identity header at the Pod: %q, want alice", u)
		}
		if spawner.count() != before {
			t.Errorf("the spawner got a request meant for alice's Pod")
		}
	})

	t.Run("user whose Pod does not answer reaches the spawner", func(t *testing.T) {
		before := spawner.count()
		code, body, err := get("/", "bob")
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "spawner") {
			t.Fatalf("GET as bob: %d %q %v, want the spawner's 503", code, body, err)
		}
		reqs := spawner.since(before)
		if len(reqs) != 1 {
			t.Fatalf("the spawner got %d requests, want 1", len(reqs))
		}
		if n := reqs[0].Header.Get("X-Container-Name"); n != "vscode-bob" {
			t.Errorf("X-Container-Name at the spawner: %q, want vscode-bob", n)
		}
		if u := reqs[0].Header.Get("X-Auth-Request-Preferred-Username"); u != "bob" {
			t.Errorf("identity header at the spawner: %q, want bob", u)
		}
	})

	t.Run("a forged identity header is replaced by the signed-in user's", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
		req.AddCookie(&http.Cookie{Name: "session", Value: "bob"})
		req.Header.Set("X-Auth-Request-Preferred-Username", "alice")
		before := spawner.count()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || spawner.count() != before+1 {
			t.Errorf("bob claiming to be alice: %d, want bob's spawner page (503)", resp.StatusCode)
		}
	})

	t.Run("without a session the user is sent to sign in", func(t *testing.T) {
		before := alice.count() + spawner.count()
		code, body, err := get("/private", "")
		if err != nil {
			t.Fatal(err)
		}
		if code != http.StatusUnauthorized || !strings.Contains(body, "sign-in page") || !strings.Contains(body, "rd=https://"+publicHost) {
			t.Errorf("GET without a session: %d %q, want OAuth2 Proxy's sign-in page with rd", code, body)
		}
		if alice.count()+spawner.count() != before {
			t.Errorf("a request without a session reached a Pod or the spawner")
		}
	})

	t.Run("/oauth2/ goes to OAuth2 Proxy", func(t *testing.T) {
		code, body, err := get("/oauth2/start", "")
		if err != nil || code != http.StatusOK || !strings.Contains(body, "oauth2-proxy: /oauth2/start") {
			t.Errorf("GET /oauth2/start: %d %q %v", code, body, err)
		}
	})

	t.Run("a Pod that stops answering hands over to the spawner", func(t *testing.T) {
		alice.Close()
		before := spawner.count()
		code, body, err := get("/", "alice")
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("GET as alice after her Pod stopped: %d %q %v, want the spawner's 503", code, body, err)
		}
		reqs := spawner.since(before)
		if len(reqs) != 1 || reqs[0].Header.Get("X-Container-Name") != "vscode-alice" {
			t.Errorf("the spawner got %+v, want one request for vscode-alice", reqs)
		}
	})

	// From here on the container-spawner Service's endpoint is the real
	// spawner, run as spawner.yaml's Deployment runs it, with its
	// ServiceAccount's token: a new user's visit creates her Pod, which
	// the node starts; a crash gives the error page.
	t.Run("the spawner's Kubernetes backend starts a new user's workspace", func(t *testing.T) {
		stop := startRealSpawner(ctx, t, cluster, examples)
		defer stop()
		if err := moveEndpointSlice(ctx, cs, "container-director", "container-spawner", realSpawner); err != nil {
			t.Fatal(err)
		}
		// Traefik follows the EndpointSlice: wait for the spawner's loading
		// page (HTML, 503) instead of the stand-in's text.
		var code int
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body, err = get("/", "carol")
			if err == nil && code == http.StatusServiceUnavailable && strings.Contains(body, "<html") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("carol's first visit: %d %.300q %v, want the spawner's loading page", code, body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		pod := waitForPod(ctx, t, cs, "vscode-carol")
		if pod.Labels["container-director.user"] != "carol" {
			t.Errorf("Pod vscode-carol labels %v, want carol's", pod.Labels)
		}
		if _, err := cs.CoreV1().PersistentVolumeClaims("workspaces").Get(ctx, "vscode-carol-home", metav1.GetOptions{}); err != nil {
			t.Errorf("carol's claim: %v", err)
		}

		// The node: the container runs, listens and is ready.
		carol := startServer(t, net.JoinHostPort(carolAddr, "8080"), "carol's workspace")
		defer carol.Close()
		setPodStatus(ctx, t, cs, "vscode-carol", corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}, true)
		deadline = time.Now().Add(30 * time.Second)
		for {
			code, body, err = get("/", "carol")
			if err == nil && code == http.StatusOK && strings.Contains(body, "carol's workspace") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("carol after her Pod started: %d %.300q %v, want her workspace", code, body, err)
			}
			time.Sleep(200 * time.Millisecond)
		}

		// The node: it crashes, with the end of its log in the status.
		carol.Close()
		setPodStatus(ctx, t, cs, "vscode-carol", corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 2, Reason: "Error", Message: "carol's workspace: fatal: cannot open /home/coder/.config",
			StartedAt: metav1.NewTime(time.Now().Add(-time.Minute)), FinishedAt: metav1.Now(),
		}}, false)
		code, body, err = get("/", "carol")
		if err != nil || code != http.StatusBadGateway {
			t.Fatalf("carol after a crash: %d %v, want the error page (502)", code, err)
		}
		for _, want := range []string{"exited", "fatal: cannot open /home/coder/.config"} {
			if !strings.Contains(body, want) {
				t.Errorf("the error page lacks %q:\n%.1500s", want, body)
			}
		}
	})
}

// oauth2ProxyStandIn answers as OAuth2 Proxy does for Traefik: /oauth2/auth
// with 202 and X-Auth-Request-Preferred-Username for a "session" cookie,
// 401 without one; /oauth2/sign_in with its sign-in page.
func oauth2ProxyStandIn(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/oauth2/auth":
		c, err := r.Cookie("session")
		if err != nil || c.Value == "" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		w.Header().Set("X-Auth-Request-Preferred-Username", c.Value)
		w.WriteHeader(http.StatusAccepted)
	case r.URL.Path == "/oauth2/sign_in":
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "sign-in page, rd=%s", r.URL.Query().Get("rd"))
	default:
		fmt.Fprintf(w, "oauth2-proxy: %s", r.URL.Path)
	}
}

func applyFile(ctx context.Context, t *testing.T, cfg *rest.Config, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := kubeapitest.Apply(ctx, cfg, data); err != nil {
		t.Fatalf("applying %s: %v", path, err)
	}
}

// fillEndpointSlice creates the EndpointSlice of Service ns/name with one
// ready endpoint at addr, serving every port of the Service on its target
// port, as the EndpointSlice controller would for a ready Pod.
func fillEndpointSlice(ctx context.Context, cs kubernetes.Interface, ns, name, addr string) error {
	svc, err := cs.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range svc.Spec.Ports {
		port := p.TargetPort.IntVal
		if port == 0 {
			// A named target port: the example names its container ports
			// after the Service's port, on the same number.
			port = p.Port
		}
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr(p.Name), Port: ptr(port), Protocol: ptr(corev1.ProtocolTCP)})
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name + "-test",
			Labels: map[string]string{discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "kubernetes-e2e-test"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)},
		}},
		Ports: ports,
	}
	_, err = cs.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the EndpointSlice of %s/%s: %w", ns, name, err)
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// values is what the test reads of examples/kubernetes/traefik-values.yaml.
type values struct {
	Experimental struct {
		Plugins map[string]struct {
			ModuleName string `yaml:"moduleName"`
		} `yaml:"plugins"`
	} `yaml:"experimental"`
	Providers struct {
		KubernetesCRD struct {
			AllowCrossNamespace bool `yaml:"allowCrossNamespace"`
		} `yaml:"kubernetesCRD"`
	} `yaml:"providers"`
}

func readValues(t *testing.T, path string) values {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v values
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if _, ok := v.Experimental.Plugins["director"]; !ok {
		t.Fatalf("%s: experimental.plugins.director is missing: middlewares.yaml names the plugin director", path)
	}
	return v
}

// echoed is what a stand-in server answers: who it is and what it got.
type echoed struct {
	Server string      `json:"server"`
	Host   string      `json:"host"`
	URI    string      `json:"uri"`
	Header http.Header `json:"header"`
}

// server stands in for a Pod: it records requests and answers with echoed,
// or with handler when set.
type server struct {
	name    string
	status  int
	handler http.HandlerFunc
	srv     *http.Server

	mu   sync.Mutex
	reqs []*http.Request
}

func startServer(t *testing.T, addr, name string) *server {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{name: name, status: http.StatusOK}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: s}
	go s.srv.Serve(ln)
	return s
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
	if s.handler != nil {
		s.handler(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	json.NewEncoder(w).Encode(echoed{Server: s.name, Host: r.Host, URI: r.RequestURI, Header: r.Header})
}

func (s *server) Close() { s.srv.Close() }

func (s *server) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reqs)
}

func (s *server) since(n int) []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs[n:]...)
}

// traefik is a Traefik process with the Kubernetes CRD provider.
type traefik struct {
	cmd    *exec.Cmd
	dir    string
	port   string
	logs   *kubeapitest.LogBuffer
	exited chan struct{}
}

const staticConfig = `global:
  checkNewVersion: false
  sendAnonymousUsage: false
log:
  level: DEBUG
  noColor: true
accessLog: {}
entryPoints:
  websecure:
    address: "127.0.0.1:%s"
providers:
  providersThrottleDuration: 100ms
  kubernetesCRD:
    endpoint: "%s"
    token: "%s"
    certAuthFilePath: "%s"
    allowCrossNamespace: %t
experimental:
  abortOnPluginFailure: true
  localPlugins:
    director:
      moduleName: "%s"
`

func startTraefik(t *testing.T, bin string, cluster *kubeapitest.Cluster, token string, v values) *traefik {
	t.Helper()
	if bin == "" {
		t.Fatal("no Traefik binary: KUBE_E2E_TRAEFIK is not set")
	}
	dir := t.TempDir()
	module := v.Experimental.Plugins["director"].ModuleName
	src := filepath.Join(dir, "plugins-local", "src", filepath.FromSlash(module))
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(repoRoot(), src); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, cluster.CA, 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	static := filepath.Join(dir, "traefik.yml")
	cfg := fmt.Sprintf(staticConfig, port, cluster.Host, token, ca, v.Providers.KubernetesCRD.AllowCrossNamespace, module)
	if err := os.WriteFile(static, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tr := &traefik{dir: dir, port: port, logs: &kubeapitest.LogBuffer{}, exited: make(chan struct{})}
	tr.cmd = exec.Command(bin, "--configFile="+static)
	tr.cmd.Dir = dir
	tr.cmd.Stdout, tr.cmd.Stderr = tr.logs, tr.logs
	tr.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("starting Traefik: %v", err)
	}
	go func() {
		tr.cmd.Wait()
		close(tr.exited)
	}()
	return tr
}

func (tr *traefik) stop() {
	tr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tr.exited:
	case <-time.After(10 * time.Second):
		tr.cmd.Process.Kill()
		<-tr.exited
	}
}

func (tr *traefik) alive() bool {
	select {
	case <-tr.exited:
		return false
	default:
		return true
	}
}

// startRealSpawner runs examples/spawner with the environment of
// spawner.yaml's Deployment, a kubeconfig with its ServiceAccount's token
// (as in its Pod), on realSpawner:8090, and returns its stop.
func startRealSpawner(ctx context.Context, t *testing.T, cluster *kubeapitest.Cluster, examples string) func() {
	t.Helper()
	token, err := cluster.ServiceAccountToken(ctx, "container-director", "container-spawner")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, cluster.CA, 0o600); err != nil {
		t.Fatal(err)
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster: {server: %q, certificate-authority: %q}
users:
  - name: container-spawner
    user: {token: %q}
contexts:
  - name: test
    context: {cluster: test, user: container-spawner}
current-context: test
`, cluster.Host, ca, token)
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "KUBECONFIG=" + kubeconfig,
		"SPAWNER_LISTEN=" + net.JoinHostPort(realSpawner, "8090")}
	for k, v := range deploymentEnv(t, filepath.Join(examples, "spawner.yaml")) {
		switch k {
		case "SPAWNER_IDLE_TIMEOUT":
			// Its counter needs pods/exec into a running container: a
			// kubelet's work.
			continue
		}
		env = append(env, k+"="+v)
	}
	logs := &kubeapitest.LogBuffer{}
	cmd := exec.Command(os.Getenv("KUBE_E2E_SPAWNER"))
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the spawner: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	return func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("the spawner's log:\n%s", logs.Tail(40))
		}
	}
}

// deploymentEnv returns the environment of the Deployment in path.
func deploymentEnv(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Env []struct {
								Name  string `yaml:"name"`
								Value string `yaml:"value"`
							} `yaml:"env"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			t.Fatalf("%s: no Deployment: %v", path, err)
		}
		if doc.Kind != "Deployment" {
			continue
		}
		env := map[string]string{}
		for _, c := range doc.Spec.Template.Spec.Containers {
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
		}
		return env
	}
}

// moveEndpointSlice points the test's EndpointSlice of Service ns/name at
// addr, as the EndpointSlice controller would when its Pod moves.
func moveEndpointSlice(ctx context.Context, cs kubernetes.Interface, ns, name, addr string) error {
	slice, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, name+"-test", metav1.GetOptions{})
	if err != nil {
		return err
	}
	slice.Endpoints[0].Addresses = []string{addr}
	_, err = cs.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{})
	return err
}

// waitForPod waits until the spawner has created the Pod name.
func waitForPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod, err := cs.CoreV1().Pods("workspaces").Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return pod
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spawner did not create the Pod %s: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setPodStatus plays the kubelet: the workspace container's state, and
// whether the Pod is ready.
func setPodStatus(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string, state corev1.ContainerState, ready bool) {
	t.Helper()
	pod, err := cs.CoreV1().Pods("workspaces").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	pod.Status.Phase = corev1.PodRunning
	if state.Terminated != nil {
		pod.Status.Phase = corev1.PodFailed
	}
	pod.Status.PodIP = carolAddr
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: cond, LastTransitionTime: now}}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image, ImageID: "sha256:test", Ready: ready, State: state,
	}}
	if _, err := cs.CoreV1().Pods("workspaces").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("the node setting %s's status: %v", name, err)
	}
}
