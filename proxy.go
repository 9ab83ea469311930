package director

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"time"
)

// maxIdleConnsPerHost is how many idle keep-alive connections are kept to
// each container. A VS Code window opens many parallel requests; Go's default
// of 2 would make most of them dial anew.
const maxIdleConnsPerHost = 256

// copyBufferSize is the size of the buffers the proxy copies bodies with,
// the size io.Copy would allocate for each response.
const copyBufferSize = 32 << 10

// dialer opens the connections to containers, for the probe and the proxy.
type dialer struct {
	net net.Dialer
	// resolve, when set, maps a container's "host:port" to the address to
	// dial. Tests use it to reach local listeners by container name.
	resolve func(address string) string
}

func newDialer(timeout time.Duration) *dialer {
	return &dialer{net: net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}}
}

// DialContext dials address, a container's "host:port".
func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if d.resolve != nil {
		address = d.resolve(address)
	}
	return d.net.DialContext(ctx, network, address)
}

// sharedTransport carries the requests of every director in the process to
// the containers. Traefik calls New for each router and on every
// configuration reload, and never says when an instance is retired: a
// transport per instance would strand its idle connections (and their
// goroutines) on each reload, and make every reload dial every container
// anew. Each request's dialer, with its instance's dial timeout, travels in
// the request's context.
var sharedTransport = newTransport()

// sharedBuffers are the proxies' copy buffers, kept across reloads too.
var sharedBuffers = &bufferPool{}

func newTransport() *http.Transport {
	return &http.Transport{
		DialContext:         dialContainer,
		MaxIdleConnsPerHost: maxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// Bodies pass as the container sent them; asking for gzip would
		// make the transport decompress and the client lose the encoding.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: long polls and WebSockets must live.
	}
}

// dialContainer dials with the dialer of the director whose request it is.
func dialContainer(ctx context.Context, network, address string) (net.Conn, error) {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		return nil, errNoAttempt
	}
	return a.dialer.DialContext(ctx, network, address)
}

var errNoAttempt = errors.New("container-director: a request to a container without its director")

// newReverseProxy builds a director's proxy. The target of each request
// travels in its context as an *attempt; so does the proxy error, for
// ServeHTTP to act on. The proxy's own messages go to the standard logger,
// on stderr: Yaegi cannot hand it a *log.Logger made by interpreted code.
func newReverseProxy(transport http.RoundTripper) *httputil.ReverseProxy {
	// Through variables of the interface types: Yaegi cannot put an
	// interpreted value into a compiled interface field of a composite
	// literal.
	var buffers httputil.BufferPool = sharedBuffers
	return &httputil.ReverseProxy{
		Director:     direct,
		Transport:    transport,
		BufferPool:   buffers,
		ErrorHandler: recordError,
	}
}

// direct points the outgoing request at the container. The incoming Host
// and the X-Forwarded-Proto/-Host/-Port headers set by Traefik pass
// unchanged; the proxy appends the client to X-Forwarded-For.
func direct(out *http.Request) {
	a, _ := out.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		return
	}
	out.URL.Scheme = "http"
	out.URL.Host = a.host
	if _, ok := out.Header["User-Agent"]; !ok {
		// An empty value keeps the transport from adding its own.
		out.Header.Set("User-Agent", "")
	}
}

// recordError keeps the proxy error for ServeHTTP, which decides between the
// spawner and a 502. The proxy calls it before writing any response.
func recordError(rw http.ResponseWriter, out *http.Request, err error) {
	if a, _ := out.Context().Value(attemptKey{}).(*attempt); a != nil {
		a.err = err
		return
	}
	rw.WriteHeader(http.StatusBadGateway)
}

// bufferPool reuses the proxy's copy buffers instead of allocating one for
// every response.
type bufferPool struct {
	pool sync.Pool
}

func (b *bufferPool) Get() []byte {
	if v, ok := b.pool.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	buf = buf[:copyBufferSize]
	b.pool.Put(&buf)
}
