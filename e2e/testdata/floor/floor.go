// Package floor is a Traefik plugin that does nothing but proxy every
// request to one fixed backend through its own httputil.ReverseProxy with
// pooled copy buffers and a tuned transport. Run interpreted by Traefik like
// the director, it is the floor for any interpreted director: the benchmarks
// compare the director with it, side by side.
package floor

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Config is the plugin's configuration.
type Config struct {
	// Backend is the URL every request goes to, e.g.
	// "http://vscode-alice:8080". Required.
	Backend string `json:"backend,omitempty"`
}

// CreateConfig returns the default configuration.
func CreateConfig() *Config {
	return &Config{}
}

type floor struct {
	proxy *httputil.ReverseProxy
}

// New builds the proxy to config.Backend.
func New(_ context.Context, _ http.Handler, config *Config, _ string) (http.Handler, error) {
	u, err := url.Parse(config.Backend)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("backend: %q is not a URL like \"http://host:port\"", config.Backend)
	}
	dialer := &net.Dialer{Timeout: time.Second, KeepAlive: 30 * time.Second}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	var buffers httputil.BufferPool = &bufferPool{}
	p.BufferPool = buffers
	return &floor{proxy: p}, nil
}

// ServeHTTP proxies the request to the backend.
func (f *floor) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	f.proxy.ServeHTTP(rw, req)
}

// bufferPool reuses the proxy's 32 KiB copy buffers.
type bufferPool struct {
	pool sync.Pool
}

// Get returns a copy buffer.
func (b *bufferPool) Get() []byte {
	if v := b.pool.Get(); v != nil {
		return *v.(*[]byte)
	}
	return make([]byte, 32<<10)
}

// Put keeps buf for reuse.
func (b *bufferPool) Put(buf []byte) {
	b.pool.Put(&buf)
}
