package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

func newAccount(t *testing.T, name string, admin bool, created time.Time) tunnel.Account {
	t.Helper()
	a, err := tunnel.NewAccount(name, admin, tunnel.BandwidthDefault, created)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAccounts(t *testing.T) { forEachBackend(t, testAccounts) }

func testAccounts(t *testing.T, s *Store) {
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	admin := newAccount(t, "admin", true, base)
	alice := newAccount(t, "alice", false, base.Add(time.Second))
	alice.BandwidthLimit = 800_000
	bob := newAccount(t, "bob", false, base.Add(2*time.Second))
	for _, a := range []tunnel.Account{bob, admin, alice} {
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	dup := newAccount(t, "alice", false, base)
	if err := s.CreateAccount(ctx, dup); !errors.Is(err, tunnel.ErrExists) {
		t.Fatalf("duplicate name: %v", err)
	}

	got, err := s.Account(ctx, alice.ID)
	if err != nil || got != alice {
		t.Fatalf("Account = %+v, %v; want %+v", got, err, alice)
	}
	if got, err := s.AccountByAccessKey(ctx, admin.AccessKeyID); err != nil || got != admin {
		t.Fatalf("AccountByAccessKey = %+v, %v", got, err)
	}
	if _, err := s.Account(ctx, dup.ID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}

	all, err := s.Accounts(ctx, tunnel.Position{}, 0)
	if err != nil || !slices.Equal(all, []tunnel.Account{admin, alice, bob}) {
		t.Fatalf("Accounts = %+v, %v", all, err)
	}
	page, err := s.Accounts(ctx, tunnel.AccountPositionAfter(admin), 1)
	if err != nil || !slices.Equal(page, []tunnel.Account{alice}) {
		t.Fatalf("second page = %+v, %v", page, err)
	}
	if page, _ := s.Accounts(ctx, tunnel.AccountPositionAfter(bob), 10); len(page) != 0 {
		t.Fatalf("after the last: %+v", page)
	}

	up, err := s.UpdateAccount(ctx, bob.ID, func(a *tunnel.Account) error { a.BandwidthLimit = 0; return nil })
	if err != nil || up.BandwidthLimit != 0 || up.AccessKeyID != bob.AccessKeyID {
		t.Fatalf("UpdateAccount = %+v, %v", up, err)
	}
	if got, _ := s.Account(ctx, bob.ID); got.BandwidthLimit != 0 {
		t.Fatalf("update not stored: %+v", got)
	}
	if _, err := s.UpdateAccount(ctx, bob.ID, func(a *tunnel.Account) error { a.Name = "alice"; return nil }); !errors.Is(err, tunnel.ErrExists) {
		t.Fatalf("rename to a taken name: %v", err)
	}
	boom := errors.New("boom")
	if _, err := s.UpdateAccount(ctx, bob.ID, func(a *tunnel.Account) error { a.BandwidthLimit = 5; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if got, _ := s.Account(ctx, bob.ID); got.BandwidthLimit != 0 {
		t.Fatal("aborted update was written")
	}
	if _, err := s.UpdateAccount(ctx, dup.ID, func(*tunnel.Account) error { return nil }); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("update unknown: %v", err)
	}
}

func TestDeleteAccountTakesEverythingItOwns(t *testing.T) {
	forEachBackend(t, testDeleteAccountTakesEverythingItOwns)
}

func testDeleteAccountTakesEverythingItOwns(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now()
	alice := newAccount(t, "alice", false, now)
	bob := newAccount(t, "bob", false, now)
	for _, a := range []tunnel.Account{alice, bob} {
		if err := s.CreateAccount(ctx, a); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateThing(ctx, tunnel.Thing{AccountID: a.ID, Name: "dev", ID: a.ID}); err != nil {
			t.Fatal(err)
		}
	}
	var open []string
	for i := range 3 {
		tu, _, err := tunnel.New(alice.ID, "us-east-1", tunnel.OpenParams{ThingName: "dev", Services: []string{"SSH"}}, now.Add(time.Duration(i)*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			tu.Close(now)
		} else {
			open = append(open, tu.ID)
		}
		if err := s.CreateTunnel(ctx, tu); err != nil {
			t.Fatal(err)
		}
	}
	bobs, _, _ := tunnel.New(bob.ID, "us-east-1", tunnel.OpenParams{Services: []string{"SSH"}}, now)
	if err := s.CreateTunnel(ctx, bobs); err != nil {
		t.Fatal(err)
	}
	if ts, err := s.AccountOpenTunnels(ctx, alice.ID); err != nil || len(ts) != 2 {
		t.Fatalf("AccountOpenTunnels = %d, %v", len(ts), err)
	}

	gotOpen, err := s.DeleteAccount(ctx, alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(open)
	slices.Sort(gotOpen)
	if !slices.Equal(gotOpen, open) {
		t.Fatalf("DeleteAccount's open tunnels %v, want %v", gotOpen, open)
	}
	if _, err := s.AccountByAccessKey(ctx, alice.AccessKeyID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("deleted account's key: %v", err)
	}
	if ts, _ := s.Tunnels(ctx, alice.ID, "", tunnel.Position{}, 10); len(ts) != 0 {
		t.Fatalf("%d tunnels left", len(ts))
	}
	if _, err := s.Thing(ctx, alice.ID, "dev"); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("thing left: %v", err)
	}
	// Another account's records stay.
	if _, err := s.Thing(ctx, bob.ID, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tunnel(ctx, bob.ID, bobs.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteAccount(ctx, alice.ID); !errors.Is(err, tunnel.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

// oldSchema is the accounts table of the releases before accounts had names
// (schema version 0, as warren wrote it).
const oldSchema = `
CREATE TABLE accounts (
	id TEXT PRIMARY KEY,
	access_key_id TEXT NOT NULL UNIQUE,
	secret_access_key TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE things (
	account_id TEXT NOT NULL,
	name TEXT NOT NULL,
	data TEXT NOT NULL,
	PRIMARY KEY (account_id, name)
);
`

func TestOpenMigratesAnOldDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	created := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	_, err = db.Exec(oldSchema+`
		INSERT INTO accounts VALUES ('123456789012', 'AKIAOLDADMIN', 'old-secret', ?);
		INSERT INTO accounts VALUES ('210987654321', 'AKIAOLDOTHER', 'other-secret', ?);
		INSERT INTO things VALUES ('123456789012', 'dev', '{"AccountID":"123456789012","Name":"dev","ID":"x"}');`,
		created.UnixNano(), created.Add(time.Hour).UnixNano())
	if err != nil {
		t.Fatal(err)
	}
	db.Close()

	for range 2 { // the second Open finds the database current
		s, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		admin, err := s.AccountByAccessKey(ctx, "AKIAOLDADMIN")
		if err != nil {
			t.Fatal(err)
		}
		want := tunnel.Account{ID: "123456789012", Name: "admin", Admin: true, AccessKeyID: "AKIAOLDADMIN",
			SecretAccessKey: "old-secret", BandwidthLimit: tunnel.BandwidthDefault, CreatedAt: created}
		if admin != want {
			t.Fatalf("old admin account = %+v, want %+v", admin, want)
		}
		other, err := s.Account(ctx, "210987654321")
		if err != nil || other.Admin || other.Name != "account-210987654321" || other.BandwidthLimit != tunnel.BandwidthDefault {
			t.Fatalf("old second account = %+v, %v", other, err)
		}
		if _, err := s.Thing(ctx, "123456789012", "dev"); err != nil {
			t.Fatalf("old thing: %v", err)
		}
		// The new columns work: a new account with a name of its own.
		if err := s.CreateAccount(ctx, newAccount(t, "admin", false, time.Now())); !errors.Is(err, tunnel.ErrExists) {
			t.Fatalf("the migrated admin's name is not unique: %v", err)
		}
		s.Close()
	}

	// A database from a newer warren is refused, not damaged.
	db, _ = sql.Open("sqlite", "file:"+path)
	if _, err := db.Exec(`PRAGMA user_version = 99`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(path); err == nil {
		s.Close()
		t.Fatal("opened a database of schema version 99")
	}
}
