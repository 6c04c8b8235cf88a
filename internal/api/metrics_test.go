package api

import (
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

type recordedMetrics struct {
	mu   sync.Mutex
	seen []string // "operation code"
}

func (m *recordedMetrics) ObserveRequest(op, code string, took time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if took <= 0 {
		op += " (no time)"
	}
	m.seen = append(m.seen, op+" "+code)
}

// Every request is observed with its operation and the code it got; a
// request naming no operation the API serves is "Unknown", whatever it
// names, so that clients cannot mint label values.
func TestMetricsObserveRequests(t *testing.T) {
	m := &recordedMetrics{}
	f := newFixtureWith(t, false, func(c *Config) { c.Metrics = m })
	json := map[string]string{"Content-Type": "application/x-amz-json-1.1"}
	target := func(op string) map[string]string {
		h := map[string]string{"X-Amz-Target": op}
		for k, v := range json {
			h[k] = v
		}
		return h
	}
	f.do(t, signRaw{header: target("IoTSecuredTunneling.ListTunnels"), body: []byte(`{}`), service: "IoTSecuredTunneling"})
	f.do(t, signRaw{header: target("IoTSecuredTunneling.DescribeTunnel"), body: []byte(`{"tunnelId":"00000000-0000-4000-8000-000000000000"}`), service: "IoTSecuredTunneling"})
	f.do(t, signRaw{header: target("IoTSecuredTunneling.Made-Up-" + newUUID()), body: []byte(`{}`), service: "IoTSecuredTunneling"})
	f.do(t, signRaw{method: http.MethodGet, path: "/no/such/path", service: "iot"})
	f.do(t, signRaw{method: http.MethodGet, path: "/things", service: "iot"})
	f.do(t, signRaw{header: target("IoTSecuredTunneling.ListTunnels"), body: []byte(`{}`)}) // unsigned
	want := []string{
		"ListTunnels OK",
		"DescribeTunnel ResourceNotFoundException",
		"Unknown UnknownOperationException",
		"Unknown UnknownOperationException",
		"ListThings OK",
		"ListTunnels MissingAuthenticationTokenException",
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.Equal(m.seen, want) {
		t.Fatalf("observed %q, want %q", m.seen, want)
	}
}
