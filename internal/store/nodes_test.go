package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// t0 is a time on the millisecond, as the nodes table keeps it.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNodesRegisterAndHeartbeat(t *testing.T) { forEachBackend(t, testNodesRegisterAndHeartbeat) }

func testNodesRegisterAndHeartbeat(t *testing.T, s *Store) {
	ctx := context.Background()
	if ns, err := s.Nodes(ctx); err != nil || len(ns) != 0 {
		t.Fatalf("Nodes of an empty store: %v, %v", ns, err)
	}
	// HeartbeatAt zero: the heartbeat is the start.
	n2 := Node{ID: "n2", Address: "10.0.0.2:7443", StartedAt: t0.Add(123456789 * time.Nanosecond)}
	n1 := Node{ID: "n1", Address: "10.0.0.1:7443", StartedAt: t0, HeartbeatAt: t0.Add(time.Second)}
	for _, n := range []Node{n2, n1} {
		if err := s.RegisterNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	want2 := Node{ID: "n2", Address: "10.0.0.2:7443", StartedAt: t0.Add(123 * time.Millisecond), HeartbeatAt: t0.Add(123 * time.Millisecond)}
	if got, err := s.Node(ctx, "n2"); err != nil || got != want2 {
		t.Fatalf("Node(n2) = %+v, %v; want %+v (kept to the millisecond)", got, err, want2)
	}
	ns, err := s.Nodes(ctx)
	if err != nil || len(ns) != 2 || ns[0] != n1 || ns[1] != want2 {
		t.Fatalf("Nodes = %+v, %v; want n1 then n2", ns, err)
	}

	if err := s.HeartbeatNode(ctx, "n1", t0.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Node(ctx, "n1"); err != nil || !got.HeartbeatAt.Equal(t0.Add(5*time.Second)) || !got.StartedAt.Equal(t0) {
		t.Fatalf("after a heartbeat: %+v, %v", got, err)
	}
	if err := s.HeartbeatNode(ctx, "gone", t0); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("heartbeat of an unknown node: %v", err)
	}
	if _, err := s.Node(ctx, "gone"); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("Node of an unknown node: %v", err)
	}

	// Registering again replaces the record (a restart with the same id).
	again := Node{ID: "n1", Address: "10.0.0.9:7443", StartedAt: t0.Add(time.Minute), HeartbeatAt: t0.Add(time.Minute)}
	if err := s.RegisterNode(ctx, again); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Node(ctx, "n1"); err != nil || got != again {
		t.Fatalf("re-registered n1 = %+v, %v; want %+v", got, err, again)
	}
	if ns, err := s.Nodes(ctx); err != nil || len(ns) != 2 {
		t.Fatalf("Nodes after re-registering: %+v, %v", ns, err)
	}
	if err := s.RegisterNode(ctx, Node{Address: "x:1", StartedAt: t0}); !errors.Is(err, tunnel.ErrInvalid) {
		t.Fatalf("a node without id: %v", err)
	}
}

// claimedTunnel creates a tunnel whose source is held by node src and whose
// destination by node dst ("" none), each connected when held.
func claimedTunnel(t *testing.T, s *Store, src, dst, description string) tunnel.Tunnel {
	t.Helper()
	tu, _, err := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"SSH"}, Description: description}, t0)
	if err != nil {
		t.Fatal(err)
	}
	tu.Source.Node, tu.Source.Connected = src, src != ""
	tu.Destination.Node, tu.Destination.Connected = dst, dst != ""
	if err := s.CreateTunnel(context.Background(), tu); err != nil {
		t.Fatal(err)
	}
	return tu
}

// sidesOf reads a tunnel back and describes its sides as "node/connected".
func sidesOf(t *testing.T, s *Store, id string) (string, string, tunnel.Tunnel) {
	t.Helper()
	tu, err := s.Tunnel(context.Background(), "acct1", id)
	if err != nil {
		t.Fatal(err)
	}
	d := func(sd tunnel.Side) string { return fmt.Sprintf("%s/%v", sd.Node, sd.Connected) }
	return d(tu.Source), d(tu.Destination), tu
}

// A dead node's sides, and only those, are released: a live node's sides
// of the same tunnel, other tunnels, a single server's connected sides and
// a tunnel that merely mentions the node's claim in its description are
// left alone. The dead node's id holds LIKE's _ so that an unescaped
// pattern would also match the live node's.
func TestReleaseDeadNodes(t *testing.T) { forEachBackend(t, testReleaseDeadNodes) }

