package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// AccountUsage is one node's latest report of an account's traffic in one
// direction: the servers on one database share each account's bandwidth
// limit through these (package bandwidth says how).
type AccountUsage struct {
	NodeID    string
	AccountID string
	Direction int   // 0 source to destination, 1 destination to source
	Demand    int64 // bytes per second measured on the node
	Saturated bool  // the node's pacer held traffic back
	UpdatedAt time.Time
}

// usageChunk bounds how many account ids one query names.
const usageChunk = 500

// ReportAccountUsage replaces nodeID's usage rows with rows (their NodeID
// is not read) in one transaction, so an account the node no longer
// reports has no row of it.
// If purgeBefore is not zero it also deletes every node's rows last updated
// before it (those of nodes that stopped without deleting theirs).
func (s *Store) ReportAccountUsage(ctx context.Context, nodeID string, rows []AccountUsage, purgeBefore time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("report account usage: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM account_usage WHERE node_id = ?`, nodeID); err != nil {
		return fmt.Errorf("report account usage: %w", err)
	}
	for len(rows) > 0 {
		n := min(len(rows), usageChunk)
		var q strings.Builder
		q.WriteString(`INSERT INTO account_usage (node_id, account_id, direction, demand, saturated, updated_at) VALUES `)
		args := make([]any, 0, 6*n)
		for i, r := range rows[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?, ?, ?, ?, ?)")
			args = append(args, nodeID, r.AccountID, r.Direction, r.Demand, r.Saturated, r.UpdatedAt.UnixNano())
		}
		if _, err := tx.ExecContext(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("report account usage: %w", err)
		}
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("report account usage: %w", err)
	}
	// Apart from the transaction: nodes purging the same rows at once
	// must not hold each other's locks for longer than one statement.
	if !purgeBefore.IsZero() {
		if _, err := s.db.ExecContext(ctx, `DELETE FROM account_usage WHERE updated_at < ?`, purgeBefore.UnixNano()); err != nil {
			return fmt.Errorf("purge account usage: %w", err)
		}
	}
	return nil
}

// AccountUsage returns every node's rows of these accounts updated after
// since.
func (s *Store) AccountUsage(ctx context.Context, accountIDs []string, since time.Time) ([]AccountUsage, error) {
	var out []AccountUsage
	for len(accountIDs) > 0 {
		n := min(len(accountIDs), usageChunk)
		args := make([]any, 0, n+1)
		args = append(args, since.UnixNano())
		for _, id := range accountIDs[:n] {
			args = append(args, id)
		}
		q := `SELECT node_id, account_id, direction, demand, saturated, updated_at FROM account_usage
			WHERE updated_at > ? AND account_id IN (?` + strings.Repeat(", ?", n-1) + `)`
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read account usage: %w", err)
		}
		for rows.Next() {
			var r AccountUsage
			var at int64
			if err := rows.Scan(&r.NodeID, &r.AccountID, &r.Direction, &r.Demand, &r.Saturated, &at); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read account usage: %w", err)
			}
			r.UpdatedAt = time.Unix(0, at)
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("read account usage: %w", err)
		}
		accountIDs = accountIDs[n:]
	}
	return out, nil
}

// DeleteAccountUsage deletes nodeID's rows (the node is stopping).
func (s *Store) DeleteAccountUsage(ctx context.Context, nodeID string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM account_usage WHERE node_id = ?`, nodeID); err != nil {
		return fmt.Errorf("delete account usage of node %s: %w", nodeID, err)
	}
	return nil
}
