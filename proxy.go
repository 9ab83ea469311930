package director

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
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
// called when the container does not answer, before anything of a response
// is written, and when a protocol switch fails (see checkSwitch). The proxy's own messages go to the standard logger, on stderr:
// Yaegi cannot hand it a *log.Logger made by interpreted code.
func newReverseProxy(host string, transport http.RoundTripper, onError func(http.ResponseWriter, *http.Request, error)) *httputil.ReverseProxy {
	p := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: host})
	p.Transport = transport
	// Through a variable of the interface type: Yaegi cannot put an
	// interpreted value straight into a compiled interface field.
	var buffers httputil.BufferPool = sharedBuffers
	p.BufferPool = buffers
	p.ErrorHandler = onError
	p.ModifyResponse = checkSwitch
	return p
}

// errUnaskedSwitch is the error of a container that answered 101 Switching
// Protocols with another protocol than the request asked for, or to a
// request that asked for none.
var errUnaskedSwitch = errors.New("the container switched to a protocol the request did not ask for")

// answeredMark is set on the outgoing request's header once its container
// answered with the protocol switch it asked for, so that the proxy's
// ErrorHandler can tell a switch that failed afterwards from a container
// that did not answer. Its name holds a space, so it can never come from
// the network; the request has already been sent when it is set.
const answeredMark = "container-director switched"

// checkSwitch is every proxy's ModifyResponse. The proxy calls it for every
// response, before it writes anything: it lets all but 101 responses pass
// at the cost of one comparison. A 101 for another protocol than the one
// asked for is refused, which makes the proxy close the container's
// connection (it would stay open otherwise) and call the ErrorHandler.
func checkSwitch(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	return acceptSwitch(res)
}

// acceptSwitch checks a 101 against its request and marks the request as
// answered.
func acceptSwitch(res *http.Response) error {
	asked, got := upgradeType(res.Request.Header), upgradeType(res.Header)
	if asked == "" || !strings.EqualFold(asked, got) {
		return fmt.Errorf("%w: %q when %q was asked for", errUnaskedSwitch, got, asked)
	}
	res.Request.Header[answeredMark] = []string{"1"}
	return nil
}

// upgradeType returns the protocol a request or response switches to, or "".
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for _, token := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// errBodyHandedOn is what the proxy reads from a request body that was
// handed on to the spawner.
var errBodyHandedOn = errors.New("container-director: the request body was handed on to the spawner")

// sentBody stands in for a request body while it is proxied, and counts
// what of it was read: a request of which nothing was read can still go on
// to the spawner when the container fails, with its body intact.
type sentBody struct {
	mu      sync.Mutex
	body    io.ReadCloser
	read    int64
	reading bool // a Read is in progress
	handed  bool // the body went on to the spawner: Read fails
}

// sentBodyKey is the context key of a request's sentBody: the proxy hands
// its ErrorHandler a copy of the request with a body of its own.
type sentBodyKey struct{}

// trackBody returns the request with a sentBody in front of its body.
func trackBody(req *http.Request) *http.Request {
	b := &sentBody{body: req.Body}
	req = req.WithContext(context.WithValue(req.Context(), sentBodyKey{}, b))
	req.Body = b
	return req
}

// Read reads from the client's body, unless it was handed on.
func (b *sentBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.handed {
		b.mu.Unlock()
		return 0, errBodyHandedOn
	}
	b.reading = true
	b.mu.Unlock()
	n, err := b.body.Read(p)
	b.mu.Lock()
	b.reading = false
	b.read += int64(n)
	b.mu.Unlock()
	return n, err
}

// Close leaves the client's body open: the server closes it once the
// handler returns, and the spawner may still read it. The transport closes
// request bodies on every failure.
func (b *sentBody) Close() error {
	return nil
}

// reclaimBody returns the client's body of an outgoing request and whether
// nothing of it was read, so that the request can go on to the spawner.
// Once reclaimed, the proxy can read no more of it.
func reclaimBody(out *http.Request) (io.ReadCloser, bool) {
	b, ok := out.Context().Value(sentBodyKey{}).(*sentBody)
	if !ok {
		// A request without a body: the proxy sent none.
		return http.NoBody, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.read > 0 || b.reading {
		return nil, false
	}
	b.handed = true
	return b.body, true
}

// unproxy undoes, on the proxy's outgoing copy of a request, what the proxy
// did to it, so that it can go on to the spawner as it came in: the URL
// points nowhere again and the client the proxy appended to
// X-Forwarded-For is removed (Traefik's service proxy appends it again).
func unproxy(out *http.Request) {
	out.URL.Scheme, out.URL.Host = "", ""
	clientIP, _, err := net.SplitHostPort(out.RemoteAddr)
	if err != nil {
		return
	}
	// The proxy joined what the client sent, if anything (even an empty
	// value), and ", " before the client's address.
	xff := out.Header.Get("X-Forwarded-For")
	switch {
	case xff == clientIP:
		out.Header.Del("X-Forwarded-For")
	case strings.HasSuffix(xff, ", "+clientIP):
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
