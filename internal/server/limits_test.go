package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/warrentunnel/warren/internal/api"
)

// startTLS starts a server with the generated certificate on a loopback port.
func startTLS(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// dialTLS is a raw TLS client connection to s (certificate unchecked: the
// tests are about what the listener does with the bytes).
func dialTLS(t *testing.T, s *Server) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", s.Addr(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c until it is closed or fails, and returns how long
// that took; it fails the test if c is still open after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	return time.Since(start)
}

// A client that sends its request head slowly (slowloris) is cut off at the
// read-header timeout, however steadily it trickles bytes.
func TestSlowHeaderIsCutOff(t *testing.T) {
	const timeout = 700 * time.Millisecond
	s := startTLS(t, Config{ReadHeaderTimeout: timeout})
	c := dialTLS(t, s)
	start := time.Now()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\n")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			if _, err := fmt.Fprintf(c, "X-Slow-%d: a\r\n", i); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	closedWithin(t, c, 10*time.Second)
	took := time.Since(start)
	c.Close()
	<-done
	if took < timeout-100*time.Millisecond {
		t.Fatalf("closed after %v, before the %v timeout: not the timeout", took, timeout)
	}
	t.Logf("a trickled head was cut off after %v (timeout %v)", took, timeout)
}

// A request body that trickles is cut off at the body timeout with the
// connection, and the API does not run the request.
func TestSlowBodyIsCutOff(t *testing.T) {
	const timeout = 700 * time.Millisecond
	s := startTLS(t, Config{ReadBodyTimeout: timeout})
	c := dialTLS(t, s)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: IoTSecuredTunneling.ListTunnels\r\nContent-Length: 1000\r\n\r\n{")
	took := closedWithin(t, c, 10*time.Second)
	if took < timeout-100*time.Millisecond {
		t.Fatalf("closed after %v, before the %v timeout", took, timeout)
	}
}

// rawRequest writes head (and body) on a fresh TLS connection and reads the
// response.
func rawRequest(t *testing.T, s *Server, req []byte) (*http.Response, []byte) {
	t.Helper()
	c := dialTLS(t, s)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go c.Write(req) // the server may answer before it has read everything
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

func TestOversizedHeaderGets431(t *testing.T) {
	s := startTLS(t, Config{})
	head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes+8<<10) + "\r\n\r\n"
	resp, _ := rawRequest(t, s, []byte(head))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	// A head within the limit is served.
	head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", MaxHeaderBytes/2) + "\r\nConnection: close\r\n\r\n"
	if resp, body := rawRequest(t, s, []byte(head)); resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("a head within the limit: %d %q", resp.StatusCode, body)
	}
}

// awsError decodes an AWS JSON error body and checks its header.
func awsError(t *testing.T, resp *http.Response, body []byte) (code, message string) {
	t.Helper()
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body is not AWS JSON: %v: %q", err, body)
	}
	if h := resp.Header.Get("x-amzn-ErrorType"); h != e.Type {
		t.Fatalf("x-amzn-ErrorType %q, body's __type %q", h, e.Type)
	}
	return e.Type, e.Message
}

