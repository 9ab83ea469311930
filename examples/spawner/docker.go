package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// DockerConfig configures the Docker Engine API backend.
type DockerConfig struct {
	// Host is the engine's address: "unix:///path/to/socket" or
	// "tcp://host:port". Default: "unix:///var/run/docker.sock".
	Host string
	// APIVersion fixes the API version, e.g. "1.41". Default: empty, the
	// version is negotiated with the engine (the highest both speak), which
	// works from Engine 20.10 (API 1.41) through 29.x (which refuses
	// versions under 1.44).
	APIVersion string
	// Image is the image every user container is created from.
	// Default: "codercom/code-server:4.100.3".
	Image string
	// Prefix is the container name prefix (SPAWNER_CONTAINER_PREFIX): the
	// containers are labelled with it (LabelPrefix) and the backend lists,
	// counts and acts on its own alone. Default: "vscode".
	Prefix string
	// Network is the network the containers join (HostConfig.NetworkMode),
	// with the container name as alias. Required: the director must
	// resolve the name there.
	Network string
	// Port is the port every container answers on. Default: 8080.
	Port int
	// Pull pulls the image when create reports it missing. Default: false
	// here; the command line turns it on.
	Pull bool
	// Volume is the name template of each user's volume, with {name}
	// replaced by the container name (so two users never share one).
	// Default: empty, no volume.
	Volume string
	// VolumePath is where the volume is mounted. Default: "/home/coder".
	VolumePath string
	// Memory limits each container's memory, in bytes. Default: 0, none.
	Memory int64
	// NanoCPUs limits each container's CPU time, in billionths of a CPU.
	// Default: 0, none.
	NanoCPUs int64
	// PidsLimit limits the processes of each container. Default: 0, none.
	PidsLimit int64
	// Env is extra "KEY=value" environment of each container, after
	// USER_NAME. Default: none.
	Env []string
	// Command replaces the image's CMD (the arguments of its entrypoint).
	// Default: the image's.
	Command []string
	// RestartPolicy is the engine's restart policy: "no", "on-failure",
	// "on-failure:N", "unless-stopped" or "always". Default: "no".
	RestartPolicy string
	// StopTimeout is how long a container gets to end after SIGTERM when
	// stopped (idle stop, restart) before SIGKILL. Default: 10s.
	StopTimeout time.Duration
}

// dockerBackend drives the Docker Engine (or Podman's compatible API)
// through the official Go client.
type dockerBackend struct {
	cfg     DockerConfig
	client  *client.Client
	restart container.RestartPolicy
}

var (
	_ Backend       = (*dockerBackend)(nil)
	_ ActivityMeter = (*dockerBackend)(nil)
)

// dockerLogLineMax bounds one log line kept for the error page.
const dockerLogLineMax = 4096

// errPull marks a failed image pull.
var errPull = errors.New("pulling the image failed")

