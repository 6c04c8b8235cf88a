package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/store/storetest"
	"github.com/warrentunnel/warren/internal/tunnel"
)

// Two servers on one PostgreSQL database, each with its own pool, never
// take an account past its limit together: the count and the insert hold
// the account's advisory lock.
func TestCreateTunnelWithinAcrossServers(t *testing.T) {
	forEachDatabase(t, func(t *testing.T, open func(*testing.T) *Store) {
		ctx := context.Background()
		nodes := []*Store{open(t), open(t)}
		const limit, tries = 7, 40
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for i := range tries {
			wg.Go(func() {
				tu, _, _ := tunnel.New("acct1", "us-east-1", tunnel.OpenParams{Services: []string{"HTTP"}}, time.Now())
				err := nodes[i%2].CreateTunnelWithin(ctx, tu, limit)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					created++
				case !errors.Is(err, tunnel.ErrLimitExceeded):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if created != limit {
			t.Fatalf("%d tunnels created by two servers; want the limit, %d", created, limit)
		}
		for _, s := range nodes {
			if n, err := s.CountOpenTunnels(ctx, "acct1"); err != nil || n != limit {
				t.Fatalf("CountOpenTunnels = %d, %v; want %d", n, err, limit)
			}
		}
	})
}

// The PostgreSQL schema is versioned: servers starting at once migrate it
// once, a current one is left alone, and one from a newer warren is
// refused with an error that says so, not changed.
func TestPostgresSchemaVersions(t *testing.T) {
	ctx := context.Background()
	url := storetest.PostgresDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() {
			s, err := OpenPostgres(ctx, url)
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("servers starting at once: %v", err)
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var versions, version int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*), MAX(version) FROM schema_version`).Scan(&versions, &version); err != nil {
		t.Fatal(err)
	}
	if versions != 1 || version != len(postgresMigrations) {
		t.Fatalf("schema_version has %d rows, version %d; want 1 row, %d", versions, version, len(postgresMigrations))
	}
	s, err := OpenPostgres(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccount(ctx, newAccount(t, "kept", false, time.Now())); err != nil {
		t.Fatal(err)
	}
	s.Close()

	if _, err := db.ExecContext(ctx, `UPDATE schema_version SET version = 99`); err != nil {
		t.Fatal(err)
	}
	if s, err := OpenPostgres(ctx, url); err == nil {
		s.Close()
		t.Fatal("opened a database of schema version 99")
	} else if !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Fatalf("error %q does not say the schema is newer", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("accounts after the refusal: %d, %v", n, err)
	}
}

// Bad URLs get a clear error, and a password never appears in it.
func TestOpenPostgresBadURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, u := range []string{
		"postgres://user:s3cret-pw@127.0.0.1:1/x?sslmode=disable&connect_timeout=2",
		"postgres://user:s3cret-pw@127.0.0.1:5432/x?sslmode=bogus",
	} {
		s, err := OpenPostgres(ctx, u)
		if err == nil {
			s.Close()
			t.Fatalf("OpenPostgres(%s) succeeded", u)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
}

func TestRebind(t *testing.T) {
	d := postgresDialect()
	for q, want := range map[string]string{
		`SELECT 1`:                              `SELECT 1`,
		`WHERE a = ? AND b = ?`:                 `WHERE a = $1 AND b = $2`,
		`WHERE a = ?1 AND b = ?2 AND c = ?1`:    `WHERE a = $1 AND b = $2 AND c = $1`,
		`LIMIT ?`:                               `LIMIT $1`,
		`VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`: `VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
	} {
		if got := d.rebind(q); got != want {
			t.Errorf("rebind(%q) = %q, want %q", q, got, want)
		}
	}
	if got := sqliteDialect().rebind(`a = ?`); got != `a = ?` {
		t.Errorf("SQLite rebind changed %q", got)
	}
}
