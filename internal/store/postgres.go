package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgresURL reports whether a --store value names a PostgreSQL database
// (postgres:// or postgresql://).
func IsPostgresURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// OpenPostgres opens the PostgreSQL database at url (postgres://...) and
// brings its schema to this warren's version. Several servers may share one
// database: each migrates under one advisory lock, and the queries that
// read then write lock what they read.
func OpenPostgres(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// The error of a URL that does not parse may repeat the URL, password
		// included: say only that it does not parse.
		return nil, fmt.Errorf("open store: the PostgreSQL URL does not parse")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(MaxConnections)
	db.SetMaxIdleConns(MaxConnections)
	c := conn{db, postgresDialect()}
	if err := migratePostgres(ctx, c); err != nil {
		db.Close()
		return nil, fmt.Errorf("prepare schema in PostgreSQL database %s on %s: %w", cfg.Database, cfg.Host, err)
	}
	return &Store{db: c}, nil
}

// postgresMigrations bring a PostgreSQL database's schema (its version in
// the table schema_version) from one version to the next: a database of
// version N has had the first N applied. The first creates what SQLite's
// schema and migrations 1 to 3 made. Append only; never change one that was
// released.
var postgresMigrations = []string{
	`CREATE TABLE accounts (
		id TEXT PRIMARY KEY,
		access_key_id TEXT NOT NULL UNIQUE,
		secret_access_key TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		name TEXT NOT NULL UNIQUE,
		admin BOOLEAN NOT NULL DEFAULT FALSE,
		bandwidth_limit BIGINT NOT NULL DEFAULT -1
	);
	CREATE INDEX accounts_by_age ON accounts (created_at, id);
	CREATE TABLE things (
		account_id TEXT NOT NULL,
		name TEXT NOT NULL,
		data TEXT NOT NULL,
		PRIMARY KEY (account_id, name)
	);
	CREATE TABLE tunnels (
		id TEXT PRIMARY KEY,
		account_id TEXT NOT NULL,
		thing_name TEXT NOT NULL,
		status TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		source_token_hash BYTEA NOT NULL UNIQUE,
		destination_token_hash BYTEA NOT NULL UNIQUE,
		data TEXT NOT NULL
	);
	CREATE INDEX tunnels_by_account ON tunnels (account_id, created_at, id);
	CREATE INDEX tunnels_open ON tunnels (status);
	CREATE INDEX tunnels_by_account_status ON tunnels (account_id, status);
	CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
	CREATE TABLE certificates (
		id TEXT PRIMARY KEY,
		account_id TEXT NOT NULL,
		pem TEXT NOT NULL,
		status TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE INDEX certificates_by_account ON certificates (account_id, created_at, id);
	CREATE TABLE thing_principals (
		account_id TEXT NOT NULL,
		thing_name TEXT NOT NULL,
		certificate_id TEXT NOT NULL,
		PRIMARY KEY (account_id, thing_name, certificate_id)
	);
	CREATE INDEX thing_principals_by_certificate ON thing_principals (certificate_id);`,
	// 2: the nodes of a cluster (SQLite's migration 4).
	`CREATE TABLE nodes (
		id TEXT PRIMARY KEY,
		address TEXT NOT NULL,
		started_at BIGINT NOT NULL,
		heartbeat_at BIGINT NOT NULL
	);`,
	// 3: account_usage (SQLite's migration 5; usage.go).
	`CREATE TABLE account_usage (
		node_id TEXT NOT NULL,
		account_id TEXT NOT NULL,
		direction INTEGER NOT NULL,
		demand BIGINT NOT NULL,
		saturated BOOLEAN NOT NULL,
		updated_at BIGINT NOT NULL,
		PRIMARY KEY (node_id, account_id, direction)
	);
	CREATE INDEX account_usage_by_account ON account_usage (account_id, updated_at);
	CREATE INDEX account_usage_by_age ON account_usage (updated_at);`,
}

// migratePostgres applies the migrations a database lacks in one
// transaction, under an advisory lock: two servers starting at once take
// turns, and the second finds the schema current.
func migratePostgres(ctx context.Context, c conn) error {
	tx, err := c.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, 0)`, lockClassMigrate)); err != nil {
		return fmt.Errorf("lock schema: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("create schema_version: %w", err)
	}
	var version int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&version)
	if err == sql.ErrNoRows {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	return applyMigrations(ctx, tx, version, postgresMigrations, func(v int) error {
		_, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v)
		return err
	})
}
