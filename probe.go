package director

import (
	"context"
	"net"
	"sync"
	"time"
)

// maxProbeEntries caps the number of containers whose liveness is remembered,
// so memory does not grow with the number of distinct users.
const maxProbeEntries = 10000

// prober tells whether a container accepts TCP connections. It dials each
// host at most once at a time (concurrent callers share the dial) and trusts
// a successful dial for ttl.
type prober struct {
	// dial opens a TCP connection to a container's "host:port" within
	// dialTimeout.
	dial       func(address string) (net.Conn, error)
	ttl        time.Duration
	maxEntries int

	mu sync.Mutex
	// entries holds containers known to be alive and those being dialed;
	// a container found down is forgotten at once.
	entries map[string]*probeEntry
}

type probeEntry struct {
	host       string
	aliveUntil time.Time  // zero unless a dial succeeded within ttl
	call       *probeCall // the dial in progress, or nil
}

// probeCall is one dial shared by every request that waits for it.
type probeCall struct {
	done    chan struct{} // closed when the dial has finished
	waiters int           // requests waiting for this dial besides the one dialing
	alive   bool
	err     error
}

func newProber(dl *dialer, ttl time.Duration) *prober {
	return &prober{
		dial: func(address string) (net.Conn, error) {
			return dl.DialContext(context.Background(), "tcp", address)
		},
		ttl:        ttl,
		maxEntries: maxProbeEntries,
		entries:    make(map[string]*probeEntry),
	}
}

// fresh returns the host of the container for key if a dial to it succeeded
// within ttl.
func (p *prober) fresh(key string) (string, bool) {
	p.mu.Lock()
	e := p.entries[key]
	if e == nil || e.aliveUntil.IsZero() {
		p.mu.Unlock()
		return "", false
	}
	if time.Now().Before(e.aliveUntil) {
		host := e.host
		p.mu.Unlock()
		return host, true
	}
	p.mu.Unlock()
	return "", false
}

// probe dials host, or waits for the dial already in progress for key, and
// reports whether the container accepted the connection. err says why it
// did not; it is ctx's error when the caller gave up waiting.
func (p *prober) probe(ctx context.Context, key, host string) (bool, error) {
	p.mu.Lock()
	e := p.entries[key]
	if e != nil && e.call != nil {
		c := e.call
		c.waiters++
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.alive, c.err
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if e == nil {
		p.makeRoom()
		e = &probeEntry{host: host}
		p.entries[key] = e
	}
	c := &probeCall{done: make(chan struct{})}
	e.call = c
	p.mu.Unlock()

	// The dial is not tied to ctx: other requests share its result, and
	// dialTimeout bounds it.
	conn, err := p.dial(host)
	if err == nil {
		conn.Close()
		c.alive = true
	}
	c.err = err

	p.mu.Lock()
	e.call = nil
	switch {
	case c.alive && p.ttl > 0:
		e.aliveUntil = time.Now().Add(p.ttl)
	case p.entries[key] == e:
		delete(p.entries, key)
	}
	p.mu.Unlock()
	close(c.done)
	return c.alive, c.err
}

// forget drops what is known of key's container, so that the next request
// dials it again.
func (p *prober) forget(key string) {
	p.mu.Lock()
	if e := p.entries[key]; e != nil {
		if e.call == nil {
			delete(p.entries, key)
		} else {
			e.aliveUntil = time.Time{}
		}
	}
	p.mu.Unlock()
}

// waiters returns how many requests wait for the dial in progress for key.
func (p *prober) waiters(key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.entries[key]; e != nil && e.call != nil {
		return e.call.waiters
	}
	return 0
}

// size returns the number of remembered containers.
func (p *prober) size() int {
	p.mu.Lock()
	n := len(p.entries)
	p.mu.Unlock()
	return n
}

// makeRoom keeps the cache under maxEntries before an insert: it drops
// expired entries and, if that is not enough, an eighth of the others, so
// the cost of a full sweep is spread over many inserts. Entries with a dial
// in progress stay. p.mu must be held.
func (p *prober) makeRoom() {
	if len(p.entries) < p.maxEntries {
		return
	}
	now := time.Now()
	for k, e := range p.entries {
		if e.call == nil && !now.Before(e.aliveUntil) {
			delete(p.entries, k)
		}
	}
	target := p.maxEntries - p.maxEntries/8 - 1
	for k, e := range p.entries {
		if len(p.entries) <= target {
			break
		}
		if e.call == nil {
			delete(p.entries, k)
		}
	}
}