// NewDockerBackend validates cfg and returns a Backend for the engine at
// cfg.Host. It does not contact the engine; CheckNetwork does.
func NewDockerBackend(cfg DockerConfig) (*dockerBackend, error) {
	if cfg.Host == "" {
		cfg.Host = "unix:///var/run/docker.sock"
	}
	if cfg.Image == "" {
		cfg.Image = defaultImage
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "vscode"
	}
	if cfg.Port == 0 {
		cfg.Port = 8080
	}
	if cfg.VolumePath == "" {
		cfg.VolumePath = "/home/coder"
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.Network == "" {
		return nil, errors.New("SPAWNER_NETWORK: required by the docker backend: the network the director resolves the containers on")
	}
	if cfg.Volume != "" {
		if !strings.Contains(cfg.Volume, "{name}") {
			return nil, fmt.Errorf("SPAWNER_VOLUME: %q must contain {name}, so that no two users share a volume", cfg.Volume)
		}
		if !validVolumeName(strings.ReplaceAll(cfg.Volume, "{name}", "vscode-x")) {
			return nil, fmt.Errorf("SPAWNER_VOLUME: %q does not make a valid volume name ([a-zA-Z0-9][a-zA-Z0-9_.-]*)", cfg.Volume)
		}
		if !strings.HasPrefix(cfg.VolumePath, "/") {
			return nil, fmt.Errorf("SPAWNER_VOLUME_PATH: %q must be an absolute path", cfg.VolumePath)
		}
	}
	if cfg.Memory < 0 {
		return nil, fmt.Errorf("SPAWNER_MEMORY: must not be negative, got %d", cfg.Memory)
	}
	if cfg.NanoCPUs < 0 {
		return nil, fmt.Errorf("SPAWNER_CPUS: must not be negative, got %d", cfg.NanoCPUs)
	}
	if cfg.PidsLimit < 0 {
		return nil, fmt.Errorf("SPAWNER_PIDS_LIMIT: must not be negative, got %d", cfg.PidsLimit)
	}
	for _, e := range cfg.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" {
			return nil, fmt.Errorf("SPAWNER_ENV: %q is not KEY=value", e)
		}
	}
	restart, err := parseRestartPolicy(cfg.RestartPolicy)
	if err != nil {
		return nil, err
	}
	if v := strings.TrimPrefix(cfg.APIVersion, "v"); cfg.APIVersion != "" && !validAPIVersion(v) {
		return nil, fmt.Errorf("SPAWNER_DOCKER_API_VERSION: %q is not an API version such as 1.41 (leave it empty to negotiate)", cfg.APIVersion)
	}
	opts := []client.Opt{client.WithHost(cfg.Host)}
	if cfg.APIVersion != "" {
		opts = append(opts, client.WithAPIVersion(strings.TrimPrefix(cfg.APIVersion, "v")))
	} else {
		opts = append(opts, client.WithAPIVersionNegotiation())
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("DOCKER_HOST: %w", err)
	}
	return &dockerBackend{cfg: cfg, client: c, restart: restart}, nil
}

// Close releases the client's connections.
func (d *dockerBackend) Close() { _ = d.client.Close() }

// parseRestartPolicy parses the restart policy setting.
func parseRestartPolicy(s string) (container.RestartPolicy, error) {
	name, count, hasCount := strings.Cut(s, ":")
	p := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch p.Name {
	case "", container.RestartPolicyDisabled:
		p.Name = container.RestartPolicyDisabled
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
	case container.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil || n < 0 {
				return p, fmt.Errorf("SPAWNER_RESTART_POLICY: bad retry count in %q", s)
			}
			p.MaximumRetryCount = n
		}
		return p, nil
	default:
		return p, fmt.Errorf("SPAWNER_RESTART_POLICY: %q is not no, on-failure[:N], unless-stopped or always", s)
	}
	if hasCount {
		return p, fmt.Errorf("SPAWNER_RESTART_POLICY: only on-failure takes a retry count, got %q", s)
	}
	return p, nil
}

// validAPIVersion reports whether v is MAJOR.MINOR, in digits.
func validAPIVersion(v string) bool {
	major, minor, ok := strings.Cut(v, ".")
	_, err1 := strconv.ParseUint(major, 10, 16)
	_, err2 := strconv.ParseUint(minor, 10, 16)
	return ok && err1 == nil && err2 == nil
}

// validVolumeName reports whether s is a name the engine accepts for a
// local volume.
func validVolumeName(s string) bool {
	if len(s) < 2 || len(s) > 255 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i > 0 {
			ok = ok || c == '_' || c == '.' || c == '-'
		}
		if !ok {
			return false
		}
	}
	return true
}

