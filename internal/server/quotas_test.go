package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

func TestQuotasValidate(t *testing.T) {
	if err := DefaultQuotas().Validate(); err != nil {
		t.Fatalf("the defaults: %v", err)
	}
	if err := (Quotas{}).Validate(); err != nil {
		t.Fatalf("no limits at all: %v", err)
	}
	for _, c := range []struct {
		q    Quotas
		flag string
	}{
		{Quotas{TunnelsPerAccount: -1}, "--max-tunnels-per-account"},
		{Quotas{ConnectionsPerTunnel: -1}, "--max-connections-per-tunnel"},
		{Quotas{APIRate: -1}, "--api-rate"},
		{Quotas{APIRate: math.Inf(1), APIBurst: 1}, "--api-rate"},
		{Quotas{APIRate: 5}, "--api-burst"},
		{Quotas{HandshakeFailureRate: 1, HandshakeFailureBurst: 0}, "--handshake-failure-burst"},
	} {
		err := c.q.Validate()
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%+v: %v, want an error naming %s", c.q, err, c.flag)
		}
		if _, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Quotas: &c.q}); err == nil {
			t.Errorf("Open accepted %+v", c.q)
		}
	}
}

// The quotas of the Config reach the API and the relay; without any, the
// defaults apply.
func TestQuotasReachAPIAndRelay(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true})
	if err != nil {
		t.Fatal(err)
	}
	if *s.cfg.Quotas != DefaultQuotas() {
		t.Fatalf("quotas %+v, want the defaults", *s.cfg.Quotas)
	}
	s.Shutdown(ctx)

	q := Quotas{TunnelsPerAccount: 1, HandshakeFailureRate: 0.001, HandshakeFailureBurst: 1}
	s, err = Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true, Quotas: &q})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)

	open := func() (int, string) {
		body := `{"destinationConfig":{"services":["SSH"]}}`
		req, _ := http.NewRequest(http.MethodPost, s.Endpoint()+"/", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.OpenTunnel")
		sum := sha256.Sum256([]byte(body))
		admin := s.Admin()
		creds := aws.Credentials{AccessKeyID: admin.AccessKeyID, SecretAccessKey: admin.SecretAccessKey}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "IoTSecuredTunneling", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		return do(t, req)
	}
	if status, body := open(); status != http.StatusOK {
		t.Fatalf("first OpenTunnel: %d %s", status, body)
	}
	if status, body := open(); status != http.StatusBadRequest || !strings.Contains(body, "LimitExceededException") {
		t.Fatalf("second OpenTunnel: %d %s, want LimitExceededException", status, body)
	}

	handshake := func() int {
		req, _ := http.NewRequest(http.MethodGet, s.Endpoint()+"/tunnel?local-proxy-mode=source", nil)
		for k, v := range map[string]string{
			"Connection": "upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
			"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Protocol": "aws.iot.securetunneling-3.0",
			"access-token": "AQnot-a-token",
		} {
			req.Header.Set(k, v)
		}
		status, _ := do(t, req)
		return status
	}
	if got := [2]int{handshake(), handshake()}; got != [2]int{http.StatusUnauthorized, http.StatusTooManyRequests} {
		t.Fatalf("two bad handshakes: %v, want 401 then 429", got)
	}
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
