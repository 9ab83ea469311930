package main

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Labels that mark a container as created by the spawner. The spawner starts,
// restarts and shows logs only of containers that carry LabelSpawned.
const (
	// LabelSpawned is set to "true" on every container the spawner creates.
	LabelSpawned = "container-director.spawned"
	// LabelUser holds the user name the container was created for.
	LabelUser = "container-director.user"
	// LabelPrefix holds the container name prefix of the spawner that
	// created the container, so that several spawners (say "vscode" and
	// "jupyter") share one engine without counting, listing or stopping
	// each other's containers.
	LabelPrefix = "container-director.prefix"
)

// ownedBy reports whether the labels l of the object name (a container,
// its volume...) make it prefix's spawner's: LabelSpawned=true and
// LabelPrefix=prefix. An object made before LabelPrefix existed has
// LabelSpawned alone: it is prefix's if its name starts with prefix + "-".
func ownedBy(l map[string]string, name, prefix string) bool {
	if l[LabelSpawned] != "true" {
		return false
	}
	if p, ok := l[LabelPrefix]; ok {
		return p == prefix
	}
	return strings.HasPrefix(name, prefix+"-")
}

// Container states as the Docker Engine API reports them in State.Status.
// The process backend uses the same words.
const (
	StatusCreated    = "created"
	StatusRunning    = "running"
	StatusRestarting = "restarting"
	StatusExited     = "exited"
	StatusDead       = "dead"
	StatusPaused     = "paused"
	StatusRemoving   = "removing"
)

// Health states as the Docker Engine API reports them in State.Health.Status.
// An empty Health means the container has no health check.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// ErrNotFound is returned by a Backend when the named container does not exist.
var ErrNotFound = errors.New("container not found")

// ErrExists is returned by Backend.Create when a container of that name
// already exists (the engine's name conflict, HTTP 409). The handler treats it
// as success: someone else created it first.
var ErrExists = errors.New("container already exists")

// ErrUnmanaged is returned by a Backend asked to start or restart a container
// that does not carry the spawner's label.
var ErrUnmanaged = errors.New("container is not managed by the spawner")

// State is what the spawner needs to know about one container.
type State struct {
	// Name is the container name, e.g. "vscode-jack".
	Name string
	// Status is one of the Status* constants (the engine's State.Status).
	Status string
	// Health is one of the Health* constants, or empty without a health check.
	Health string
	// Managed reports whether the container is this spawner's: it carries
	// LabelSpawned=true and the spawner's LabelPrefix (see ownedBy).
	Managed bool
	// User is the value of LabelUser, if any.
	User string
	// ExitCode is the exit code of the last run; meaningful once exited.
	ExitCode int
	// Error is the engine's own error message for the container, if any.
	Error string
	// StartedAt is when the container was last started; zero if never.
	StartedAt time.Time
	// FinishedAt is when the container last stopped; zero if never.
	FinishedAt time.Time
	// OOMKilled reports whether the kernel killed the last run for want of
	// memory.
	OOMKilled bool
}

// Backend creates and inspects user containers. Implementations must be safe
// for concurrent use. Names are validated by the caller before they get here.
type Backend interface {
	// Inspect returns the state of the named container, or ErrNotFound.
	Inspect(ctx context.Context, name string) (State, error)
	// Create creates (but does not start) the named container for user,
	// labelled with LabelSpawned, LabelPrefix and LabelUser. It returns ErrExists if a
	// container of that name already exists.
	Create(ctx context.Context, name, user string) error
	// Start starts the named container; starting a running one is not an
	// error.
	Start(ctx context.Context, name string) error
	// Restart stops (if running) and starts the named container.
	Restart(ctx context.Context, name string) error
	// Logs returns up to the last n lines of the container's output.
	Logs(ctx context.Context, name string, n int) ([]string, error)
	// Stop stops the named container if it runs; its files (and volume)
	// stay. Stopping a stopped one is not an error.
	Stop(ctx context.Context, name string) error
	// Remove removes the named container, never its volume. Removing a
	// missing one is not an error.
	Remove(ctx context.Context, name string) error
	// List returns the containers of the spawner (those it manages, see
	// ownedBy), in any state, never another spawner's: Name, Status,
	// Managed and User at least.
	List(ctx context.Context) ([]State, error)
	// Endpoint is the host:port at which the named container answers once
	// it is ready, as the spawner can dial it.
	Endpoint(name string) string
}

// ActivityMeter is implemented by backends that can tell how much network
// traffic a container has had, the measure of the idle stop.
type ActivityMeter interface {
	// Activity returns a counter that grows with every byte the container
	// sends or receives on its network interfaces.
	Activity(ctx context.Context, name string) (uint64, error)
}
