package server

import (
	"context"
	"io"
	"net/http"
	"testing"
)

func get(t *testing.T, client *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /healthz and /readyz answer on the metrics listener and the main one;
// /readyz fails once the store is closed, and once the server shuts down.
func TestHealthAndReadiness(t *testing.T) {
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true, MetricsListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	client := &http.Client{}
	defer client.CloseIdleConnections()
	bases := []string{"http://" + s.MetricsAddr(), s.Endpoint()}
	for _, base := range bases {
		for _, path := range []string{"/healthz", "/readyz"} {
			if status, body := get(t, client, base+path); status != http.StatusOK || body != "ok\n" {
				t.Fatalf("%s%s: %d %q", base, path, status, body)
			}
		}
	}
	if status, body := get(t, client, "http://"+s.MetricsAddr()+"/metrics"); status != http.StatusOK || len(body) == 0 {
		t.Fatalf("/metrics: %d", status)
	}
	s.store.Close()
	for _, base := range bases {
		if status, body := get(t, client, base+"/readyz"); status != http.StatusServiceUnavailable {
			t.Fatalf("%s/readyz with the store closed: %d %q, want 503", base, status, body)
		}
		if status, _ := get(t, client, base+"/healthz"); status != http.StatusOK {
			t.Fatalf("%s/healthz with the store closed: %d, want 200 (the process is up)", base, status)
		}
	}
	// The store's part of the metrics is left out; the rest still serves.
	if status, _ := get(t, client, "http://"+s.MetricsAddr()+"/metrics"); status != http.StatusOK {
		t.Fatalf("/metrics with the store closed: %d", status)
	}
}
