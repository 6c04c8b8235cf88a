package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// logLines parses a process's output as JSON lines (--log-format json),
// failing the test at the first line that is not a JSON object. A last
// line still being written is left for later.
func logLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	out = out[:strings.LastIndexByte(out, '\n')+1]
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("a log line that is not JSON (%v): %q", err, l)
		}
		lines = append(lines, m)
	}
	return lines
}

// metricsAddr waits for `warren serve --metrics-listen 127.0.0.1:0 --log-format
// json` to log the address it bound.
func (s *service) metricsAddr(t *testing.T) string {
	t.Helper()
	var addr string
	waitFor(t, 20*time.Second, "the metrics listener's address in the log", func() bool {
		for _, l := range logLines(t, s.p.output()) {
			if l["msg"] == "metrics serving" {
				addr, _ = l["addr"].(string)
			}
		}
		return addr != ""
	})
	return addr
}

// scrape reads /metrics and parses the exposition.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the sample of family name whose labels include labels (the sum
// of them when several match; a histogram's count).
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var sum float64
	found := false
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			ok := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					ok = true
				}
			}
			if !ok {
				continue next
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	if !found {
		return -1
	}
	return sum
}

// A session through a real server, scraped from its metrics listener: the
// counters moved by what the session did.
func TestMetricsOfASession(t *testing.T) {
	s := startService(t, "--metrics-listen", "127.0.0.1:0", "--log-format", "json", "--default-account-bandwidth", "400KB")
	maddr := s.metricsAddr(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + maddr + path)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}

	echo := echoDevice(t)
	tun, ports, _, _ := s.tunnelPair(t, "metered", []string{"ECHO"}, []string{echo})

	// 256 KiB each way, twice the burst at the account's limit: it is paced.
	const size = 256 << 10
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sent := make([]byte, size)
	for i := range sent {
		sent[i] = byte(rand.IntN(256))
	}
	go c.Write(sent)
	got := make([]byte, size)
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, sent) {
		t.Fatalf("echo through the tunnel: %v", err)
	}

	// A handshake with a token that is no one's.
	pem, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+s.addr+"/tunnel?local-proxy-mode=source", nil)
	for k, v := range map[string]string{
		"Connection": "upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
		"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "aws.iot.securetunneling-3.0",
		"access-token": "AQnot-a-token",
	} {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong token's handshake: %v %v", resp, err)
	}
	resp.Body.Close()

	// An API error.
	if _, stderr, err := s.run(bin.warren, "describe-tunnel", "--tunnel-id", "00000000-0000-4000-8000-000000000000"); err == nil || !strings.Contains(stderr, "ResourceNotFoundException") {
		t.Fatalf("describe-tunnel of no tunnel: %v %s", err, stderr)
	}

	m := scrape(t, maddr)
	check := func(what string, got float64, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s = %v", what, got)
		}
	}
	for _, dir := range []string{"source_to_destination", "destination_to_source"} {
		b := value(m, "warren_relay_forwarded_bytes_total", "direction", dir)
		check("forwarded bytes "+dir+" ≥ "+fmt.Sprint(size), b, b >= size && b < 2*size)
		f := value(m, "warren_relay_forwarded_frames_total", "direction", dir)
		check("forwarded frames "+dir, f, f >= 4)
		// The account's DATA went through its pacer (whether a frame had
		// to wait depends on how far the proxies paced themselves: Warren's
		// ask for link credit; the bandwidth package's tests count waits).
		ab := value(m, "warren_bandwidth_bytes_total", "direction", dir)
		check("account bytes "+dir, ab, ab == size)
		check("pacing waits "+dir, value(m, "warren_bandwidth_pacing_waits_total", "direction", dir),
			value(m, "warren_bandwidth_pacing_waits_total", "direction", dir) >= 0)
	}
	check(`handshakes{result="unauthorized"}`, value(m, "warren_relay_handshakes_total", "result", "unauthorized"),
		value(m, "warren_relay_handshakes_total", "result", "unauthorized") == 1)
	check(`handshakes{result="ok"}`, value(m, "warren_relay_handshakes_total", "result", "ok"),
		value(m, "warren_relay_handshakes_total", "result", "ok") >= 2)
	for _, mode := range []string{"source", "destination"} {
		check("peers "+mode, value(m, "warren_relay_peers", "mode", mode), value(m, "warren_relay_peers", "mode", mode) == 1)
	}
	check("tcp connections (one open)", value(m, "warren_relay_tcp_connections"), value(m, "warren_relay_tcp_connections") == 1)
	check("account limit", value(m, "warren_bandwidth_limit_bytes_per_second"), value(m, "warren_bandwidth_limit_bytes_per_second") == 400_000)
	check("open tunnels", value(m, "warren_tunnels", "state", "open"), value(m, "warren_tunnels", "state", "open") == 1)
	check(`api_requests{OpenTunnel,OK}`, value(m, "warren_api_requests_total", "operation", "OpenTunnel", "code", "OK"),
		value(m, "warren_api_requests_total", "operation", "OpenTunnel", "code", "OK") == 1)
	check(`api_requests{DescribeTunnel,ResourceNotFoundException}`,
		value(m, "warren_api_requests_total", "operation", "DescribeTunnel", "code", "ResourceNotFoundException"),
		value(m, "warren_api_requests_total", "operation", "DescribeTunnel", "code", "ResourceNotFoundException") == 1)
	check("OpenTunnel latency observations", value(m, "warren_api_request_duration_seconds", "operation", "OpenTunnel"),
		value(m, "warren_api_request_duration_seconds", "operation", "OpenTunnel") == 1)

	// The connection's end and the tunnel's close show.
	c.Close()
	waitFor(t, 20*time.Second, "no TCP connection in the metrics", func() bool {
		return value(scrape(t, maddr), "warren_relay_tcp_connections") == 0
	})
	s.warren(t, nil, "close-tunnel", "--tunnel-id", tun.TunnelID)
	waitFor(t, 20*time.Second, "both peers disconnected for the closed tunnel", func() bool {
		m = scrape(t, maddr)
		return value(m, "warren_relay_disconnects_total", "reason", "tunnel_closed") == 2 && value(m, "warren_relay_peers") == 0
	})
	if o, c := value(m, "warren_tunnels", "state", "open"), value(m, "warren_tunnels", "state", "closed"); o != 0 || c != 1 {
		t.Errorf("tunnels open %v closed %v, want 0 and 1", o, c)
	}
	if t.Failed() {
		resp, _ := http.Get("http://" + maddr + "/metrics")
		b, _ := io.ReadAll(resp.Body)
		t.Logf("metrics:\n%s", b)
	}
	// Every line the server logged is JSON (logLines fails otherwise).
	logLines(t, s.p.output())
}
