package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DockerConfig configures the Docker Engine API backend.
type DockerConfig struct {
	// Host is the engine's address: "unix:///path/to/socket" or
	// "tcp://host:port". Default: "unix:///var/run/docker.sock".
	Host string
	// APIVersion is the API version prefix used in every path, e.g. "1.41".
	// Default: "1.41".
	APIVersion string
	// Image is the image every user container is created from.
	// Default: "codercom/code-server:latest".
	Image string
	// Network is the network the containers join (HostConfig.NetworkMode),
	// with the container name as alias. Default: empty, the engine's default.
	Network string
	// Pull pulls the image when create reports it missing. Default: false
	// here; the command line turns it on.
	Pull bool
}

// dockerBackend talks to the Docker Engine API (or Podman's compatible API)
// over plain HTTP, usually on a Unix socket.
type dockerBackend struct {
	cfg    DockerConfig
	client *http.Client
	base   string // "http://docker/v1.41"
}

var _ Backend = (*dockerBackend)(nil)

// dockerLogLineMax bounds one log line kept for the error page.
const dockerLogLineMax = 4096

// NewDockerBackend returns a Backend for the engine at cfg.Host.
func NewDockerBackend(cfg DockerConfig) (Backend, error) {
	if cfg.Host == "" {
		cfg.Host = "unix:///var/run/docker.sock"
	}
	if cfg.APIVersion == "" {
		cfg.APIVersion = "1.41"
	}
	if cfg.Image == "" {
		cfg.Image = "codercom/code-server:latest"
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("docker-host: parsing %q: %w", cfg.Host, err)
	}
	var network, address, host string
	switch u.Scheme {
	case "unix":
		network, address, host = "unix", u.Path, "docker"
		if address == "" {
			return nil, fmt.Errorf("docker-host: %q has no socket path", cfg.Host)
		}
	case "tcp", "http":
		network, address, host = "tcp", u.Host, u.Host
		if address == "" {
			return nil, fmt.Errorf("docker-host: %q has no address", cfg.Host)
		}
	default:
		return nil, fmt.Errorf("docker-host: unsupported scheme in %q (want unix:// or tcp://)", cfg.Host)
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, address)
		},
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		DisableCompression:    true,
	}
	return &dockerBackend{
		cfg: cfg,
		// Pulling an image streams for minutes; each call is bounded by its
		// context, this is only the outer limit.
		client: &http.Client{Transport: transport, Timeout: 15 * time.Minute},
		base:   "http://" + host + "/v" + strings.TrimPrefix(cfg.APIVersion, "v"),
	}, nil
}

// dockerError is an engine error response.
type dockerError struct {
	status  int
	message string
}

func (e *dockerError) Error() string {
	return fmt.Sprintf("docker engine: status %d: %s", e.status, e.message)
}

// do sends one request; on a status >= 400 it returns a *dockerError.
func (d *dockerBackend) do(ctx context.Context, method, path string, query url.Values, body any) (*http.Response, error) {
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding request body: %w", err)
		}
		reader = bytes.NewReader(b)
	}
	target := d.base + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return nil, fmt.Errorf("building request %s %q: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("calling docker engine %s %q: %w", method, path, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var msg struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &msg) != nil || msg.Message == "" {
			msg.Message = strings.TrimSpace(string(b))
		}
		return nil, &dockerError{status: resp.StatusCode, message: msg.Message}
	}
	return resp, nil
}

// discard drains and closes a response body so the connection is reused.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}

func containerPath(name, suffix string) string {
	return "/containers/" + url.PathEscape(name) + suffix
}

func statusOf(err error) int {
	var de *dockerError
	if errors.As(err, &de) {
		return de.status
	}
	return 0
}

