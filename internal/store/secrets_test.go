package store

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestSecretMadeOnceAndKept(t *testing.T) { forEachDatabase(t, testSecretMadeOnceAndKept) }

func testSecretMadeOnceAndKept(t *testing.T, open func(*testing.T) *Store) {
	ctx := context.Background()
	s := open(t)
	a, err := s.Secret(ctx, "cursor", 32)
	if err != nil || len(a) != 32 {
		t.Fatalf("secret: %x, %v", a, err)
	}
	if b, err := s.Secret(ctx, "cursor", 32); err != nil || !bytes.Equal(a, b) {
		t.Fatalf("second read: %x, %v; want %x", b, err, a)
	}
	if c, err := s.Secret(ctx, "other", 32); err != nil || bytes.Equal(a, c) {
		t.Fatalf("another name's secret: %x, %v", c, err)
	}
	s.Close()
	s = open(t)
	if b, err := s.Secret(ctx, "cursor", 32); err != nil || !bytes.Equal(a, b) {
		t.Fatalf("after reopening: %x, %v; want %x", b, err, a)
	}
}

// A page continues from a place, not from a row: deleting the previous
// page's tunnels does not move or break the next page.
func TestTunnelsPageAfterDeletedRows(t *testing.T) {
	forEachBackend(t, testTunnelsPageAfterDeletedRows)
}

func testTunnelsPageAfterDeletedRows(t *testing.T, s *Store) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string // newest first
	for i := range 6 {
		// Pairs share a creation time, so the id breaks the tie.
		tu, _, err := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, base.Add(time.Duration(i/2)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tu.ID)
	}
	var seen []string
	var after tunnel.Position
	for {
		page, err := s.Tunnels(ctx, "acct1", "", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, p := range page {
			seen = append(seen, p.ID)
			if err := s.DeleteTunnel(ctx, "acct1", p.ID); err != nil {
				t.Fatal(err)
			}
		}
		after = tunnel.PositionAfter(page[len(page)-1])
	}
	if len(seen) != len(ids) {
		t.Fatalf("saw %d tunnels (%v), want all %d", len(seen), seen, len(ids))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] == seen[i-1] {
			t.Fatalf("tunnel %s listed twice", seen[i])
		}
	}
}
