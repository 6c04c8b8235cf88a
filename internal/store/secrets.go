package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
)

// Secret returns the server's secret of this name, making it (size random
// bytes) the first time it is asked for. Every server on the database gets
// the same one: the first to ask inserts it, the others read it.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	return s.SecretOrMake(ctx, name, func() ([]byte, error) {
		b := make([]byte, size)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		return b, nil
	})
}

// SecretOrMake returns the server's secret of this name, making it with
// fresh the first time it is asked for (a key, or a PEM bundle of a CA's
// certificate and key). Every server on the database gets the same one:
// when several make it at once, the first to insert its value wins and
// every caller returns the stored value, not necessarily its own. fresh is
// not called when the secret exists.
func (s *Store) SecretOrMake(ctx context.Context, name string, fresh func() ([]byte, error)) ([]byte, error) {
	v, err := s.readSecret(ctx, name)
	if err == nil || !errors.Is(err, sql.ErrNoRows) {
		return v, err
	}
	made, err := fresh()
	if err != nil {
		return nil, fmt.Errorf("make secret %s: %w", name, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, made); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	return s.readSecret(ctx, name)
}

// readSecret reads a secret; an error wrapping sql.ErrNoRows if there is none.
func (s *Store) readSecret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return v, nil
}
