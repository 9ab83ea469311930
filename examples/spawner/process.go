package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProcessConfig configures the local-process backend.
type ProcessConfig struct {
	// Command is the command line of one "container", split into arguments
	// (no shell). The placeholders {addr}, {port}, {name} and {user} are
	// replaced in every argument. Default: the spawner binary itself in
	// workspace mode, "spawner workspace -listen {addr}:{port} -user {user}".
	Command []string
	// Executable is the binary of the default Command. Default: the running
	// executable (os.Executable).
	Executable string
	// StartDelay is passed to the default Command as -start-delay, so that
	// the loading stages can be seen. Default: 0.
	StartDelay time.Duration
	// Addrs is the inclusive range of loopback addresses handed out, one per
	// container, e.g. "127.0.1.1-127.0.1.254". Default: that range.
	Addrs string
	// Port is the port every process listens on. Default: 8080.
	Port int
	// HostsFile, when set, gets a line "ADDR NAME" appended for every
	// container, so that the name resolves. Default: empty, no hosts file.
	HostsFile string
	// StopTimeout is how long a process gets after SIGTERM before SIGKILL.
	// Default: 5s.
	StopTimeout time.Duration
	// Logger receives process lifecycle events. Default: slog.Default().
	Logger *slog.Logger
}

// processBackend runs each "container" as a local process group listening on
// its own loopback address. It is meant for demos and tests on machines
// without a container engine.
type processBackend struct {
	cfg         ProcessConfig
	first, last netip.Addr

	mu     sync.Mutex
	procs  map[string]*proc
	closed bool
}

var _ Backend = (*processBackend)(nil)

// proc is one "container". Its fields are guarded by processBackend.mu.
type proc struct {
	name, user, addr string
	logs             *ringBuffer
	status           string
	exitCode         int
	startedAt        time.Time
	finishedAt       time.Time
	cmd              *exec.Cmd
	done             chan struct{} // closed when the current run has ended
}

// NewProcessBackend validates cfg and returns the backend. Call Close to
// stop every process it started.
func NewProcessBackend(cfg ProcessConfig) (*processBackend, error) {
	if cfg.Addrs == "" {
		cfg.Addrs = "127.0.1.1-127.0.1.254"
	}
	if cfg.Port == 0 {
		cfg.Port = 8080
	}
	if cfg.Port < 1 || cfg.Port > 65535 {
		return nil, fmt.Errorf("container-port: must be 1-65535, got %d", cfg.Port)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	first, last, err := parseAddrRange(cfg.Addrs)
	if err != nil {
		return nil, fmt.Errorf("SPAWNER_PROCESS_ADDRS (-process-addrs): %w", err)
	}
	if len(cfg.Command) == 0 && cfg.Executable == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the spawner executable for the default process-command: %w", err)
		}
		cfg.Executable = exe
	}
	return &processBackend{cfg: cfg, first: first, last: last, procs: map[string]*proc{}}, nil
}

// parseAddrRange parses "A-B" (or a single address) into an IPv4 range.
func parseAddrRange(s string) (first, last netip.Addr, err error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	first, err = netip.ParseAddr(strings.TrimSpace(lo))
	if err != nil {
		return first, last, fmt.Errorf("parsing range %q: %w", s, err)
	}
	last, err = netip.ParseAddr(strings.TrimSpace(hi))
	if err != nil {
		return first, last, fmt.Errorf("parsing range %q: %w", s, err)
	}
	if !first.Is4() || !last.Is4() || last.Less(first) {
		return first, last, fmt.Errorf("range %q must be two IPv4 addresses, lowest first", s)
	}
	return first, last, nil
}

// Addr returns the loopback address of the named container, or "" if the
// backend does not know it.
func (b *processBackend) Addr(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.procs[name]; p != nil {
		return p.addr
	}
	return ""
}

