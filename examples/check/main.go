// Command check validates the deployment examples beyond what their own tools
// check: it parses them, builds every director middleware they declare with
// the plugin's own New (so a key or value the plugin would refuse fails
// here), and checks the identity header's trust chain: every router that uses
// the director runs a forwardAuth middleware before it whose
// authResponseHeaders include the director's usernameHeader, so clients can
// never set that header themselves.
//
// Usage:
//
//	check [-compose FILE.json]... [-kubernetes DIR]... [-traefik-static FILE]...
//
// -compose takes the output of `docker compose config --format json`;
// -kubernetes a directory of YAML manifests; -traefik-static a Traefik static
// configuration that must declare the plugin as "director". It prints one
// line per problem and exits 1 if there was any.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	director "github.com/container-director/director"
	"gopkg.in/yaml.v3"
)

// pluginName is the name Traefik loads the plugin under in the examples.
const pluginName = "director"

// moduleName is the plugin's Go module.
const moduleName = "github.com/container-director/director"

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var composeFiles, kubeDirs, staticFiles listFlag
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Var(&composeFiles, "compose", "output of `docker compose config --format json` (repeatable)")
	fs.Var(&kubeDirs, "kubernetes", "directory of Kubernetes YAML manifests (repeatable)")
	fs.Var(&staticFiles, "traefik-static", "Traefik static configuration file (repeatable)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || len(composeFiles)+len(kubeDirs)+len(staticFiles) == 0 {
		fmt.Fprintln(stderr, "usage: check [-compose FILE.json]... [-kubernetes DIR]... [-traefik-static FILE]...")
		return 2
	}

	var problems []string
	report := func(source string, errs []error) {
		for _, err := range errs {
			problems = append(problems, fmt.Sprintf("%s: %v", source, err))
		}
		if len(errs) == 0 {
			fmt.Fprintf(stdout, "ok   %s\n", source)
		}
	}
	for _, f := range composeFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			report(f, []error{err})
			continue
		}
		report(f, checkCompose(data))
	}
	for _, dir := range kubeDirs {
		report(dir, checkKubernetesDir(dir))
	}
	for _, f := range staticFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			report(f, []error{err})
			continue
		}
		report(f, checkTraefikStatic(data))
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "FAIL %s\n", p)
	}
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// newDirector builds the plugin from a raw configuration as Traefik would:
// keys matched case-insensitively, numbers given as strings accepted
// (labels are strings). Unlike Traefik it refuses unknown keys, which would
// otherwise be silently ignored and leave a default in force.
func newDirector(raw map[string]any, name string) error {
	cfg := director.CreateConfig()
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	fields := make(map[string]int, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		fields[strings.ToLower(tag)] = i
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		i, ok := fields[strings.ToLower(key)]
		if !ok {
			return fmt.Errorf("%s: unknown key %q", name, key)
		}
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			s, ok := scalarString(raw[key])
			if !ok {
				return fmt.Errorf("%s: %s: want a string, got %v", name, key, raw[key])
			}
			f.SetString(s)
		case reflect.Slice:
			list, ok := stringList(raw[key])
			if !ok || f.Type().Elem().Kind() != reflect.String {
				return fmt.Errorf("%s: %s: want a list of strings, got %v", name, key, raw[key])
			}
			f.Set(reflect.ValueOf(list))
		case reflect.Int:
			s, _ := scalarString(raw[key])
			n, err := strconv.Atoi(s)
			if err != nil {
				return fmt.Errorf("%s: %s: want a number, got %v", name, key, raw[key])
			}
			f.SetInt(int64(n))
		default:
			return fmt.Errorf("%s: %s: field of kind %s not handled", name, key, f.Kind())
		}
	}
	if _, err := director.New(context.Background(), http.NotFoundHandler(), cfg, name); err != nil {
		return fmt.Errorf("%s: the plugin refuses its configuration: %w", name, err)
	}
	return nil
}

// stringList renders a YAML list, or a comma-separated string, as Traefik's
// weak decoding gives a list setting.
func stringList(v any) ([]string, bool) {
	if s, ok := scalarString(v); ok {
		return strings.Split(s, ","), true
	}
	items, ok := v.([]any)
	if !ok {
		return nil, false
	}
	list := make([]string, 0, len(items))
	for _, item := range items {
		s, ok := scalarString(item)
		if !ok {
			return nil, false
		}
		list = append(list, s)
	}
	return list, true
}

// scalarString renders a YAML or JSON scalar as Traefik's weak decoding would.
func scalarString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

// chain is what the trust check needs to know about one router.
type chain struct {
	router      string
	middlewares []string
}

// middlewareSet is the middlewares a provider declares, by name.
type middlewareSet struct {
	directorHeader map[string][]string // director middleware → its usernameHeader list (canonical)
	forwardAuth    map[string][]string // forwardAuth middleware → authResponseHeaders (canonical)
	other          map[string]bool
}

