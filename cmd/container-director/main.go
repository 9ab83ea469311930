// Command container-director is the standalone Container Director: the
// original shape of the project, a container of its own behind OAuth2 Proxy.
//
// OAuth2 Proxy, in reverse-proxy mode with --pass-user-headers, hands every
// signed-in request to the director, which proxies it to the user's
// container, "http://<prefix>-<username>:<port>", or, when that container
// does not answer, to the Container Spawner at SPAWNER_HOST with
// X-Container-Name set. The routing is the Traefik plugin's own core,
// director.New; this command only reads the environment, serves HTTP and
// proxies to the spawner.
//
// It is configured by environment variables (see docs/standalone.md):
//
//	SPAWNER_HOST           required: host, host:port or http(s) URL
//	CONTAINER_HOST_PREFIX  required: containers are <prefix>-<name>
//	CONTAINER_PORT         8080
//	LISTEN_ADDR            :8080
//	CONTAINER_DOMAIN       empty
//	USERNAME_HEADER        X-Forwarded-Preferred-Username
//	USERNAME_POLICY        strict
//	DIAL_TIMEOUT           1s
//	PROBE_CACHE_TTL        10s
//	SHUTDOWN_TIMEOUT       30s
//
// A missing or bad variable makes it exit with status 2 and a one-line
// message naming the variable. SIGTERM or SIGINT stops it gracefully.
//
// Usage:
//
//	container-director           serve
//	container-director -version  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	director "github.com/container-director/director"
)

// version is the release, set at build time with
// -ldflags "-X main.version=v1.2.3".
var version = "dev"

// name is the name the director's log lines carry: "container-director[standalone]".
const name = "standalone"

// Server timeouts. There is no ReadTimeout or WriteTimeout: they bound the
// whole request or response, which would cut off WebSockets, long polls and
// long downloads.
const (
	// readHeaderTimeout bounds how long a client may take to send the
	// request headers (slowloris).
	readHeaderTimeout = 10 * time.Second
	// idleTimeout is how long a keep-alive connection may wait for its next
	// request.
	idleTimeout = 120 * time.Second
	// maxHeaderBytes bounds the request headers. OAuth2 Proxy's session
	// cookies can be several kilobytes; this is Go's default, made explicit.
	maxHeaderBytes = 1 << 20
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run serves until SIGTERM or SIGINT and returns the exit status: 0 after a
// graceful shutdown or -version, 1 when serving fails or the shutdown runs
// out of time, 2 for bad flags or a bad environment.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("container-director", flag.ContinueOnError)
	flags.SetOutput(stderr)
	showVersion := flags.Bool("version", false, "print the version and exit")
	flags.Usage = func() {
		fmt.Fprintf(stderr, "usage: container-director [-version]\n\nConfigured by environment variables; see docs/standalone.md.\n")
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "container-director: unexpected arguments %q: the configuration is read from the environment\n", flags.Args())
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "container-director %s\n", version)
		return 0
	}

	info := log.New(stdout, "container-director["+name+"]: ", 0)
	errs := log.New(stderr, "container-director["+name+"]: ", 0)

	env, err := readEnvironment(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "container-director: %v\n", err)
		return 2
	}
	handler, err := director.New(context.Background(), newSpawnerProxy(env.spawner, errs), env.plugin, name)
	if err != nil {
		fmt.Fprintf(stderr, "container-director: %s\n", envError(err))
		return 2
	}

	// Before listening: a signal that comes as soon as the port is open
	// must already stop the server gracefully.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(signals)

	ln, err := net.Listen("tcp", env.listenAddr)
	if err != nil {
		fmt.Fprintf(stderr, "container-director: LISTEN_ADDR: %v\n", err)
		return 1
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          errs,
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	info.Print(env.startupLine(ln.Addr().String()))

	var sig os.Signal
	select {
	case err := <-served:
		errs.Printf("serving: %v", err)
		return 1
	case sig = <-signals:
	}
	return shutdown(srv, served, sig, signals, env.shutdownTimeout, info, errs)
}

// shutdown stops srv gracefully: it closes the listener, so new connections
// are refused, and waits up to timeout for the requests in flight, or until
// a second signal. Hijacked connections (WebSockets) are not waited for:
// they end when the process exits.
func shutdown(srv *http.Server, served <-chan error, sig os.Signal, signals <-chan os.Signal, timeout time.Duration, info, errs *log.Logger) int {
	info.Printf("%v: shutting down, waiting up to %s for requests in flight", sig, timeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	go func() {
		select {
		case sig := <-signals:
			info.Printf("%v again: not waiting any longer", sig)
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
		errs.Printf("requests still in flight were cut off: %v", err)
		return 1
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		errs.Printf("serving: %v", err)
		return 1
	}
	info.Print("stopped")
	return 0
}
