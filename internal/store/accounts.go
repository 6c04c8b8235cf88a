package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

const accountColumns = `id, name, admin, access_key_id, secret_access_key, bandwidth_limit, created_at`

// CreateAccount adds an account; tunnel.ErrExists if its name is taken.
func (s *Store) CreateAccount(ctx context.Context, a tunnel.Account) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO accounts (`+accountColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING`,
		a.ID, a.Name, a.Admin, a.AccessKeyID, a.SecretAccessKey, a.BandwidthLimit, a.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("create account %s: %w", a.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("account name %q: %w", a.Name, tunnel.ErrExists)
	}
	return nil
}

// Accounts lists up to limit accounts (every one if limit <= 0), oldest
// first (by creation time, then id), from the place after
// (tunnel.Position{} for the first page), which need not be an account that
// still exists.
func (s *Store) Accounts(ctx context.Context, after tunnel.Position, limit int) ([]tunnel.Account, error) {
	q := `SELECT ` + accountColumns + ` FROM accounts`
	var args []any
	if !after.IsStart() {
		q += ` WHERE (created_at, id) > (?, ?)`
		args = append(args, after.CreatedAt.UnixNano(), after.ID)
	}
	n := int64(limit)
	if limit <= 0 {
		n = s.db.d.noLimit
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY created_at, id LIMIT ?`, append(args, n)...)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	defer rows.Close()
	var out []tunnel.Account
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// Account finds an account by id.
func (s *Store) Account(ctx context.Context, id string) (tunnel.Account, error) {
	return scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`, id))
}

// AccountByAccessKey finds the account that owns an access key id.
func (s *Store) AccountByAccessKey(ctx context.Context, accessKeyID string) (tunnel.Account, error) {
	return scanAccount(s.db.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE access_key_id = ?`, accessKeyID))
}

// UpdateAccount reads account id, applies fn and writes its name, admin flag
// and bandwidth limit back in one transaction (its id, keys and creation
// time stay). An error from fn aborts the update and is returned as is;
// tunnel.ErrExists if fn gave it the name of another account.
func (s *Store) UpdateAccount(ctx context.Context, id string, fn func(*tunnel.Account) error) (tunnel.Account, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return tunnel.Account{}, fmt.Errorf("update account %s: %w", id, err)
	}
	defer tx.Rollback()
	a, err := scanAccount(tx.QueryRowContext(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = ?`+s.db.d.forUpdate, id))
	if err != nil {
		return a, err
	}
	if err := fn(&a); err != nil {
		return a, err
	}
	var taken bool
	if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM accounts WHERE name = ? AND id != ?)`, a.Name, id).Scan(&taken); err != nil {
		return a, fmt.Errorf("update account %s: %w", id, err)
	}
	if taken {
		return a, fmt.Errorf("account name %q: %w", a.Name, tunnel.ErrExists)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE accounts SET name = ?, admin = ?, bandwidth_limit = ? WHERE id = ?`,
		a.Name, a.Admin, a.BandwidthLimit, id); uniqueViolation(err) {
		// Another server took the name since the check above.
		return a, fmt.Errorf("account name %q: %w", a.Name, tunnel.ErrExists)
	} else if err != nil {
		return a, fmt.Errorf("update account %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return a, fmt.Errorf("update account %s: %w", id, err)
	}
	return a, nil
}

// DeleteAccount removes an account with its things and tunnels in one
// transaction, and returns the ids of its tunnels that were open, whose
// peers the caller disconnects. tunnel.ErrNotFound if there is no such
// account.
func (s *Store) DeleteAccount(ctx context.Context, id string) (openTunnels []string, err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("delete account %s: %w", id, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, id)
	if err != nil {
		return nil, fmt.Errorf("delete account %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, tunnel.ErrNotFound
	}
	rows, err := tx.QueryContext(ctx, `DELETE FROM tunnels WHERE account_id = ? RETURNING id, status`, id)
	if err != nil {
		return nil, fmt.Errorf("delete account %s's tunnels: %w", id, err)
	}
	for rows.Next() {
		var tid, status string
		if err := rows.Scan(&tid, &status); err != nil {
			rows.Close()
			return nil, err
		}
		if tunnel.Status(status) == tunnel.StatusOpen {
			openTunnels = append(openTunnels, tid)
		}
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("delete account %s's tunnels: %w", id, err)
	}
	for _, table := range []string{"things", "thing_principals", "certificates"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE account_id = ?`, id); err != nil {
			return nil, fmt.Errorf("delete account %s's %s: %w", id, table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("delete account %s: %w", id, err)
	}
	return openTunnels, nil
}

// AccountOpenTunnels lists the tunnels of an account whose status is OPEN.
func (s *Store) AccountOpenTunnels(ctx context.Context, accountID string) ([]tunnel.Tunnel, error) {
	return s.queryTunnels(ctx, `SELECT data FROM tunnels WHERE account_id = ? AND status = 'OPEN'`, accountID)
}

func scanAccount(row scanner) (tunnel.Account, error) {
	var a tunnel.Account
	var created int64
	err := row.Scan(&a.ID, &a.Name, &a.Admin, &a.AccessKeyID, &a.SecretAccessKey, &a.BandwidthLimit, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return a, tunnel.ErrNotFound
	}
	if err != nil {
		return a, fmt.Errorf("read account: %w", err)
	}
	a.CreatedAt = time.Unix(0, created).UTC()
	return a, nil
}
