package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// counterValue reads one unlabelled counter (or the sum of a labelled one)
// from m's registry.
func counterValue(t *testing.T, m *metrics, name string) float64 {
	t.Helper()
	families, err := m.registry.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, metric := range f.GetMetric() {
			sum += metricValue(metric)
		}
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// scrape fetches /metrics of m as Prometheus would.
func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.handler(quietLogger()))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("scraping: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping: status %d: %s", resp.StatusCode, b)
	}
	return string(b)
}

// TestMetrics: spawns, spawn duration (first page load until the container
// answers), failures by reason and containers by state, as scraped.
func TestMetrics(t *testing.T) {
	b := newFakeBackend()
	m := newMetrics(b)
	answers := make(chan struct{})
	h := newTestHandler(t, b, HandlerConfig{Metrics: m, Ready: func(ctx context.Context, _ string) error {
		select {
		case <-answers:
			return nil
		default:
			return context.DeadlineExceeded
		}
	}})
	b.endpoint = "vscode-jack:8080"
	serve(h, pageLoad("/", "vscode-jack"))
	waitIdle(t, h)
	if got := counterValue(t, m, "spawner_spawn_duration_seconds"); got != 0 {
		t.Errorf("expected no spawn duration before the container answers, got %v", got)
	}
	close(answers)
	waitFor(t, 5*time.Second, "the spawn duration", func() bool {
		return counterValue(t, m, "spawner_spawn_duration_seconds") == 1
	})
	b.createErr = context.DeadlineExceeded
	serve(h, pageLoad("/", "vscode-jill"))
	waitIdle(t, h)
	text := scrape(t, m)
	for _, expected := range []string{
		`spawner_spawns_total{action="create"} 2`,
		`spawner_spawn_duration_seconds_count 1`,
		`spawner_failures_total{reason="create"} 1`,
		`spawner_failures_total{reason="capacity"} 0`,
		`spawner_idle_stops_total 0`,
		`spawner_containers{state="running"} 1`,
		`spawner_containers{state="exited"} 0`,
	} {
		if !strings.Contains(text, expected) {
			t.Errorf("expected %q in /metrics", expected)
		}
	}
}