// CheckNetwork makes sure the engine answers and the configured network
// exists: a spawner that would create containers the director cannot reach
// must not start. It also checks SPAWNER_CPUS against the engine's CPUs.
func (d *dockerBackend) CheckNetwork(ctx context.Context) error {
	res, err := d.client.NetworkInspect(ctx, d.cfg.Network, client.NetworkInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return fmt.Errorf("SPAWNER_NETWORK: network %q does not exist on the engine (create it, or name the one the director is on)", d.cfg.Network)
	}
	if client.IsErrConnectionFailed(err) {
		return fmt.Errorf("DOCKER_HOST: the engine at %q does not answer: %w", d.cfg.Host, err)
	}
	if err != nil {
		return fmt.Errorf("SPAWNER_NETWORK: checking network %q: %w", d.cfg.Network, err)
	}
	// The engine refuses the name alias on its predefined networks at
	// every create, and the director could not resolve the name there.
	if res.Network.Driver == "host" || res.Network.Driver == "null" ||
		res.Network.Options["com.docker.network.bridge.default_bridge"] == "true" {
		return fmt.Errorf("SPAWNER_NETWORK: %q is one of the engine's predefined networks (default bridge, host, none), where containers cannot be reached by name; create one (docker network create NAME) and put the director on it", d.cfg.Network)
	}
	if d.cfg.NanoCPUs > 0 {
		// The engine refuses, at every create, more CPUs than it has.
		info, err := d.client.Info(ctx, client.InfoOptions{})
		if err != nil {
			return fmt.Errorf("SPAWNER_CPUS: asking the engine how many CPUs it has: %w", err)
		}
		if n := info.Info.NCPU; n > 0 && d.cfg.NanoCPUs > int64(n)*1e9 {
			return fmt.Errorf("SPAWNER_CPUS: %g is more than the engine's %d CPUs", float64(d.cfg.NanoCPUs)/1e9, n)
		}
	}
	return nil
}

// APIVersion returns the API version in use (after negotiation).
func (d *dockerBackend) APIVersion() string { return d.client.ClientVersion() }

// Endpoint implements Backend: the container's name on the network.
func (d *dockerBackend) Endpoint(name string) string {
	return net.JoinHostPort(name, strconv.Itoa(d.cfg.Port))
}

// volumeName is name's volume, or "" without volumes.
func (d *dockerBackend) volumeName(name string) string {
	if d.cfg.Volume == "" {
		return ""
	}
	return strings.ReplaceAll(d.cfg.Volume, "{name}", name)
}

// stateOf turns an inspect answer into a State; Managed if the container
// is prefix's spawner's.
func stateOf(name, prefix string, info container.InspectResponse) State {
	st := State{Name: name}
	if info.Config != nil {
		st.Managed = ownedBy(info.Config.Labels, name, prefix)
		st.User = info.Config.Labels[LabelUser]
	}
	if s := info.State; s != nil {
		st.Status = string(s.Status)
		st.ExitCode = s.ExitCode
		st.Error = s.Error
		st.OOMKilled = s.OOMKilled
		st.StartedAt = parseEngineTime(s.StartedAt)
		st.FinishedAt = parseEngineTime(s.FinishedAt)
		if s.Health != nil {
			st.Health = string(s.Health.Status)
		}
	}
	return st
}

// Inspect implements Backend.
func (d *dockerBackend) Inspect(ctx context.Context, name string) (State, error) {
	res, err := d.client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return State{}, ErrNotFound
	}
	if err != nil {
		return State{}, fmt.Errorf("inspecting container %q: %w", name, err)
	}
	return stateOf(name, d.cfg.Prefix, res.Container), nil
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

// List implements Backend.
func (d *dockerBackend) List(ctx context.Context) ([]State, error) {
	res, err := d.client.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", LabelSpawned+"=true"),
	})
	if err != nil {
		return nil, fmt.Errorf("listing containers: %w", err)
	}
	out := make([]State, 0, len(res.Items))
	for _, c := range res.Items {
		name := ""
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		// The engine filters on LabelSpawned; another spawner's
		// containers (another prefix) carry it too.
		if !ownedBy(c.Labels, name, d.cfg.Prefix) {
			continue
		}
		// The list tells neither exit codes nor times: Inspect does.
		out = append(out, State{Name: name, Status: string(c.State), Managed: true, User: c.Labels[LabelUser]})
	}
	return out, nil
}

