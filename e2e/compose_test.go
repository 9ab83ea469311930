package e2e

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// The sign-in tests run the example compose stacks' own settings: OAuth2
// Proxy's flags, the director's environment and the Traefik labels come from
// examples/compose/compose.yml and examples/standalone/compose.yml, with the
// compose variables filled in as a .env would and the service names replaced
// by the test's loopback addresses. An example that drifts from what works
// fails these tests.

// composeFile is the part of a compose file the tests use.
type composeFile struct {
	path     string
	Services map[string]composeService `yaml:"services"`
}

type composeService struct {
	Command     stringList `yaml:"command"`
	Environment stringMap  `yaml:"environment"`
	Labels      stringMap  `yaml:"labels"`
}

// stringList is a compose list that may also be written as one string.
type stringList []string

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = strings.Fields(n.Value)
		return nil
	}
	var s []string
	if err := n.Decode(&s); err != nil {
		return err
	}
	*l = s
	return nil
}

// stringMap is a compose mapping that may also be written as a list of
// "key=value".
type stringMap map[string]string

func (m *stringMap) UnmarshalYAML(n *yaml.Node) error {
	out := make(map[string]string)
	if n.Kind == yaml.SequenceNode {
		var items []string
		if err := n.Decode(&items); err != nil {
			return err
		}
		for _, item := range items {
			k, v, _ := strings.Cut(item, "=")
			out[k] = v
		}
	} else {
		var raw map[string]any
		if err := n.Decode(&raw); err != nil {
			return err
		}
		for k, v := range raw {
			if v == nil {
				out[k] = ""
				continue
			}
			out[k] = fmt.Sprint(v)
		}
	}
	*m = out
	return nil
}

// loadCompose reads a compose file of the repository (a path relative to its
// root) and fills in its variables from vars, then from the .env.example
// beside it, then from their defaults.
func loadCompose(rel string, vars map[string]string) (*composeFile, error) {
	path := filepath.Join(repoRoot(), rel)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s missing: the sign-in tests run the example's own settings", rel)
	}
	if err != nil {
		return nil, err
	}
	all := make(map[string]string)
	if env, err := os.ReadFile(filepath.Join(filepath.Dir(path), ".env.example")); err == nil {
		for _, line := range strings.Split(string(env), "\n") {
			line = strings.TrimSpace(line)
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				all[k] = v
			}
		}
	}
	for k, v := range vars {
		all[k] = v
	}
	c := &composeFile{path: rel}
	if err := yaml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", rel, err)
	}
	for name, s := range c.Services {
		for i, v := range s.Command {
			if s.Command[i], err = interpolate(v, all); err != nil {
				return nil, fmt.Errorf("%s: services.%s.command: %w", rel, name, err)
			}
		}
		for _, m := range []stringMap{s.Environment, s.Labels} {
			for k, v := range m {
				if m[k], err = interpolate(v, all); err != nil {
					return nil, fmt.Errorf("%s: services.%s: %s: %w", rel, name, k, err)
				}
			}
		}
	}
	return c, nil
}

var composeVariable = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// interpolate fills in ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?error}, $VAR and $$ as Docker Compose does.
func interpolate(s string, vars map[string]string) (string, error) {
	var err error
	out := composeVariable.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := composeVariable.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		if name == "" {
			name = sub[4]
		}
		v, set := vars[name]
		switch op {
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if v == "" && (op == ":?" || !set) {
				err = fmt.Errorf("variable %s: %s", name, arg)
			}
		}
		return v
	})
	return out, err
}

// service returns the named service or fails with the file's name.
func (c *composeFile) service(name string) (composeService, error) {
	s, ok := c.Services[name]
	if !ok {
		return s, fmt.Errorf("%s: no service %q", c.path, name)
	}
	return s, nil
}

// serviceURL matches a URL naming a compose service by its host name.
var serviceURL = regexp.MustCompile(`(https?://)([a-z0-9][a-z0-9_.-]*):([0-9]+)`)