func TestOversizedBodyGetsAWSError(t *testing.T) {
	s := startTLS(t, Config{})
	big := bytes.Repeat([]byte("a"), api.MaxBodyBytes+1)
	for name, req := range map[string][]byte{
		"Content-Length": append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: IoTSecuredTunneling.OpenTunnel\r\nContent-Length: %d\r\n\r\n", len(big))), big...),
		"chunked":        append(append([]byte(fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: IoTSecuredTunneling.OpenTunnel\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n", len(big))), big...), "\r\n0\r\n\r\n"...),
	} {
		resp, body := rawRequest(t, s, req)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("%s: status %d %s, want 413", name, resp.StatusCode, body)
		}
		if code, msg := awsError(t, resp, body); code != "RequestEntityTooLargeException" || !strings.Contains(msg, fmt.Sprint(api.MaxBodyBytes)) {
			t.Fatalf("%s: %s: %s", name, code, msg)
		}
	}
}

// A signed request whose body nests 10000 arrays gets a quick, clear 400.
func TestDeeplyNestedJSONIsRefused(t *testing.T) {
	s := startTLS(t, Config{})
	body := strings.Repeat("[", 10000)
	req, _ := http.NewRequest(http.MethodPost, s.Endpoint()+"/", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.OpenTunnel")
	req.Header.Set("Connection", "close")
	sum := sha256.Sum256([]byte(body))
	admin := s.Admin()
	creds := aws.Credentials{AccessKeyID: admin.AccessKeyID, SecretAccessKey: admin.SecretAccessKey}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "IoTSecuredTunneling", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	req.Write(&raw)
	start := time.Now()
	resp, rbody := rawRequest(t, s, raw.Bytes())
	took := time.Since(start)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d %s, want 400", resp.StatusCode, rbody)
	}
	if code, msg := awsError(t, resp, rbody); code != "SerializationException" || !strings.Contains(msg, "deep") {
		t.Fatalf("%s: %s", code, msg)
	}
	if took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// TLS below 1.2, and TLS 1.2 with only CBC suites, are refused; TLS 1.2
// with an AEAD suite and TLS 1.3 are served.
func TestTLSVersionsAndSuites(t *testing.T) {
	s := startTLS(t, Config{})
	dial := func(cfg *tls.Config) error {
		cfg.InsecureSkipVerify = true
		c, err := tls.Dial("tcp", s.Addr(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.1":      {MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
		"TLS 1.2, CBC": {MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}},
	} {
		err := dial(cfg)
		// The server's alert, not the client's own refusal.
		var alert tls.AlertError
		if err == nil || !(errors.As(err, &alert) || strings.Contains(err.Error(), "remote error")) {
			t.Errorf("%s: %v, want the server's refusal", name, err)
		}
	}
	for name, cfg := range map[string]*tls.Config{
		"TLS 1.2, GCM":      {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
		"TLS 1.2, ChaCha20": {MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
		"TLS 1.3":           {MinVersion: tls.VersionTLS13},
	} {
		if err := dial(cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A data directory, secrets and keys readable by others are warned about;
// a private key readable by everyone is refused.
func TestDataDirectoryPermissions(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data")})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown(ctx)
	data := filepath.Join(dir, "data")
	want := map[string]os.FileMode{"": 0o700, CredentialsFile: 0o600, DBFile: 0o600, caKeyFile: 0o600, serverKeyFile: 0o600}
	for name, mode := range want {
		fi, err := os.Stat(filepath.Join(data, name))
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%q: mode %v, %v; want %04o", name, fi.Mode().Perm(), err, mode)
		}
	}
	var logs bytes.Buffer
	open := func() error {
		logs.Reset()
		s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: data, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err == nil {
			s.Shutdown(ctx)
		}
		return err
	}
	if err := open(); err != nil || strings.Contains(logs.String(), "WARN") {
		t.Fatalf("tight modes: %v, logs:\n%s", err, logs.String())
	}
	os.Chmod(data, 0o755)
	os.Chmod(filepath.Join(data, CredentialsFile), 0o644)
	os.Chmod(filepath.Join(data, serverKeyFile), 0o640)
	if err := open(); err != nil {
		t.Fatalf("loose modes of secrets are warned about, not refused: %v", err)
	}
	for _, w := range []string{"data directory is accessible", "file=" + filepath.Join(data, CredentialsFile), "private key is accessible to its group"} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("no warning %q in:\n%s", w, logs.String())
		}
	}
	os.Chmod(filepath.Join(data, serverKeyFile), 0o644)
	err = open()
	if err == nil || !strings.Contains(err.Error(), "private key "+filepath.Join(data, serverKeyFile)) {
		t.Fatalf("a world-readable key: %v, want a refusal naming it", err)
	}
	// The user's own --tls-key is held to the same rule.
	cert, key := serverPair(t, "localhost")
	os.WriteFile(filepath.Join(dir, "c.pem"), cert, 0o644)
	os.WriteFile(filepath.Join(dir, "k.pem"), key, 0o604)
	os.Chmod(filepath.Join(data, serverKeyFile), 0o600)
	_, err = Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: data, TLSCert: filepath.Join(dir, "c.pem"), TLSKey: filepath.Join(dir, "k.pem")})
	if err == nil || !strings.Contains(err.Error(), "k.pem") {
		t.Fatalf("a world-readable --tls-key: %v", err)
	}
}
