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
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
)

var errEmptyUsername = errors.New("the user name is empty")

// statusClientClosedRequest is logged and answered when the client goes away
// before its container was reached (the code nginx and Traefik use).
const statusClientClosedRequest = 499

// director is the middleware built by New.
type director struct {
	next     http.Handler
	settings settings
	// room is how many characters of mapped name fit in the label after
	// "<prefix>-".
	room   int
	dialer *dialer
	probes *prober
	proxy  *httputil.ReverseProxy
	debug  *log.Logger // decisions, on stdout (Traefik's debug level)
	errs   *log.Logger // failures, on stderr (Traefik's error level)
}

var _ http.Handler = (*director)(nil)

// New builds the director from its configuration. It validates every key and
// builds the proxy that all its requests share, over the process's one
// transport; it does no I/O and starts no goroutines.
func New(_ context.Context, next http.Handler, config *Config, name string) (http.Handler, error) {
	if next == nil {
		return nil, errors.New("container-director: no next handler to hand requests on to")
	}
	s, err := config.compile()
	if err != nil {
		return nil, err
	}
	dl := newDialer(s.dialTimeout)
	d := &director{
		next:     next,
		settings: s,
		room:     maxLabelLength - len(s.prefix) - 1,
		dialer:   dl,
		probes:   newProber(dl, s.probeCacheTTL),
		debug:    newLogger(os.Stdout, name),
		errs:     newLogger(os.Stderr, name),
	}
	d.proxy = newReverseProxy(sharedTransport)
	return d, nil
}

func newLogger(w io.Writer, name string) *log.Logger {
	return log.New(w, fmt.Sprintf("container-director[%s]: ", name), 0)
}

// ServeHTTP routes the request to the user's container, or hands it on to
// the next handler when the container does not answer.
func (d *director) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	// Only the director says which container the spawner should start.
	delete(req.Header, ContainerNameHeader)

	values := req.Header[d.settings.usernameHeader]
	switch {
	case len(values) == 0:
		d.debug.Printf("no %s header: 401", d.settings.usernameHeader)
		plainError(rw, http.StatusUnauthorized, "Unauthorized: the request carries no signed-in user. Sign in and try again.")
		return
	case len(values) > 1:
		d.debug.Printf("%d %s headers: 400", len(values), d.settings.usernameHeader)
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

	if host, ok := d.probes.fresh(mapped); ok {
		d.serveContainer(rw, req, username, mapped, host)
		return
	}

	host := d.settings.prefix + "-" + mapped + d.settings.hostSuffix
	alive, err := d.probes.probe(req.Context(), mapped, host)
	switch {
	case alive:
		d.debug.Printf("user=%q container=%q up: proxying", username, d.containerName(mapped))
		d.serveContainer(rw, req, username, mapped, host)
	case req.Context().Err() != nil:
		d.debug.Printf("user=%q container=%q client gone while probing", username, d.containerName(mapped))
		rw.WriteHeader(statusClientClosedRequest)
	default:
		d.debug.Printf("user=%q container=%q down (%v): handing on to the spawner", username, d.containerName(mapped), err)
		d.handOff(rw, req, mapped)
	}
}

// attempt carries one proxied request's target and outcome between
// ServeHTTP and the proxy's Director and ErrorHandler.
type attempt struct {
	host   string
	dialer *dialer
	err    error
}

type attemptKey struct{}

// serveContainer proxies the request to the container at host. If the
// container does not answer, the request goes on to the spawner when it has
// no body, and gets a 502 otherwise: its body may already be gone.
func (d *director) serveContainer(rw http.ResponseWriter, req *http.Request, username, mapped, host string) {
	a := &attempt{host: host, dialer: d.dialer}
	d.proxy.ServeHTTP(rw, req.WithContext(context.WithValue(req.Context(), attemptKey{}, a)))
	if a.err == nil {
		return
	}
	// The proxy calls ErrorHandler before it writes anything of a response.
	d.probes.forget(mapped)
	container := d.containerName(mapped)
	switch {
	case req.Context().Err() != nil:
		d.debug.Printf("user=%q container=%q client gone: %v", username, container, a.err)
		rw.WriteHeader(statusClientClosedRequest)
	case hasBody(req):
		d.errs.Printf("user=%q container=%q stopped answering, request with a body: 502: %v", username, container, a.err)
		plainError(rw, http.StatusBadGateway, "Bad Gateway: your container stopped answering while this request was sent. Reload the page to start it again.")
	default:
		d.errs.Printf("user=%q container=%q stopped answering: handing on to the spawner: %v", username, container, a.err)
		d.handOff(rw, req, mapped)
	}
}

// handOff passes the request to the next handler, the spawner, naming the
// container it should start.
func (d *director) handOff(rw http.ResponseWriter, req *http.Request, mapped string) {
	dropLookalikes(req.Header, d.settings.usernameHeader)
	req.Header[ContainerNameHeader] = []string{d.containerName(mapped)}
	d.next.ServeHTTP(rw, req)
}

func (d *director) containerName(mapped string) string {
	return d.settings.prefix + "-" + mapped
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
