// Package kubeapitest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver, built from the Go module proxy by scripts/kube.sh and
// started on loopback with self-signed serving certificates, a static admin
// token, ServiceAccount tokens signed by a key made here, and RBAC.
//
// There is no kubelet, scheduler or controller manager: nothing runs Pods,
// fills EndpointSlices or creates the "default" ServiceAccounts. Tests that
// need those play the part themselves, through the API, as those components
// would.
package kubeapitest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// BinDirEnv names the variable that holds the directory of kube-apiserver and
// etcd, once Binaries has found or built them.
const BinDirEnv = "KUBEAPITEST_BIN_DIR"

// Binaries returns the directory that holds kube-apiserver and etcd: the one
// in BinDirEnv if set, else the one scripts/kube.sh builds (or finds in its
// cache). The script is looked for in the working directory and its parents.
func Binaries() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	script := ""
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kube.sh")); err == nil {
			script = filepath.Join(dir, "scripts", "kube.sh")
			break
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("scripts/kube.sh not found above %s", wd)
		}
	}
	cmd := exec.Command(script)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", script, err)
	}
	dir := strings.TrimSpace(string(out))
	os.Setenv(BinDirEnv, dir)
	return dir, nil
}

// Options says how to start the cluster. The zero value serves on 127.0.0.1.
type Options struct {
	// BindAddress is the address kube-apiserver listens on and advertises.
	// Default: 127.0.0.1.
	BindAddress string
	// ExtraServingIPs are more IP addresses the serving certificate names.
	ExtraServingIPs []net.IP
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Host is the API server's URL, e.g. https://127.0.0.1:40123.
	Host string
	// CA is the PEM certificate that signed the serving certificate.
	CA []byte
	// AdminToken is a static token of a member of system:masters.
	AdminToken string

	dir   string
	procs []*process
}

type process struct {
	name   string
	cmd    *exec.Cmd
	logs   *LogBuffer
	exited chan struct{}
}

// Start runs etcd and kube-apiserver from binDir with their state in a new
// temporary directory, and waits until the API server is ready.
func Start(binDir string, opts Options) (*Cluster, error) {
	if opts.BindAddress == "" {
		opts.BindAddress = "127.0.0.1"
	}
	dir, err := os.MkdirTemp("", "kubeapitest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, AdminToken: randomToken()}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()

	bind := net.ParseIP(opts.BindAddress)
	if bind == nil {
		return nil, fmt.Errorf("BindAddress: %q is not an IP address", opts.BindAddress)
	}
	if err := c.writeCredentials(append([]net.IP{bind, net.IPv4(127, 0, 0, 1)}, opts.ExtraServingIPs...)); err != nil {
		return nil, err
	}

	var ports [3]string
	for i, host := range []string{"127.0.0.1", "127.0.0.1", opts.BindAddress} {
		if ports[i], err = freePort(host); err != nil {
			return nil, err
		}
	}
	clientPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	etcdClient := "http://127.0.0.1:" + clientPort
	etcdPeer := "http://127.0.0.1:" + peerPort
	if err := c.start("etcd", filepath.Join(binDir, "etcd"),
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		// A test's data need not survive a crash of the machine.
		"--unsafe-no-fsync",
		"--log-level=warn",
	); err != nil {
		return nil, err
	}

	c.Host = "https://" + net.JoinHostPort(opts.BindAddress, apiPort)
	if err := c.start("kube-apiserver", filepath.Join(binDir, "kube-apiserver"),
		"--etcd-servers="+etcdClient,
		"--bind-address="+opts.BindAddress,
		"--advertise-address="+opts.BindAddress,
		"--secure-port="+apiPort,
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--tls-cert-file="+filepath.Join(dir, "serving.crt"),
		"--tls-private-key-file="+filepath.Join(dir, "serving.key"),
		"--client-ca-file="+filepath.Join(dir, "ca.crt"),
		"--token-auth-file="+filepath.Join(dir, "tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(dir, "sa.key"),
		"--authorization-mode=RBAC",
		"--anonymous-auth=false",
		"--service-cluster-ip-range=10.96.0.0/16",
		// Nothing serves the "kubernetes" Service's endpoints here, and a
		// loopback address is not a valid endpoint.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"-v=1",
	); err != nil {
		return nil, err
	}
	if err := c.waitReady(90 * time.Second); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Stop ends both processes and removes their state.
func (c *Cluster) Stop() {
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	c.procs = nil
	os.RemoveAll(c.dir)
}

// Logs returns the last lines of both processes' output, for a failing test.
func (c *Cluster) Logs(lines int) string {
	var b strings.Builder
	for _, p := range c.procs {
		fmt.Fprintf(&b, "--- %s ---\n%s\n", p.name, p.logs.Tail(lines))
	}
	return b.String()
}

// AdminConfig returns a client configuration with the admin token.
func (c *Cluster) AdminConfig() *rest.Config {
	return c.TokenConfig(c.AdminToken)
}

// TokenConfig returns a client configuration that authenticates with token.
func (c *Cluster) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA},
		QPS:             100,
		Burst:           200,
	}
}