// Inspect implements Backend. A live process that does not accept
// connections yet reports Health "starting", one that does "healthy".
func (b *processBackend) Inspect(_ context.Context, name string) (State, error) {
	b.mu.Lock()
	p := b.procs[name]
	if p == nil {
		b.mu.Unlock()
		return State{}, ErrNotFound
	}
	st := State{
		Name:       name,
		Status:     p.status,
		Managed:    true,
		User:       p.user,
		ExitCode:   p.exitCode,
		StartedAt:  p.startedAt,
		FinishedAt: p.finishedAt,
	}
	addr := net.JoinHostPort(p.addr, strconv.Itoa(b.cfg.Port))
	b.mu.Unlock()
	if st.Status == StatusRunning {
		st.Health = HealthStarting
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			st.Health = HealthHealthy
		}
	}
	return st, nil
}

// Create implements Backend: it reserves an address and makes the name
// resolvable; Start runs the process.
func (b *processBackend) Create(ctx context.Context, name, user string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errors.New("process backend is shut down")
	}
	if b.procs[name] != nil {
		return ErrExists
	}
	addr, err := b.allocate(name)
	if err != nil {
		return err
	}
	if b.cfg.HostsFile != "" {
		if err := appendHostsLine(b.cfg.HostsFile, addr, name); err != nil {
			return err
		}
	}
	b.procs[name] = &proc{name: name, user: user, addr: addr, logs: newRingBuffer(200), status: StatusCreated}
	reportProgress(ctx, Progress{Stage: stageCreating, Detail: "address " + addr})
	b.cfg.Logger.Info("process created", "container", name, "user", user, "addr", addr)
	return nil
}

// allocate picks the address for name: the one the hosts file already maps
// it to, if that is in range and free, else the lowest free one. Called with
// b.mu held.
func (b *processBackend) allocate(name string) (string, error) {
	used := map[string]bool{}
	for _, p := range b.procs {
		used[p.addr] = true
	}
	if b.cfg.HostsFile != "" {
		if prev, ok := lookupHostsFile(b.cfg.HostsFile, name); ok {
			a, err := netip.ParseAddr(prev)
			if err == nil && !a.Less(b.first) && !b.last.Less(a) && !used[prev] {
				return prev, nil
			}
		}
	}
	for a := b.first; a.IsValid() && !b.last.Less(a); a = a.Next() {
		if !used[a.String()] {
			return a.String(), nil
		}
	}
	return "", fmt.Errorf("no free address left in process-addrs %q", b.cfg.Addrs)
}

// Start implements Backend.
func (b *processBackend) Start(ctx context.Context, name string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.procs[name]
	if p == nil {
		return ErrNotFound
	}
	if p.status == StatusRunning {
		return nil
	}
	if err := b.launch(p); err != nil {
		return err
	}
	reportProgress(ctx, Progress{Stage: stageStarting, Detail: "process " + strconv.Itoa(p.cmd.Process.Pid)})
	return nil
}

// Restart implements Backend.
func (b *processBackend) Restart(ctx context.Context, name string) error {
	b.mu.Lock()
	p := b.procs[name]
	b.mu.Unlock()
	if p == nil {
		return ErrNotFound
	}
	b.stop(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	if p.status == StatusRunning {
		return nil // someone else started it meanwhile
	}
	return b.launch(p)
}

// Logs implements Backend.
func (b *processBackend) Logs(_ context.Context, name string, n int) ([]string, error) {
	b.mu.Lock()
	p := b.procs[name]
	b.mu.Unlock()
	if p == nil {
		return nil, ErrNotFound
	}
	return p.logs.Last(n), nil
}

// Close stops every process and refuses new ones.
func (b *processBackend) Close() {
	b.mu.Lock()
	b.closed = true
	procs := make([]*proc, 0, len(b.procs))
	for _, p := range b.procs {
		procs = append(procs, p)
	}
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func(p *proc) {
			defer wg.Done()
			b.stop(p)
		}(p)
	}
	wg.Wait()
}