func newMiddlewareSet() middlewareSet {
	return middlewareSet{directorHeader: map[string][]string{}, forwardAuth: map[string][]string{}, other: map[string]bool{}}
}

func (m middlewareSet) has(name string) bool {
	_, d := m.directorHeader[name]
	_, f := m.forwardAuth[name]
	return d || f || m.other[name]
}

// checkChains checks that every router's middlewares exist, and that each
// director in a chain comes after a forwardAuth that sets and protects its
// usernameHeader.
func checkChains(chains []chain, mws middlewareSet) []error {
	var errs []error
	usesDirector := false
	for _, c := range chains {
		protected := map[string]bool{}
		for _, name := range c.middlewares {
			if !mws.has(name) {
				errs = append(errs, fmt.Errorf("router %s: middleware %q is not declared", c.router, name))
				continue
			}
			for _, h := range mws.forwardAuth[name] {
				protected[h] = true
			}
			if headers, ok := mws.directorHeader[name]; ok {
				usesDirector = true
				for _, header := range headers {
					if !protected[header] {
						errs = append(errs, fmt.Errorf("router %s: director middleware %q trusts %s, but no forwardAuth before it lists that header in authResponseHeaders, so a client could set it", c.router, name, header))
					}
				}
			}
		}
	}
	if len(mws.directorHeader) > 0 && !usesDirector {
		errs = append(errs, errors.New("a director middleware is declared but no router uses it"))
	}
	return errs
}

// usernameHeader returns the canonical usernameHeader list of a raw
// director configuration, with the plugin's default.
func usernameHeader(raw map[string]any) []string {
	for k, v := range raw {
		if strings.EqualFold(k, "usernameHeader") {
			if list, ok := stringList(v); ok {
				return canonicalList(strings.Split(strings.Join(list, ","), ","))
			}
		}
	}
	return []string{http.CanonicalHeaderKey(director.DefaultUsernameHeader)}
}

func canonicalList(s []string) []string {
	out := make([]string, 0, len(s))
	for _, h := range s {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, http.CanonicalHeaderKey(h))
		}
	}
	return out
}

// composeProject is the part of `docker compose config --format json` read here.
type composeProject struct {
	Services map[string]struct {
		Labels      map[string]string  `json:"labels"`
		Environment map[string]*string `json:"environment"`
	} `json:"services"`
}

// checkCompose checks the Traefik labels of a compose project.
func checkCompose(data []byte) []error {
	var p composeProject
	if err := json.Unmarshal(data, &p); err != nil {
		return []error{fmt.Errorf("parsing compose JSON: %w", err)}
	}
	var errs []error
	mws := newMiddlewareSet()
	plugins := map[string]map[string]any{}
	routers := map[string]string{} // router → comma-separated middlewares
	names := make([]string, 0, len(p.Services))
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, svc := range names {
		for label, value := range p.Services[svc].Labels {
			parts := strings.Split(label, ".")
			if len(parts) < 5 || parts[0] != "traefik" || parts[1] != "http" {
				continue
			}
			kind, name := parts[2], parts[3]
			switch {
			case kind == "routers" && parts[4] == "middlewares":
				routers[name] = value
			case kind == "middlewares" && len(parts) == 7 && parts[4] == "plugin" && parts[5] == pluginName:
				if plugins[name] == nil {
					plugins[name] = map[string]any{}
				}
				plugins[name][parts[6]] = value
			case kind == "middlewares" && len(parts) == 6 && strings.EqualFold(parts[4], "forwardauth") && strings.EqualFold(parts[5], "authResponseHeaders"):
				mws.forwardAuth[name] = canonicalList(strings.Split(value, ","))
			case kind == "middlewares":
				mws.other[name] = true
			}
		}
	}
	for name, raw := range plugins {
		if err := newDirector(raw, name); err != nil {
			errs = append(errs, err)
		}
		mws.directorHeader[name] = usernameHeader(raw)
	}
	for name := range mws.forwardAuth {
		delete(mws.other, name)
	}
	for name := range plugins {
		delete(mws.other, name)
	}
	if len(plugins) == 0 {
		errs = append(errs, errors.New("no director middleware (traefik.http.middlewares.<name>.plugin.director.*) in any service's labels"))
	}
	var chains []chain
	for r, list := range routers {
		chains = append(chains, chain{router: r, middlewares: canonicalNames(strings.Split(list, ","))})
	}
	sort.Slice(chains, func(i, j int) bool { return chains[i].router < chains[j].router })
	errs = append(errs, checkChains(chains, mws)...)
	errs = append(errs, checkSpawnerEnv(p, plugins)...)
	return errs
}

