package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	director "github.com/container-director/director"
)

// Defaults of the variables that are not plugin configuration keys.
const (
	defaultListenAddr      = ":8080"
	defaultShutdownTimeout = 30 * time.Second
)

// pluginVar is an environment variable that fills one key of the plugin's
// configuration. The director validates the value; the variable only
// carries it there.
type pluginVar struct {
	env string // CONTAINER_PORT
	key string // containerPort, the configuration key New names in its errors
	set func(config *director.Config, value string) error
	get func(config *director.Config) string
}

// pluginVars lists the variables of the plugin's configuration keys, in the
// order the startup line shows them.
var pluginVars = []pluginVar{
	{
		env: "CONTAINER_HOST_PREFIX", key: "containerHostPrefix",
		set: func(c *director.Config, v string) error { c.ContainerHostPrefix = v; return nil },
		get: func(c *director.Config) string { return c.ContainerHostPrefix },
	},
	{
		env: "CONTAINER_PORT", key: "containerPort",
		set: setContainerPort,
		get: func(c *director.Config) string { return strconv.Itoa(c.ContainerPort) },
	},
	{
		env: "CONTAINER_DOMAIN", key: "containerDomain",
		set: func(c *director.Config, v string) error { c.ContainerDomain = v; return nil },
		get: func(c *director.Config) string { return c.ContainerDomain },
	},
	{
		env: "USERNAME_HEADER", key: "usernameHeader",
		set: func(c *director.Config, v string) error { c.UsernameHeader = []string{v}; return nil },
		get: func(c *director.Config) string { return strings.Join(c.UsernameHeader, ",") },
	},
	{
		env: "USERNAME_POLICY", key: "usernamePolicy",
		set: func(c *director.Config, v string) error { c.UsernamePolicy = v; return nil },
		get: func(c *director.Config) string { return c.UsernamePolicy },
	},
	{
		env: "DIAL_TIMEOUT", key: "dialTimeout",
		set: func(c *director.Config, v string) error { c.DialTimeout = v; return nil },
		get: func(c *director.Config) string { return c.DialTimeout },
	},
	{
		env: "PROBE_CACHE_TTL", key: "probeCacheTTL",
		set: func(c *director.Config, v string) error { c.ProbeCacheTTL = v; return nil },
		get: func(c *director.Config) string { return c.ProbeCacheTTL },
	},
}

// setContainerPort converts CONTAINER_PORT to the number the configuration
// holds. Whether the number is a valid port is for the director to say.
func setContainerPort(c *director.Config, v string) error {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("%q is out of range", v)
	}
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	c.ContainerPort = n
	return nil
}

// environment is the standalone director's configuration, read from the
// environment.
type environment struct {
	// listenAddr is where the director accepts OAuth2 Proxy's requests.
	listenAddr string
	// spawner is the Container Spawner's base URL: scheme and host:port.
	spawner *url.URL
	// shutdownTimeout bounds how long in-flight requests may run on after
	// SIGTERM or SIGINT.
	shutdownTimeout time.Duration
	// plugin is the core's configuration, with the defaults of
	// director.CreateConfig where a variable is unset. New validates it.
	plugin *director.Config
}

// readEnvironment reads the variables through getenv. An empty variable
// counts as unset. Its errors start with the variable's name.
func readEnvironment(getenv func(string) string) (environment, error) {
	e := environment{
		listenAddr:      defaultListenAddr,
		shutdownTimeout: defaultShutdownTimeout,
		plugin:          director.CreateConfig(),
	}

	spawner, err := parseSpawnerHost(getenv("SPAWNER_HOST"))
	if err != nil {
		return e, fmt.Errorf("SPAWNER_HOST: %w", err)
	}
	e.spawner = spawner

	for _, v := range pluginVars {
		value := getenv(v.env)
		if value == "" {
			continue
		}
		if err := v.set(e.plugin, value); err != nil {
			return e, fmt.Errorf("%s: %w", v.env, err)
		}
	}

	if v := getenv("LISTEN_ADDR"); v != "" {
		if err := checkListenAddr(v); err != nil {
			return e, fmt.Errorf("LISTEN_ADDR: %w", err)
		}
		e.listenAddr = v
	}

	if v := getenv("SHUTDOWN_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return e, fmt.Errorf("SHUTDOWN_TIMEOUT: %q is not a duration like \"30s\" or \"2m\"", v)
		}
		if d < 0 {
			return e, fmt.Errorf("SHUTDOWN_TIMEOUT: must not be negative, got %q", v)
		}
		e.shutdownTimeout = d
	}
	return e, nil
}

// envError rewrites an error of director.New, which starts with the
// configuration key ("containerPort: must be 1-65535, got 0"), to start
// with the environment variable that set the key instead.
func envError(err error) string {
	msg := err.Error()
	for _, v := range pluginVars {
		if strings.HasPrefix(msg, v.key+":") {
			return v.env + msg[len(v.key):]
		}
	}
	return msg
}

// parseSpawnerHost parses SPAWNER_HOST: "host", "host:port", or an http or
// https URL without a path. A bare host means http on port 80. The result
// always holds the port.
func parseSpawnerHost(value string) (*url.URL, error) {
	if value == "" {
		return nil, errors.New(`required, e.g. "spawner:8090" or "http://spawner:8090"`)
	}
	raw := value
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a host, host:port or http(s) URL", value)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return nil, fmt.Errorf("%q: the scheme must be http or https, got %q", value, u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", value)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%q must not hold user information", value)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("%q must not have a path, query or fragment", value)
	}
	port := u.Port()
	switch {
	case port != "":
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%q: the port must be 1-65535", value)
		}
	case scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(u.Hostname(), port)}, nil
}

// checkListenAddr reports why addr cannot be listened on as "host:port"
// with a numeric port.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not an address like \":8080\" or \"10.0.0.2:8080\"", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number 0-65535", addr)
	}
	return nil
}

// startupLine describes the effective settings, every variable resolved to
// the value in force.
func (e environment) startupLine(listening string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version %s listening on %s:", version, listening)
	fmt.Fprintf(&b, " LISTEN_ADDR=%q SPAWNER_HOST=%q", e.listenAddr, e.spawner.String())
	for _, v := range pluginVars {
		fmt.Fprintf(&b, " %s=%q", v.env, v.get(e.plugin))
	}
	fmt.Fprintf(&b, " SHUTDOWN_TIMEOUT=%q", e.shutdownTimeout.String())
	return b.String()
}
