// Package storetest gives tests a PostgreSQL database of their own: one
// fresh database per call on the server named by $WARREN_TEST_POSTGRES
// (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable),
// dropped when the test ends. It fails the test, never skips it, when the
// server does not answer: CI runs PostgreSQL.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// DefaultPostgres is the server the tests use without $WARREN_TEST_POSTGRES.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresDatabase creates an empty database and returns its URL. The
// database is dropped (its connections cut) in t.Cleanup, so close what
// uses it in a cleanup registered later, or before the test ends.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	admin := os.Getenv("WARREN_TEST_POSTGRES")
	if admin == "" {
		admin = DefaultPostgres
	}
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("WARREN_TEST_POSTGRES does not parse: %v", err)
	}
	db, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatalf("PostgreSQL at %s: %v", u.Redacted(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		t.Fatalf("PostgreSQL at %s does not answer (start it, e.g. `bash .ci/run` does, or set WARREN_TEST_POSTGRES): %v", u.Redacted(), err)
	}
	b := make([]byte, 8)
	rand.Read(b)
	name := "warren_test_" + hex.EncodeToString(b)
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		db.Close()
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
