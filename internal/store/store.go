// Package store persists Warren's domain (accounts, things, tunnels) and a
// cluster's nodes (nodes.go: their heartbeats, and the release of the tunnel
// sides a dead one held) behind the methods of Store. SQLite (pure Go, WAL; Open) is the embedded default
// for one server; PostgreSQL (pgx; OpenPostgres) lets several servers share
// one database. Both backends are the one Store type: every query is written
// once and a small dialect (dialect.go) says what differs (placeholders,
// column types, row locks, the schema's versioning), so the callers and the
// tests see no difference. It applies no domain rules: it keeps what the
// callers hand it and finds it again.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is the SQLite- or PostgreSQL-backed store. It is safe for
// concurrent use.
type Store struct {
	db conn
}

// schema is version 0 of the schema; migrations change it from there.
const schema = `
CREATE TABLE IF NOT EXISTS accounts (
	id TEXT PRIMARY KEY,
	access_key_id TEXT NOT NULL UNIQUE,
	secret_access_key TEXT NOT NULL,
	created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS things (
	account_id TEXT NOT NULL,
	name TEXT NOT NULL,
	data TEXT NOT NULL,
	PRIMARY KEY (account_id, name)
);
CREATE TABLE IF NOT EXISTS tunnels (
	id TEXT PRIMARY KEY,
	account_id TEXT NOT NULL,
	thing_name TEXT NOT NULL,
	status TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	source_token_hash BLOB NOT NULL UNIQUE,
	destination_token_hash BLOB NOT NULL UNIQUE,
	data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tunnels_by_account ON tunnels (account_id, created_at, id);
CREATE INDEX IF NOT EXISTS tunnels_open ON tunnels (status);
CREATE INDEX IF NOT EXISTS tunnels_by_account_status ON tunnels (account_id, status);
`

// MaxConnections is how many SQLite connections a Store opens at most.
const MaxConnections = 8

// Open opens (creating if needed) the SQLite database at path.
func Open(path string) (*Store, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// A bounded pool: a flood of handshakes or requests waits for a
	// connection instead of opening one each (every SQLite connection
	// has a page cache and file descriptors of its own). Writers take
	// turns anyway (one write lock); WAL readers share this many.
	db.SetMaxOpenConns(MaxConnections)
	db.SetMaxIdleConns(MaxConnections)
	c := conn{db, sqliteDialect()}
	if err := migrate(context.Background(), c); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare schema in %s: %w", path, err)
	}
	return &Store{db: c}, nil
}

// migrations bring a database's schema from one version (SQLite's
// user_version) to the next: a database of version N has had the first N
// applied on top of schema, which is version 0, the first release's. Append
// only; never change one that was released.
var migrations = []string{
	// 1: accounts have a unique name, an admin flag and their own bandwidth
	// limit (-1: the server's default). An older database's oldest account
	// is the admin account its first start created; any other gets a name
	// made from its id.
	`ALTER TABLE accounts ADD COLUMN name TEXT NOT NULL DEFAULT '';
	ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE accounts ADD COLUMN bandwidth_limit INTEGER NOT NULL DEFAULT -1;
	UPDATE accounts SET admin = 1, name = 'admin' WHERE id = (SELECT id FROM accounts ORDER BY created_at, id LIMIT 1);
	UPDATE accounts SET name = 'account-' || id WHERE name = '';
	CREATE UNIQUE INDEX accounts_by_name ON accounts (name);
	CREATE INDEX accounts_by_age ON accounts (created_at, id);`,
	// 2: the server's own secrets by name (the key that signs the API's
	// nextTokens), made once and shared by every server on the database.
	`CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);`,
	// 3: device certificates (id: hex SHA-256 of the DER; never a private
	// key) and the things each is attached to.
	`CREATE TABLE certificates (
		id TEXT PRIMARY KEY,
		account_id TEXT NOT NULL,
		pem TEXT NOT NULL,
		status TEXT NOT NULL,
		created_at INTEGER NOT NULL
	);
	CREATE INDEX certificates_by_account ON certificates (account_id, created_at, id);
	CREATE TABLE thing_principals (
		account_id TEXT NOT NULL,
		thing_name TEXT NOT NULL,
		certificate_id TEXT NOT NULL,
		PRIMARY KEY (account_id, thing_name, certificate_id)
	);
	CREATE INDEX thing_principals_by_certificate ON thing_principals (certificate_id);`,
	// 4: the nodes of a cluster (times in unix milliseconds); a node whose
	// heartbeat is too old is dead (nodes.go).
	`CREATE TABLE nodes (
		id TEXT PRIMARY KEY,
		address TEXT NOT NULL,
		started_at INTEGER NOT NULL,
		heartbeat_at INTEGER NOT NULL
	);`,
	// 5: account_usage: each node's latest report of its accounts' traffic
	// per direction, through which the nodes on one database share each
	// account's bandwidth limit (usage.go).
	`CREATE TABLE account_usage (
		node_id TEXT NOT NULL,
		account_id TEXT NOT NULL,
		direction INTEGER NOT NULL,
		demand INTEGER NOT NULL,
		saturated INTEGER NOT NULL,
		updated_at INTEGER NOT NULL,
		PRIMARY KEY (node_id, account_id, direction)
	);
	CREATE INDEX account_usage_by_account ON account_usage (account_id, updated_at);
	CREATE INDEX account_usage_by_age ON account_usage (updated_at);`,
}

