package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestTunnelsRoundTripAndPaging(t *testing.T) { forEachBackend(t, testTunnelsRoundTripAndPaging) }

func testTunnelsRoundTripAndPaging(t *testing.T, s *Store) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 5; i++ {
		thing := "a"
		if i%2 == 1 {
			thing = "b"
		}
		tu, tok, err := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{ThingName: thing, Services: []string{"HTTP"}}, base.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
		got, mode, err := s.TunnelByToken(ctx, tunnel.HashToken(tok.Destination))
		if err != nil || got.ID != tu.ID || mode != tunnel.ModeDestination {
			t.Fatalf("by token: %v %v %v", got.ID, mode, err)
		}
		ids = append(ids, tu.ID)
	}
	other, _, _ := tunnel.New("acct2", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, base)
	if err := s.CreateTunnel(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tunnel(ctx, "acct1", other.ID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("other account's tunnel visible: %v", err)
	}
	var seen []string
	var after tunnel.Position
	for {
		page, err := s.Tunnels(ctx, "acct1", "", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range page {
			seen = append(seen, p.ID)
		}
		if len(page) < 2 {
			break
		}
		after = tunnel.PositionAfter(page[len(page)-1])
	}
	want := fmt.Sprint([]string{ids[4], ids[3], ids[2], ids[1], ids[0]})
	if fmt.Sprint(seen) != want {
		t.Fatalf("paging order %v, want %v", seen, want)
	}
	bs, err := s.Tunnels(ctx, "acct1", "b", tunnel.Position{}, 10)
	if err != nil || len(bs) != 2 {
		t.Fatalf("thing filter: %d %v", len(bs), err)
	}
}

func TestUpdateTunnelIsAtomic(t *testing.T) { forEachBackend(t, testUpdateTunnelIsAtomic) }

func testUpdateTunnelIsAtomic(t *testing.T, s *Store) {
	ctx := context.Background()
	tu, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
	if err := s.CreateTunnel(ctx, tu); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UpdateTunnel(ctx, tu.ID, func(t *tunnel.Tunnel) error {
				t.LifetimeMinutes--
				return nil
			}); err != nil {
				panic(err)
			}
		}()
	}
	wg.Wait()
	got, err := s.Tunnel(ctx, "acct1", tu.ID)
	if err != nil || got.LifetimeMinutes != 700 {
		t.Fatalf("lifetime %d (lost updates?) %v", got.LifetimeMinutes, err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateTunnel(ctx, tu.ID, func(t *tunnel.Tunnel) error { t.Status = tunnel.StatusClosed; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	got, _ = s.Tunnel(ctx, "acct1", tu.ID)
	if got.Status != tunnel.StatusOpen {
		t.Fatal("aborted update was written")
	}
}

func TestThingsAndDisconnect(t *testing.T) { forEachBackend(t, testThingsAndDisconnect) }

func testThingsAndDisconnect(t *testing.T, s *Store) {
	ctx := context.Background()
	th := tunnel.Thing{AccountID: "a", Name: "dev1", ID: "x"}
	if err := s.CreateThing(ctx, th); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateThing(ctx, th); !errors.Is(err, tunnel.ErrExists) {
		t.Fatalf("duplicate: %v", err)
	}
	if _, err := s.Thing(ctx, "b", "dev1"); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("other account: %v", err)
	}
	if err := s.DeleteThing(ctx, "a", "dev1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteThing(ctx, "a", "dev1"); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatal(err)
	}
	tu, _, _ := tunnel.New("a", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
	tu.Source.Connected = true
	if err := s.CreateTunnel(ctx, tu); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAllDisconnected(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Tunnel(ctx, "a", tu.ID)
	if got.Source.Connected {
		t.Fatal("still connected")
	}
}

// Concurrent creations never take an account past its limit: the count and
// the insert are one transaction.
func TestCreateTunnelWithinIsAtomic(t *testing.T) { forEachBackend(t, testCreateTunnelWithinIsAtomic) }

func testCreateTunnelWithinIsAtomic(t *testing.T, s *Store) {
	ctx := context.Background()
	const limit, tries = 5, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for range tries {
		wg.Go(func() {
			tu, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
			err := s.CreateTunnelWithin(ctx, tu, limit)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, tunnel.ErrLimitExceeded):
				refused++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if created != limit || refused != tries-limit {
		t.Fatalf("%d created, %d refused; want %d and %d", created, refused, limit, tries-limit)
	}
	if n, err := s.CountOpenTunnels(ctx, "acct1"); err != nil || n != limit {
		t.Fatalf("CountOpenTunnels = %d, %v; want %d", n, err, limit)
	}
	// Another account has its own count; no limit is no limit.
	other, _, _ := tunnel.New("acct2", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
	if err := s.CreateTunnelWithin(ctx, other, limit); err != nil {
		t.Fatal(err)
	}
	extra, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
	if err := s.CreateTunnelWithin(ctx, extra, 0); err != nil {
		t.Fatal(err)
	}
}

// Closed tunnels are not open; the status decides (the expiry sweeper
// closes a tunnel at the end of its lifetime).
func TestCountOpenTunnels(t *testing.T) { forEachBackend(t, testCountOpenTunnels) }

func testCountOpenTunnels(t *testing.T, s *Store) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mk := func() tunnel.Tunnel {
		tu, _, err := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, base)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
		return tu
	}
	first := mk()
	mk()
	closed := mk()
	if _, err := s.UpdateTunnel(ctx, closed.ID, func(t *tunnel.Tunnel) error { t.Close(base); return nil }); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountOpenTunnels(ctx, "acct1"); err != nil || n != 2 {
		t.Fatalf("%d open, %v; want 2", n, err)
	}
	// At the limit, a closed tunnel does not hold a place.
	again, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, base)
	if err := s.CreateTunnelWithin(ctx, again, 2); !errors.Is(err, tunnel.ErrLimitExceeded) {
		t.Fatalf("third open tunnel: %v, want ErrLimitExceeded", err)
	}
	if _, err := s.UpdateTunnel(ctx, first.ID, func(t *tunnel.Tunnel) error { t.Close(t.ExpiresAt()); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTunnelWithin(ctx, again, 2); err != nil {
		t.Fatalf("after a tunnel closed: %v", err)
	}
}

// TunnelCounts counts every account's tunnels, an expired one as closed;
// Ping fails once the store is closed.
func TestTunnelCountsAndPing(t *testing.T) { forEachBackend(t, testTunnelCountsAndPing) }

func testTunnelCountsAndPing(t *testing.T, s *Store) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if o, c, err := s.TunnelCounts(ctx, base); err != nil || o != 0 || c != 0 {
		t.Fatalf("empty store: %d open %d closed, %v", o, c, err)
	}
	for i, acct := range []string{"acct1", "acct2", "acct2"} {
		tu, _, _ := tunnel.New(acct, "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}, LifetimeMinutes: 10 * (i + 1)}, base)
		if err := s.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			s.UpdateTunnel(ctx, tu.ID, func(t *tunnel.Tunnel) error { t.Close(base); return nil })
		}
	}
	for _, c := range []struct {
		at           time.Time
		open, closed int
	}{{base, 2, 1}, {base.Add(10 * time.Minute), 1, 2}, {base.Add(time.Hour), 0, 3}} {
		if o, cl, err := s.TunnelCounts(ctx, c.at); err != nil || o != c.open || cl != c.closed {
			t.Errorf("at +%v: %d open %d closed, %v; want %d and %d", c.at.Sub(base), o, cl, err, c.open, c.closed)
		}
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := s.Ping(ctx); err == nil {
		t.Fatal("Ping of a closed store succeeded")
	}
}

// Many callers at once share a bounded pool of connections.
func TestConnectionsBounded(t *testing.T) { forEachBackend(t, testConnectionsBounded) }

func testConnectionsBounded(t *testing.T, s *Store) {
	ctx := context.Background()
	tu, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
	if err := s.CreateTunnel(ctx, tu); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				_, _, err = s.TunnelByToken(ctx, tu.Source.TokenHash)
			} else {
				_, err = s.UpdateTunnel(ctx, tu.ID, func(t *tunnel.Tunnel) error { t.LifetimeMinutes--; return nil })
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if st := s.db.Stats(); st.MaxOpenConnections != MaxConnections || st.OpenConnections > MaxConnections {
		t.Fatalf("pool stats %+v, want at most %d connections", st, MaxConnections)
	}
	if got, _ := s.Tunnel(ctx, "acct1", tu.ID); got.LifetimeMinutes != 720-100 {
		t.Fatalf("lifetime %d after 100 updates", got.LifetimeMinutes)
	}
}