func testReleaseDeadNodes(t *testing.T, s *Store) {
	ctx := context.Background()
	const dead, live = "n_1", "nx1"
	for _, n := range []Node{
		{ID: dead, Address: "a:1", StartedAt: t0, HeartbeatAt: t0},
		{ID: live, Address: "a:2", StartedAt: t0, HeartbeatAt: t0.Add(10 * time.Second)},
	} {
		if err := s.RegisterNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	mixed := claimedTunnel(t, s, dead, live, "")
	both := claimedTunnel(t, s, dead, dead, "")
	liveOnly := claimedTunnel(t, s, live, live, "")
	single := claimedTunnel(t, s, "", "", "")
	single, err := s.UpdateTunnel(ctx, single.ID, func(tu *tunnel.Tunnel) error { tu.Source.Connected = true; return nil })
	if err != nil {
		t.Fatal(err)
	}
	mention := claimedTunnel(t, s, live, "", `"Node":"n_1"`)

	now := t0.Add(11 * time.Second)
	removed, err := s.ReleaseDeadNodes(ctx, now.Add(-5*time.Second), now)
	if err != nil || !slices.Equal(removed, []string{dead}) {
		t.Fatalf("ReleaseDeadNodes = %v, %v; want [%s]", removed, err, dead)
	}
	for _, c := range []struct {
		id       string
		src, dst string
	}{
		{mixed.ID, "/false", live + "/true"},
		{both.ID, "/false", "/false"},
		{liveOnly.ID, live + "/true", live + "/true"},
		{single.ID, "/true", "/false"},
		{mention.ID, live + "/true", "/false"},
	} {
		src, dst, _ := sidesOf(t, s, c.id)
		if src != c.src || dst != c.dst {
			t.Errorf("tunnel %s: source %s destination %s; want %s, %s", c.id, src, dst, c.src, c.dst)
		}
	}
	_, _, got := sidesOf(t, s, mixed.ID)
	if !got.Source.LastUpdatedAt.Equal(now) || !got.Destination.LastUpdatedAt.Equal(mixed.Destination.LastUpdatedAt) {
		t.Errorf("mixed tunnel's times: source %v (want %v), destination %v (want unchanged)", got.Source.LastUpdatedAt, now, got.Destination.LastUpdatedAt)
	}
	_, _, got = sidesOf(t, s, mention.ID)
	if !got.Source.LastUpdatedAt.Equal(mention.Source.LastUpdatedAt) {
		t.Errorf("the tunnel that only mentions the claim was changed: %+v", got.Source)
	}

	ns, err := s.Nodes(ctx)
	if err != nil || len(ns) != 1 || ns[0].ID != live {
		t.Fatalf("nodes after the release: %+v, %v; want only %s", ns, err, live)
	}
	if err := s.HeartbeatNode(ctx, dead, now); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("the dead node's heartbeat: %v; want ErrNotFound", err)
	}
	if removed, err := s.ReleaseDeadNodes(ctx, now.Add(-5*time.Second), now); err != nil || len(removed) != 0 {
		t.Fatalf("a second release: %v, %v; want none", removed, err)
	}
}

// Several nodes, on two Stores of one database, release the dead at once:
// every call succeeds, each dead node is removed exactly once, and every
// side the dead held is released.
func TestReleaseDeadNodesConcurrently(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, open func(*testing.T) *Store) {
		ctx := context.Background()
		stores := []*Store{open(t), open(t)}
		s := stores[0]
		var dead []string
		var tunnels []string
		for i := range 6 {
			id := fmt.Sprintf("dead%d", i)
			dead = append(dead, id)
			if err := s.RegisterNode(ctx, Node{ID: id, Address: "a:1", StartedAt: t0}); err != nil {
				t.Fatal(err)
			}
			for j := range 3 {
				other := dead[(i+j)%len(dead)] // some tunnels span two dead nodes
				if j == 2 {
					other = "live"
				}
				tunnels = append(tunnels, claimedTunnel(t, s, id, other, "").ID)
			}
		}
		if err := s.RegisterNode(ctx, Node{ID: "live", Address: "a:2", StartedAt: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		now := t0.Add(time.Minute)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var all []string
		for i := range 4 {
			wg.Go(func() {
				removed, err := stores[i%2].ReleaseDeadNodes(ctx, now.Add(-5*time.Second), now)
				if err != nil {
					t.Errorf("ReleaseDeadNodes %d: %v", i, err)
				}
				mu.Lock()
				all = append(all, removed...)
				mu.Unlock()
			})
		}
		wg.Wait()
		slices.Sort(all)
		if !slices.Equal(all, dead) {
			t.Fatalf("removed together: %v; want each of %v once", all, dead)
		}
		for _, id := range tunnels {
			src, dst, _ := sidesOf(t, s, id)
			if src != "/false" || (dst != "/false" && dst != "live/true") {
				t.Errorf("tunnel %s: source %s destination %s", id, src, dst)
			}
		}
		if ns, err := s.Nodes(ctx); err != nil || len(ns) != 1 || ns[0].ID != "live" {
			t.Fatalf("nodes left: %+v, %v", ns, err)
		}
	})
}

