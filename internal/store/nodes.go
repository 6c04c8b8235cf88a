package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/warrentunnel/warren/internal/tunnel"
)

// Node is a server of a cluster as the nodes table records it. Its times are
// kept to the millisecond.
type Node struct {
	ID string
	// Address is where the other nodes dial its node link (host:port).
	Address     string
	StartedAt   time.Time
	HeartbeatAt time.Time
}

// RegisterNode records a node, replacing a record of the same id (a node
// that restarts with its id, or one that was declared dead and is back).
// Its heartbeat is n.HeartbeatAt, or n.StartedAt when that is zero.
func (s *Store) RegisterNode(ctx context.Context, n Node) error {
	if n.ID == "" {
		return fmt.Errorf("register node: %w: empty id", tunnel.ErrInvalid)
	}
	hb := n.HeartbeatAt
	if hb.IsZero() {
		hb = n.StartedAt
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO nodes (id, address, started_at, heartbeat_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET address = excluded.address, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
		n.ID, n.Address, n.StartedAt.UnixMilli(), hb.UnixMilli())
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.ID, err)
	}
	return nil
}

// HeartbeatNode records that node id is alive at now. tunnel.ErrNotFound
// means its record is gone: another node declared it dead and released the
// tunnel sides it held, so the caller must re-register (and treat its
// claims as lost).
func (s *Store) HeartbeatNode(ctx context.Context, id string, now time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE nodes SET heartbeat_at = ? WHERE id = ?`, now.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("heartbeat of node %s: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("heartbeat of node %s: %w", id, tunnel.ErrNotFound)
	}
	return nil
}

// Nodes lists every recorded node, by id, alive or not.
func (s *Store) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, address, started_at, heartbeat_at FROM nodes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n, err := scanNode(rows)
		if err != nil {
			return nil, fmt.Errorf("list nodes: %w", err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	return out, nil
}

// Node finds a node; tunnel.ErrNotFound if it has no record.
func (s *Store) Node(ctx context.Context, id string) (Node, error) {
	n, err := scanNode(s.db.QueryRowContext(ctx, `SELECT id, address, started_at, heartbeat_at FROM nodes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Node{}, tunnel.ErrNotFound
	}
	if err != nil {
		return Node{}, fmt.Errorf("read node %s: %w", id, err)
	}
	return n, nil
}

func scanNode(row scanner) (Node, error) {
	var n Node
	var started, heartbeat int64
	if err := row.Scan(&n.ID, &n.Address, &started, &heartbeat); err != nil {
		return Node{}, err
	}
	n.StartedAt = time.UnixMilli(started).UTC()
	n.HeartbeatAt = time.UnixMilli(heartbeat).UTC()
	return n, nil
}

// RemoveNode deletes node id's record (a clean shutdown) and marks
// disconnected every tunnel side it held, in one transaction: no reader
// sees the node gone and its claims still there. A node with no record is
// no error; its claims are released all the same.
func (s *Store) RemoveNode(ctx context.Context, id string, now time.Time) error {
	_, err := s.removeNode(ctx, id, now, time.Time{})
	return err
}

