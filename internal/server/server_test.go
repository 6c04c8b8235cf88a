package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
