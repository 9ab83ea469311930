package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the spawner's figures in the Prometheus format, served on a
// listen address of their own (SPAWNER_METRICS_LISTEN), never on the
// address the director sends users to.
type metrics struct {
	registry *prometheus.Registry
	// spawns counts the operations begun, by action: create, start,
	// recreate, restart.
	spawns *prometheus.CounterVec
	// spawnSeconds is the time from the page load that began a create or
	// start until the container answers.
	spawnSeconds prometheus.Histogram
	// failures counts failures by reason.
	failures *prometheus.CounterVec
	// idleStops counts containers stopped for want of activity.
	idleStops prometheus.Counter
}

// failureReasons are the values of the failures' reason label, set to 0 at
// start so that rates exist before the first failure.
var failureReasons = []string{
	"create", "start", "recreate", "restart", "pull", "capacity", "unmanaged",
	"engine", "not_answering", "idle_stop",
}

// newMetrics returns the spawner's metrics in a registry of their own. With
// a backend, the registry also reports its containers by state at every
// scrape.
func newMetrics(backend Backend) *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		spawns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_spawns_total",
			Help: "Operations begun on a user's container, by action (create, start, recreate, restart).",
		}, []string{"action"}),
		spawnSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "spawner_spawn_duration_seconds",
			Help:    "Time from the page load that began a create or start until the container answered.",
			Buckets: []float64{0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 120},
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "spawner_failures_total",
			Help: "Failures, by reason.",
		}, []string{"reason"}),
		idleStops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "spawner_idle_stops_total",
			Help: "Containers stopped because they had no network traffic for the idle timeout.",
		}),
	}
	for _, r := range failureReasons {
		m.failures.WithLabelValues(r)
	}
	for _, a := range []string{"create", "start", "recreate", "restart"} {
		m.spawns.WithLabelValues(a)
	}
	m.registry.MustRegister(m.spawns, m.spawnSeconds, m.failures, m.idleStops,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if backend != nil {
		m.registry.MustRegister(&containerCollector{backend: backend})
	}
	return m
}

// failure counts one failure.
func (m *metrics) failure(reason string) {
	m.failures.WithLabelValues(reason).Inc()
}

// handler serves /metrics.
func (m *metrics) handler(log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError),
	}))
	return mux
}

// containerCollector reports the spawner's containers by state, asking the
// backend at scrape time.
type containerCollector struct {
	backend Backend
}

var containersDesc = prometheus.NewDesc("spawner_containers",
	"Containers of the spawner, by state (created, running, exited, dead, ...).", []string{"state"}, nil)

// Describe implements prometheus.Collector.
func (c *containerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- containersDesc }

// Collect implements prometheus.Collector.
func (c *containerCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list, err := c.backend.List(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(containersDesc, err)
		return
	}
	counts := map[string]int{}
	for _, s := range []string{StatusCreated, StatusRunning, StatusRestarting, StatusExited, StatusDead, StatusPaused, StatusRemoving} {
		counts[s] = 0
	}
	for _, st := range list {
		counts[st.Status]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, float64(n), state)
	}
}