// migrate creates the schema and applies the migrations a database lacks, in
// one transaction: a failure leaves the database as it was, and two servers
// starting on one database do not both migrate it (the transaction takes the
// write lock at its start).
func migrate(ctx context.Context, db conn) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	var version int
	if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	return applyMigrations(ctx, tx, version, migrations, func(v int) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v))
		return err
	})
}

// applyMigrations applies the migrations after version in tx, records the
// new version with setVersion and commits; a database newer than this
// warren's list is refused.
func applyMigrations(ctx context.Context, tx txn, version int, list []string, setVersion func(int) error) error {
	if version > len(list) {
		return fmt.Errorf("the database's schema version %d is newer than this warren's (%d): run a newer warren", version, len(list))
	}
	if version == len(list) {
		return nil
	}
	for i := version; i < len(list); i++ {
		if _, err := tx.ExecContext(ctx, list[i]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", i+1, err)
		}
	}
	if err := setVersion(len(list)); err != nil {
		return fmt.Errorf("write schema version: %w", err)
	}
	return tx.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// CreateThing adds a thing; tunnel.ErrExists if the account has one of that name.
func (s *Store) CreateThing(ctx context.Context, t tunnel.Thing) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO things (account_id, name, data) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`, t.AccountID, t.Name, string(data))
	if err != nil {
		return fmt.Errorf("create thing %s: %w", t.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return tunnel.ErrExists
	}
	return nil
}

// Thing finds a thing of an account.
func (s *Store) Thing(ctx context.Context, accountID, name string) (tunnel.Thing, error) {
	var data string
	err := s.db.QueryRowContext(ctx, `SELECT data FROM things WHERE account_id = ? AND name = ?`, accountID, name).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return tunnel.Thing{}, tunnel.ErrNotFound
	}
	if err != nil {
		return tunnel.Thing{}, fmt.Errorf("read thing %s: %w", name, err)
	}
	var t tunnel.Thing
	return t, json.Unmarshal([]byte(data), &t)
}

// Things lists up to limit things of an account whose names sort after
// `after`, in name order.
func (s *Store) Things(ctx context.Context, accountID, after string, limit int) ([]tunnel.Thing, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM things WHERE account_id = ? AND name > ? ORDER BY name LIMIT ?`, accountID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("list things: %w", err)
	}
	defer rows.Close()
	var out []tunnel.Thing
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, err
		}
		var t tunnel.Thing
		if err := json.Unmarshal([]byte(data), &t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// DeleteThing removes a thing and its certificates' attachments to it;
// tunnel.ErrNotFound if there is none.
func (s *Store) DeleteThing(ctx context.Context, accountID, name string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("delete thing %s: %w", name, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM things WHERE account_id = ? AND name = ?`, accountID, name)
	if err != nil {
		return fmt.Errorf("delete thing %s: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return tunnel.ErrNotFound
	}
	// Its certificates no longer speak for it.
	if _, err := tx.ExecContext(ctx, `DELETE FROM thing_principals WHERE account_id = ? AND thing_name = ?`, accountID, name); err != nil {
		return fmt.Errorf("delete thing %s's principals: %w", name, err)
	}
	return tx.Commit()
}

// CreateTunnel adds a tunnel.
func (s *Store) CreateTunnel(ctx context.Context, t tunnel.Tunnel) error {
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	if _, err = s.db.ExecContext(ctx, insertTunnel, tunnelRow(t, data)...); err != nil {
		return fmt.Errorf("create tunnel %s: %w", t.ID, err)
	}
	return nil
}

const insertTunnel = `INSERT INTO tunnels (id, account_id, thing_name, status, created_at, source_token_hash, destination_token_hash, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`

// tunnelRow is the values of insertTunnel for t, whose JSON is data.
func tunnelRow(t tunnel.Tunnel, data []byte) []any {
	return []any{t.ID, t.AccountID, t.ThingName, string(t.Status), t.CreatedAt.UnixNano(), t.Source.TokenHash, t.Destination.TokenHash, string(data)}
}

// CreateTunnelWithin adds an open tunnel unless its account already has
// maxOpen open tunnels, in which case it returns tunnel.ErrLimitExceeded;
// maxOpen 0 or less means no limit. A tunnel is open until its status says
// otherwise (the expiry sweeper closes it at the end of its lifetime). The
// count and the insert are one transaction, which
// begins IMMEDIATE (the DSN's _txlock): SQLite takes its write lock at the
// start, so concurrent calls run one after another and two cannot both see
// maxOpen-1 and both insert. PostgreSQL takes a per-account advisory lock
// instead, which every server on the database respects.
func (s *Store) CreateTunnelWithin(ctx context.Context, t tunnel.Tunnel, maxOpen int) error {
	if maxOpen <= 0 {
		return s.CreateTunnel(ctx, t)
	}
	data, err := json.Marshal(t)
	if err != nil {
		return err
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create tunnel %s: %w", t.ID, err)
	}
	defer tx.Rollback()
	if s.db.d.lockAccount != "" {
		if _, err := tx.ExecContext(ctx, s.db.d.lockAccount, t.AccountID); err != nil {
			return fmt.Errorf("create tunnel %s: lock account: %w", t.ID, err)
		}
	}
	n, err := countOpenTunnels(ctx, tx, t.AccountID)
	if err != nil {
		return err
	}
	if n >= maxOpen {
		return fmt.Errorf("account %s has %d open tunnels: %w", t.AccountID, n, tunnel.ErrLimitExceeded)
	}
	if _, err := tx.ExecContext(ctx, insertTunnel, tunnelRow(t, data)...); err != nil {
		return fmt.Errorf("create tunnel %s: %w", t.ID, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("create tunnel %s: %w", t.ID, err)
	}
	return nil
}

// CountOpenTunnels is how many tunnels of an account have status OPEN.
func (s *Store) CountOpenTunnels(ctx context.Context, accountID string) (int, error) {
	return countOpenTunnels(ctx, s.db, accountID)
}

// querier is a conn or a txn.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func countOpenTunnels(ctx context.Context, q querier, accountID string) (int, error) {
	var n int
	err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM tunnels WHERE account_id = ? AND status = 'OPEN'`, accountID).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count open tunnels of %s: %w", accountID, err)
	}
	return n, nil
}

// Tunnel finds a tunnel of an account.
func (s *Store) Tunnel(ctx context.Context, accountID, id string) (tunnel.Tunnel, error) {
	return scanTunnel(s.db.QueryRowContext(ctx, `SELECT data FROM tunnels WHERE id = ? AND account_id = ?`, id, accountID))
}

// TunnelByToken finds the tunnel that has an access token with this hash, and
// which side it belongs to.
func (s *Store) TunnelByToken(ctx context.Context, tokenHash []byte) (tunnel.Tunnel, tunnel.Mode, error) {
	t, err := scanTunnel(s.db.QueryRowContext(ctx, `SELECT data FROM tunnels WHERE source_token_hash = ? OR destination_token_hash = ?`, tokenHash, tokenHash))
	if err != nil {
		return t, "", err
	}
	if string(t.Source.TokenHash) == string(tokenHash) {
		return t, tunnel.ModeSource, nil
	}
	return t, tunnel.ModeDestination, nil
}

// Tunnels lists up to limit tunnels of an account, newest first (by
// creation time, then id), optionally only those whose destination is
// thingName, from the place after (tunnel.Position{} for the first page).
// The place is compared by value, so a page follows the one before it even
// when that page's tunnels were deleted since.
func (s *Store) Tunnels(ctx context.Context, accountID, thingName string, after tunnel.Position, limit int) ([]tunnel.Tunnel, error) {
	q := `SELECT data FROM tunnels WHERE account_id = ?`
	args := []any{accountID}
	if thingName != "" {
		q += ` AND thing_name = ?`
		args = append(args, thingName)
	}
	if !after.IsStart() {
		q += ` AND (created_at, id) < (?, ?)`
		args = append(args, after.CreatedAt.UnixNano(), after.ID)
	}
	return s.queryTunnels(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
}

// OpenTunnels lists every open tunnel of every account (for the expiry
// sweeper).
func (s *Store) OpenTunnels(ctx context.Context) ([]tunnel.Tunnel, error) {
	return s.queryTunnels(ctx, `SELECT data FROM tunnels WHERE status = 'OPEN'`)
}

func (s *Store) queryTunnels(ctx context.Context, q string, args ...any) ([]tunnel.Tunnel, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tunnels: %w", err)
	}
	defer rows.Close()
	var out []tunnel.Tunnel
	for rows.Next() {
		t, err := scanTunnel(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// UpdateTunnel reads tunnel id, applies fn and writes the result back in one
// transaction. An error from fn aborts the update and is returned as is.
func (s *Store) UpdateTunnel(ctx context.Context, id string, fn func(*tunnel.Tunnel) error) (tunnel.Tunnel, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return tunnel.Tunnel{}, fmt.Errorf("update tunnel %s: %w", id, err)
	}
	defer tx.Rollback()
	t, err := updateTunnel(ctx, tx, id, fn)
	if err != nil {
		return t, err
	}
	if err := tx.Commit(); err != nil {
		return t, fmt.Errorf("update tunnel %s: %w", id, err)
	}
	return t, nil
}

// updateTunnel is UpdateTunnel's read-modify-write within tx, which the
// caller commits.
func updateTunnel(ctx context.Context, tx txn, id string, fn func(*tunnel.Tunnel) error) (tunnel.Tunnel, error) {
	t, err := scanTunnel(tx.QueryRowContext(ctx, `SELECT data FROM tunnels WHERE id = ?`+tx.d.forUpdate, id))
	if err != nil {
		return t, err
	}
	if err := fn(&t); err != nil {
		return t, err
	}
	data, err := json.Marshal(t)
	if err != nil {
		return t, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE tunnels SET status = ?, thing_name = ?, source_token_hash = ?, destination_token_hash = ?, data = ? WHERE id = ?`,
		string(t.Status), t.ThingName, t.Source.TokenHash, t.Destination.TokenHash, string(data), id); err != nil {
		return t, fmt.Errorf("update tunnel %s: %w", id, err)
	}
	return t, nil
}

// DeleteTunnel removes a tunnel of an account.
func (s *Store) DeleteTunnel(ctx context.Context, accountID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM tunnels WHERE id = ? AND account_id = ?`, id, accountID)
	if err != nil {
		return fmt.Errorf("delete tunnel %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return tunnel.ErrNotFound
	}
	return nil
}

// MarkAllDisconnected sets every side of every tunnel to disconnected; a
// server that starts holds no connections, whatever the store said before.
func (s *Store) MarkAllDisconnected(ctx context.Context, now time.Time) error {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM tunnels WHERE data LIKE '%"Connected":true%'`)
	if err != nil {
		return err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		_, err := s.UpdateTunnel(ctx, id, func(t *tunnel.Tunnel) error {
			for _, sd := range []*tunnel.Side{&t.Source, &t.Destination} {
				if sd.Connected {
					sd.Connected = false
					sd.LastUpdatedAt = now.UTC()
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type scanner interface{ Scan(...any) error }

func scanTunnel(row scanner) (tunnel.Tunnel, error) {
	var data string
	if err := row.Scan(&data); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return tunnel.Tunnel{}, tunnel.ErrNotFound
		}
		return tunnel.Tunnel{}, fmt.Errorf("read tunnel: %w", err)
	}
	var t tunnel.Tunnel
	if err := json.Unmarshal([]byte(data), &t); err != nil {
		return t, fmt.Errorf("decode tunnel: %w", err)
	}
	return t, nil
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// TunnelCounts is how many tunnels, of every account, are open at a time
// (status OPEN and lifetime not yet over) and how many are closed.
func (s *Store) TunnelCounts(ctx context.Context, at time.Time) (open, closed int, err error) {
	var o, all sql.NullInt64
	err = s.db.QueryRowContext(ctx, `SELECT SUM(CASE WHEN status = 'OPEN'
		AND created_at + `+s.db.d.lifetimeMinutes+` * 60000000000 > ? THEN 1 ELSE 0 END), COUNT(*) FROM tunnels`, at.UnixNano()).Scan(&o, &all)
	if err != nil {
		return 0, 0, fmt.Errorf("count tunnels: %w", err)
	}
	return int(o.Int64), int(all.Int64 - o.Int64), nil
}
