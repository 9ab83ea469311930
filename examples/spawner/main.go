// Command spawner is a reference Container Spawner for Container Director.
//
// The director sends a request here, with X-Container-Name set, when a
// user's container does not answer. The spawner creates and starts that
// container and shows a loading page that follows the start and loads the
// page the user asked for once the container answers (then the director
// proxies it there), or an error page with the container's state and logs
// and a restart button.
//
// Usage:
//
//	spawner [flags]              serve (see -h)
//	spawner workspace [flags]    run the built-in demo workspace
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	units "github.com/docker/go-units"
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

	volume        string
	volumePath    string
	memory        int64
	nanoCPUs      int64
	pidsLimit     int64
	env           []string
	command       []string
	restartPolicy string
	stopTimeout   time.Duration
	maxRunning    int
	idleTimeout   time.Duration
	tokenKey      []byte
	metricsListen string

	kubeNamespace    string
	kubeStorageSize  string
	kubeStorageClass string
	kubeconfig       string

	theme ThemeSettings
}

// parseConfig reads flags, with environment variables as their defaults.
// defaultImage is the workspace image when SPAWNER_IMAGE is not set: VS Code
// in the browser, pinned.
const defaultImage = "codercom/code-server:4.100.3"

// defaultImageCommand is the default image's arguments when SPAWNER_COMMAND
// is empty: no password page of code-server's own (the director's users are
// signed in already), listening where the director dials.
var defaultImageCommand = []string{"--auth", "none", "--bind-addr", "0.0.0.0:8080", "."}

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
	fs.StringVar(&c.backend, "backend", str("SPAWNER_BACKEND", "docker"), "docker, kubernetes or process (env SPAWNER_BACKEND)")
	fs.StringVar(&c.prefix, "prefix", str("SPAWNER_CONTAINER_PREFIX", "vscode"), "container name prefix (env SPAWNER_CONTAINER_PREFIX)")
	fs.StringVar(&c.usernameHeader, "username-header", str("SPAWNER_USERNAME_HEADER", "X-Forwarded-Preferred-Username"), "identity header (env SPAWNER_USERNAME_HEADER)")
	fs.DurationVar(&c.startGrace, "start-grace", dur("SPAWNER_START_GRACE", 60*time.Second), "how long a running container may take to answer (env SPAWNER_START_GRACE)")
	fs.IntVar(&c.containerPort, "container-port", num("SPAWNER_CONTAINER_PORT", 8080), "port of every container (env SPAWNER_CONTAINER_PORT)")
	fs.StringVar(&c.dockerHost, "docker-host", str("DOCKER_HOST", "unix:///var/run/docker.sock"), "Docker Engine API address (env DOCKER_HOST)")
	fs.StringVar(&c.dockerAPI, "docker-api-version", str("SPAWNER_DOCKER_API_VERSION", ""), "Docker Engine API version; empty negotiates (env SPAWNER_DOCKER_API_VERSION)")
	fs.StringVar(&c.image, "image", str("SPAWNER_IMAGE", defaultImage), "image of the user containers (env SPAWNER_IMAGE)")
	fs.StringVar(&c.network, "network", str("SPAWNER_NETWORK", ""), "network the containers join (env SPAWNER_NETWORK)")
	fs.BoolVar(&c.pull, "pull", boolean("SPAWNER_PULL", true), "pull the image when it is missing (env SPAWNER_PULL)")
	fs.StringVar(&c.processCommand, "process-command", str("SPAWNER_PROCESS_COMMAND", ""), "process backend: command of one container, with {addr} {port} {name} {user} (env SPAWNER_PROCESS_COMMAND)")
	fs.StringVar(&c.processAddrs, "process-addrs", str("SPAWNER_PROCESS_ADDRS", "127.0.1.1-127.0.1.254"), "process backend: loopback address range (env SPAWNER_PROCESS_ADDRS)")
	fs.StringVar(&c.hostsFile, "hosts-file", str("SPAWNER_HOSTS_FILE", ""), "process backend: hosts file to append \"ADDR NAME\" to (env SPAWNER_HOSTS_FILE)")
	fs.DurationVar(&c.workspaceDelay, "workspace-start-delay", dur("SPAWNER_WORKSPACE_START_DELAY", 0), "process backend: -start-delay of the built-in workspace (env SPAWNER_WORKSPACE_START_DELAY)")
	fs.StringVar(&c.volume, "volume", str("SPAWNER_VOLUME", "{name}-home"), "docker backend: name template of each user's volume, with {name}; \"none\" for no volume (env SPAWNER_VOLUME)")
	fs.StringVar(&c.volumePath, "volume-path", str("SPAWNER_VOLUME_PATH", "/home/coder"), "docker backend: where the volume is mounted (env SPAWNER_VOLUME_PATH)")
	fs.StringVar(&c.restartPolicy, "restart-policy", str("SPAWNER_RESTART_POLICY", "no"), "docker backend: no, on-failure[:N], unless-stopped or always (env SPAWNER_RESTART_POLICY)")
	fs.DurationVar(&c.stopTimeout, "stop-timeout", dur("SPAWNER_STOP_TIMEOUT", 10*time.Second), "how long a container gets after SIGTERM (env SPAWNER_STOP_TIMEOUT)")
	fs.IntVar(&c.maxRunning, "max-running", num("SPAWNER_MAX_RUNNING", 0), "most containers running at once; 0 for no limit (env SPAWNER_MAX_RUNNING)")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", dur("SPAWNER_IDLE_TIMEOUT", 0), "stop a container after this long without network traffic; 0 never (env SPAWNER_IDLE_TIMEOUT)")
	fs.StringVar(&c.metricsListen, "metrics-listen", str("SPAWNER_METRICS_LISTEN", ""), "address of /metrics; empty for none (env SPAWNER_METRICS_LISTEN)")
	fs.StringVar(&c.kubeNamespace, "kubernetes-namespace", str("SPAWNER_KUBERNETES_NAMESPACE", "workspaces"), "kubernetes backend: namespace of the workspaces (env SPAWNER_KUBERNETES_NAMESPACE)")
	fs.StringVar(&c.kubeStorageSize, "kubernetes-storage-size", str("SPAWNER_KUBERNETES_STORAGE_SIZE", "10Gi"), "kubernetes backend: size of each home's claim (env SPAWNER_KUBERNETES_STORAGE_SIZE)")
	fs.StringVar(&c.kubeStorageClass, "kubernetes-storage-class", str("SPAWNER_KUBERNETES_STORAGE_CLASS", ""), "kubernetes backend: storage class of the claims; empty for the cluster's default (env SPAWNER_KUBERNETES_STORAGE_CLASS)")
	fs.StringVar(&c.kubeconfig, "kubeconfig", str("KUBECONFIG", ""), "kubernetes backend: kubeconfig file; empty for the in-cluster configuration (env KUBECONFIG)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", dur("SPAWNER_SHUTDOWN_TIMEOUT", 10*time.Second), "how long to wait for requests on shutdown (env SPAWNER_SHUTDOWN_TIMEOUT)")
	themeFlags(fs, str, &c.theme)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if v := getenv("SPAWNER_MEMORY"); v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil || n < 0 {
			envErrs = append(envErrs, fmt.Errorf("SPAWNER_MEMORY: parsing %q: want a size such as 2g or 512m", v))
		} else if n > 0 && n < minMemory {
			// The engine refuses such a limit at every create.
			envErrs = append(envErrs, fmt.Errorf("SPAWNER_MEMORY: %q is under the engine's minimum of 6m (0 for no limit)", v))
		}
		c.memory = n
	}
	if v := getenv("SPAWNER_CPUS"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 || f > 1e6 || f != f {
			envErrs = append(envErrs, fmt.Errorf("SPAWNER_CPUS: parsing %q: want a number of CPUs such as 1.5", v))
		} else if f > 0 && f < 0.01 {
			// The engine refuses such a limit at every create.
			envErrs = append(envErrs, fmt.Errorf("SPAWNER_CPUS: %q is under the engine's minimum of 0.01 (0 for no limit)", v))
		}
		c.nanoCPUs = int64(f * 1e9)
	}
	if v := getenv("SPAWNER_PIDS_LIMIT"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			envErrs = append(envErrs, fmt.Errorf("SPAWNER_PIDS_LIMIT: parsing %q: want a number of processes, 0 for no limit", v))
		}
		c.pidsLimit = n
	}
	var err error
	if c.env, err = parseList(getenv("SPAWNER_ENV")); err != nil {
		envErrs = append(envErrs, fmt.Errorf("SPAWNER_ENV: %w", err))
	}
	if c.command, err = parseList(getenv("SPAWNER_COMMAND")); err != nil {
		envErrs = append(envErrs, fmt.Errorf("SPAWNER_COMMAND: %w", err))
	}
	if len(c.command) == 0 && c.image == defaultImage {
		// The default image is code-server: without these arguments it asks
		// the already signed-in user for a password of its own.
		c.command = append([]string(nil), defaultImageCommand...)
	}
	if c.tokenKey, err = tokenSecret(getenv("SPAWNER_TOKEN_SECRET"), getenv("SPAWNER_TOKEN_SECRET_FILE")); err != nil {
		envErrs = append(envErrs, err)
	}
	if len(envErrs) > 0 {
		return c, errors.Join(envErrs...)
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch {
	case c.backend != "docker" && c.backend != "process" && c.backend != "kubernetes":
		return c, fmt.Errorf("SPAWNER_BACKEND (-backend): must be docker, kubernetes or process, got %q", c.backend)
	case c.containerPort < 1 || c.containerPort > 65535:
		return c, fmt.Errorf("SPAWNER_CONTAINER_PORT (-container-port): must be 1-65535, got %d", c.containerPort)
	case c.startGrace <= 0:
		return c, fmt.Errorf("SPAWNER_START_GRACE (-start-grace): must be positive, got %s", c.startGrace)
	case !validLabelStart(c.prefix):
		return c, fmt.Errorf("SPAWNER_CONTAINER_PREFIX (-prefix): %q is not a valid DNS label start", c.prefix)
	case !validHeaderList(c.usernameHeader):
		return c, fmt.Errorf("SPAWNER_USERNAME_HEADER (-username-header): %q is not a header name or a comma-separated list of them", c.usernameHeader)
	case c.shutdownTimeout < 0:
		return c, fmt.Errorf("SPAWNER_SHUTDOWN_TIMEOUT (-shutdown-timeout): must not be negative, got %s", c.shutdownTimeout)
	case c.workspaceDelay < 0:
		return c, fmt.Errorf("SPAWNER_WORKSPACE_START_DELAY (-workspace-start-delay): must not be negative, got %s", c.workspaceDelay)
	case c.maxRunning < 0:
		return c, fmt.Errorf("SPAWNER_MAX_RUNNING (-max-running): must be 0 (no limit) or more, got %d", c.maxRunning)
	case c.idleTimeout < 0:
		return c, fmt.Errorf("SPAWNER_IDLE_TIMEOUT (-idle-timeout): must be 0 (never) or positive, got %s", c.idleTimeout)
	case c.stopTimeout <= 0:
		return c, fmt.Errorf("SPAWNER_STOP_TIMEOUT (-stop-timeout): must be positive, got %s", c.stopTimeout)
	case c.idleTimeout > 0 && c.backend == "process":
		return c, errors.New("SPAWNER_IDLE_TIMEOUT: the process backend cannot measure network activity; use the docker backend or leave it 0")
	}
	if c.volume == "none" {
		c.volume = ""
	}
	if c.backend == "kubernetes" {
		if c.pidsLimit > 0 {
			return c, errors.New("SPAWNER_PIDS_LIMIT: the kubernetes backend cannot limit a Pod's processes (the kubelet's podPidsLimit does); leave it unset")
		}
		if c.restartPolicy != "" && c.restartPolicy != "no" {
			return c, fmt.Errorf("SPAWNER_RESTART_POLICY: the kubernetes backend runs each workspace as a Pod that is never restarted behind the spawner's back; only \"no\" applies, got %q", c.restartPolicy)
		}
	}
	if c.backend == "docker" && c.network == "" {
		return c, errors.New("SPAWNER_NETWORK (-network): required by the docker backend: the network the director resolves the containers on")
	}
	return c, nil
}