// inspectResponse is the part of GET /containers/{name}/json the spawner uses.
type inspectResponse struct {
	Name  string `json:"Name"`
	State struct {
		Status     string `json:"Status"`
		ExitCode   int    `json:"ExitCode"`
		Error      string `json:"Error"`
		StartedAt  string `json:"StartedAt"`
		FinishedAt string `json:"FinishedAt"`
		Health     *struct {
			Status string `json:"Status"`
		} `json:"Health"`
	} `json:"State"`
	Config struct {
		Tty    bool              `json:"Tty"`
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

// Inspect implements Backend.
func (d *dockerBackend) Inspect(ctx context.Context, name string) (State, error) {
	info, err := d.inspect(ctx, name)
	if err != nil {
		return State{}, err
	}
	st := State{
		Name:       name,
		Status:     info.State.Status,
		Managed:    info.Config.Labels[LabelSpawned] == "true",
		User:       info.Config.Labels[LabelUser],
		ExitCode:   info.State.ExitCode,
		Error:      info.State.Error,
		StartedAt:  parseEngineTime(info.State.StartedAt),
		FinishedAt: parseEngineTime(info.State.FinishedAt),
	}
	if info.State.Health != nil {
		st.Health = info.State.Health.Status
	}
	return st, nil
}

func (d *dockerBackend) inspect(ctx context.Context, name string) (*inspectResponse, error) {
	resp, err := d.do(ctx, http.MethodGet, containerPath(name, "/json"), nil, nil)
	if statusOf(err) == http.StatusNotFound {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("inspecting container %q: %w", name, err)
	}
	defer discard(resp)
	var info inspectResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&info); err != nil {
		return nil, fmt.Errorf("decoding inspect response for %q: %w", name, err)
	}
	return &info, nil
}

// parseEngineTime parses the engine's RFC 3339 timestamps; the engine reports
// "0001-01-01T00:00:00Z" for never, which becomes the zero time.
func parseEngineTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// createRequest is the body of POST /containers/create.
type createRequest struct {
	Image            string            `json:"Image"`
	Hostname         string            `json:"Hostname,omitempty"`
	Env              []string          `json:"Env"`
	Labels           map[string]string `json:"Labels"`
	HostConfig       createHostConfig  `json:"HostConfig"`
	NetworkingConfig *networkingConfig `json:"NetworkingConfig,omitempty"`
}

type createHostConfig struct {
	NetworkMode string `json:"NetworkMode,omitempty"`
}

type networkingConfig struct {
	EndpointsConfig map[string]endpointConfig `json:"EndpointsConfig"`
}

type endpointConfig struct {
	Aliases []string `json:"Aliases,omitempty"`
}

// Create implements Backend.
func (d *dockerBackend) Create(ctx context.Context, name, user string) error {
	body := createRequest{
		Image:    d.cfg.Image,
		Hostname: name,
		Env:      []string{"USER_NAME=" + user},
		Labels:   map[string]string{LabelSpawned: "true", LabelUser: user},
	}
	if d.cfg.Network != "" {
		body.HostConfig.NetworkMode = d.cfg.Network
		body.NetworkingConfig = &networkingConfig{EndpointsConfig: map[string]endpointConfig{
			d.cfg.Network: {Aliases: []string{name}},
		}}
	}
	query := url.Values{"name": {name}}
	resp, err := d.do(ctx, http.MethodPost, "/containers/create", query, body)
	if d.cfg.Pull && isNoSuchImage(err) {
		if perr := d.pull(ctx); perr != nil {
			return fmt.Errorf("creating container %q: %w", name, perr)
		}
		reportProgress(ctx, Progress{Stage: stageCreating})
		resp, err = d.do(ctx, http.MethodPost, "/containers/create", query, body)
	}
	if statusOf(err) == http.StatusConflict {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("creating container %q: %w", name, err)
	}
	discard(resp)
	return nil
}

func isNoSuchImage(err error) bool {
	var de *dockerError
	return errors.As(err, &de) && de.status == http.StatusNotFound &&
		strings.Contains(strings.ToLower(de.message), "no such image")
}

// pull pulls the configured image. The engine streams JSON progress lines and
// reports a failure as an "error" field in that stream, after a 200.
func (d *dockerBackend) pull(ctx context.Context) error {
	image, tag := d.cfg.Image, "latest"
	// The tag follows the last colon after the last slash (a registry
	// address may have a port), and a digest is not a tag.
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") && !strings.Contains(image, "@") {
		image, tag = image[:i], image[i+1:]
	}
	query := url.Values{"fromImage": {image}}
	if !strings.Contains(image, "@") {
		query.Set("tag", tag)
	}
	resp, err := d.do(ctx, http.MethodPost, "/images/create", query, nil)
	if err != nil {
		return fmt.Errorf("pulling image %q: %w", d.cfg.Image, err)
	}
	defer discard(resp)
	reportProgress(ctx, Progress{Stage: stagePulling, Detail: d.cfg.Image})
	var bytes pullCounter
	dec := json.NewDecoder(resp.Body)
	for {
		var msg pullMessage
		if err := dec.Decode(&msg); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("pulling image %q: reading progress: %w", d.cfg.Image, err)
		}
		if msg.Error != "" {
			return fmt.Errorf("pulling image %q: %s", d.cfg.Image, msg.Error)
		}
		current, total := bytes.add(msg)
		reportProgress(ctx, Progress{Stage: stagePulling, Current: current, Total: total})
	}
}

