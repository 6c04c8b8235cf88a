package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func certID(n int) string { return fmt.Sprintf("%064x", n) }

// Certificates and their attachments are per account: another account sees
// neither, a thing's deletion takes its attachments, an account's deletion
// everything.
func TestCertificatesAndPrincipals(t *testing.T) { forEachBackend(t, testCertificatesAndPrincipals) }

func testCertificatesAndPrincipals(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, th := range []tunnel.Thing{{AccountID: "a", Name: "dev1"}, {AccountID: "a", Name: "dev2"}, {AccountID: "b", Name: "dev1"}} {
		if err := s.CreateThing(ctx, th); err != nil {
			t.Fatal(err)
		}
	}
	c1 := tunnel.Certificate{ID: certID(1), AccountID: "a", PEM: "pem1", Status: tunnel.CertActive, CreatedAt: now}
	c2 := tunnel.Certificate{ID: certID(2), AccountID: "b", PEM: "pem2", Status: tunnel.CertActive, CreatedAt: now}
	for _, c := range []tunnel.Certificate{c1, c2} {
		if err := s.CreateCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateCertificate(ctx, c1); !errors.Is(err, tunnel.ErrExists) {
		t.Fatalf("duplicate certificate: %v", err)
	}
	if got, err := s.Certificate(ctx, "a", c1.ID); err != nil || got != c1 {
		t.Fatalf("Certificate: %+v %v", got, err)
	}
	if _, err := s.Certificate(ctx, "b", c1.ID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("another account's certificate: %v", err)
	}
	for _, th := range []string{"dev1", "dev2", "dev1"} {
		if err := s.AttachThingPrincipal(ctx, "a", th, c1.ID); err != nil {
			t.Fatalf("attach %s: %v", th, err)
		}
	}
	// Across accounts, and to things that do not exist: not found.
	for _, x := range []struct{ acct, thing, cert string }{{"b", "dev1", c1.ID}, {"a", "dev1", c2.ID}, {"a", "nope", c1.ID}} {
		if err := s.AttachThingPrincipal(ctx, x.acct, x.thing, x.cert); !errors.Is(err, tunnel.ErrNotFound) {
			t.Errorf("attach %+v: %v", x, err)
		}
	}
	c, things, err := s.CertificateThings(ctx, c1.ID)
	if err != nil || c.AccountID != "a" || !slices.Equal(things, []string{"dev1", "dev2"}) {
		t.Fatalf("CertificateThings: %+v %v %v", c, things, err)
	}
	if p, err := s.ThingPrincipals(ctx, "a", "dev1", "", 10); err != nil || !slices.Equal(p, []string{c1.ID}) {
		t.Fatalf("ThingPrincipals: %v %v", p, err)
	}
	if p, _ := s.ThingPrincipals(ctx, "b", "dev1", "", 10); len(p) != 0 {
		t.Fatalf("account b sees %v", p)
	}
	if err := s.DetachThingPrincipal(ctx, "a", "dev2", c1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteThing(ctx, "a", "dev1"); err != nil {
		t.Fatal(err)
	}
	if _, things, _ := s.CertificateThings(ctx, c1.ID); len(things) != 0 {
		t.Fatalf("attachments after detach and delete: %v", things)
	}
	up, err := s.UpdateCertificate(ctx, "a", c1.ID, func(c *tunnel.Certificate) error {
		c.Status = tunnel.CertRevoked
		return nil
	})
	if err != nil || up.Status != tunnel.CertRevoked {
		t.Fatalf("update: %+v %v", up, err)
	}
	if c, _, _ := s.CertificateThings(ctx, c1.ID); c.Status != tunnel.CertRevoked {
		t.Fatalf("status not kept: %+v", c)
	}
	if _, err := s.UpdateCertificate(ctx, "b", c1.ID, func(*tunnel.Certificate) error { return nil }); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("update by another account: %v", err)
	}
	if err := s.CreateAccount(ctx, tunnel.Account{ID: "b", Name: "b", AccessKeyID: "AKB", SecretAccessKey: "s", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.AttachThingPrincipal(ctx, "b", "dev1", c2.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteAccount(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CertificateThings(ctx, c2.ID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("certificate of a deleted account: %v", err)
	}
}