// command returns the argument list for p with the placeholders filled in.
func (b *processBackend) command(p *proc) []string {
	args := b.cfg.Command
	if len(args) == 0 {
		args = []string{b.cfg.Executable, "workspace", "-listen", "{addr}:{port}", "-user", "{user}"}
		if b.cfg.StartDelay > 0 {
			args = append(args, "-start-delay", b.cfg.StartDelay.String())
		}
	}
	r := strings.NewReplacer("{addr}", p.addr, "{port}", strconv.Itoa(b.cfg.Port), "{name}", p.name, "{user}", p.user)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

// launch starts p's process. Called with b.mu held.
func (b *processBackend) launch(p *proc) error {
	if b.closed {
		return errors.New("process backend is shut down")
	}
	args := b.command(p)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "USER_NAME="+p.user, "CONTAINER_NAME="+p.name)
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	cmd.SysProcAttr = processAttributes()
	// A grandchild that keeps the output pipe open must not keep Wait
	// from returning.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		p.status = StatusExited
		p.exitCode = 127
		p.finishedAt = time.Now()
		fmt.Fprintf(p.logs, "spawner: starting %q: %v\n", args[0], err)
		return fmt.Errorf("starting process for %q: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.status, p.exitCode = StatusRunning, 0
	p.startedAt, p.finishedAt = time.Now(), time.Time{}
	b.cfg.Logger.Info("process started", "container", p.name, "user", p.user, "pid", cmd.Process.Pid, "addr", p.addr)
	go func() {
		err := cmd.Wait()
		code := exitCode(cmd.ProcessState)
		b.mu.Lock()
		p.status, p.exitCode, p.finishedAt = StatusExited, code, time.Now()
		b.mu.Unlock()
		close(done)
		b.cfg.Logger.Info("process exited", "container", p.name, "user", p.user, "exit_code", code, "wait_error", errString(err))
	}()
	return nil
}

// stop ends p's process group: SIGTERM, then SIGKILL after StopTimeout.
func (b *processBackend) stop(p *proc) {
	b.mu.Lock()
	cmd, done, running := p.cmd, p.done, p.status == StatusRunning
	b.mu.Unlock()
	if !running || cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(b.cfg.StopTimeout):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
	// Whatever the leader left behind in its group goes too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// pid returns the process id of name's current run, or 0.
func (b *processBackend) pid(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.procs[name]; p != nil && p.cmd != nil && p.status == StatusRunning {
		return p.cmd.Process.Pid
	}
	return 0
}

// exitCode reports the code like a container engine does: the exit status,
// or 128+signal for a process killed by a signal.
func exitCode(ps *os.ProcessState) int {
	if ps == nil {
		return -1
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Stop implements Backend: the process group gets SIGTERM, then SIGKILL.
func (b *processBackend) Stop(_ context.Context, name string) error {
	b.mu.Lock()
	p := b.procs[name]
	b.mu.Unlock()
	if p == nil {
		return ErrNotFound
	}
	b.stop(p)
	return nil
}

// Remove implements Backend: the process is stopped and forgotten; its
// address goes back to the pool.
func (b *processBackend) Remove(ctx context.Context, name string) error {
	if err := b.Stop(ctx, name); errors.Is(err, ErrNotFound) {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.procs, name)
	return nil
}

// List implements Backend.
func (b *processBackend) List(_ context.Context) ([]State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]State, 0, len(b.procs))
	for _, p := range b.procs {
		out = append(out, State{
			Name: p.name, Status: p.status, Managed: true, User: p.user, ExitCode: p.exitCode,
			StartedAt: p.startedAt, FinishedAt: p.finishedAt,
		})
	}
	return out, nil
}

// Endpoint implements Backend: the process's loopback address and port.
func (b *processBackend) Endpoint(name string) string {
	if addr := b.Addr(name); addr != "" {
		return net.JoinHostPort(addr, strconv.Itoa(b.cfg.Port))
	}
	return ""
}
