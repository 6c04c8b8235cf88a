package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Device certificates and their attachment to things (migration 3). Only a
// certificate's id, PEM, status, account and creation time are kept, never a
// private key.

const certColumns = `id, account_id, pem, status, created_at`

// CreateCertificate adds a device certificate; tunnel.ErrExists if its id is taken.
func (s *Store) CreateCertificate(ctx context.Context, c tunnel.Certificate) error {
	res, err := s.db.ExecContext(ctx, `INSERT INTO certificates (`+certColumns+`) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		c.ID, c.AccountID, c.PEM, string(c.Status), c.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("create certificate %s: %w", c.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return tunnel.ErrExists
	}
	return nil
}

// Certificate finds a certificate of an account.
func (s *Store) Certificate(ctx context.Context, accountID, id string) (tunnel.Certificate, error) {
	return scanCertificate(s.db.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE id = ? AND account_id = ?`, id, accountID))
}

// CertificateThings finds a certificate by id alone, whatever its account,
// and the names of the things (of its account) it is attached to: what the
// MQTT broker asks of a device that presents it.
func (s *Store) CertificateThings(ctx context.Context, id string) (tunnel.Certificate, []string, error) {
	c, err := scanCertificate(s.db.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE id = ?`, id))
	if err != nil {
		return c, nil, err
	}
	things, err := s.principalThings(ctx, c.AccountID, id)
	return c, things, err
}

func (s *Store) principalThings(ctx context.Context, accountID, certID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT thing_name FROM thing_principals WHERE account_id = ? AND certificate_id = ? ORDER BY thing_name`, accountID, certID)
	if err != nil {
		return nil, fmt.Errorf("things of certificate %s: %w", certID, err)
	}
	return scanStrings(rows)
}

// AccountCertificateIDs lists the ids of every certificate of an account.
func (s *Store) AccountCertificateIDs(ctx context.Context, accountID string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM certificates WHERE account_id = ? ORDER BY id`, accountID)
	if err != nil {
		return nil, fmt.Errorf("certificates of account %s: %w", accountID, err)
	}
	return scanStrings(rows)
}

// UpdateCertificate reads a certificate of an account, applies fn and writes
// its status back in one transaction. An error from fn aborts the update and
// is returned as is.
func (s *Store) UpdateCertificate(ctx context.Context, accountID, id string, fn func(*tunnel.Certificate) error) (tunnel.Certificate, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return tunnel.Certificate{}, fmt.Errorf("update certificate %s: %w", id, err)
	}
	defer tx.Rollback()
	c, err := scanCertificate(tx.QueryRowContext(ctx, `SELECT `+certColumns+` FROM certificates WHERE id = ? AND account_id = ?`+s.db.d.forUpdate, id, accountID))
	if err != nil {
		return c, err
	}
	if err := fn(&c); err != nil {
		return c, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE certificates SET status = ? WHERE id = ?`, string(c.Status), id); err != nil {
		return c, fmt.Errorf("update certificate %s: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return c, fmt.Errorf("update certificate %s: %w", id, err)
	}
	return c, nil
}

// AttachThingPrincipal attaches a certificate of an account to a thing of
// the same account; attaching twice is no error. tunnel.ErrNotFound if the
// thing or the certificate is not the account's.
func (s *Store) AttachThingPrincipal(ctx context.Context, accountID, thingName, certID string) error {
	// The SELECT finds nothing unless both exist in the account, and the
	// statement is one transaction: a thing deleted at the same time is
	// either seen (and attached, then detached by DeleteThing) or not.
	res, err := s.db.ExecContext(ctx, `INSERT INTO thing_principals (account_id, thing_name, certificate_id)
		SELECT t.account_id, t.name, c.id FROM things t, certificates c
		WHERE t.account_id = ?1 AND t.name = ?2 AND c.account_id = ?1 AND c.id = ?3
		ON CONFLICT DO NOTHING`, accountID, thingName, certID)
	if err != nil {
		return fmt.Errorf("attach certificate %s to thing %s: %w", certID, thingName, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var attached bool
		err := s.db.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM thing_principals WHERE account_id = ? AND thing_name = ? AND certificate_id = ?)`,
			accountID, thingName, certID).Scan(&attached)
		if err != nil {
			return err
		}
		if !attached {
			return tunnel.ErrNotFound
		}
	}
	return nil
}

// DetachThingPrincipal removes an attachment; detaching one that does not
// exist is no error.
func (s *Store) DetachThingPrincipal(ctx context.Context, accountID, thingName, certID string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM thing_principals WHERE account_id = ? AND thing_name = ? AND certificate_id = ?`,
		accountID, thingName, certID)
	if err != nil {
		return fmt.Errorf("detach certificate %s from thing %s: %w", certID, thingName, err)
	}
	return nil
}

// ThingPrincipals lists up to limit ids of the certificates attached to a
// thing of an account, in id order, after the id `after`.
func (s *Store) ThingPrincipals(ctx context.Context, accountID, thingName, after string, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT certificate_id FROM thing_principals WHERE account_id = ? AND thing_name = ? AND certificate_id > ?
		ORDER BY certificate_id LIMIT ?`, accountID, thingName, after, limit)
	if err != nil {
		return nil, fmt.Errorf("principals of thing %s: %w", thingName, err)
	}
	return scanStrings(rows)
}

func scanStrings(rows *sql.Rows) ([]string, error) {
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func scanCertificate(row scanner) (tunnel.Certificate, error) {
	var c tunnel.Certificate
	var status string
	var created int64
	if err := row.Scan(&c.ID, &c.AccountID, &c.PEM, &status, &created); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return c, tunnel.ErrNotFound
		}
		return c, fmt.Errorf("read certificate: %w", err)
	}
	c.Status = tunnel.CertStatus(status)
	c.CreatedAt = time.Unix(0, created).UTC()
	return c, nil
}
