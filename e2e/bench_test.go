package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"text/tabwriter"
	"time"
)

// route is one side of the side-by-side benchmark.
type route struct {
	name   string
	host   string
	user   string
	status int
}

// roundResult is what one round of load on one route measured.
type roundResult struct {
	requests  int
	errors    int
	elapsed   time.Duration
	latencies []time.Duration
	accepted  int64 // connections alice's container accepted
}

// runRound keeps conns keep-alive connections busy on r for d.
func runRound(r route, conns int, d time.Duration) roundResult {
	var (
		mu     sync.Mutex
		res    roundResult
		wg     sync.WaitGroup
		errs   int64
		before = atomic.LoadInt64(&env.containers["alice"].accepted)
	)
	start := time.Now()
	stop := start.Add(d)
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			defer c.CloseIdleConnections()
			lat := make([]time.Duration, 0, 4096)
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodGet, "http://"+env.traefik.web+"/bench", nil)
				req.Host = r.host
				if r.user != "" {
					req.Header.Set(identity, r.user)
				}
				t0 := time.Now()
				resp, err := c.Do(req)
				if err != nil {
					atomic.AddInt64(&errs, 1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != r.status {
					atomic.AddInt64(&errs, 1)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.requests = len(res.latencies)
	res.errors = int(errs)
	res.accepted = atomic.LoadInt64(&env.containers["alice"].accepted) - before
	return res
}

// summary is a route's figures over all its rounds.
type summary struct {
	rps         float64
	p50, p99    time.Duration
	connsPer1k  float64
	errors      int
	requests    int
	roundsRates []float64
}

func summarize(rounds []roundResult) summary {
	var s summary
	var all []time.Duration
	var elapsed time.Duration
	var accepted int64
	for _, r := range rounds {
		all = append(all, r.latencies...)
		elapsed += r.elapsed
		accepted += r.accepted
		s.errors += r.errors
		s.requests += r.requests
		s.roundsRates = append(s.roundsRates, float64(r.requests)/r.elapsed.Seconds())
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		s.p50 = all[len(all)/2]
		s.p99 = all[len(all)*99/100]
	}
	s.rps = float64(s.requests) / elapsed.Seconds()
	if s.requests > 0 {
		s.connsPer1k = float64(accepted) * 1000 / float64(s.requests)
	}
	return s
}

// TestBench compares, in one Traefik under the same load, a route straight
// to a container with the same route through the director (probe cached),
// and the spawner fallback with a route straight to the spawner. Rounds
// alternate so that the machine's noise falls on both sides. Run it with
// `make bench`.
func TestBench(t *testing.T) {
	if !*benchFlag {
		t.Skip("a benchmark, not a test: run `make bench`")
	}
	round := 5 * time.Second
	if v := os.Getenv("BENCH_ROUND"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BENCH_ROUND: %v", err)
		}
		round = d
	}
	const rounds = 3
	pinned := pinCPUs(t)
	// Each group: the baseline first; the director last. The proxied group
	// has the floor plugin between them.
	groups := [][]route{
		{
			{name: "direct to the container", host: "direct.test", status: http.StatusOK},
			{name: "floor plugin", host: "floor.test", status: http.StatusOK},
			{name: "through the director", host: "plain.test", user: "alice", status: http.StatusOK},
		},
		{
			{name: "direct to the spawner", host: "spawner.test", status: http.StatusServiceUnavailable},
			{name: "director fallback to the spawner", host: "plain.test", user: "carol", status: http.StatusServiceUnavailable},
		},
	}
	var out strings.Builder
	w := tabwriter.NewWriter(&out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "conns\troute\treq/s\tp50\tp99\tconns/1000 req\terrors\t\n")
	connCounts := []int{32, 128}
	if os.Getenv("BENCH_QUICK") != "" {
		// While tuning: one load level, the proxied pair only.
		connCounts, groups = connCounts[:1], groups[:1]
	}
	ratio := func(conns int, name string, a, b summary) {
		fmt.Fprintf(w, "%d\tratio %s\t%.3f\t%.2f\t%.2f\t\t\t\n", conns, name,
			a.rps/b.rps, float64(a.p50)/float64(b.p50), float64(a.p99)/float64(b.p99))
	}
	for _, conns := range connCounts {
		for _, group := range groups {
			// Warm every route: connections, probe cache, Yaegi.
			for _, r := range group {
				runRound(r, conns, time.Second)
			}
			results := make([][]roundResult, len(group))
			for i := 0; i < rounds; i++ {
				for j := range group {
					var profiled chan struct{}
					if i == 0 && os.Getenv("BENCH_PROFILE") != "" {
						profiled = profileTraefik(t, fmt.Sprintf("%s/%d-%s.pprof", os.Getenv("BENCH_PROFILE"), conns, strings.ReplaceAll(group[j].name, " ", "-")), round)
					}
					results[j] = append(results[j], runRound(group[j], conns, round))
					if profiled != nil {
						<-profiled
					}
				}
			}
			sums := make([]summary, len(group))
			for j := range group {
				sums[j] = summarize(results[j])
				s := sums[j]
				fmt.Fprintf(w, "%d\t%s\t%.0f\t%v\t%v\t%.2f\t%d\t\n", conns, group[j].name, s.rps,
					s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.connsPer1k, s.errors)
				if s.errors != 0 {
					t.Errorf("%d connections, %s: %d errors", conns, group[j].name, s.errors)
				}
			}
			base, dir := sums[0], sums[len(sums)-1]
			ratio(conns, "director / direct", dir, base)
			if len(group) == 3 {
				ratio(conns, "floor / direct", sums[1], base)
				ratio(conns, "director / floor", dir, sums[1])
			}
		}
	}
	w.Flush()
	t.Logf("rounds of %v, %d of each route alternating, keep-alive connections; %s:\n%s", round, rounds, pinned, out.String())
	fmt.Println(out.String())
}

// profileTraefik records a CPU profile of Traefik for about d into path,
// for finding where the time goes (BENCH_PROFILE=dir make bench).
func profileTraefik(t *testing.T, path string, d time.Duration) chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := int(d.Seconds()) - 1
		if secs < 1 {
			secs = 1
		}
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", env.traefik.api, secs))
		if err != nil {
			t.Errorf("profiling: %v", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			t.Errorf("profiling: %v", err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	return done
}

// pinCPUs puts Traefik on the last CPU and this process (the load and the
// backends) on the others, when there are at least two, so that Traefik's
// own cost per request decides the figures and the two sides do not steal
// each other's time slices. It returns what it did, for the report.
func pinCPUs(t *testing.T) string {
	n := runtime.NumCPU()
	if n < 2 || os.Getenv("BENCH_NO_PIN") != "" {
		return "processes not pinned"
	}
	if _, err := exec.LookPath("taskset"); err != nil {
		return "processes not pinned (no taskset)"
	}
	last := strconv.Itoa(n - 1)
	rest := "0"
	if n > 2 {
		rest = "0-" + strconv.Itoa(n-2)
	}
	for _, args := range [][]string{
		{"-a", "-p", "-c", last, strconv.Itoa(env.traefik.cmd.Process.Pid)},
		{"-a", "-p", "-c", rest, strconv.Itoa(os.Getpid())},
	} {
		if out, err := exec.Command("taskset", args...).CombinedOutput(); err != nil {
			t.Logf("taskset %v: %v: %s", args, err, out)
			return "processes not pinned (taskset failed)"
		}
	}
	return fmt.Sprintf("Traefik pinned to CPU %s, load generator and backends to CPU %s", last, rest)
}