// ensureVolume creates user's volume for name, labelled with its owner, or
// checks that the existing one is the user's.
func (d *dockerBackend) ensureVolume(ctx context.Context, vol, user string) error {
	res, err := d.client.VolumeInspect(ctx, vol, client.VolumeInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		created, err := d.client.VolumeCreate(ctx, client.VolumeCreateOptions{
			Name: vol, Labels: map[string]string{LabelSpawned: "true", LabelPrefix: d.cfg.Prefix, LabelUser: user},
		})
		if err != nil {
			return fmt.Errorf("creating volume %q: %w", vol, err)
		}
		// A create of a name that exists is no error: the engine answers
		// with the existing volume, labels and all. Someone else's create
		// between the inspect and ours made it theirs.
		res.Volume = created.Volume
	} else if err != nil {
		return fmt.Errorf("inspecting volume %q: %w", vol, err)
	}
	labels := res.Volume.Labels
	if labels[LabelSpawned] != "true" || labels[LabelUser] != user {
		return fmt.Errorf("volume %q: %w: it is not %q's", vol, ErrUnmanaged, user)
	}
	return nil
}

// Create implements Backend.
func (d *dockerBackend) Create(ctx context.Context, name, user string) error {
	cfg := &container.Config{
		Image:    d.cfg.Image,
		Hostname: name,
		Env:      append([]string{"USER_NAME=" + user}, d.cfg.Env...),
		Labels:   map[string]string{LabelSpawned: "true", LabelPrefix: d.cfg.Prefix, LabelUser: user},
	}
	if len(d.cfg.Command) > 0 {
		cfg.Cmd = append([]string(nil), d.cfg.Command...)
	}
	host := &container.HostConfig{
		NetworkMode:   container.NetworkMode(d.cfg.Network),
		RestartPolicy: d.restart,
		SecurityOpt:   []string{"no-new-privileges:true"},
	}
	host.Memory = d.cfg.Memory
	host.NanoCPUs = d.cfg.NanoCPUs
	if d.cfg.PidsLimit > 0 {
		limit := d.cfg.PidsLimit
		host.PidsLimit = &limit
	}
	if vol := d.volumeName(name); vol != "" {
		if err := d.ensureVolume(ctx, vol, user); err != nil {
			return fmt.Errorf("creating container %q: %w", name, err)
		}
		host.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: d.cfg.VolumePath}}
	}
	opts := client.ContainerCreateOptions{
		Name: name, Config: cfg, HostConfig: host,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			d.cfg.Network: {Aliases: []string{name}},
		}},
	}
	_, err := d.client.ContainerCreate(ctx, opts)
	if d.cfg.Pull && isNoSuchImage(err) {
		if perr := d.pull(ctx); perr != nil {
			return fmt.Errorf("creating container %q: %w", name, perr)
		}
		reportProgress(ctx, Progress{Stage: stageCreating})
		_, err = d.client.ContainerCreate(ctx, opts)
	}
	if cerrdefs.IsConflict(err) {
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("creating container %q: %w", name, err)
	}
	return nil
}

func isNoSuchImage(err error) bool {
	return cerrdefs.IsNotFound(err) && strings.Contains(strings.ToLower(err.Error()), "no such image")
}

// pull pulls the configured image. The engine reports a failure inside the
// progress stream, after a 200; Wait reads it there.
func (d *dockerBackend) pull(ctx context.Context) error {
	reportProgress(ctx, Progress{Stage: stagePulling, Detail: d.cfg.Image})
	resp, err := d.client.ImagePull(ctx, d.cfg.Image, client.ImagePullOptions{})
	if err != nil {
		return fmt.Errorf("%w: %q: %w", errPull, d.cfg.Image, err)
	}
	defer resp.Close()
	var bytes pullCounter
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return fmt.Errorf("%w: %q: %w", errPull, d.cfg.Image, err)
		}
		if msg.Error != nil {
			return fmt.Errorf("%w: %q: %s", errPull, d.cfg.Image, msg.Error.Message)
		}
		var current, total int64
		if msg.Progress != nil {
			current, total = msg.Progress.Current, msg.Progress.Total
		}
		current, total = bytes.add(msg.ID, msg.Status, current, total)
		reportProgress(ctx, Progress{Stage: stagePulling, Current: current, Total: total})
	}
	return nil
}