// relocate replaces, in s, each URL whose host is a compose service listed in
// services with that service's test address.
func relocate(s string, services map[string]string) string {
	return serviceURL.ReplaceAllStringFunc(s, func(m string) string {
		sub := serviceURL.FindStringSubmatch(m)
		if a, ok := services[sub[2]]; ok {
			return sub[1] + a
		}
		return m
	})
}

// oauth2ProxyArgs returns the service's command with --http-address set to
// listen and service URLs relocated, and its OAUTH2_PROXY_* environment.
func oauth2ProxyArgs(s composeService, listen string, services map[string]string) (args, env []string) {
	args = append(args, "--http-address="+listen)
	for _, a := range s.Command {
		if strings.HasPrefix(a, "--http-address") {
			continue
		}
		args = append(args, relocate(a, services))
	}
	for k, v := range s.Environment {
		if strings.HasPrefix(k, "OAUTH2_PROXY_") {
			env = append(env, k+"="+v)
		}
	}
	sort.Strings(env)
	return args, env
}

// flagValue returns the value of a command's --name flag: "true" for a bare
// boolean flag, "" and false when it is not set.
func flagValue(args []string, name string) (string, bool) {
	value, found := "", false
	for _, a := range args {
		switch {
		case a == "--"+name || a == "-"+name:
			value, found = "true", true
		case strings.HasPrefix(a, "--"+name+"="):
			value, found = strings.TrimPrefix(a, "--"+name+"="), true
		case strings.HasPrefix(a, "-"+name+"="):
			value, found = strings.TrimPrefix(a, "-"+name+"="), true
		}
	}
	return value, found
}

// traefikDynamic turns the Traefik labels of the compose file's services
// (those with traefik.enable=true) into a file provider configuration, as
// Traefik's Docker provider reads them: a service's
// loadbalancer.server.port becomes the test's address of the compose
// service that carries the label, and URLs naming compose services are
// relocated.
func traefikDynamic(c *composeFile, services map[string]string) ([]byte, error) {
	root := make(map[string]any)
	names := make([]string, 0, len(c.Services))
	for name := range c.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		labels := c.Services[name].Labels
		if labels["traefik.enable"] != "true" {
			continue
		}
		for key, value := range labels {
			if !strings.HasPrefix(key, "traefik.http.") {
				continue
			}
			path := strings.Split(strings.TrimPrefix(key, "traefik."), ".")
			if len(path) >= 4 && path[1] == "services" && strings.EqualFold(strings.Join(path[3:], "."), "loadbalancer.server.port") {
				addr, ok := services[name]
				if !ok {
					return nil, fmt.Errorf("%s: no test address for service %q", c.path, name)
				}
				setPath(root, []string{"http", "services", path[2], "loadBalancer", "servers"}, []any{map[string]any{"url": "http://" + addr}})
				continue
			}
			if len(path) >= 4 && path[1] == "services" {
				return nil, fmt.Errorf("%s: label %s: the tests only translate loadbalancer.server.port", c.path, key)
			}
			setPath(root, path, relocate(value, services))
		}
	}
	return yaml.Marshal(root)
}

func setPath(m map[string]any, path []string, value any) {
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = make(map[string]any)
			m[p] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
}

// labelLookup finds a label by its key, case-insensitively as Traefik does.
func labelLookup(c *composeFile, key string) (value, service string, ok bool) {
	for name, s := range c.Services {
		for k, v := range s.Labels {
			if strings.EqualFold(k, key) {
				return v, name, true
			}
		}
	}
	return "", "", false
}

// labelsUnder returns the labels whose keys start with prefix
// (case-insensitively), keyed by the rest, in lower case.
func labelsUnder(c *composeFile, prefix string) map[string]string {
	out := make(map[string]string)
	for _, s := range c.Services {
		for k, v := range s.Labels {
			if len(k) > len(prefix) && strings.EqualFold(k[:len(prefix)], prefix) {
				out[strings.ToLower(k[len(prefix):])] = v
			}
		}
	}
	return out
}

// splitList splits a comma-separated label value.
func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
