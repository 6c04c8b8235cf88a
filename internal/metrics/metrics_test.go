package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/warrentunnel/warren/internal/bandwidth"
	"github.com/warrentunnel/warren/internal/relay"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fakeRelay relay.Stats

func (f fakeRelay) Stats() relay.Stats { return relay.Stats(f) }

type fakeBandwidth []bandwidth.AccountStats

func (f fakeBandwidth) Stats() []bandwidth.AccountStats { return f }

type fakeStore struct{ err error }

func (f fakeStore) TunnelCounts(context.Context, time.Time) (int, int, error) { return 3, 7, f.err }

func TestCollectAndLint(t *testing.T) {
	rs := relay.Stats{ForwardedBytes: [2]int64{100, 200}, Peers: [2]int{1, 2}, Connections: 5, ConnectionsCounted: true, RefusedStarts: 4}
	rs.Handshakes[3] = 9 // unauthorized
	m := New(Config{
		Relay:     fakeRelay(rs),
		Bandwidth: fakeBandwidth{{ID: "123456789012", Limit: 800_000, Waits: [2]int64{6, 0}, Waited: [2]time.Duration{1500 * time.Millisecond, 0}}},
		Store:     fakeStore{},
	})
	m.ObserveRequest("OpenTunnel", "OK", 20*time.Millisecond)
	m.ObserveRequest("OpenTunnel", "LimitExceededException", time.Millisecond)

	want := `
# HELP warren_relay_forwarded_bytes_total Bytes of tunnel frames (payload and framing) the relay forwarded, by direction.
# TYPE warren_relay_forwarded_bytes_total counter
warren_relay_forwarded_bytes_total{direction="destination_to_source"} 200
warren_relay_forwarded_bytes_total{direction="source_to_destination"} 100
# HELP warren_relay_peers Local proxies connected to the relay, by mode.
# TYPE warren_relay_peers gauge
warren_relay_peers{mode="destination"} 2
warren_relay_peers{mode="source"} 1
# HELP warren_tunnels Tunnels in the store by state (open: not closed and within its lifetime).
# TYPE warren_tunnels gauge
warren_tunnels{state="closed"} 7
warren_tunnels{state="open"} 3
# HELP warren_bandwidth_pacing_wait_seconds_total Time frames of an account waited for its bandwidth limit, by direction.
# TYPE warren_bandwidth_pacing_wait_seconds_total counter
warren_bandwidth_pacing_wait_seconds_total{account="123456789012",direction="destination_to_source"} 0
warren_bandwidth_pacing_wait_seconds_total{account="123456789012",direction="source_to_destination"} 1.5
# HELP warren_api_requests_total Management API requests by operation and the error code answered (OK: none).
# TYPE warren_api_requests_total counter
warren_api_requests_total{code="LimitExceededException",operation="OpenTunnel"} 1
warren_api_requests_total{code="OK",operation="OpenTunnel"} 1
`
	names := []string{"warren_relay_forwarded_bytes_total", "warren_relay_peers", "warren_tunnels", "warren_bandwidth_pacing_wait_seconds_total", "warren_api_requests_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}
	for name, series := range map[string]int{
		"warren_relay_tcp_connections": 1, "warren_relay_handshakes_total": len(relay.HandshakeResults()),
		"warren_relay_disconnects_total": len(relay.DisconnectReasons()), "warren_relay_refused_frames_total": 2,
		"warren_api_request_duration_seconds": 1, "warren_bandwidth_pacing_waits_total": 2,
	} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n != series {
			t.Errorf("%s: %d series, %v; want %d", name, n, err, series)
		}
	}
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "warren_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// A failing store leaves its metric out of the scrape; the rest is served.
func TestStoreFailureServesTheRest(t *testing.T) {
	m := New(Config{Relay: fakeRelay{}, Store: fakeStore{err: errors.New("database is closed")}})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, "warren_tunnels{") || !strings.Contains(body, "warren_relay_peers") {
		t.Fatalf("%d:\n%s", resp.StatusCode, body)
	}
}

// The sample dashboard and the README name only metrics that exist.
func TestDocumentedMetricsExist(t *testing.T) {
	rs := relay.Stats{ConnectionsCounted: true}
	m := New(Config{Relay: fakeRelay(rs), Bandwidth: fakeBandwidth{{ID: "1"}}, Store: fakeStore{}})
	m.ObserveRequest("OpenTunnel", "OK", time.Millisecond)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
	}
	name := regexp.MustCompile(`warren_[a-z_]+`)
	for _, doc := range []string{"../../docs/grafana-warren.json", "../../README.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, n := range name.FindAllString(string(b), -1) {
			n = strings.TrimSuffix(n, "_bucket")
			if strings.HasPrefix(n, "warren_relay") || strings.HasPrefix(n, "warren_api") || strings.HasPrefix(n, "warren_bandwidth") || n == "warren_tunnels" {
				found++
				if !have[n] {
					t.Errorf("%s names %s, which is not exported", doc, n)
				}
			}
		}
		if found < 10 {
			t.Errorf("%s names only %d metrics", doc, found)
		}
	}
}
