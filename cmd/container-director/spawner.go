package main

import (
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	director "github.com/container-director/director"
)

// statusClientClosedRequest is answered when the client goes away before the
// spawner answered (the code nginx and Traefik use).
const statusClientClosedRequest = 499

// spawnerDialTimeout is how long a connection to the spawner may take. The
// spawner is a single known service; when it does not answer within this,
// the user gets a 502 rather than a hanging page.
const spawnerDialTimeout = 10 * time.Second

// copyBufferSize is the size of the buffers the spawner proxy copies bodies
// with, the size io.Copy would allocate for each response.
const copyBufferSize = 32 << 10

// forwardedHeaders are the headers that describe the client's original
// request. The reverse proxy drops them before Rewrite; the director keeps
// what the proxy in front set, as the core does on the way to containers.
var forwardedHeaders = []string{"Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"}

// newSpawnerProxy returns the handler that the director hands requests on to
// when a container does not answer: a reverse proxy to the spawner at target
// that keeps the incoming Host and X-Forwarded-* headers, so that the
// spawner's loading page returns the user to the URL they asked for, and
// appends the client to X-Forwarded-For.
func newSpawnerProxy(target *url.URL, errs *log.Logger) *httputil.ReverseProxy {
	dialer := &net.Dialer{Timeout: spawnerDialTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		// No Proxy: the spawner is on the private network, whatever
		// HTTP_PROXY says.
		DialContext:         dialer.DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// Bodies pass as the spawner sent them; asking for gzip would make
		// the transport decompress and the client lose the encoding.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: the spawner may hold a request while it
		// starts a container. HTTP/1.1 only (a custom DialContext turns
		// HTTP/2 off), so that WebSocket upgrades pass.
	}
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = target.Scheme
			pr.Out.URL.Host = target.Host
			// pr.Out.Host stays the incoming Host. SetXForwarded appends
			// the client to the X-Forwarded-For it finds in pr.Out, which
			// the proxy has emptied: put the incoming list back first.
			if v, ok := pr.In.Header["X-Forwarded-For"]; ok {
				pr.Out.Header["X-Forwarded-For"] = v
			}
			pr.SetXForwarded()
			for _, h := range forwardedHeaders {
				if v, ok := pr.In.Header[h]; ok {
					pr.Out.Header[h] = v
				} else {
					delete(pr.Out.Header, h)
				}
			}
		},
		Transport:  transport,
		BufferPool: &bufferPool{},
		ErrorLog:   errs,
		ErrorHandler: func(rw http.ResponseWriter, out *http.Request, err error) {
			if out.Context().Err() != nil {
				rw.WriteHeader(statusClientClosedRequest)
				return
			}
			errs.Printf("container=%q spawner %s is not answering: 502: %v", out.Header.Get(director.ContainerNameHeader), target, err)
			rw.Header().Set("Cache-Control", "no-store")
			http.Error(rw, "Bad Gateway: the service that starts your container is not answering. Try again in a moment.", http.StatusBadGateway)
		},
	}
}

// bufferPool reuses the proxy's copy buffers instead of allocating one for
// every response.
type bufferPool struct {
	pool sync.Pool
}

// Get returns a buffer of copyBufferSize bytes.
func (b *bufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

// Put returns a buffer from Get to the pool.
func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.pool.Put(&buf)
}