// ReleaseDeadNodes removes, as RemoveNode does, every node whose last
// heartbeat is before deadBefore, and returns the ids it removed. Several
// nodes may run it at once: each dead node is removed by one of them (the
// deletion re-checks the heartbeat under the row's lock), the others skip
// it without error, and a node that heartbeats in time is not removed.
func (s *Store) ReleaseDeadNodes(ctx context.Context, deadBefore, now time.Time) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM nodes WHERE heartbeat_at < ? ORDER BY id`, deadBefore.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("find dead nodes: %w", err)
	}
	var dead []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("find dead nodes: %w", err)
		}
		dead = append(dead, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find dead nodes: %w", err)
	}
	var removed []string
	for _, id := range dead {
		ok, err := s.removeNode(ctx, id, now, deadBefore)
		if err != nil {
			return removed, err
		}
		if ok {
			removed = append(removed, id)
		}
	}
	return removed, nil
}

// removeNode deletes node id's record, if its heartbeat is before
// deadBefore (any heartbeat when deadBefore is zero), and releases its
// claims in the same transaction. It reports whether it deleted a record;
// when deadBefore is set and it did not (another node did first, or the
// node heartbeated since), it changes nothing.
func (s *Store) removeNode(ctx context.Context, id string, now, deadBefore time.Time) (bool, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("remove node %s: %w", id, err)
	}
	defer tx.Rollback()
	var res sql.Result
	if deadBefore.IsZero() {
		res, err = tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ?`, id)
	} else {
		res, err = tx.ExecContext(ctx, `DELETE FROM nodes WHERE id = ? AND heartbeat_at < ?`, id, deadBefore.UnixMilli())
	}
	if err != nil {
		return false, fmt.Errorf("remove node %s: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("remove node %s: %w", id, err)
	}
	if n == 0 && !deadBefore.IsZero() {
		return false, nil
	}
	if err := markNodeDisconnected(ctx, tx, id, now); err != nil {
		return false, err
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("remove node %s: %w", id, err)
	}
	return n > 0, nil
}

// MarkNodeDisconnected marks disconnected, at now, every tunnel side that
// node id holds, and leaves it held by no node; RemoveNode is this and the
// deletion of the node's record.
func (s *Store) MarkNodeDisconnected(ctx context.Context, id string, now time.Time) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("release node %s's tunnels: %w", id, err)
	}
	defer tx.Rollback()
	if err := markNodeDisconnected(ctx, tx, id, now); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("release node %s's tunnels: %w", id, err)
	}
	return nil
}

// errUnchanged aborts an update that has nothing to write.
var errUnchanged = errors.New("unchanged")

// markNodeDisconnected is MarkNodeDisconnected within tx. The LIKE finds the
// rows whose JSON names the node (cheaply, and perhaps too many: a
// description could contain the text); each is then read under its lock
// and changed only where a side's Node is id.
func markNodeDisconnected(ctx context.Context, tx txn, id string, now time.Time) error {
	ids, err := nodeClaimCandidates(ctx, tx, id)
	if err != nil {
		return err
	}
	now = now.UTC()
	for _, tid := range ids {
		_, err := updateTunnel(ctx, tx, tid, func(t *tunnel.Tunnel) error {
			changed := false
			for _, sd := range []*tunnel.Side{&t.Source, &t.Destination} {
				if sd.Node != id {
					continue
				}
				changed = true
				sd.Node = ""
				if sd.Connected {
					sd.Connected = false
					sd.LastUpdatedAt = now
				}
			}
			if !changed {
				return errUnchanged
			}
			return nil
		})
		// A tunnel deleted since the search holds nothing any more.
		if err != nil && !errors.Is(err, errUnchanged) && !errors.Is(err, tunnel.ErrNotFound) {
			return fmt.Errorf("release node %s's side of tunnel %s: %w", id, tid, err)
		}
	}
	return nil
}

// nodeClaimCandidates lists the tunnels whose JSON names node id as a
// side's Node: every tunnel a side of which it holds, and perhaps a few
// more.
func nodeClaimCandidates(ctx context.Context, tx txn, id string) ([]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id FROM tunnels WHERE data LIKE ? ESCAPE '\'`, nodeClaimPattern(id))
	if err != nil {
		return nil, fmt.Errorf("find node %s's tunnels: %w", id, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var tid string
		if err := rows.Scan(&tid); err != nil {
			return nil, fmt.Errorf("find node %s's tunnels: %w", id, err)
		}
		ids = append(ids, tid)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find node %s's tunnels: %w", id, err)
	}
	return ids, nil
}

// nodeClaimPattern is a LIKE pattern (escape character \) that matches a
// tunnel's JSON when a side's Node is id, spelled as encoding/json spells it
// in the row.
func nodeClaimPattern(id string) string {
	quoted, _ := json.Marshal(id) // a string always marshals
	esc := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(string(quoted))
	return `%"Node":` + esc + `%`
}