// canonicalNames trims middleware references and drops a "@docker" suffix.
func canonicalNames(list []string) []string {
	out := make([]string, 0, len(list))
	for _, n := range list {
		n = strings.TrimSpace(n)
		n = strings.TrimSuffix(n, "@docker")
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// checkSpawnerEnv checks that a spawner service agrees with the director on
// the prefix and the identity header.
func checkSpawnerEnv(p composeProject, plugins map[string]map[string]any) []error {
	var errs []error
	for svc, s := range p.Services {
		prefix, ok := s.Environment["SPAWNER_CONTAINER_PREFIX"]
		if !ok || prefix == nil {
			continue
		}
		header := s.Environment["SPAWNER_USERNAME_HEADER"]
		for name, raw := range plugins {
			if got, _ := scalarString(lookupFold(raw, "containerHostPrefix")); got != *prefix {
				errs = append(errs, fmt.Errorf("service %s: SPAWNER_CONTAINER_PREFIX %q differs from %s's containerHostPrefix %q", svc, *prefix, name, got))
			}
			want := strings.Join(usernameHeader(raw), ",")
			if header == nil || strings.Join(canonicalList(strings.Split(*header, ",")), ",") != want {
				got := "(unset)"
				if header != nil {
					got = *header
				}
				errs = append(errs, fmt.Errorf("service %s: SPAWNER_USERNAME_HEADER %s differs from %s's usernameHeader %s", svc, got, name, want))
			}
		}
	}
	return errs
}

func lookupFold(m map[string]any, key string) any {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// manifest is one Kubernetes object, as far as it is read here.
type manifest struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec yaml.Node `yaml:"spec"`
	file string
}

// checkKubernetesDir parses every YAML file in dir (multi-document) and
// checks the Traefik objects.
func checkKubernetesDir(dir string) []error {
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			return []error{err}
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return []error{fmt.Errorf("no YAML files in %s", dir)}
	}
	var objs []manifest
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs, err := parseManifests(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		for i := range docs {
			docs[i].file = filepath.Base(f)
		}
		objs = append(objs, docs...)
	}
	return append(errs, checkManifests(objs)...)
}

// parseManifests decodes every document of a YAML stream and checks the
// fields every object has.
func parseManifests(data []byte) ([]manifest, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(false)
	var out []manifest
	for i := 1; ; i++ {
		var m manifest
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if m.APIVersion == "" && m.Kind == "" && m.Metadata.Name == "" && m.Spec.Kind == 0 {
			continue // an empty document, e.g. a trailing "---"
		}
		switch {
		case m.APIVersion == "":
			return nil, fmt.Errorf("document %d: no apiVersion", i)
		case m.Kind == "":
			return nil, fmt.Errorf("document %d: no kind", i)
		case m.Metadata.Name == "":
			return nil, fmt.Errorf("document %d (%s): no metadata.name", i, m.Kind)
		}
		out = append(out, m)
	}
}

// traefikMiddleware is the part of a Middleware's spec read here.
type traefikMiddleware struct {
	Plugin      map[string]map[string]any `yaml:"plugin"`
	ForwardAuth *struct {
		Address             string   `yaml:"address"`
		AuthResponseHeaders []string `yaml:"authResponseHeaders"`
	} `yaml:"forwardAuth"`
	Errors *struct {
		Status  []string `yaml:"status"`
		Service struct {
			Name string `yaml:"name"`
			Port any    `yaml:"port"`
		} `yaml:"service"`
		Query string `yaml:"query"`
	} `yaml:"errors"`
}

// ingressRoute is the part of an IngressRoute's spec read here.
type ingressRoute struct {
	Routes []struct {
		Match       string `yaml:"match"`
		Middlewares []struct {
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"middlewares"`
		Services []struct {
			Name string `yaml:"name"`
			Kind string `yaml:"kind"`
			Port any    `yaml:"port"`
		} `yaml:"services"`
	} `yaml:"routes"`
}

func checkManifests(objs []manifest) []error {
	var errs []error
	key := func(ns, name string) string { return ns + "/" + name }
	services := map[string]bool{}
	mwsByNS := map[string]middlewareSet{}
	for _, o := range objs {
		if o.Kind == "Service" && o.APIVersion == "v1" {
			services[key(o.Metadata.Namespace, o.Metadata.Name)] = true
		}
	}
	for _, o := range objs {
		if o.Kind != "Middleware" {
			continue
		}
		where := fmt.Sprintf("%s: Middleware %s", o.file, o.Metadata.Name)
		if o.APIVersion != "traefik.io/v1alpha1" {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q, want traefik.io/v1alpha1", where, o.APIVersion))
		}
		var spec traefikMiddleware
		if err := o.Spec.Decode(&spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		ns := o.Metadata.Namespace
		if _, ok := mwsByNS[ns]; !ok {
			mwsByNS[ns] = newMiddlewareSet()
		}
		mws := mwsByNS[ns]
		switch {
		case spec.Plugin != nil:
			raw, ok := spec.Plugin[pluginName]
			if !ok || len(spec.Plugin) != 1 {
				errs = append(errs, fmt.Errorf("%s: spec.plugin must hold exactly the key %q", where, pluginName))
				continue
			}
			if err := newDirector(raw, o.Metadata.Name); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
			mws.directorHeader[o.Metadata.Name] = usernameHeader(raw)
		case spec.ForwardAuth != nil:
			if spec.ForwardAuth.Address == "" {
				errs = append(errs, fmt.Errorf("%s: forwardAuth without an address", where))
			}
			mws.forwardAuth[o.Metadata.Name] = canonicalList(spec.ForwardAuth.AuthResponseHeaders)
		case spec.Errors != nil:
			if !services[key(ns, spec.Errors.Service.Name)] {
				errs = append(errs, fmt.Errorf("%s: errors.service %q is not a Service in namespace %q", where, spec.Errors.Service.Name, ns))
			}
			mws.other[o.Metadata.Name] = true
		default:
			mws.other[o.Metadata.Name] = true
		}
	}
	routes := 0
	for _, o := range objs {
		if o.Kind != "IngressRoute" {
			continue
		}
		where := fmt.Sprintf("%s: IngressRoute %s", o.file, o.Metadata.Name)
		if o.APIVersion != "traefik.io/v1alpha1" {
			errs = append(errs, fmt.Errorf("%s: apiVersion %q, want traefik.io/v1alpha1", where, o.APIVersion))
		}
		var spec ingressRoute
		if err := o.Spec.Decode(&spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		ns := o.Metadata.Namespace
		mws, ok := mwsByNS[ns]
		if !ok {
			mws = newMiddlewareSet()
		}
		var chains []chain
		for i, r := range spec.Routes {
			routes++
			c := chain{router: fmt.Sprintf("%s route %d (%s)", o.Metadata.Name, i+1, r.Match)}
			for _, m := range r.Middlewares {
				if m.Namespace != "" && m.Namespace != ns {
					errs = append(errs, fmt.Errorf("%s: middleware %s in namespace %q: the example keeps everything in %q", where, m.Name, m.Namespace, ns))
				}
				c.middlewares = append(c.middlewares, m.Name)
			}
			chains = append(chains, c)
			if len(r.Services) == 0 {
				errs = append(errs, fmt.Errorf("%s: %s has no service", where, c.router))
			}
			for _, s := range r.Services {
				if (s.Kind == "" || s.Kind == "Service") && !services[key(ns, s.Name)] {
					errs = append(errs, fmt.Errorf("%s: service %q is not a Service in namespace %q", where, s.Name, ns))
				}
			}
		}
		errs = append(errs, checkChains(chains, mws)...)
	}
	if routes == 0 {
		errs = append(errs, errors.New("no IngressRoute with routes"))
	}
	return errs
}

// checkTraefikStatic checks that a static configuration declares the plugin
// as "director", either locally or from the catalog with a version.
func checkTraefikStatic(data []byte) []error {
	var static struct {
		Experimental struct {
			LocalPlugins map[string]struct {
				ModuleName string `yaml:"moduleName"`
			} `yaml:"localPlugins"`
			Plugins map[string]struct {
				ModuleName string `yaml:"moduleName"`
				Version    string `yaml:"version"`
			} `yaml:"plugins"`
		} `yaml:"experimental"`
	}
	if err := yaml.Unmarshal(data, &static); err != nil {
		return []error{err}
	}
	local, isLocal := static.Experimental.LocalPlugins[pluginName]
	catalog, isCatalog := static.Experimental.Plugins[pluginName]
	switch {
	case isLocal && isCatalog:
		return []error{fmt.Errorf("declares %q both as a local plugin and from the catalog", pluginName)}
	case isLocal && local.ModuleName != moduleName:
		return []error{fmt.Errorf("experimental.localPlugins.%s.moduleName: %q, want %q", pluginName, local.ModuleName, moduleName)}
	case isCatalog && catalog.ModuleName != moduleName:
		return []error{fmt.Errorf("experimental.plugins.%s.moduleName: %q, want %q", pluginName, catalog.ModuleName, moduleName)}
	case isCatalog && !strings.HasPrefix(catalog.Version, "v"):
		return []error{fmt.Errorf("experimental.plugins.%s.version: %q, want a tag like v0.1.0", pluginName, catalog.Version)}
	case !isLocal && !isCatalog:
		return []error{fmt.Errorf("declares no plugin %q under experimental.localPlugins or experimental.plugins", pluginName)}
	}
	return nil
}
