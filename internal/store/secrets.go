package store

import (
	"context"
	"crypto/rand"
	"fmt"
)

// Secret returns the server's secret of this name, making it (size random
// bytes) the first time it is asked for. Every server on the database gets
// the same one: the first to ask inserts it, the others read it.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("make secret %s: %w", name, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, fresh); err != nil {
		return nil, fmt.Errorf("store secret %s: %w", name, err)
	}
	var v []byte
	if err := s.db.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	return v, nil
}