// minMemory is the smallest memory limit the Docker Engine accepts (6 MiB).
const minMemory = 6 << 20

// validHeaderName reports whether s is an HTTP header field name (a token).
// validHeaderList reports whether s is one header name or several separated
// by commas (spaces around each allowed), as the director's usernameHeader.
func validHeaderList(s string) bool {
	for _, name := range strings.Split(s, ",") {
		if !validHeaderName(strings.TrimSpace(name)) {
			return false
		}
	}
	return true
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// parseList reads a list setting: a JSON array of strings, or words
// separated by white space.
func parseList(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(v, "[") {
		var list []string
		if err := json.Unmarshal([]byte(v), &list); err != nil {
			return nil, fmt.Errorf("parsing %q as a JSON array of strings: %w", v, err)
		}
		return list, nil
	}
	return strings.Fields(v), nil
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
		var db *dockerBackend
		db, err = NewDockerBackend(DockerConfig{
			Host: c.dockerHost, APIVersion: c.dockerAPI, Image: c.image, Prefix: c.prefix, Network: c.network, Pull: c.pull,
			Port: c.containerPort, Volume: c.volume, VolumePath: c.volumePath, Memory: c.memory,
			NanoCPUs: c.nanoCPUs, PidsLimit: c.pidsLimit, Env: c.env, Command: c.command,
			RestartPolicy: c.restartPolicy, StopTimeout: c.stopTimeout,
		})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err = db.CheckNetwork(ctx)
			cancel()
			if err == nil {
				logger.Info("docker engine", "api_version", db.APIVersion(), "network", c.network)
			}
		}
		backend, closeBackend = db, func() {
			if db != nil {
				db.Close()
			}
		}
	case "kubernetes":
		var kb *kubeBackend
		kb, err = NewKubernetesBackend(KubernetesConfig{
			Kubeconfig: c.kubeconfig, Namespace: c.kubeNamespace, Image: c.image, Prefix: c.prefix, Port: c.containerPort,
			Volume: c.volume, VolumePath: c.volumePath, StorageSize: c.kubeStorageSize, StorageClass: c.kubeStorageClass,
			Memory: c.memory, NanoCPUs: c.nanoCPUs, Env: c.env, Command: c.command, StopTimeout: c.stopTimeout,
		})
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			err = kb.CheckAccess(ctx)
			cancel()
			if err == nil {
				logger.Info("kubernetes", "namespace", c.kubeNamespace)
			}
		}
		backend, closeBackend = kb, func() {}
	case "process":
		var pb *processBackend
		pb, err = NewProcessBackend(ProcessConfig{
			Command: strings.Fields(c.processCommand), StartDelay: c.workspaceDelay,
			Addrs: c.processAddrs, Port: c.containerPort, HostsFile: c.hostsFile, Logger: logger,
			StopTimeout: c.stopTimeout,
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

	m := newMetrics(backend)
	theme, err := NewTheme(c.theme)
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	h, err := NewHandler(backend, HandlerConfig{
		Prefix: c.prefix, UsernameHeader: c.usernameHeader, StartGrace: c.startGrace, Logger: logger,
		MaxRunning: c.maxRunning, CSRFKey: c.tokenKey, Metrics: m, Theme: theme,
	})
	if err != nil {
		fmt.Fprintf(stderr, "spawner: %v\n", err)
		return 2
	}
	defer h.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	if c.idleTimeout > 0 {
		meter, ok := backend.(ActivityMeter)
		if !ok {
			fmt.Fprintf(stderr, "spawner: SPAWNER_IDLE_TIMEOUT: the %s backend cannot measure activity\n", c.backend)
			return 2
		}
		idle := &idleStopper{backend: backend, meter: meter, timeout: c.idleTimeout, every: idleCheckEvery(c.idleTimeout),
			metrics: m, log: logger, now: time.Now}
		idleCtx, cancelIdle := context.WithCancel(ctx)
		idleDone := make(chan struct{})
		go func() { defer close(idleDone); idle.run(idleCtx) }()
		defer func() { cancelIdle(); <-idleDone }()
	}
	if c.metricsListen != "" {
		ln, err := net.Listen("tcp", c.metricsListen)
		if err != nil {
			fmt.Fprintf(stderr, "spawner: SPAWNER_METRICS_LISTEN: %v\n", err)
			return 2
		}
		msrv := &http.Server{Handler: m.handler(logger), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := msrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics: %w", err)
			}
		}()
		defer msrv.Close()
		logger.Info("metrics listening", "listen", ln.Addr().String())
	}

	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		fmt.Fprintf(stderr, "spawner: SPAWNER_LISTEN (-listen): %v\n", err)
		return 2
	}
	srv := &http.Server{
		Addr:              c.listen,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() { errc <- srv.Serve(ln) }()
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
