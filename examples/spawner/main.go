// Command spawner is a reference Container Spawner for Container Director.
//
// The director sends a request here, with X-Container-Name set, when a
// user's container does not answer. The spawner creates and starts that
// container and shows a loading page that reloads itself until the
// container answers (then the director proxies the reload there), or an
// error page with the container's state and logs and a restart button.
//
// Usage:
//
//	spawner [flags]              serve (see -h)
//	spawner workspace [flags]    run the built-in demo workspace
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "workspace" {
		os.Exit(runWorkspace(os.Args[2:], os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Getenv, os.Stderr))
}

// config is the spawner's command-line configuration.
type config struct {
	listen          string
	backend         string
	prefix          string
	usernameHeader  string
	startGrace      time.Duration
	containerPort   int
	dockerHost      string
	dockerAPI       string
	image           string
	network         string
	pull            bool
	processCommand  string
	processAddrs    string
	hostsFile       string
	workspaceDelay  time.Duration
	shutdownTimeout time.Duration
	theme           ThemeSettings
}

// parseConfig reads flags, with environment variables as their defaults.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	var envErrs []error
	str := func(env, def string) string {
		if v := getenv(env); v != "" {
			return v
		}
		return def
	}
	dur := func(env string, def time.Duration) time.Duration {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: parsing %q: %w", env, v, err))
				return def
			}
			return d
		}
		return def
	}
	num := func(env string, def int) int {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: parsing %q: %w", env, v, err))
				return def
			}
			return n
		}
		return def
	}
	boolean := func(env string, def bool) bool {
		if v := getenv(env); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				envErrs = append(envErrs, fmt.Errorf("%s: parsing %q: %w", env, v, err))
				return def
			}
			return b
		}
		return def
	}

	fs := flag.NewFlagSet("spawner", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", str("SPAWNER_LISTEN", ":8090"), "address to listen on (env SPAWNER_LISTEN)")
	fs.StringVar(&c.backend, "backend", str("SPAWNER_BACKEND", "docker"), "docker or process (env SPAWNER_BACKEND)")
	fs.StringVar(&c.prefix, "prefix", str("SPAWNER_CONTAINER_PREFIX", "vscode"), "container name prefix (env SPAWNER_CONTAINER_PREFIX)")
	fs.StringVar(&c.usernameHeader, "username-header", str("SPAWNER_USERNAME_HEADER", "X-Forwarded-Preferred-Username"), "identity header (env SPAWNER_USERNAME_HEADER)")
	fs.DurationVar(&c.startGrace, "start-grace", dur("SPAWNER_START_GRACE", 60*time.Second), "how long a running container may take to answer (env SPAWNER_START_GRACE)")
	fs.IntVar(&c.containerPort, "container-port", num("SPAWNER_CONTAINER_PORT", 8080), "port of every container (env SPAWNER_CONTAINER_PORT)")
	fs.StringVar(&c.dockerHost, "docker-host", str("DOCKER_HOST", "unix:///var/run/docker.sock"), "Docker Engine API address (env DOCKER_HOST)")
	fs.StringVar(&c.dockerAPI, "docker-api-version", str("SPAWNER_DOCKER_API_VERSION", "1.41"), "Docker Engine API version (env SPAWNER_DOCKER_API_VERSION)")
	fs.StringVar(&c.image, "image", str("SPAWNER_IMAGE", "codercom/code-server:latest"), "image of the user containers (env SPAWNER_IMAGE)")
	fs.StringVar(&c.network, "network", str("SPAWNER_NETWORK", ""), "network the containers join (env SPAWNER_NETWORK)")
	fs.BoolVar(&c.pull, "pull", boolean("SPAWNER_PULL", true), "pull the image when it is missing (env SPAWNER_PULL)")
	fs.StringVar(&c.processCommand, "process-command", str("SPAWNER_PROCESS_COMMAND", ""), "process backend: command of one container, with {addr} {port} {name} {user} (env SPAWNER_PROCESS_COMMAND)")
	fs.StringVar(&c.processAddrs, "process-addrs", str("SPAWNER_PROCESS_ADDRS", "127.0.1.1-127.0.1.254"), "process backend: loopback address range (env SPAWNER_PROCESS_ADDRS)")
	fs.StringVar(&c.hostsFile, "hosts-file", str("SPAWNER_HOSTS_FILE", ""), "process backend: hosts file to append \"ADDR NAME\" to (env SPAWNER_HOSTS_FILE)")
	fs.DurationVar(&c.workspaceDelay, "workspace-start-delay", dur("SPAWNER_WORKSPACE_START_DELAY", 0), "process backend: -start-delay of the built-in workspace (env SPAWNER_WORKSPACE_START_DELAY)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", dur("SPAWNER_SHUTDOWN_TIMEOUT", 10*time.Second), "how long to wait for requests on shutdown (env SPAWNER_SHUTDOWN_TIMEOUT)")
	themeFlags(fs, str, &c.theme)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if len(envErrs) > 0 {
		return c, errors.Join(envErrs...)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.backend != "docker" && c.backend != "process":
		return c, fmt.Errorf("backend: must be docker or process, got %q", c.backend)
	case c.containerPort < 1 || c.containerPort > 65535:
		return c, fmt.Errorf("container-port: must be 1-65535, got %d", c.containerPort)
	case c.startGrace <= 0:
		return c, fmt.Errorf("start-grace: must be positive, got %s", c.startGrace)
	case !validLabelStart(c.prefix):
		return c, fmt.Errorf("prefix: %q is not a valid DNS label start", c.prefix)
	case c.usernameHeader == "":
		return c, errors.New("username-header: must not be empty")
	}
	return c, nil
}

// run serves until SIGINT or SIGTERM and returns the exit code.
func run(args []string, getenv func(string) string, stderr io.Writer) int {
	c, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	var backend Backend
	var closeBackend func()
	switch c.backend {
	case "docker":
		backend, err = NewDockerBackend(DockerConfig{
			Host: c.dockerHost, APIVersion: c.dockerAPI, Image: c.image, Network: c.network, Pull: c.pull,
		})
		closeBackend = func() {}
	case "process":
		var pb *processBackend
		pb, err = NewProcessBackend(ProcessConfig{
			Command: strings.Fields(c.processCommand), StartDelay: c.workspaceDelay,
			Addrs: c.processAddrs, Port: c.containerPort, HostsFile: c.hostsFile, Logger: logger,
		})
		backend, closeBackend = pb, func() {
			if pb != nil {
				pb.Close()
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	defer closeBackend()

	theme, err := NewTheme(c.theme)
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	h, err := NewHandler(backend, HandlerConfig{
		Prefix: c.prefix, UsernameHeader: c.usernameHeader, StartGrace: c.startGrace, Logger: logger,
		ContainerPort: c.containerPort, Theme: theme,
	})
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	defer h.Close()

	srv := &http.Server{
		Addr:              c.listen,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	logger.Info("spawner listening", "listen", c.listen, "backend", c.backend, "prefix", c.prefix)
	select {
	case err := <-errc:
		logger.Error("serving", "error", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutting down", "error", err)
	}
	return 0
}
