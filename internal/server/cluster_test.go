package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/nodelink"
	"github.com/warrentunnel/warren/internal/store/storetest"
)

// Nodes on one PostgreSQL store register, serve certificates of one shared
// CA, sign device certificates with one device CA, find each other, and
// a node that stops beating is removed by the others; one that shuts down
// removes itself.
func TestClusterNodesShareAStore(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresDatabase(t)
	var servers []*Server
	var dirs []string
	for _, id := range []string{"n1", "n2", "n3"} {
		dir := t.TempDir()
		s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dir, Store: url, MetricsListen: "127.0.0.1:0",
			Cluster: Cluster{Listen: "127.0.0.1:0", ID: id}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
		dirs = append(dirs, dir)
	}
	down := map[*Server]bool{}
	shutdown := func(s *Server) error {
		if down[s] {
			return nil
		}
		down[s] = true
		return s.Shutdown(ctx)
	}
	defer func() {
		for _, s := range servers {
			shutdown(s)
		}
	}()
	for _, f := range []string{caCertFile, caKeyFile, DeviceCAFile} {
		first, err := os.ReadFile(filepath.Join(dirs[0], f))
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range dirs[1:] {
			b, err := os.ReadFile(filepath.Join(d, f))
			if err != nil || !bytes.Equal(b, first) {
				t.Fatalf("node %d's %s differs from node 1's (%v)", i+2, f, err)
			}
		}
	}
	nodes, err := servers[0].store.Nodes(ctx)
	if err != nil || len(nodes) != 3 {
		t.Fatalf("nodes %+v, %v", nodes, err)
	}
	for _, n := range nodes {
		if !strings.HasPrefix(n.Address, "127.0.0.1:") || strings.HasSuffix(n.Address, ":0") {
			t.Fatalf("node %s registered address %q", n.ID, n.Address)
		}
	}
	// Each node reads the others at every beat.
	for start := time.Now(); strings.Join(servers[0].cluster.Others(), ",") != "n2,n3"; time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 3*heartbeatEvery {
			t.Fatalf("n1 knows others %v", servers[0].cluster.Others())
		}
	}

	// n1, the smallest id, links up with the others ahead of need, and its
	// metrics show the links.
	for start := time.Now(); ; time.Sleep(100 * time.Millisecond) {
		body := scrape(t, servers[0].MetricsAddr())
		if strings.Contains(body, "\nwarren_node_links 2\n") &&
			strings.Contains(body, `warren_node_link_bytes_total{direction="sent",node="n3"}`) {
			break
		}
		if time.Since(start) > 5*heartbeatEvery {
			t.Fatalf("n1's links after %v:\n%s", time.Since(start), grepLines(body, "warren_node_link"))
		}
	}

	// n3 stops beating without a word (as if killed): the others remove it
	// within the dead time and a beat or two.
	servers[2].cluster.stopBeating()
	start := time.Now()
	for {
		if got := servers[0].cluster.Others(); strings.Join(got, ",") == "n2" {
			break
		}
		if time.Since(start) > deadAfter+5*heartbeatEvery {
			t.Fatalf("n3 still listed %v after %v", servers[0].cluster.Others(), time.Since(start))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a silent node was removed %v after its last beat", time.Since(start).Round(100*time.Millisecond))
	shutdown(servers[2])

	// n2 shuts down and removes itself at once.
	if err := shutdown(servers[1]); err != nil {
		t.Fatal(err)
	}
	nodes, err = servers[0].store.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "n1" {
		t.Fatalf("after n2's shutdown: %+v, %v", nodes, err)
	}
}

func TestClusterNeedsPostgres(t *testing.T) {
	_, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Cluster: Cluster{Listen: "127.0.0.1:0"}})
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("--node-listen without PostgreSQL: %v", err)
	}
}

// fakeRelay records Reconnect.
type fakeRelay struct {
	nodelink.Handler
	reconnects []string
}

func (f *fakeRelay) Reconnect(reason string) { f.reconnects = append(f.reconnects, reason) }

// A node that finds itself taken for dead (its row removed by another
// node, which released its peers in the store) registers again and drops
// its peers, so that they are admitted afresh.
func TestClusterNodeTakenForDeadDropsItsPeers(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresDatabase(t)
	s, err := Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: url,
		Cluster: Cluster{Listen: "127.0.0.1:0", ID: "n1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(ctx)
	c := s.cluster
	c.stopBeating()
	fake := &fakeRelay{}
	c.relay = fake
	c.beat(ctx)
	if len(fake.reconnects) != 0 {
		t.Fatalf("a live node dropped its peers: %v", fake.reconnects)
	}
	if err := s.store.RemoveNode(ctx, "n1", time.Now()); err != nil {
		t.Fatal(err)
	}
	c.beat(ctx)
	if len(fake.reconnects) != 1 {
		t.Fatalf("a node taken for dead did not drop its peers: %v", fake.reconnects)
	}
	if n, err := s.store.Node(ctx, "n1"); err != nil || n.Address != c.cfg.Address {
		t.Fatalf("not registered again: %+v, %v", n, err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
