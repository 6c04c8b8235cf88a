package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestDataDirectoryOnFirstStartAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	admin := s.Admin()
	if !admin.Admin || admin.Name != AdminAccountName || admin.BandwidthLimit != tunnel.BandwidthDefault {
		t.Fatalf("first start's account %+v is not the admin account", admin)
	}
	creds, err := os.ReadFile(filepath.Join(dir, CredentialsFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, CredentialsFile)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials mode %v", fi.Mode())
	}
	if !strings.Contains(string(creds), "aws_access_key_id = "+admin.AccessKeyID) || !strings.Contains(string(creds), admin.SecretAccessKey) {
		t.Fatalf("credentials file: %s", creds)
	}
	// The generated CA verifies the server for 127.0.0.1, with TLS 1.2+.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(filepath.Join(dir, CAFile))
	pool.AppendCertsFromPEM(pem)
	c, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS with the generated CA: %v", err)
	}
	c.Close()
	if _, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Fatal("TLS 1.1 accepted")
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// A restart keeps the account and the CA.
	s2, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(ctx)
	if s2.Admin() != admin {
		t.Fatalf("admin changed across restart: %+v vs %+v", s2.Admin(), admin)
	}
	pem2, _ := os.ReadFile(filepath.Join(dir, CAFile))
	if string(pem2) != string(pem) {
		t.Fatal("CA regenerated on restart")
	}
}

// The official local proxy's -c is an OpenSSL hash directory: the CA must
// be there as <openssl x509 -hash>.0.
func TestCADirMatchesOpenSSLHash(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is missing; .ci/run installs it")
		}
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	if _, err := ensureCertificates(dir, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "x509", "-hash", "-noout", "-in", filepath.Join(dir, CAFile)).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSpace(string(out)) + ".0"
	if _, err := os.Stat(filepath.Join(dir, CADir, want)); err != nil {
		entries, _ := os.ReadDir(filepath.Join(dir, CADir))
		t.Fatalf("openssl looks for %s; ca/ holds %v", want, entries)
	}
	// And for a subject with mixed case and extra spaces.
	for _, cn := range []string{"Warren  Local   CA", " UPPER lower "} {
		cert := selfSigned(t, cn)
		f := filepath.Join(t.TempDir(), "c.pem")
		os.WriteFile(f, cert, 0o644)
		out, err := exec.Command(openssl, "x509", "-hash", "-noout", "-in", f).Output()
		if err != nil {
			t.Fatal(err)
		}
		c := parsePEM(t, cert)
		h, err := subjectHash(c)
		if err != nil || fmt.Sprintf("%08x", h) != strings.TrimSpace(string(out)) {
			t.Fatalf("%q: hash %08x, openssl %s (%v)", cn, h, out, err)
		}
	}
}

// --plaintext serves HTTP without TLS and says so loudly.
func TestPlaintext(t *testing.T) {
	var logs strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Plaintext: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if !strings.HasPrefix(s.Endpoint(), "http://") {
		t.Fatalf("endpoint %s", s.Endpoint())
	}
	req, _ := http.NewRequest(http.MethodPost, s.Endpoint()+"/", strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "IoTSecuredTunneling.ListTunnels")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("x-amzn-ErrorType") == "" {
		t.Fatalf("unsigned request over plain HTTP: %s %v", resp.Status, resp.Header)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "WITHOUT TLS") {
		t.Fatalf("no loud warning:\n%s", logs.String())
	}
}

// --tls-cert/--tls-key replace the generated certificate.
func TestOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := serverPair(t, "tunnel.example.com")
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	s, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), TLSCert: certFile, TLSKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	c, err := tls.Dial("tcp", s.Addr(), &tls.Config{RootCAs: pool, ServerName: "tunnel.example.com"})
	if err != nil {
		t.Fatalf("TLS with the given certificate: %v", err)
	}
	c.Close()
	if _, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "d2"), TLSCert: certFile}); err == nil {
		t.Fatal("--tls-cert without --tls-key accepted")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
