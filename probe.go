package director

import (
	"context"
	"net"
	"net/http/httputil"
	"sync"
	"time"
)

// maxProbeEntries caps the number of containers whose liveness is remembered,
// so memory does not grow with the number of distinct users.
const maxProbeEntries = 10000

// prober tells whether a container accepts TCP connections. It dials each
// container at most once at a time (concurrent callers share the dial) and
// trusts a successful dial for ttl.
//
// ServeHTTP reads alive directly: a request for a container found alive
// costs one lookup in a sync.Map and one clock read, as under Yaegi every
// call into compiled code is costly.
type prober struct {
	// dial opens a TCP connection to a container's "host:port" within
	// dialTimeout.
	dial func(address string) (net.Conn, error)
	// newProxy builds the proxy for a container found alive.
	newProxy   func(user, container, host string) *httputil.ReverseProxy
	ttl        time.Duration
	maxEntries int

	// alive maps a user name, as it came in the request, to the
	// *containerEntry of a container that answered within ttl. Entries are
	// never modified, only replaced or deleted.
	alive sync.Map

	mu    sync.Mutex
	size  int                   // entries in alive
	calls map[string]*probeCall // dials in progress, by user name
}

// containerEntry is a container that answered a dial at probedAt.
type containerEntry struct {
	name     string // the container's name, "<prefix>-<mapped name>"
	host     string // "<name>[.<domain>]:<port>"
	proxy    *httputil.ReverseProxy
	probedAt time.Time
}

// probeCall is one dial shared by every request that waits for it.
type probeCall struct {
	done    chan struct{} // closed when the dial has finished
	waiters int           // requests waiting for this dial besides the one dialing
	entry   *containerEntry
	err     error
}

func newProber(dial func(address string) (net.Conn, error), newProxy func(user, container, host string) *httputil.ReverseProxy, ttl time.Duration) *prober {
	return &prober{
		dial:       dial,
		newProxy:   newProxy,
		ttl:        ttl,
		maxEntries: maxProbeEntries,
		calls:      make(map[string]*probeCall),
	}
}

// probe dials the container, or waits for the dial already in progress for
// user, and returns the container if it accepted the connection. err says
// why it did not; it is ctx's error when the caller gave up waiting.
func (p *prober) probe(ctx context.Context, user, name, host string) (*containerEntry, error) {
	p.mu.Lock()
	if c := p.calls[user]; c != nil {
		c.waiters++
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.entry, c.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c := &probeCall{done: make(chan struct{})}
	p.calls[user] = c
	p.mu.Unlock()

	// The dial is not tied to ctx: other requests share its result, and
	// dialTimeout bounds it.
	conn, err := p.dial(host)
	if err == nil {
		conn.Close()
		c.entry = p.entryFor(user, name, host)
	}
	c.err = err

	p.mu.Lock()
	delete(p.calls, user)
	switch {
	case c.entry != nil && p.ttl > 0:
		p.makeRoom()
		if _, loaded := p.alive.Swap(user, c.entry); !loaded {
			p.size++
		}
		// The hot path reads no clock: an entry leaves the map when
		// its TTL is over (a timer, not a goroutine, until it fires).
		e := c.entry
		time.AfterFunc(p.ttl, func() { p.expire(user, e) })
	case c.entry == nil:
		if _, loaded := p.alive.LoadAndDelete(user); loaded {
			p.size--
		}
	}
	p.mu.Unlock()
	close(c.done)
	return c.entry, c.err
}

// entryFor returns a fresh entry for a container that just answered,
// keeping the proxy of the previous entry for the same host.
func (p *prober) entryFor(user, name, host string) *containerEntry {
	e := &containerEntry{name: name, host: host, probedAt: time.Now()}
	if v, ok := p.alive.Load(user); ok {
		if old := v.(*containerEntry); old.host == host {
			e.proxy = old.proxy
		}
	}
	if e.proxy == nil {
		e.proxy = p.newProxy(user, name, host)
	}
	return e
}

// expire drops e, the user's entry, unless it was replaced since.
func (p *prober) expire(user string, e *containerEntry) {
	p.mu.Lock()
	if p.alive.CompareAndDelete(user, e) {
		p.size--
	}
	p.mu.Unlock()
}

// forget drops what is known of the user's container, so that the next
// request dials it again.
func (p *prober) forget(user string) {
	p.mu.Lock()
	if _, loaded := p.alive.LoadAndDelete(user); loaded {
		p.size--
	}
	p.mu.Unlock()
}

// waiters returns how many requests wait for the dial in progress for user.
func (p *prober) waiters(user string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.calls[user]; c != nil {
		return c.waiters
	}
	return 0
}

// entries returns the number of remembered containers.
func (p *prober) entries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size
}

// makeRoom keeps the cache under maxEntries before an insert: it drops
// expired entries and, if that is not enough, an eighth of the others, so
// the cost of a full sweep is spread over many inserts. p.mu must be held.
func (p *prober) makeRoom() {
	if p.size < p.maxEntries {
		return
	}
	target := p.maxEntries - p.maxEntries/8 - 1
	p.alive.Range(func(key, value interface{}) bool {
		if time.Since(value.(*containerEntry).probedAt) >= p.ttl {
			p.alive.Delete(key)
			p.size--
		}
		return true
	})
	p.alive.Range(func(key, value interface{}) bool {
		if p.size <= target {
			return false
		}
		p.alive.Delete(key)
		p.size--
		return true
	})
}
