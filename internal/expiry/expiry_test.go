package expiry

import (
	"context"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/tunnel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// closingRelay records the tunnels it was told to close, and when.
type closingRelay struct {
	mu     sync.Mutex
	closed map[string]time.Time
}

func (r *closingRelay) CloseTunnel(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.closed[id]; !ok {
		r.closed[id] = time.Now()
	}
}

func (r *closingRelay) when(id string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at, ok := r.closed[id]
	return at, ok
}

func (r *closingRelay) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ids []string
	for id := range r.closed {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func newTunnel(t *testing.T, st *store.Store, created time.Time, minutes int) tunnel.Tunnel {
	t.Helper()
	tu, _, err := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"SSH"}, LifetimeMinutes: minutes}, created)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateTunnel(context.Background(), tu); err != nil {
		t.Fatal(err)
	}
	return tu
}

// The sweeper closes, as of their deadlines: at its start a tunnel that
// expired while nobody ran, then a tunnel at its deadline (not a look
// later), and leaves a tunnel with lifetime to spare open. Each closed one
// is disconnected through the relay.
func TestSweeperClosesAtTheDeadline(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "warren.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	long := newTunnel(t, st, now.Add(-2*time.Hour), 60)            // expired an hour ago
	soon := newTunnel(t, st, now.Add(-time.Minute+time.Second), 1) // expires in a second
	spare := newTunnel(t, st, now, 0)                              // the default 720 minutes
	relay := &closingRelay{closed: map[string]time.Time{}}
	sw := New(Config{Store: st, Relay: relay})
	sw.Start()
	defer sw.Stop()

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := relay.when(soon.ID); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tunnel due a second after the start is not closed after 10 s; relay told %v", relay.ids())
		}
		time.Sleep(10 * time.Millisecond)
	}
	at, _ := relay.when(soon.ID)
	if early := soon.ExpiresAt().Sub(at); early > 0 {
		t.Errorf("closed %v before its deadline", early)
	}
	if late := at.Sub(soon.ExpiresAt()); late > 2*time.Second {
		t.Errorf("closed %v after its deadline", late)
	}
	t.Logf("closed %v after its deadline", at.Sub(soon.ExpiresAt()).Round(time.Millisecond))
	for _, want := range []tunnel.Tunnel{long, soon} {
		got, err := st.Tunnel(ctx, "acct1", want.ID)
		if err != nil || got.Status != tunnel.StatusClosed || !got.LastUpdatedAt.Equal(want.ExpiresAt().UTC()) {
			t.Errorf("tunnel %s: %s, last updated %v, %v; want CLOSED as of %v", want.ID, got.Status, got.LastUpdatedAt, err, want.ExpiresAt().UTC())
		}
	}
	if got, _ := st.Tunnel(ctx, "acct1", spare.ID); got.Status != tunnel.StatusOpen {
		t.Errorf("the tunnel with lifetime to spare is %s", got.Status)
	}
	if want := []string{long.ID, soon.ID}; !slices.Equal(relay.ids(), sortedIDs(want)) {
		t.Errorf("relay told to close %v, want %v", relay.ids(), want)
	}
}

func sortedIDs(ids []string) []string {
	slices.Sort(ids)
	return ids
}

// Sweep reports the earliest deadline still ahead, and none when no tunnel
// is open; a tunnel deleted or closed meanwhile is no error.
func TestSweepNextDeadline(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "warren.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := base
	sw := New(Config{Store: st, Relay: &closingRelay{closed: map[string]time.Time{}}, Now: func() time.Time { return clock }})
	if next, err := sw.Sweep(ctx); err != nil || !next.IsZero() {
		t.Fatalf("no tunnels: next %v, %v", next, err)
	}
	a := newTunnel(t, st, base, 10)
	newTunnel(t, st, base, 30)
	if next, err := sw.Sweep(ctx); err != nil || !next.Equal(a.ExpiresAt()) {
		t.Fatalf("next %v, %v; want %v", next, err, a.ExpiresAt())
	}
	clock = base.Add(10 * time.Minute)
	if next, err := sw.Sweep(ctx); err != nil || !next.Equal(base.Add(30*time.Minute)) {
		t.Fatalf("after the first deadline: next %v, %v", next, err)
	}
	if got, _ := st.Tunnel(ctx, "acct1", a.ID); got.Status != tunnel.StatusClosed {
		t.Fatalf("the first tunnel is %s at its deadline", got.Status)
	}
	if err := sw.close(ctx, "no-such-tunnel", clock); err != nil {
		t.Fatalf("closing a deleted tunnel: %v", err)
	}
}
