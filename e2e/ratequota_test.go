package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
)

// The rate quotas through the real binaries, with a second account made by
// create-account: its API requests past its bucket are ThrottlingException
// while the admin account is served; failed handshakes from one address
// past theirs get 429, even with a good token, while a good token from
// another address connects.
func TestRateQuotas(t *testing.T) {
	s := startService(t, "--api-rate", "1", "--api-burst", "3",
		"--handshake-failure-rate", "0.5", "--handshake-failure-burst", "3")
	s.warren(t, nil, "create-account", "--account-name", "bob",
		"--credentials-file", filepath.Join(s.dir, "credentials"), "--profile", "bob")
	bob := *s
	// One attempt: the SDK would otherwise retry throttled calls.
	bob.env = append(slices.Clone(s.env), "AWS_PROFILE=bob", "AWS_MAX_ATTEMPTS=1")

	var wg sync.WaitGroup
	var mu sync.Mutex
	throttled, served := 0, 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, stderr, err := bob.run(bin.warren, "list-tunnels")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				served++
			case strings.Contains(stderr, "ThrottlingException"):
				throttled++
			default:
				t.Errorf("bob's list-tunnels: %v %s", err, stderr)
			}
		}()
	}
	wg.Wait()
	t.Logf("8 calls of bob's at once: %d served, %d throttled", served, throttled)
	if throttled < 3 || served < 1 {
		t.Fatalf("bob at 1/s, bursts of 3: %d served, %d throttled", served, throttled)
	}
	s.warren(t, nil, "list-tunnels") // the admin's own bucket is full

	// Handshakes.
	tun := s.openTunnel(t, "quota-dev", "SSH")
	pem, err := os.ReadFile(filepath.Join(s.dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	dial := func(from, token string) int {
		t.Helper()
		d := websocket.Dialer{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			NetDial: func(network, addr string) (net.Conn, error) {
				return (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).Dial(network, addr)
			},
			Subprotocols: []string{"aws.iot.securetunneling-3.0"},
		}
		conn, resp, err := d.Dial(fmt.Sprintf("wss://%s/tunnel?local-proxy-mode=source", s.addr), http.Header{"access-token": {token}})
		if err == nil {
			conn.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial from %s: %v", from, err)
		}
		return resp.StatusCode
	}
	var codes []int
	for range 5 {
		codes = append(codes, dial("127.0.0.2", "AQGAAXi-not-a-token"))
	}
	t.Logf("bad tokens from 127.0.0.2: %v", codes)
	if codes[0] == http.StatusTooManyRequests || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("bad tokens from one address: statuses %v, want refusals turning into 429", codes)
	}
	if got := dial("127.0.0.2", tun.SourceAccessToken); got != http.StatusTooManyRequests {
		t.Fatalf("a good token from the throttled address: %d, want 429", got)
	}
	if got := dial("127.0.0.3", tun.SourceAccessToken); got != http.StatusSwitchingProtocols {
		t.Fatalf("a good token from another address: %d, want 101", got)
	}
}