// ServiceAccountToken returns a token of the ServiceAccount namespace/name,
// which must exist, from the TokenRequest API, as the kubelet would mount in
// a Pod.
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return "", err
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token of %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// EnsureDefaultServiceAccounts creates the ServiceAccount "default" in every
// namespace that lacks one, as the controller manager would; without it the
// API server refuses Pods there.
func (c *Cluster) EnsureDefaultServiceAccounts(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(c.AdminConfig())
	if err != nil {
		return err
	}
	nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, ns := range nss.Items {
		_, err := cs.CoreV1().ServiceAccounts(ns.Name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s/default: %w", ns.Name, err)
		}
	}
	return nil
}

// Apply creates every object of a multi-document YAML manifest, in order, as
// `kubectl create -f` would. Kinds the server does not know yet (custom
// resources whose definitions were just created) are retried for a while.
func Apply(ctx context.Context, cfg *rest.Config, manifest []byte) error {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("decoding the manifest: %w", err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		gvk := obj.GroupVersionKind()
		deadline := time.Now().Add(30 * time.Second)
		for {
			err = create(ctx, mapper, dyn, &obj)
			if err == nil || !meta.IsNoMatchError(err) || time.Now().After(deadline) {
				break
			}
			mapper.Reset()
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("creating %s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
	}
}

func create(ctx context.Context, mapper meta.RESTMapper, dyn dynamic.Interface, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
		}
		ri = dyn.Resource(m.Resource).Namespace(ns)
	}
	_, err = ri.Create(ctx, obj, metav1.CreateOptions{})
	return err
}

func (c *Cluster) start(name, bin string, args ...string) error {
	p := &process{name: name, logs: &LogBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// Never outlive the test binary, even when it is killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	c.procs = append(c.procs, p)
	return nil
}

// waitReady polls /readyz with the admin token.
func (c *Cluster) waitReady(timeout time.Duration) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CA)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			select {
			case <-p.exited:
				return fmt.Errorf("%s exited: %s\n%s", p.name, p.cmd.ProcessState, c.Logs(30))
			default:
			}
		}
		req, _ := http.NewRequest(http.MethodGet, c.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.AdminToken)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("status %d: %.300s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("kube-apiserver not ready after %s: %s\n%s", timeout, last, c.Logs(30))
}

// writeCredentials writes a CA, a serving certificate for ips, the
// ServiceAccount signing key and the static token file.
func (c *Cluster) writeCredentials(ips []net.IP) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubeapitest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  ips,
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	c.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":      c.CA,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER}),
		"serving.key": pemKey(servingKey),
		"sa.key":      pemKey(saKey),
		"tokens.csv":  []byte(c.AdminToken + ",admin,admin,system:masters\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemKey(k *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err) // a P-256 key always marshals
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

func randomToken() string {
	b := make([]byte, 24)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// freePort returns a port free on host at the time.
func freePort(host string) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("finding a free port on %s: %w", host, err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port, nil
}

// LogBuffer collects a process's output, safe for concurrent writes; the
// tests of processes beside the API server (Traefik, the spawner) use it too.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Tail returns the last n lines written.
func (l *LogBuffer) Tail(n int) string {
	l.mu.Lock()
	s := l.b.String()
	l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
