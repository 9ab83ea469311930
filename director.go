// Package director is a Traefik middleware plugin that sends each signed-in
// user to their own container, "http://<prefix>-<username>:<port>", and
// hands the request on to the next handler (the Container Spawner) when that
// container does not answer.
package director

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"time"
)

var errEmptyUsername = errors.New("the user name is empty")

// statusClientClosedRequest is logged and answered when the client goes away
// before its container was reached (the code nginx and Traefik use).
const statusClientClosedRequest = 499

// director is the middleware built by New.
type director struct {
	next     http.Handler
	settings settings
	// usernameHeader is settings.usernameHeader, one field access nearer
	// for the hot path.
	usernameHeader string
	// room is how many characters of mapped name fit in the label after
	// "<prefix>-".
	room   int
	dialer *dialer // the probe's
	probes *prober
	debug  *log.Logger // decisions, on stdout (Traefik's debug level)
	errs   *log.Logger // failures, on stderr (Traefik's error level)
}

var _ http.Handler = (*director)(nil)

// New builds the director from its configuration. It validates every key;
// it does no I/O and starts no goroutines.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("container-director: no next handler to hand requests on to")
	}
	s, err := config.compile()
	if err != nil {
		return nil, err
	}
	dl := newDialer(s.dialTimeout)
	transport := sharedTransport(s.dialTimeout)
	d := &director{
		next:           next,
		settings:       s,
		usernameHeader: s.usernameHeader,
		room:           maxLabelLength - len(s.prefix) - 1,
		dialer:         dl,
		debug:          newLogger(os.Stdout, name),
		errs:           newLogger(os.Stderr, name),
	}
	d.probes = newProber(
		func(address string) (net.Conn, error) {
			return dl.DialContext(context.Background(), "tcp", address)
		},
		func(user, container, host string) *httputil.ReverseProxy {
			return newReverseProxy(host, transport, func(rw http.ResponseWriter, out *http.Request, err error) {
				d.proxyFailed(rw, out, user, container, host, err)
			})
		},
		s.probeCacheTTL,
	)
	return d, nil
}

func newLogger(w io.Writer, name string) *log.Logger {
	return log.New(w, fmt.Sprintf("container-director[%s]: ", name), 0)
}

// ServeHTTP routes the request to the user's container, or hands it on to
// the next handler when the container does not answer.
//
// This is the hot path: a container that answered within probeCacheTTL.
// Under Yaegi every call from compiled code into an interpreted function
// allocates its whole frame, every local and temporary of the function, and
// every call into compiled code costs a reflective call: ServeHTTP holds
// nothing but this path, with as few calls as it can, and leaves the rest
// to route.
func (d *director) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	// Only the director says which container the spawner should start.
	delete(req.Header, ContainerNameHeader)
	if v := req.Header[d.usernameHeader]; len(v) == 1 {
		// Only names that passed the policy are ever cached.
		if e, ok := d.probes.alive.Load(v[0]); ok {
			if c := e.(*containerEntry); time.Since(c.probedAt) < d.probes.ttl {
				c.proxy.ServeHTTP(rw, req)
				return
			}
		}
	}
	d.route(rw, req)
}

// route serves a request whose container is not known to be alive: it
// checks the user name, probes the container and proxies or hands on.
func (d *director) route(rw http.ResponseWriter, req *http.Request) {
	values := req.Header[d.usernameHeader]
	switch {
	case len(values) == 0:
		d.debug.Printf("no %s header: 401", d.usernameHeader)
		plainError(rw, http.StatusUnauthorized, "Unauthorized: the request carries no signed-in user. Sign in and try again.")
		return
	case len(values) > 1:
		d.debug.Printf("%d %s headers: 400", len(values), d.usernameHeader)
		plainError(rw, http.StatusBadRequest, "Bad Request: the request names more than one user.")
		return
	}
	username := values[0]
	mapped, err := containerLabel(username, d.settings.escape, d.room)
	if err != nil {
		d.debug.Printf("user=%q rejected: %v", username, err)
		plainError(rw, http.StatusBadRequest, "Bad Request: "+err.Error()+".")
		return
	}

	name := d.settings.prefix + "-" + mapped
	e, err := d.probes.probe(req.Context(), username, name, name+d.settings.hostSuffix)
	switch {
	case e != nil:
		d.debug.Printf("user=%q container=%q up: proxying", username, name)
		e.proxy.ServeHTTP(rw, req)
	case req.Context().Err() != nil:
		d.debug.Printf("user=%q container=%q client gone while probing", username, name)
		rw.WriteHeader(statusClientClosedRequest)
	default:
		d.debug.Printf("user=%q container=%q down (%v): handing on to the spawner", username, name, err)
		d.handOff(rw, req, name)
	}
}

// proxyFailed answers a request whose container did not answer the proxy;
// out is the proxy's outgoing copy of it, pointed at host. The proxy calls its ErrorHandler
// before it writes anything of a response, so the request can still go on
// to the spawner when it has no body; one with a body gets a 502, for its
// body may already be gone. A client that went away says nothing about the
// container, which stays cached.
func (d *director) proxyFailed(rw http.ResponseWriter, out *http.Request, user, container, host string, err error) {
	if out.Context().Err() != nil {
		d.debug.Printf("user=%q container=%q client gone: %v", user, container, err)
		rw.WriteHeader(statusClientClosedRequest)
		return
	}
	if out.URL.Host != host {
		// Not the outgoing copy: the proxy refused the request itself,
		// before any dial (an Upgrade header that names no protocol).
		d.debug.Printf("user=%q container=%q request refused by the proxy: 400: %v", user, container, err)
		plainError(rw, http.StatusBadRequest, "Bad Request: the request asks for an invalid protocol upgrade.")
		return
	}
	d.probes.forget(user)
	switch {
	case hasBody(out):
		d.errs.Printf("user=%q container=%q stopped answering, request with a body: 502: %v", user, container, err)
		plainError(rw, http.StatusBadGateway, "Bad Gateway: your container stopped answering while this request was sent. Reload the page to start it again.")
	default:
		d.errs.Printf("user=%q container=%q stopped answering: handing on to the spawner: %v", user, container, err)
		unproxy(out)
		d.handOff(rw, out, container)
	}
}

// handOff passes the request to the next handler, the spawner, naming the
// container it should start.
func (d *director) handOff(rw http.ResponseWriter, req *http.Request, container string) {
	dropLookalikes(req.Header, d.usernameHeader)
	req.Header[ContainerNameHeader] = []string{container}
	d.next.ServeHTTP(rw, req)
}

// hasBody reports whether the request was sent with a body.
func hasBody(req *http.Request) bool {
	return req.ContentLength != 0 || len(req.TransferEncoding) > 0
}

// dropLookalikes removes headers that some servers (CGI, WSGI, PHP) would
// read as X-Container-Name or as the identity header: the same names
// spelled with '_' for '-'. Go has already merged case variants.
func dropLookalikes(h http.Header, identity string) {
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		n := strings.ReplaceAll(k, "_", "-")
		if strings.EqualFold(n, ContainerNameHeader) || strings.EqualFold(n, identity) {
			delete(h, k)
		}
	}
}

// plainError answers with a short plain-text message.
func plainError(rw http.ResponseWriter, code int, msg string) {
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	http.Error(rw, msg, code)
}
