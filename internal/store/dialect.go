package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialect is what differs between the backends' SQL. Every query is written
// once, with SQLite's placeholders (? and ?N); rebind rewrites them for
// PostgreSQL ($N).
type dialect struct {
	name string
	// numbered: placeholders are $N (PostgreSQL), not ?.
	numbered bool
	// forUpdate ends the SELECT of a read-modify-write transaction: it locks
	// the row in PostgreSQL. SQLite needs none (its transactions begin
	// IMMEDIATE and so hold the one write lock).
	forUpdate string
	// lockAccount, if not "", serialises the transactions that count an
	// account's tunnels and then insert one, across every server on the
	// database (the placeholder is the account id).
	lockAccount string
	// lifetimeMinutes is the SQL expression of a tunnel's LifetimeMinutes
	// (from its JSON, the column data).
	lifetimeMinutes string
	// noLimit is a LIMIT that lets every row through.
	noLimit int64
}

func sqliteDialect() *dialect {
	return &dialect{
		name:            "sqlite",
		lifetimeMinutes: `json_extract(data, '$.LifetimeMinutes')`,
		noLimit:         -1,
	}
}

// Advisory lock classes (the first key of pg_advisory_xact_lock(int, int)).
const (
	lockClassMigrate = 1
	lockClassAccount = 2
)

func postgresDialect() *dialect {
	return &dialect{
		name:            "postgres",
		numbered:        true,
		forUpdate:       ` FOR UPDATE`,
		lockAccount:     `SELECT pg_advisory_xact_lock(` + strconv.Itoa(lockClassAccount) + `, hashtext(?))`,
		lifetimeMinutes: `(data::jsonb->>'LifetimeMinutes')::bigint`,
		noLimit:         1<<63 - 1,
	}
}

// rebind rewrites q's placeholders for the dialect: ?N becomes $N, and each
// bare ? the next number. Queries hold no ? inside string literals.
func (d *dialect) rebind(q string) string {
	if !d.numbered || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '?' {
			b.WriteByte(q[i])
			continue
		}
		b.WriteByte('$')
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if j > i+1 {
			b.WriteString(q[i+1 : j])
			i = j - 1
			continue
		}
		n++
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// uniqueViolation reports whether err is a unique constraint's refusal.
func uniqueViolation(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505"
}

// conn is the database, whose queries are rebound for its dialect.
type conn struct {
	*sql.DB
	d *dialect
}

func (c conn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return c.DB.ExecContext(ctx, c.d.rebind(q), args...)
}

func (c conn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return c.DB.QueryContext(ctx, c.d.rebind(q), args...)
}

func (c conn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return c.DB.QueryRowContext(ctx, c.d.rebind(q), args...)
}

func (c conn) BeginTx(ctx context.Context, opts *sql.TxOptions) (txn, error) {
	tx, err := c.DB.BeginTx(ctx, opts)
	return txn{tx, c.d}, err
}

// txn is a transaction of a conn.
type txn struct {
	*sql.Tx
	d *dialect
}

func (t txn) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, t.d.rebind(q), args...)
}

func (t txn) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.d.rebind(q), args...)
}

func (t txn) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.d.rebind(q), args...)
}