// requireManaged refuses to act on a container the spawner did not create.
func (d *dockerBackend) requireManaged(ctx context.Context, name string) error {
	info, err := d.inspect(ctx, name)
	if err != nil {
		return err
	}
	if info.Config.Labels[LabelSpawned] != "true" {
		return fmt.Errorf("container %q: %w", name, ErrUnmanaged)
	}
	return nil
}

// Start implements Backend. The engine answers 204, or 304 if it is already
// running.
func (d *dockerBackend) Start(ctx context.Context, name string) error {
	if err := d.requireManaged(ctx, name); err != nil {
		return err
	}
	resp, err := d.do(ctx, http.MethodPost, containerPath(name, "/start"), nil, nil)
	if statusOf(err) == http.StatusNotFound {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("starting container %q: %w", name, err)
	}
	discard(resp)
	return nil
}

// Restart implements Backend.
func (d *dockerBackend) Restart(ctx context.Context, name string) error {
	if err := d.requireManaged(ctx, name); err != nil {
		return err
	}
	resp, err := d.do(ctx, http.MethodPost, containerPath(name, "/restart"), url.Values{"t": {"10"}}, nil)
	if statusOf(err) == http.StatusNotFound {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("restarting container %q: %w", name, err)
	}
	discard(resp)
	return nil
}

// Logs implements Backend.
func (d *dockerBackend) Logs(ctx context.Context, name string, n int) ([]string, error) {
	query := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(n)}}
	resp, err := d.do(ctx, http.MethodGet, containerPath(name, "/logs"), query, nil)
	if statusOf(err) == http.StatusNotFound {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	defer discard(resp)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	if d.multiplexed(ctx, name, resp.Header.Get("Content-Type"), raw) {
		raw = demultiplex(raw)
	}
	return lastLines(raw, n), nil
}

// multiplexed reports whether a logs response uses the multiplexed stream
// format. The engine multiplexes stdout and stderr (8-byte frame headers)
// unless the container has a TTY, but before API 1.42 it labels both formats
// "application/vnd.docker.raw-stream"; so the container's Tty setting
// decides, and the first bytes if that cannot be read.
func (d *dockerBackend) multiplexed(ctx context.Context, name, contentType string, raw []byte) bool {
	if contentType == "application/vnd.docker.multiplexed-stream" {
		return true
	}
	if info, err := d.inspect(ctx, name); err == nil {
		return !info.Config.Tty
	}
	return looksMultiplexed(raw)
}

// looksMultiplexed reports whether b starts with a stream frame header.
func looksMultiplexed(b []byte) bool {
	return len(b) >= 8 && b[0] <= 2 && b[1] == 0 && b[2] == 0 && b[3] == 0
}

// demultiplex joins the payloads of a multiplexed stream: frames of
// [stream type, 0, 0, 0, size (big-endian uint32)] followed by size bytes.
// A truncated last frame keeps what it has.
func demultiplex(b []byte) []byte {
	var out []byte
	for len(b) >= 8 {
		size := int(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
		if size > len(b) {
			size = len(b)
		}
		out = append(out, b[:size]...)
		b = b[size:]
	}
	return out
}

// lastLines splits b into lines and keeps the last n, each cut to a sane
// length.
func lastLines(b []byte, n int) []string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if len(line) > dockerLogLineMax {
			line = line[:dockerLogLineMax]
		}
		lines = append(lines, strings.ToValidUTF8(line, "\uFFFD"))
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}
