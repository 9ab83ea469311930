package director

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
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

// Transports are shared by every director in the process with the same dial
// timeout. Traefik calls New for each router and on every configuration
// reload, and never says when an instance is retired: a transport per
// instance would strand its idle connections (and their goroutines) on each
// reload, and make every reload dial every container anew.
var (
	transportsMu sync.Mutex
	transports   = make(map[time.Duration]*http.Transport)
)

// sharedTransport returns the process's transport for a dial timeout.
func sharedTransport(dialTimeout time.Duration) *http.Transport {
	transportsMu.Lock()
	defer transportsMu.Unlock()
	t := transports[dialTimeout]
	if t == nil {
		dl := newDialer(dialTimeout)
		t = newTransport(func(ctx context.Context, network, address string) (net.Conn, error) {
			return dl.DialContext(ctx, network, address)
		})
		transports[dialTimeout] = t
	}
	return t
}

// sharedBuffers are the proxies' copy buffers, kept across reloads too.
var sharedBuffers = &bufferPool{}

// newTransport returns a transport for proxying to containers. dial is a
// closure, not a method value: Yaegi cannot assign a method value to a
// func field of a compiled type.
func newTransport(dial func(ctx context.Context, network, address string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: maxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		// Bodies pass as the container sent them; asking for gzip would
		// make the transport decompress and the client lose the encoding.
		DisableCompression:    true,
		ExpectContinueTimeout: time.Second,
		// No ResponseHeaderTimeout: long polls and WebSockets must live.
	}
}

// newReverseProxy builds the proxy for one container, at host.
//
// Its Director is the compiled one of httputil.NewSingleHostReverseProxy, so
// no interpreted code runs between the proxy and the transport. It leaves
// the incoming Host and the X-Forwarded-Proto/-Host/-Port headers set by
// Traefik as they are, and appends the client to X-Forwarded-For. onError is
// called, before anything of a response is written, when the container does
// not answer. The proxy's own messages go to the standard logger, on stderr:
// Yaegi cannot hand it a *log.Logger made by interpreted code.
func newReverseProxy(host string, transport http.RoundTripper, onError func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: host})
	p.Transport = transport
	// Through a variable of the interface type: Yaegi cannot put an
	// interpreted value straight into a compiled interface field.
	var buffers httputil.BufferPool = sharedBuffers
	p.BufferPool = buffers
	p.ErrorHandler = onError
	return p
}

// unproxy undoes, on the proxy's outgoing copy of a request, what the proxy
// did to it, so that it can go on to the spawner as it came in: the URL
// points nowhere again and the client the proxy appended to
// X-Forwarded-For is removed (Traefik's service proxy appends it again).
func unproxy(out *http.Request) {
	out.URL.Scheme, out.URL.Host = "", ""
	if out.Body == nil {
		out.Body = http.NoBody
	}
	clientIP, _, err := net.SplitHostPort(out.RemoteAddr)
	if err != nil {
		return
	}
	xff := out.Header.Get("X-Forwarded-For")
	switch {
	case xff == clientIP:
		out.Header.Del("X-Forwarded-For")
	case len(xff) > len(clientIP)+2 && xff[len(xff)-len(clientIP)-2:] == ", "+clientIP:
		out.Header.Set("X-Forwarded-For", xff[:len(xff)-len(clientIP)-2])
	}
}

// bufferPool reuses the proxy's copy buffers instead of allocating one for
// every response.
type bufferPool struct {
	pool sync.Pool
}

// Get and Put are called from compiled code: under Yaegi each call
// allocates the function's frame, so they are kept to a statement or two.

// Get returns a copy buffer.
func (b *bufferPool) Get() []byte {
	if v := b.pool.Get(); v != nil {
		return *v.(*[]byte)
	}
	return make([]byte, copyBufferSize)
}

// Put keeps buf for reuse. The proxy returns only buffers from Get.
func (b *bufferPool) Put(buf []byte) {
	b.pool.Put(&buf)
}
