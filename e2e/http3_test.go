package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// h3Host is the site the HTTP/3 test asks for.
const h3Host = "h3.test"

// TestHTTP3KilledContainerGoesToSpawner asks a real Traefik http3 entry
// point, with quic-go as the client: quic-go's server gives every request
// without a Content-Length a length of -1, GETs included. After the cached
// container dies, a page load must still go on to the spawner, not get 502.
func TestHTTP3KilledContainerGoesToSpawner(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, roots := writeTestCert(t, dir, h3Host)
	ivan, err := startContainer("ivan", addrs["ivan"])
	if err != nil {
		t.Fatal(err)
	}
	defer ivan.stop()

	h3Addr := freeAddr()
	dynamic := fmt.Sprintf(`tls:
  certificates:
    - certFile: %q
      keyFile: %q
http:
  routers:
    h3:
      rule: Host(`+"`%s`"+`)
      entryPoints: [websecure]
      tls: {}
      middlewares: [director]
      service: spawner
  middlewares:
    director:
      plugin:
        director:
          containerHostPrefix: vscode
          dialTimeout: 1s
          probeCacheTTL: 30s
  services:
    spawner:
      loadBalancer:
        servers:
          - url: http://%s
`, certFile, keyFile, h3Host, env.spawner.addr)
	entryPoints := fmt.Sprintf("  websecure:\n    address: %q\n    http3: {}\n", h3Addr)
	tr, err := launchTraefikWith(os.Getenv("E2E_TRAEFIK"), []byte(dynamic), false, entryPoints)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.stop()

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: h3Host, NextProtos: []string{http3.NextProtoH3}},
		// Every host name goes to Traefik's UDP port.
		Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
			return quic.DialAddrEarly(ctx, h3Addr, tlsCfg, cfg)
		},
	}}
	get := func(path string) (*http.Response, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+h3Host+path, nil)
		req.Header.Set(identity, "ivan")
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, string(body), err
	}

	// Traefik loads the plugin and opens the UDP port.
	var last string
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, body, err := get("/")
		if err == nil && resp.StatusCode == http.StatusOK && strings.Contains(body, `"container":"ivan"`) {
			if resp.Proto != "HTTP/3.0" {
				t.Fatalf("answered over %s, want HTTP/3.0", resp.Proto)
			}
			break
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("status %d: %.200s", resp.StatusCode, body)
		}
		if time.Now().After(deadline) || !tr.alive() {
			t.Fatalf("no answer from ivan's container over HTTP/3: %s\nTraefik:\n%s", last, tr.logs.tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}

	ivan.stop()
	before := env.spawner.count()
	resp, body, err := get("/after-kill")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || body != "spawner: vscode-ivan" {
		t.Fatalf("GET over HTTP/3 after the container died: status %d body %q, want the spawner, not a 502", resp.StatusCode, body)
	}
	if got := env.spawner.since(before); len(got) != 1 || got[0].URI != "/after-kill" {
		t.Errorf("spawner got %+v", got)
	}
}

// writeTestCert writes a self-signed certificate for host and its key into
// dir, and returns their paths and a pool that trusts it.
func writeTestCert(t *testing.T, dir, host string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: host},
		DNSNames:              []string{host},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}
