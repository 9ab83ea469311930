package director

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Defaults of the configuration keys. CreateConfig returns a Config holding them.
const (
	DefaultContainerPort  = 8080
	DefaultUsernameHeader = "X-Forwarded-Preferred-Username"
	DefaultUsernamePolicy = PolicyStrict
	DefaultDialTimeout    = "1s"
	DefaultProbeCacheTTL  = "10s"
)

// Name policies, the values of Config.UsernamePolicy.
const (
	// PolicyStrict accepts only names that are already valid lowercase
	// DNS-label text, so the container is exactly "<prefix>-<name>".
	PolicyStrict = "strict"
	// PolicyEscape accepts any non-empty name and escapes it, injectively,
	// to DNS-label text.
	PolicyEscape = "escape"
)

// ContainerNameHeader is the header that carries the container's name to the
// spawner when the container does not answer. Copies sent by clients are
// removed from every request.
const ContainerNameHeader = "X-Container-Name"

// maxLabelLength is the longest DNS label (RFC 1035, section 2.3.4).
const maxLabelLength = 63

// maxHostLength is the longest DNS name in text form (RFC 1035, section 2.3.4).
const maxHostLength = 253

// Config is the plugin's configuration, decoded by Traefik from the dynamic
// configuration (Docker labels, file provider, Kubernetes CRD).
type Config struct {
	// ContainerHostPrefix is the first part of every container's host name:
	// a user's container is "<prefix>-<name>". It must start with a lowercase
	// letter and hold only lowercase letters and digits: no '-', so that the
	// first '-' of a host always ends the prefix and two routers with
	// different prefixes can never reach the same container. Required;
	// there is no default.
	ContainerHostPrefix string `json:"containerHostPrefix,omitempty"`

	// ContainerPort is the port every user container listens on.
	// Default: 8080.
	ContainerPort int `json:"containerPort,omitempty"`

	// ContainerDomain is an optional DNS suffix appended to the container's
	// name, e.g. "workspaces.svc.cluster.local" gives
	// "vscode-jack.workspaces.svc.cluster.local". Default: empty (the bare
	// name, resolved on the container network).
	ContainerDomain string `json:"containerDomain,omitempty"`

	// UsernameHeader lists, in order, the request headers that may hold the
	// signed-in user's name; the first one present with a non-empty value
	// names the user. A single string may list several, separated by
	// commas, as Traefik's labels give it. Every listed header is trusted,
	// so the authentication layer in front must set each of them and remove
	// clients' copies. Default: "X-Forwarded-Preferred-Username".
	UsernameHeader []string `json:"usernameHeader,omitempty"`

	// UsernamePolicy says how a user name becomes part of a host name:
	// "strict" or "escape". Default: "strict".
	UsernamePolicy string `json:"usernamePolicy,omitempty"`

	// DialTimeout is how long the probe waits for the container to accept a
	// TCP connection, as a Go duration string. Must be positive.
	// Default: "1s".
	DialTimeout string `json:"dialTimeout,omitempty"`

	// ProbeCacheTTL is how long a successful probe is trusted, as a Go
	// duration string; "0s" probes on every request. Default: "10s".
	ProbeCacheTTL string `json:"probeCacheTTL,omitempty"`
}

// CreateConfig returns the default configuration. Traefik calls it before
// decoding the user's settings over it.
func CreateConfig() *Config {
	return &Config{
		ContainerPort:  DefaultContainerPort,
		UsernameHeader: []string{DefaultUsernameHeader},
		UsernamePolicy: DefaultUsernamePolicy,
		DialTimeout:    DefaultDialTimeout,
		ProbeCacheTTL:  DefaultProbeCacheTTL,
	}
}

// settings is the validated, compiled form of a Config.
type settings struct {
	prefix          string   // "vscode"
	hostSuffix      string   // ".domain:port" or ":port"
	usernameHeaders []string // canonical form, in order of precedence
	escape          bool
	dialTimeout     time.Duration
	probeCacheTTL   time.Duration
}

