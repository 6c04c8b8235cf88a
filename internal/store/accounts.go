package store

import (
	"context"
	"fmt"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Accounts lists every account, oldest first.
func (s *Store) Accounts(ctx context.Context) ([]tunnel.Account, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, access_key_id, secret_access_key, created_at FROM accounts ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []tunnel.Account
	for rows.Next() {
		var a tunnel.Account
		var created int64
		if err := rows.Scan(&a.ID, &a.AccessKeyID, &a.SecretAccessKey, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = time.Unix(0, created).UTC()
		out = append(out, a)
	}
	return out, rows.Err()
}
