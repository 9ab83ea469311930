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
)

var errEmptyUsername = errors.New("the user name is empty")

// statusClientClosedRequest is logged and answered when the client goes away
// before its container was reached (the code nginx and Traefik use).
const statusClientClosedRequest = 499

// director is the middleware built by New.
type director struct {
	next     http.Handler
	settings settings
	// usernameHeader is the first of settings.usernameHeaders, one field
	// access nearer for the hot path.
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
		usernameHeader: s.usernameHeaders[0],
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
		// Entries leave the map when their TTL is over.
		if e, ok := d.probes.alive.Load(v[0]); ok {
			if req.Body != http.NoBody {
				req = trackBody(req)
			}
			e.(*containerEntry).proxy.ServeHTTP(rw, req)
			return
		}
	}
	d.route(rw, req)
}

// route serves a request whose container is not known to be alive: it
// checks the user name, probes the container and proxies or hands on.
func (d *director) route(rw http.ResponseWriter, req *http.Request) {
	username, header, ok := d.identify(rw, req.Header)
	if !ok {
		return
	}
	mapped, err := containerLabel(username, d.settings.escape, d.room)
	if err != nil {
		d.debug.Printf("user=%q (%s) rejected: %v", username, header, err)
		plainError(rw, http.StatusBadRequest, "Bad Request: "+err.Error()+".")
		return
	}
	if v, ok := d.probes.alive.Load(username); ok {
		// Named by a header after the first: not seen by ServeHTTP.
		proxyTo(v.(*containerEntry), rw, req)
		return
	}

	name := d.settings.prefix + "-" + mapped
	e, err := d.probes.probe(req.Context(), username, name, name+d.settings.hostSuffix)
	switch {
	case e != nil:
		d.debug.Printf("user=%q container=%q up: proxying", username, name)
		proxyTo(e, rw, req)
	case req.Context().Err() != nil:
		d.debug.Printf("user=%q container=%q client gone while probing", username, name)
		rw.WriteHeader(statusClientClosedRequest)
	default:
		d.debug.Printf("user=%q container=%q down (%v): handing on to the spawner", username, name, err)
		d.handOff(rw, req, name)
	}
}

// identify returns the user name of the first identity header that holds a
// non-empty one, and that header's name. When there is none, or that header
// is repeated, it answers the request itself and returns ok false: 401 when
// no identity header came at all, 400 otherwise.
func (d *director) identify(rw http.ResponseWriter, h http.Header) (username, header string, ok bool) {
	present := false
	for _, header = range d.settings.usernameHeaders {
		values := h[header]
		if len(values) == 0 {
			continue
		}
		present = true
		if len(values) > 1 {
			d.debug.Printf("%d %s headers: 400", len(values), header)
			plainError(rw, http.StatusBadRequest, "Bad Request: the request names more than one user.")
			return "", header, false
		}
		if values[0] != "" {
			return values[0], header, true
		}
	}
	if !present {
		d.debug.Printf("none of %s: 401", strings.Join(d.settings.usernameHeaders, ", "))
		plainError(rw, http.StatusUnauthorized, "Unauthorized: the request carries no signed-in user. Sign in and try again.")
		return "", "", false
	}
	d.debug.Printf("%s empty: 400", strings.Join(d.settings.usernameHeaders, ", "))
	plainError(rw, http.StatusBadRequest, "Bad Request: "+errEmptyUsername.Error()+".")
	return "", "", false
}

// proxyTo proxies the request to a container found alive.
func proxyTo(c *containerEntry, rw http.ResponseWriter, req *http.Request) {
	if req.Body != http.NoBody {
		req = trackBody(req)
	}
	c.proxy.ServeHTTP(rw, req)
}

// proxyFailed answers a request that the proxy could not pass on; out is
// the proxy's outgoing copy of it, pointed at host.
//
// When the container did not answer, the proxy calls it before anything of
// a response is written: the request goes on to the spawner if nothing of
// its body reached the container (whatever its ContentLength says: HTTP/3
// requests carry -1 even for a GET), and gets a 502 if part of it did. When
// the container did answer (with a protocol switch the request did not ask
// for, or the switch failed after the connection was taken over), the
// failure is this request's own: a 502, or nothing at all once the
// connection is no longer an HTTP one, and the container stays cached. A
// client that went away says nothing about the container either.
func (d *director) proxyFailed(rw http.ResponseWriter, out *http.Request, user, container, host string, err error) {
	if _, answered := out.Header[answeredMark]; answered || errors.Is(err, errUnaskedSwitch) {
		if rw.Header().Get("Upgrade") != "" {
			// The proxy copies the 101's headers to rw only once it took
			// the connection over: nothing may be written to it now.
			d.errs.Printf("user=%q container=%q protocol switch failed after the takeover: %v", user, container, err)
			return
		}
		d.errs.Printf("user=%q container=%q answered, but its answer cannot be passed on: 502: %v", user, container, err)
		plainError(rw, http.StatusBadGateway, "Bad Gateway: your container answered in a way that cannot be passed on.")
		return
	}
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
	body, unsent := reclaimBody(out)
	if !unsent {
		d.errs.Printf("user=%q container=%q stopped answering while the request body was sent: 502: %v", user, container, err)
		plainError(rw, http.StatusBadGateway, "Bad Gateway: your container stopped answering while this request was sent. Reload the page to start it again.")
		return
	}
	d.errs.Printf("user=%q container=%q stopped answering: handing on to the spawner: %v", user, container, err)
	unproxy(out)
	out.Body = body
	d.handOff(rw, out, container)
}

// handOff passes the request to the next handler, the spawner, naming the
// container it should start.
func (d *director) handOff(rw http.ResponseWriter, req *http.Request, container string) {
	dropLookalikes(req.Header, d.settings.usernameHeaders)
	req.Header[ContainerNameHeader] = []string{container}
	d.next.ServeHTTP(rw, req)
}

// dropLookalikes removes headers that some servers (CGI, WSGI, PHP) would
// read as X-Container-Name or as an identity header: the same names
// spelled with '_' for '-'. Go has already merged case variants.
func dropLookalikes(h http.Header, identities []string) {
	for k := range h {
		if strings.IndexByte(k, '_') < 0 {
			continue
		}
		n := strings.ReplaceAll(k, "_", "-")
		if strings.EqualFold(n, ContainerNameHeader) {
			delete(h, k)
			continue
		}
		for _, identity := range identities {
			if strings.EqualFold(n, identity) {
				delete(h, k)
				break
			}
		}
	}
}

// plainError answers with a short plain-text message.
func plainError(rw http.ResponseWriter, code int, msg string) {
	h := rw.Header()
	h.Set("Cache-Control", "no-store")
	http.Error(rw, msg, code)
}