// compile validates every key of the configuration and returns its compiled
// form, or an error that names the key and the bad value.
func (c *Config) compile() (settings, error) {
	var (
		s   settings
		d   time.Duration
		err error
	)
	if c == nil {
		return s, fmt.Errorf("missing configuration: containerHostPrefix is required")
	}

	if c.ContainerHostPrefix == "" {
		return s, fmt.Errorf("containerHostPrefix: required, e.g. \"vscode\"")
	}
	if err := checkPrefix(c.ContainerHostPrefix); err != nil {
		return s, fmt.Errorf("containerHostPrefix: %q %v", c.ContainerHostPrefix, err)
	}
	s.prefix = c.ContainerHostPrefix

	if c.ContainerPort < 1 || c.ContainerPort > 65535 {
		return s, fmt.Errorf("containerPort: must be 1-65535, got %d", c.ContainerPort)
	}

	domain := strings.ToLower(c.ContainerDomain)
	if domain != "" {
		if err := checkDomain(domain); err != nil {
			return s, fmt.Errorf("containerDomain: %q %v", c.ContainerDomain, err)
		}
		s.hostSuffix = "." + domain
	}
	s.hostSuffix += ":" + strconv.Itoa(c.ContainerPort)

	if s.usernameHeaders, err = compileHeaders(c.UsernameHeader); err != nil {
		return s, err
	}

	switch strings.ToLower(strings.TrimSpace(c.UsernamePolicy)) {
	case PolicyStrict:
	case PolicyEscape:
		s.escape = true
	default:
		return s, fmt.Errorf("usernamePolicy: must be %q or %q, got %q", PolicyStrict, PolicyEscape, c.UsernamePolicy)
	}

	d, err = parseDuration("dialTimeout", c.DialTimeout)
	if err != nil {
		return s, err
	}
	if d == 0 {
		return s, fmt.Errorf("dialTimeout: must be positive, got %q", c.DialTimeout)
	}
	s.dialTimeout = d

	if s.probeCacheTTL, err = parseDuration("probeCacheTTL", c.ProbeCacheTTL); err != nil {
		return s, err
	}
	return s, nil
}

// compileHeaders returns the canonical identity headers of a usernameHeader
// setting: a list whose items may themselves be comma-separated lists.
func compileHeaders(list []string) ([]string, error) {
	var headers []string
	for _, item := range list {
		for _, h := range strings.Split(item, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				return nil, fmt.Errorf("usernameHeader: %q holds an empty header name", strings.Join(list, ","))
			}
			if !isToken(h) {
				return nil, fmt.Errorf("usernameHeader: %q is not a valid header name", h)
			}
			canonical := http.CanonicalHeaderKey(h)
			if canonical == ContainerNameHeader {
				return nil, fmt.Errorf("usernameHeader: %q is the header the director sets for the spawner", h)
			}
			for _, seen := range headers {
				if seen == canonical {
					return nil, fmt.Errorf("usernameHeader: %q is listed twice", h)
				}
			}
			headers = append(headers, canonical)
		}
	}
	if len(headers) == 0 {
		return nil, fmt.Errorf("usernameHeader: must name at least one header, e.g. %q", DefaultUsernameHeader)
	}
	return headers, nil
}

// parseDuration parses a non-negative Go duration string for the given key.
func parseDuration(key, value string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(value))
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration like \"1s\" or \"250ms\"", key, value)
	}
	if d < 0 {
		return 0, fmt.Errorf("%s: must not be negative, got %q", key, value)
	}
	return d, nil
}

// checkPrefix reports why prefix cannot start a container's DNS label.
//
// The prefix holds no '-': the host "<prefix>-<name>" then says which prefix
// it was made with (everything before its first '-'), so two routers with
// different prefixes can never reach the same container, whatever names
// their users have. With "jupyter-gpu" allowed, user "gpu-alice" of prefix
// "jupyter" and user "alice" of prefix "jupyter-gpu" would share
// "jupyter-gpu-alice".
func checkPrefix(prefix string) error {
	// The label is "<prefix>-<at least one character>".
	if len(prefix) > maxLabelLength-2 {
		return fmt.Errorf("is longer than %d characters", maxLabelLength-2)
	}
	if c := prefix[0]; c < 'a' || c > 'z' {
		return fmt.Errorf("must start with a lowercase letter")
	}
	if strings.IndexByte(prefix, '-') >= 0 {
		return fmt.Errorf("must not contain '-': the first '-' of a container's name ends its prefix, so that routers with different prefixes never share a container; use %q instead", strings.ReplaceAll(prefix, "-", ""))
	}
	if strings.Trim(prefix, plainBytes) != "" {
		return fmt.Errorf("may hold only lowercase letters a-z and digits 0-9")
	}
	return nil
}

// checkDomain reports why a lowercase domain is not a valid DNS name suffix.
func checkDomain(domain string) error {
	name := strings.TrimSuffix(domain, ".")
	// The whole host is "<label of up to 63>.<domain>".
	if len(name) > maxHostLength-maxLabelLength-1 {
		return fmt.Errorf("is longer than %d characters", maxHostLength-maxLabelLength-1)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("has an empty label")
		}
		if len(label) > maxLabelLength {
			return fmt.Errorf("has a label longer than %d characters", maxLabelLength)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("has a label that starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			if !isLabelByte(label[i]) {
				return fmt.Errorf("may hold only letters, digits, '-' and '.'")
			}
		}
	}
	return nil
}

// isLabelByte reports whether b may appear in a lowercase DNS label.
func isLabelByte(b byte) bool {
	return ('a' <= b && b <= 'z') || ('0' <= b && b <= '9') || b == '-'
}

// isToken reports whether s is a valid HTTP header field name (RFC 9110, section 5.1).
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		// Plain ifs: Yaegi evaluates only the first expression of a
		// multi-expression case in a switch without a tag.
		c := s[i]
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			continue
		}
		if strings.IndexByte("!#$%&'*+-.^_`|~", c) < 0 {
			return false
		}
	}
	return s != ""
}
