package server

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/store"
	"github.com/warrentunnel/warren/internal/store/storetest"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Servers starting at once on one fresh PostgreSQL database agree on one
// admin account, each writes its keys to its own data directory, and none
// makes a SQLite file there.
func TestServersShareAPostgresStore(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresDatabase(t)
	servers := make([]*Server, 3)
	errs := make([]error, len(servers))
	dirs := make([]string, len(servers))
	var wg sync.WaitGroup
	for i := range servers {
		dirs[i] = t.TempDir()
		wg.Go(func() {
			servers[i], errs[i] = Open(ctx, Config{Listen: "127.0.0.1:0", DataDir: dirs[i], Store: url})
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			defer s.Shutdown(ctx)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("servers starting at once: %v", err)
	}
	admin := servers[0].Admin()
	if !admin.Admin || admin.Name != AdminAccountName {
		t.Fatalf("first server's account %+v is not the admin account", admin)
	}
	for i, s := range servers {
		if s.Admin() != admin {
			t.Fatalf("server %d's admin %+v, server 0's %+v", i, s.Admin(), admin)
		}
		creds, err := os.ReadFile(filepath.Join(dirs[i], CredentialsFile))
		if err != nil || !strings.Contains(string(creds), "aws_access_key_id = "+admin.AccessKeyID) {
			t.Fatalf("server %d's credentials: %s, %v", i, creds, err)
		}
		if _, err := os.Stat(filepath.Join(dirs[i], DBFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("server %d made %s beside a PostgreSQL store: %v", i, DBFile, err)
		}
	}
	accts, err := servers[1].store.Accounts(ctx, tunnel.Position{}, 0)
	if err != nil || len(accts) != 1 {
		t.Fatalf("accounts after three first starts: %d, %v", len(accts), err)
	}
}

func TestStoreFlagRefusesOtherURLs(t *testing.T) {
	for _, u := range []string{"mysql://x/y", "sqlite:///tmp/x.db", "/tmp/x.db"} {
		s, err := Open(context.Background(), Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Store: u})
		if err == nil {
			s.Shutdown(context.Background())
			t.Fatalf("--store %s accepted", u)
		}
		if !strings.Contains(err.Error(), "--store") {
			t.Fatalf("--store %s: unclear error %v", u, err)
		}
	}
}

// The admin account's creation is safe when servers race for it: the
// store's unique name refuses all but one, and the others use that one.
func TestEnsureAdminRace(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresDatabase(t)
	const n = 8
	servers := make([]*Server, n)
	for i := range servers {
		st, err := store.OpenPostgres(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		servers[i] = &Server{cfg: Config{DataDir: t.TempDir()}, log: slog.New(slog.DiscardHandler), store: st}
	}
	for round := range 5 {
		accts := make([]tunnel.Account, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, s := range servers {
			wg.Go(func() {
				<-start
				accts[i], errs[i] = s.ensureAdmin(ctx, time.Now())
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		for i := range accts {
			if accts[i] != accts[0] {
				t.Fatalf("round %d: servers got admins %+v and %+v", round, accts[0], accts[i])
			}
		}
		if _, err := servers[0].store.DeleteAccount(ctx, accts[0].ID); err != nil {
			t.Fatal(err)
		}
	}
}