// A clean shutdown removes the node and releases its sides; a node that is
// only marked disconnected keeps its record.
func TestRemoveNode(t *testing.T) { forEachBackend(t, testRemoveNode) }

func testRemoveNode(t *testing.T, s *Store) {
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		if err := s.RegisterNode(ctx, Node{ID: id, Address: id + ":1", StartedAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	ab := claimedTunnel(t, s, "a", "b", "")
	now := t0.Add(time.Second)
	if err := s.RemoveNode(ctx, "a", now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Node(ctx, "a"); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("node a after RemoveNode: %v", err)
	}
	if src, dst, _ := sidesOf(t, s, ab.ID); src != "/false" || dst != "b/true" {
		t.Fatalf("after removing a: source %s destination %s", src, dst)
	}
	if err := s.RemoveNode(ctx, "a", now); err != nil {
		t.Fatalf("removing a again: %v", err)
	}

	if err := s.MarkNodeDisconnected(ctx, "b", now); err != nil {
		t.Fatal(err)
	}
	if src, dst, _ := sidesOf(t, s, ab.ID); src != "/false" || dst != "/false" {
		t.Fatalf("after releasing b: source %s destination %s", src, dst)
	}
	if _, err := s.Node(ctx, "b"); err != nil {
		t.Fatalf("node b after MarkNodeDisconnected: %v", err)
	}
}

// The first value made for a secret is the one every Store gets, however
// many make one at once; fresh is not called once the secret exists, and its
// error stores nothing.
func TestSecretOrMakeFirstWins(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, open func(*testing.T) *Store) {
		ctx := context.Background()
		stores := []*Store{open(t), open(t)}
		boom := errors.New("boom")
		if _, err := stores[0].SecretOrMake(ctx, "ca", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("a failing make: %v", err)
		}
		const n = 8
		got := make([][]byte, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				v, err := stores[i%2].SecretOrMake(ctx, "ca", func() ([]byte, error) {
					return fmt.Appendf(nil, "bundle %d", i), nil
				})
				if err != nil {
					t.Errorf("SecretOrMake %d: %v", i, err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		for i := range got {
			if string(got[i]) != string(got[0]) {
				t.Fatalf("store %d got %q, another %q", i, got[i], got[0])
			}
		}
		var made bool
		for i := range n {
			made = made || string(got[0]) == fmt.Sprintf("bundle %d", i)
		}
		if !made {
			t.Fatalf("stored %q, which no caller made", got[0])
		}
		v, err := stores[1].SecretOrMake(ctx, "ca", func() ([]byte, error) {
			t.Error("make called for an existing secret")
			return []byte("late"), nil
		})
		if err != nil || string(v) != string(got[0]) {
			t.Fatalf("later read: %q, %v; want %q", v, err, got[0])
		}
	})
}

// The search for a node's tunnels finds its own and no other's, whatever
// its id holds: LIKE's wildcards, its escape character, what JSON escapes.
func TestNodeClaimCandidates(t *testing.T) { forEachBackend(t, testNodeClaimCandidates) }

func testNodeClaimCandidates(t *testing.T, s *Store) {
	ctx := context.Background()
	ids := []string{"n_1", "nx1", "a%b", "aXb", `a\b`, `q"x`, "<&>", "n"}
	held := map[string]string{}
	for _, id := range ids {
		held[id] = claimedTunnel(t, s, "", id, "").ID
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		got, err := nodeClaimCandidates(ctx, tx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != held[id] {
			t.Errorf("tunnels of node %q: %v; want only %s", id, got, held[id])
		}
	}
}