// requireManaged refuses to act on a container the spawner did not create.
func (d *dockerBackend) requireManaged(ctx context.Context, name string) error {
	st, err := d.Inspect(ctx, name)
	if err != nil {
		return err
	}
	if !st.Managed {
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
	_, err := d.client.ContainerStart(ctx, name, client.ContainerStartOptions{})
	if cerrdefs.IsNotFound(err) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("starting container %q: %w", name, err)
	}
	return nil
}

// stopSeconds is StopTimeout in the engine's unit.
func (d *dockerBackend) stopSeconds() *int {
	s := int((d.cfg.StopTimeout + time.Second - 1) / time.Second)
	return &s
}

// Restart implements Backend.
func (d *dockerBackend) Restart(ctx context.Context, name string) error {
	if err := d.requireManaged(ctx, name); err != nil {
		return err
	}
	_, err := d.client.ContainerRestart(ctx, name, client.ContainerRestartOptions{Timeout: d.stopSeconds()})
	if cerrdefs.IsNotFound(err) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("restarting container %q: %w", name, err)
	}
	return nil
}

// Stop implements Backend.
func (d *dockerBackend) Stop(ctx context.Context, name string) error {
	if err := d.requireManaged(ctx, name); err != nil {
		return err
	}
	_, err := d.client.ContainerStop(ctx, name, client.ContainerStopOptions{Timeout: d.stopSeconds()})
	if cerrdefs.IsNotFound(err) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("stopping container %q: %w", name, err)
	}
	return nil
}

// Remove implements Backend. The volume stays: RemoveVolumes only concerns
// anonymous volumes, and is off.
func (d *dockerBackend) Remove(ctx context.Context, name string) error {
	err := d.requireManaged(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	_, err = d.client.ContainerRemove(ctx, name, client.ContainerRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("removing container %q: %w", name, err)
	}
	return nil
}

// Activity implements ActivityMeter: bytes received and sent on all the
// container's interfaces, from one stats sample.
func (d *dockerBackend) Activity(ctx context.Context, name string) (uint64, error) {
	res, err := d.client.ContainerStats(ctx, name, client.ContainerStatsOptions{})
	if cerrdefs.IsNotFound(err) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("reading stats of %q: %w", name, err)
	}
	defer res.Body.Close()
	var stats container.StatsResponse
	if err := json.NewDecoder(io.LimitReader(res.Body, 1<<20)).Decode(&stats); err != nil {
		return 0, fmt.Errorf("decoding stats of %q: %w", name, err)
	}
	var total uint64
	for _, n := range stats.Networks {
		total += n.RxBytes + n.TxBytes
	}
	return total, nil
}

// Logs implements Backend. Without a TTY the engine multiplexes stdout and
// stderr in frames (8-byte headers), which stdcopy takes apart.
func (d *dockerBackend) Logs(ctx context.Context, name string, n int) ([]string, error) {
	res, err := d.client.ContainerInspect(ctx, name, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	tty := res.Container.Config != nil && res.Container.Config.Tty
	rc, err := d.client.ContainerLogs(ctx, name, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Tail: strconv.Itoa(n),
	})
	if cerrdefs.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	defer rc.Close()
	limited := io.LimitReader(rc, 1<<20)
	var out bytes.Buffer
	if tty {
		_, err = io.Copy(&out, limited)
	} else {
		_, err = stdcopy.StdCopy(&out, &out, limited)
	}
	if err != nil && out.Len() == 0 {
		return nil, fmt.Errorf("reading logs of %q: %w", name, err)
	}
	return lastLines(out.Bytes(), n), nil
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
