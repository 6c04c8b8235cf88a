// Package metrics is Warren's Prometheus instrumentation: one registry of
// its own (never the process-wide default) with the API's request counters
// and latency histogram, which the API feeds as it answers, and a collector
// that reads the relay's and the bandwidth limiter's counters and the
// store's tunnel counts when Prometheus scrapes, so that the data path pays
// nothing for metrics beyond the atomic counters it keeps anyway. It owns
// the metric names and labels; it does not serve them on a listener (the
// server does, with Handler).
//
// Labels are bounded: operations are the API's own (anything else is
// "Unknown"), codes are the AWS error codes the API can answer, and no
// metric has a tunnel label. The bandwidth metrics have an account label:
// accounts are made only by the admin, and the limiter holds only those
// with live tunnel peers (and for a minute after), so their number is
// the operator's to bound.
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/warrentunnel/warren/internal/bandwidth"
	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/relay"
)

// Relay is the relay as the metrics read it; *relay.Relay satisfies it.
type Relay interface {
	Stats() relay.Stats
}

// Bandwidth is the limiter as the metrics read it; *bandwidth.Limiter
// satisfies it.
type Bandwidth interface {
	Stats() []bandwidth.AccountStats
}

// Links are a cluster node's links to the other nodes as the metrics read
// them; *nodelink.Links satisfies it.
type Links interface {
	Stats() []nodelink.LinkStats
}

// Store counts tunnels; *store.Store satisfies it.
type Store interface {
	TunnelCounts(ctx context.Context, at time.Time) (open, closed int, err error)
}

// Config names what the metrics read. A nil source's metrics are left out.
type Config struct {
	Relay     Relay
	Bandwidth Bandwidth
	Store     Store
	Links     Links        // nil for a server on its own
	Logger    *slog.Logger // scrape errors; nil discards
}

// storeTimeout bounds the store's part of a scrape.
const storeTimeout = 5 * time.Second

// Metrics holds the registry. Its ObserveRequest is safe for concurrent use.
type Metrics struct {
	reg      *prometheus.Registry
	log      *slog.Logger
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
}

// New returns the metrics of one server, with the Go runtime's and the
// process's own.
func New(cfg Config) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: cfg.Logger,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "warren_api_requests_total",
			Help: "Management API requests by operation and the error code answered (OK: none).",
		}, []string{"operation", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "warren_api_request_duration_seconds",
			Help:    "Time to answer a management API request, by operation.",
			Buckets: prometheus.DefBuckets,
		}, []string{"operation"}),
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.latency,
		newCollector(cfg),
	)
	return m
}

// ObserveRequest counts an API request; the API calls it (api.Metrics).
func (m *Metrics) ObserveRequest(operation, code string, took time.Duration) {
	m.requests.WithLabelValues(operation, code).Inc()
	m.latency.WithLabelValues(operation).Observe(took.Seconds())
}

// Handler serves the registry in the Prometheus exposition formats. A
// source that fails (the store) is logged and left out of that scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})
}

// Registry is the metrics' registry, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
